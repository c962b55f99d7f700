"""Listing a page of subscribers at a time, on both stores: the same output at any page
size, page edges included."""

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import newsletter.store_subscribers
from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.store import Store
from newsletter.subscribers import export_csv
from tests.pg import both_backends  # noqa: F401 (every test on both stores)


def run(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result


def listings() -> list[str]:
    return [run(*args).output for args in (
        ["subscribers", "list"], ["subscribers", "list", "--json"],
        ["subscribers", "list", "--status", "pending"],
        ["subscribers", "list", "--category", "robots"],
        ["subscribers", "list", "--status", "active", "--category", "apps"],
        ["subscribers", "export"])]


@pytest.mark.parametrize("count", [0, 1, 6, 7, 13])  # pages of 3: around every edge
def test_every_page_size_lists_the_same(settings: Settings, site: Path, count: int,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cats = ["models", "robots;apps", "", "apps", "robots"]
    statuses = ["active", "pending", "active", "unsubscribed"]
    (site / "in.csv").write_text("email,name,categories,status\n" + "".join(
        f"r{n}@example.com,R {n},{cats[n % 5]},{statuses[n % 4]}\n" for n in range(count)),
        encoding="utf-8")
    run("subscribers", "import", "in.csv")
    whole = listings()
    assert whole[-1].count("\n") == count + 1  # the header and every subscriber
    monkeypatch.setattr(newsletter.store_subscribers, "PAGE", 3)
    assert listings() == whole


def test_the_store_can_be_written_while_listing(settings: Settings, site: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(newsletter.store_subscribers, "PAGE", 2)
    (site / "in.csv").write_text("email\n" + "".join(f"r{n}@example.com\n" for n in range(5)),
                                 encoding="utf-8")
    run("subscribers", "import", "in.csv")
    with Store(settings.store_location) as store:
        for sub in store.subscribers(status="active"):
            store.set_status(sub.id, "unsubscribed")  # between pages, on one connection
        assert [s.status for s in store.subscribers()] == ["unsubscribed"] * 5


class _WritesBetweenPages(io.StringIO):
    """An export's output that, at its fourth line, has another connection rename every
    subscriber and add one: a commit landing between the export's pages."""

    def __init__(self, location: Path | str) -> None:
        super().__init__()
        self.location, self.lines = location, 0

    def write(self, text: str) -> int:
        self.lines += 1
        if self.lines == 4:
            with Store(self.location) as other, other.write() as db:
                db.execute("UPDATE subscribers SET name = 'NEW'")
                other.insert_subscriber(db, email="late@example.com",
                                        email_key="late@example.com", name="NEW",
                                        categories=(), status="active", source="test")
        return super().write(text)


def test_an_export_is_one_moment_of_the_list(settings: Settings, site: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(newsletter.store_subscribers, "PAGE", 2)
    (site / "in.csv").write_text("email,name\n" + "".join(f"r{n}@example.com,OLD\n"
                                                          for n in range(7)), encoding="utf-8")
    run("subscribers", "import", "in.csv")
    out = _WritesBetweenPages(settings.store_location)
    with Store(settings.store_location) as store:
        assert export_csv(store, out) == 7
        assert {s.name for s in store.subscribers()} == {"NEW"}  # the write did land
    assert [line.split(",")[1] for line in out.getvalue().splitlines()[1:]] == ["OLD"] * 7


@pytest.mark.parametrize("count", [0, 1, 4])
def test_json_listing_is_what_json_dumps_writes(settings: Settings, site: Path, count: int,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(newsletter.store_subscribers, "PAGE", 3)
    (site / "in.csv").write_text("email,name,categories\n" + "".join(
        f'r{n}@example.com,"Ré ""{n}"", \\\\",{"robots;apps" if n % 2 else ""}\n'
        for n in range(count)), encoding="utf-8")
    run("subscribers", "import", "in.csv")
    with Store(settings.store_location) as store, store.write() as db:
        # line separators JSON leaves as they are (older stores may hold them)
        db.execute("UPDATE subscribers SET source = ?", ("crm\u2028export\u2029\u0085",))
    listed = run("subscribers", "list", "--json").output
    with Store(settings.store_location) as store:
        by_status, by_category = store.counts()
        expected = json.dumps({"subscribers": [s.to_dict() for s in store.subscribers()],
                               "counts": {"status": by_status, "category": by_category}},
                              ensure_ascii=False, indent=2)
    assert listed == expected + "\n"
    assert len(json.loads(listed)["subscribers"]) == count
