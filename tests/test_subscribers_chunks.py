"""The CSV import a chunk of rows at a time, on both stores: what it reports and writes is
the same at any chunk size, with duplicates, bad rows and leavers on the chunks' edges."""

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import newsletter.subscribers
from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.store import Store
from tests.pg import both_backends, empty_store  # noqa: F401 (every test on both stores)

# line numbers are the file's: the header is line 1, the blank line 9 is no row
FILE = """email,name,categories,status
new1@example.com,New 1,models,
old-active@example.com,Renamed,robots|apps,pending
NEW1@example.com,Twice in one chunk,,
bad-address,Bad,,
new2@example.com,New 2,sports,
new2@example.com,Seen after its bad category,,
old-left@example.com,Back?,,active

new3@example.com,New 3,,unsubscribed
new1@example.com,Far from its first,,
new4@example.com,New 4,,nonsense
old-left@example.com,Again,,
new5@example.com,New 5,apps,
"""
BEFORE = [("old-active@example.com", "active"), ("old-left@example.com", "bounced"),
          ("old-quiet@example.com", "unsubscribed")]


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def import_once(settings: Settings, site: Path, *flags: str) -> tuple[object, ...]:
    """The import's exit code, its report and errors, and every subscriber after it."""
    if settings.store_url or settings.store_path.exists():
        empty_store(settings)
    for email, status in BEFORE:
        assert run("subscribers", "add", email, "--status", status).exit_code == 0
    result = run("subscribers", "import", str(site / "in.csv"), *flags)
    with Store(settings.store_location) as store:
        people = [(s.email, s.name, s.categories, s.status, s.source)
                  for s in store.subscribers()]
    return result.exit_code, result.stdout, result.stderr, people


@pytest.mark.parametrize("flags", [(), ("--skip-invalid",), ("--skip-invalid", "--update"),
                                   ("--dry-run", "--update")])
def test_every_chunk_size_imports_the_same(settings: Settings, site: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           flags: tuple[str, ...]) -> None:
    (site / "in.csv").write_text(FILE, encoding="utf-8")
    whole = import_once(settings, site, *flags)
    for size in (1, 2, 3, 4, 6):  # each duplicate and bad row lands on some chunk's edge
        monkeypatch.setattr(newsletter.subscribers, "CHUNK", size)
        assert import_once(settings, site, *flags) == whole, size
    monkeypatch.setattr(newsletter.subscribers, "CHUNK", 500)
    monkeypatch.setattr(newsletter.subscribers, "CHUNK_CHARACTERS", 40)  # wide rows: 1–2
    assert import_once(settings, site, *flags) == whole
    csv = site / "in.csv"
    assert whole[2].splitlines()[:7] == [
        f"{csv}:4: duplicate of line 2 (NEW1@example.com)",
        f"{csv}:5: invalid email address 'bad-address': An email address must have an "
        "@-sign.",
        f"{csv}:6: unknown category 'sports' (valid: models, robots, apps)",
        f"{csv}:7: duplicate of line 6 (new2@example.com)",
        f"{csv}:11: duplicate of line 2 (new1@example.com)",
        f"{csv}:12: unknown status 'nonsense' (valid: pending, active, unsubscribed, "
        "bounced, complained)",
        f"{csv}:13: duplicate of line 8 (old-left@example.com)"]
    if "--skip-invalid" not in flags:
        assert whole[0] == 1 and len(whole[3]) == 3  # nothing written
        return
    assert whole[0] == 0
    people = {email: (name, cats, status) for email, name, cats, status, _ in whole[3]}
    assert people["new1@example.com"] == ("New 1", ("models",), "active")
    assert people["new3@example.com"] == ("New 3", (), "unsubscribed")
    assert people["new5@example.com"] == ("New 5", ("apps",), "active")
    assert "new2@example.com" not in people and "new4@example.com" not in people
    if "--update" in flags:
        assert people["old-active@example.com"] == ("Renamed", ("apps", "robots"), "pending")
        assert people["old-left@example.com"] == ("Back?", (), "bounced")
        assert f"{csv}:8: old-left@example.com is bounced: an import never subscribes " \
            "them again (they can sign up themselves) (kept)" in whole[2]
        assert "3 added, 2 updated, 0 already subscribed (unchanged), 1 who left kept out, " \
            "7 invalid" in whole[1]
    else:
        assert people["old-active@example.com"] == ("", (), "active")
        assert "3 added, 0 updated, 2 already subscribed (unchanged), 0 who left kept out, " \
            "7 invalid" in whole[1]


def test_a_long_file_over_many_chunks(settings: Settings, site: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(newsletter.subscribers, "CHUNK", 7)
    if settings.store_url:  # PostgreSQL: a chunk's inserts split over several statements
        from newsletter import store_pg

        monkeypatch.setattr(store_pg, "MAX_PARAMETERS", 25)
    rows = [f"r{n}@example.com,R {n}\n" for n in range(50)]
    rows[20] = "r3@example.com,Back again\n"  # line 22, the last row of the third chunk
    rows[49] = "R48@EXAMPLE.COM,Last chunk\n"  # the row right after its first, over an edge
    (site / "in.csv").write_text("email,name\n" + "".join(rows), encoding="utf-8")
    result = run("subscribers", "import", "in.csv", "--skip-invalid")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == ["in.csv:22: duplicate of line 5 (r3@example.com)",
                                          "in.csv:51: duplicate of line 50 (R48@example.com)"]
    with Store(settings.store_location) as store:
        assert [s.email for s in store.subscribers()] == \
            [f"r{n}@example.com" for n in range(50) if n not in (20, 49)]  # in file order


def test_control_characters_in_source_and_created_are_no_error(settings: Settings,
                                                              site: Path) -> None:
    # PostgreSQL refuses a NUL in text, SQLite stores it: both keep printable text only
    (site / "in.csv").write_text("email,source,created\n"
                                 "n@example.com,cr\x00m\u2028feed,2024-01-01\x00\n",
                                 encoding="utf-8")
    result = run("subscribers", "import", str(site / "in.csv"))
    assert result.exit_code == 0, result.output
    with Store(settings.store_location) as store:
        sub = store.subscriber("n@example.com")
        assert sub is not None and (sub.source, sub.created_at) == ("cr m feed", "2024-01-01")
