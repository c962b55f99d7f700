"""Configuration and input validation: one-line errors instead of tracebacks, and CSV
cells that are data, never formulas."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import Settings, load_settings
from newsletter.content import load_digests
from newsletter.errors import ConfigError
from newsletter.store import Store
from tests.conftest import WritePost

REPO = Path(__file__).resolve().parent.parent


def with_line(site: Path, section: str, line: str) -> Path:
    config = site / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1),
                      encoding="utf-8")
    return config


@pytest.mark.parametrize(("line", "message"), [
    ('post_url = "/posts/{nope}/"', "unknown placeholder {nope}"),
    ('post_url = "/posts/{slug"', "expected '}'"),
    ('post_url = "/posts/{0}/"', "unknown placeholder {0}"),
])
def test_post_url_placeholders_checked_at_load(site: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"content.post_url: .*{message}"):
        load_settings(with_line(site, "content", line))


def test_base_url_path_is_kept(settings: Settings, write_post: WritePost) -> None:
    settings = dataclasses.replace(settings, base_url="https://example.com/blog")
    write_post("a.md", "---\ndate: 2025-12-20\n---\n")
    write_post("b.md", "---\ndate: 2025-12-21\nurl: /custom/path/\n---\n")
    assert [d.url for d in load_digests(settings).digests] == [
        "https://example.com/blog/posts/a/", "https://example.com/blog/custom/path/"]


def test_base_url_with_a_query_is_refused(site: Path) -> None:
    config = site / "newsletter.toml"
    config.write_text(config.read_text().replace('base_url = "https://site.example"',
                                                 'base_url = "https://site.example/?a=1"'))
    with pytest.raises(ConfigError, match=r"newsletter\.base_url"):
        load_settings(config)


def test_csv_formulas_neutralized_on_export_and_restored_on_import(settings: Settings,
                                                                   site: Path) -> None:
    runner = CliRunner()
    names = ['=HYPERLINK("http://evil.example","x")', "=cmd|' /C calc'!A0", "+1+2", "-3",
             "@SUM(A1)", "'quoted", "''=two", "plain"]
    for n, name in enumerate(names):
        assert runner.invoke(cli, ["subscribers", "add", f"f{n}@example.com", "--name",
                                   name]).exit_code == 0
    exported = runner.invoke(cli, ["subscribers", "export", "out.csv"])
    assert exported.exit_code == 0
    import csv

    with (site / "out.csv").open(encoding="utf-8", newline="") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")]  # nothing a sheet runs
    with Store(settings.store_location) as store:
        store.db.execute("DELETE FROM subscribers")
    imported = runner.invoke(cli, ["subscribers", "import", "out.csv"])
    assert imported.exit_code == 0, imported.output
    with Store(settings.store_location) as store:
        assert [s.name for s in store.subscribers()] == names
    again = runner.invoke(cli, ["subscribers", "export"])
    assert again.output == (site / "out.csv").read_text(encoding="utf-8")


def test_unbalanced_quote_is_an_error_with_its_line(settings: Settings, site: Path) -> None:
    (site / "q.csv").write_text('email,name\na@example.com,"Ann\nb@example.com,Bob\n'
                                'c@example.com,Cy"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["subscribers", "import", "q.csv"])
    assert result.exit_code == 2
    assert result.output == ('Error: q.csv:2: a quote (") opened on this line is not closed '
                             "before line 4; fix the quoting\n")
    with Store(settings.store_location) as store:
        assert list(store.subscribers()) == []


def test_foreign_sqlite_file_is_refused(site: Path) -> None:
    other = site / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    with_line(site, "store", 'path = "other.db"')
    config = site / "newsletter.toml"
    config.write_text(config.read_text().replace('path = "subscribers/test.db"\n', ""))
    result = CliRunner().invoke(cli, ["subscribers", "list"])
    assert result.exit_code == 2
    assert "other.db: not a newsletter database (it has other tables: invoices)" in \
        result.output
    with sqlite3.connect(other) as db:  # and it was not touched
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["invoices"]


def test_yaml_alias_bomb_is_a_skipped_file(settings: Settings, write_post: WritePost) -> None:
    bomb = "\n".join([
        "---", "date: 2025-12-20", 'a: &a ["x","x","x","x","x","x","x","x","x"]',
        *[f"{chr(98 + n)}: &{chr(98 + n)} [*{chr(97 + n)},*{chr(97 + n)},*{chr(97 + n)},"
          f"*{chr(97 + n)},*{chr(97 + n)},*{chr(97 + n)},*{chr(97 + n)},*{chr(97 + n)},"
          f"*{chr(97 + n)}]" for n in range(8)],
        "categories: *i", "---", ""])
    write_post("bomb.md", bomb)
    write_post("ok.md", "---\ndate: 2025-12-21\n---\n")
    started = time.monotonic()
    result = load_digests(settings)
    assert time.monotonic() - started < 5
    assert [d.path.name for d in result.digests] == ["ok.md"]
    assert "aliases" in str(result.problems[0])


def test_symlink_loop_in_content_is_not_fatal(settings: Settings, site: Path,
                                              write_post: WritePost) -> None:
    write_post("sub/a.md", "---\ndate: 2025-12-20\n---\n")
    os.symlink("..", site / "content" / "sub" / "up")
    os.symlink("loop", site / "content" / "loop")  # points at itself
    result = load_digests(settings)
    assert [d.path.name for d in result.digests] == ["a.md"]


def test_broken_pipe_is_quiet(settings: Settings, site: Path) -> None:
    runner = CliRunner()
    csv_text = "email\n" + "".join(f"p{n}@example.com\n" for n in range(3000))
    (site / "many.csv").write_text(csv_text, encoding="utf-8")
    assert runner.invoke(cli, ["subscribers", "import", "many.csv"]).exit_code == 0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    piped = subprocess.run(f"{sys.executable} -m newsletter subscribers list | head -1",
                           shell=True, cwd=site, env=env, capture_output=True, text=True,
                           timeout=60)
    assert piped.stdout.startswith("p0@example.com")
    assert piped.stderr == "", piped.stderr


def test_special_use_domains_behind_a_setting(site: Path) -> None:
    runner = CliRunner()
    refused = runner.invoke(cli, ["subscribers", "add", "dev@box.test"])
    assert refused.exit_code == 2 and "special-use" in refused.output
    with_line(site, "newsletter", "special_use_domains = true")
    added = runner.invoke(cli, ["subscribers", "add", "dev@box.test"])
    assert added.exit_code == 0, added.output
    assert runner.invoke(cli, ["subscribers", "add", "me@mac.local"]).exit_code == 0
