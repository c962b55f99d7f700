import json
import multiprocessing
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.config import Settings, load_settings
from newsletter.store import Store
from newsletter.subscribers import Subscribers
from tests.pg import both_backends, empty_store  # noqa: F401 (every test on both stores)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def rows(settings: Settings) -> list[tuple[str, str, str, str]]:
    with Store(settings.store_location) as store:
        return [(s.email, s.name, ";".join(s.categories), s.status) for s in store.subscribers()]


def test_add_set_remove(settings: Settings) -> None:
    added = run("subscribers", "add", "Ada@Example.COM", "--name", "Ada", "--categories",
                "robots,models")
    assert added.exit_code == 0
    assert added.output == "added Ada@example.com\tAda\tmodels;robots\tactive\n"
    again = run("subscribers", "add", "ada@example.com")
    assert again.exit_code == 2
    assert again.stderr == ("Error: ada@example.com: already subscribed (change it with "
                            "`newsletter subscribers set`)\n")
    changed = run("subscribers", "set", "ADA@example.com", "--categories", "", "--status",
                  "unsubscribed")
    assert changed.output == "updated Ada@example.com\tAda\t(all)\tunsubscribed\n"
    assert rows(settings) == [("Ada@example.com", "Ada", "", "unsubscribed")]
    removed = run("subscribers", "remove", "ada@example.com")
    assert removed.exit_code == 0 and rows(settings) == []
    missing = run("subscribers", "remove", "ada@example.com")
    assert missing.exit_code == 2
    assert missing.stderr == "Error: ada@example.com: no such subscriber\n"


@pytest.mark.parametrize(("args", "message"), [
    (["add", "not-an-address"], "Error: invalid email address 'not-an-address': An email "
     "address must have an @-sign.\n"),
    (["add", "a@example.com", "--categories", "sports"],
     "Error: unknown category 'sports' (valid: models, robots, apps)\n"),
    (["add", "a@example.com", "--status", "gone"],
     "Error: unknown status 'gone' (valid: pending, active, unsubscribed, bounced, "
     "complained)\n"),
    (["set", "nobody@example.com", "--name", "x"],
     "Error: nobody@example.com: no such subscriber (see `newsletter subscribers list`)\n"),
])
def test_errors(settings: Settings, args: list[str], message: str) -> None:
    result = run("subscribers", *args)
    assert result.exit_code == 2
    assert result.stderr == message


def test_idn_domain_is_normalized(settings: Settings) -> None:
    assert run("subscribers", "add", "user@BÜCHER.example").exit_code == 0
    assert rows(settings)[0][0] == "user@bücher.example"
    assert run("subscribers", "add", "user@bücher.example").exit_code == 2


def test_remove_erases_delivery_rows(settings: Settings, write_post: object) -> None:
    write_post("d.md", "---\ndate: 2025-12-16\n---\n1. [X - S](https://a.example/1)\n")  # type: ignore[operator]
    run("subscribers", "add", "a@example.com", "--name", "Ann")
    assert run("send", "--week", "2025-W51", "--yes").exit_code == 0
    run("subscribers", "remove", "a@example.com")
    with Store(settings.store_location) as store:
        left = store.db.execute("SELECT COUNT(*) FROM deliveries WHERE email = ? OR name = ?",
                                ("a@example.com", "Ann")).fetchone()[0]
    assert left == 0


def test_list_filters_and_counts(settings: Settings) -> None:
    run("subscribers", "add", "a@example.com", "--categories", "robots")
    run("subscribers", "add", "b@example.com")
    run("subscribers", "add", "c@example.com", "--status", "pending", "--categories", "apps")
    listed = run("subscribers", "list", "--category", "robots")
    assert listed.output.splitlines() == [
        "a@example.com\t-\trobots\tactive",
        "b@example.com\t-\t(all)\tactive",
        "status: pending 1, active 2, unsubscribed 0, bounced 0, complained 0",
        "active per category: (all) 1, robots 1",
    ]
    pending = run("subscribers", "list", "--status", "pending", "--json")
    data = json.loads(pending.output)
    assert [s["email"] for s in data["subscribers"]] == ["c@example.com"]
    assert data["counts"]["status"]["active"] == 2


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_import_reports_every_bad_row_and_writes_nothing(settings: Settings,
                                                         site: Path) -> None:
    csv = write(site / "in.csv", "email,name,categories\n"
                "good@example.com,Good,models|robots\n"
                "bad-address,Bad,\n"
                "x@example.com,X,sports\n"
                "GOOD@example.com,Dup,\n"
                "y@example.com,Y,apps;models\n")
    result = run("subscribers", "import", str(csv))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{csv}:3: invalid email address 'bad-address': An email address must have an "
        "@-sign.",
        f"{csv}:4: unknown category 'sports' (valid: models, robots, apps)",
        f"{csv}:5: duplicate of line 2 (GOOD@example.com)",
        "Nothing was written: fix the rows above or use --skip-invalid.",
    ]
    assert rows(settings) == []
    skipped = run("subscribers", "import", str(csv), "--skip-invalid")
    assert skipped.exit_code == 0
    assert ("imported: 2 added, 0 updated, 0 already subscribed (unchanged), 0 who left kept "
            "out, 3 invalid") in skipped.output
    assert [r[0] for r in rows(settings)] == ["good@example.com", "y@example.com"]


def test_import_existing_untouched_unless_update(settings: Settings, site: Path) -> None:
    run("subscribers", "add", "a@example.com", "--name", "Old")
    csv = write(site / "in.csv", "email,name\nA@example.com,New\nb@example.com,B\n")
    dry = run("subscribers", "import", str(csv), "--dry-run")
    assert "would import: 1 added, 0 updated, 1 already subscribed" in dry.output
    assert len(rows(settings)) == 1
    plain = run("subscribers", "import", str(csv))
    assert "imported: 1 added, 0 updated, 1 already subscribed (unchanged)" in plain.output
    assert rows(settings)[0][1] == "Old"
    updated = run("subscribers", "import", str(csv), "--update")
    assert "0 added, 2 updated" in updated.output
    assert rows(settings)[0][1] == "New"


def test_import_excel_bom_semicolons_and_other_tools(settings: Settings, site: Path) -> None:
    excel = write(site / "excel.csv", "\ufeffemail;name;categories;status\n"
                  "a@example.com;Ä Ö;models|apps;subscribed\n", "utf-8")
    mailchimp = write(site / "mc.csv", '"Email Address","First Name","Last Name","TAGS"\n'
                      '"b@example.com","Bea","Bauer","x"\n')
    listmonk = write(site / "lm.csv", "uuid,email,name,attributes,status,created_at\n"
                     'u1,c@example.com,Cy,"{}",blocklisted,2024-01-02T03:04:05Z\n')
    for path in (excel, mailchimp, listmonk):
        result = run("subscribers", "import", str(path))
        assert result.exit_code == 0, result.output
    assert rows(settings) == [("a@example.com", "Ä Ö", "apps;models", "active"),
                              ("b@example.com", "Bea Bauer", "", "active"),
                              ("c@example.com", "Cy", "", "unsubscribed")]
    with Store(settings.store_location) as store:
        assert store.subscriber("c@example.com").created_at == "2024-01-02T03:04:05Z"  # type: ignore[union-attr]


def test_import_file_errors(settings: Settings, site: Path) -> None:
    missing = run("subscribers", "import", "nope.csv")
    assert missing.exit_code == 2 and "nope.csv: cannot open" in missing.stderr
    no_email = write(site / "x.csv", "name,categories\nA,\n")
    result = run("subscribers", "import", str(no_email))
    assert result.stderr == "Error: no 'email' column in the header (name, categories)\n"
    latin = write(site / "l.csv", "email,name\na@example.com,Jos\xe9\n", "latin-1")
    assert "not UTF-8" in run("subscribers", "import", str(latin)).stderr


def test_export_then_import_round_trips(settings: Settings, site: Path) -> None:
    run("subscribers", "add", "a@example.com", "--name", 'Quote "Q", Comma',
        "--categories", "models,apps")
    run("subscribers", "add", "b@example.com", "--status", "bounced")
    run("subscribers", "add", "c@bücher.example", "--name", "林")
    first = run("subscribers", "export")
    assert first.output.splitlines()[0] == "email,name,categories,status,created,source"
    (site / "out.csv").write_text(first.output, encoding="utf-8")
    assert run("subscribers", "export", "file.csv").output == \
        "exported 3 subscribers to file.csv\n"
    empty_store(settings)
    assert run("subscribers", "import", str(site / "out.csv")).exit_code == 0
    assert run("subscribers", "export").output == first.output


def _writer(config: str, prefix: str, count: int) -> None:
    settings = load_settings(config)
    with Store(settings.store_location, timeout=60) as store:
        subs = Subscribers(store, settings)
        for n in range(count):
            subs.add(f"{prefix}{n}@example.com", categories="models")
            subs.set(f"{prefix}{n}@example.com", name=f"{prefix} {n}", categories="robots")


def test_two_processes_writing_at_once_lose_nothing(settings: Settings, site: Path) -> None:
    Store(settings.store_location).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(site / "newsletter.toml"), p, 150))
               for p in ("left", "right")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0  # no "database is locked"
    found = rows(settings)
    assert len(found) == 300
    assert all(r[2] == "robots" and r[1] for r in found)
