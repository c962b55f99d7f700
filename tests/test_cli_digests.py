import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import cli
from tests.conftest import EXAMPLES, WritePost


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "newsletter", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_reference_digest_has_its_16_items() -> None:
    done = run("digests", "--week", "2025-W51", "--json", cwd=EXAMPLES)
    assert done.returncode == 0, done.stderr
    digests = json.loads(done.stdout)["digests"]
    (reference,) = [d for d in digests if d["title"].startswith("2025.12.20.16")]
    items = reference["items"]
    assert len(items) == 16
    assert items[0]["source"] == "歸藏(guizang.ai)"
    assert items[0]["headline"] == "Andrej Karpathy 分享了他 2025 年的总结"
    assert items[0]["url"] == "https://x.com/op7418/status/2002221634460188761"
    assert all(i["headline"] and i["url"] and i["source"] and i["summary_text"] for i in items)


def test_table_and_summary_line() -> None:
    done = run("digests", "--week", "2025-W51", cwd=EXAMPLES)
    assert done.returncode == 0
    assert "2025-12-20 16:00   16 items  2025.12.20.16" in done.stdout
    assert "7 digests in" in done.stderr


def test_strict_turns_warnings_into_exit_1(site: Path, write_post: WritePost) -> None:
    write_post("2025-12-16-ok.md", "---\ntitle: ok\n---\n")
    write_post("broken.md", "---\ntitle: [\n---\n")
    runner = CliRunner()
    loose = runner.invoke(cli, ["digests", "--week", "2025-W51"])
    assert loose.exit_code == 0
    assert "warning: " in loose.stderr and "broken.md: bad front matter" in loose.stderr
    strict = runner.invoke(cli, ["digests", "--week", "2025-W51", "--strict"])
    assert strict.exit_code == 1


def test_usage_errors_exit_2_without_traceback(site: Path) -> None:
    done = run("digests", "--week", "2025-W51", "--days", "3", cwd=site)
    assert done.returncode == 2
    assert done.stderr.strip() == "Error: --week cannot be combined with --since, --until or --days"
    missing = run("--config", "nope.toml", "digests", cwd=site)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_init_writes_a_starter_and_never_overwrites(tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["init", str(tmp_path / "site")])
    assert first.exit_code == 0, first.output
    for name in ("newsletter.toml", "subscribers/sample.csv", "templates/email/email.html.j2"):
        assert (tmp_path / "site" / name).is_file()
    again = runner.invoke(cli, ["init", str(tmp_path / "site")])
    assert again.exit_code == 2 and "already exists" in again.stderr
    done = run("digests", cwd=tmp_path / "site")
    assert done.returncode == 0, done.stderr


def test_installed_package_carries_its_templates(tmp_path: Path) -> None:
    """Run from outside the checkout: the templates must come with the package itself."""
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    env["NEWSLETTER_SECRET_KEY"] = "k"

    def outside(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "newsletter", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, env=env)

    assert outside("init", "site").returncode == 0
    site = tmp_path / "site"
    assert (site / "templates" / "web" / "preferences.html.j2").is_file()
    done = outside("--config", str(EXAMPLES / "newsletter.toml"), "preview", "--week",
                   "2025-W51", "--categories", "robotics", "--out", str(tmp_path / "pv"))
    assert done.returncode == 0, done.stderr
    assert "Figure 人形机器人" in (tmp_path / "pv" / "robotics.html").read_text(encoding="utf-8")


def test_a_broken_template_is_one_line(site: Path, write_post: WritePost) -> None:
    write_post("2025-12-16-x.md", "---\ntitle: x\n---\n1. [A - S](https://a.example)\n")
    (site / "templates" / "email").mkdir(parents=True)
    (site / "templates" / "email" / "subject.txt.j2").write_text("{{ name }", encoding="utf-8")
    done = run("preview", "--week", "2025-W51", "--categories", "", cwd=site)
    assert done.returncode == 2
    assert done.stderr.startswith("Error: ") and "subject.txt.j2:1" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    (site / "templates" / "email" / "subject.txt.j2").write_text("{{ nope }}", encoding="utf-8")
    done = run("preview", "--week", "2025-W51", "--categories", "", cwd=site)
    assert done.returncode == 2 and "'nope' is undefined" in done.stderr


def test_unwritable_output_is_one_line(site: Path, write_post: WritePost) -> None:
    write_post("2025-12-16-x.md", "---\ntitle: x\n---\n1. [A - S](https://a.example)\n")
    (site / "blocker").write_text("a file, not a folder", encoding="utf-8")
    done = run("preview", "--week", "2025-W51", "--categories", "", "--out", "blocker/pv",
               cwd=site)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "blocker" in done.stderr


def test_check_prints_shapes_and_warns_when_posts_yield_nothing(site: Path,
                                                                write_post: WritePost) -> None:
    write_post("2025-12-15.md", "---\ntitle: A\n---\n- [One](https://a.example/1)\n"
               "- [Two](https://a.example/2)\n\n## Sponsors\n\n- [Ad](https://ad.example)\n")
    for day in (16, 17):
        write_post(f"2025-12-{day}.md", "---\ntitle: Essay\n---\nJust prose, no stories.\n")
    done = run("digests", "--week", "2025-W51", "--check", cwd=site)
    assert done.returncode == 0, done.stderr
    assert "2025-12-15 00:00    2 items  2025-12-15.md  (link-led 2; left out: Sponsors)" \
        in done.stdout
    assert "2025-12-16 00:00    0 items  2025-12-16.md  (no items)" in done.stdout
    assert "warning: 2 of 3 posts yield no items" in done.stderr
    assert "[content] exclude" in done.stderr
    quiet = run("digests", "--week", "2025-W51", cwd=site)
    assert "yield no items" not in quiet.stderr


def test_json_lists_skipped_files_with_reasons(site: Path, write_post: WritePost) -> None:
    write_post("2025-12-15.md", "---\ntitle: A\n---\n- [One](https://a.example/1)\n")
    write_post("2025-12-16.md", "---\ntitle: [broken\n---\n")
    done = run("digests", "--week", "2025-W51", "--json", cwd=site)
    payload = json.loads(done.stdout)
    assert [d["title"] for d in payload["digests"]] == ["A"]
    (skipped,) = payload["skipped"]
    assert skipped["path"].endswith("2025-12-16.md") and "front matter" in skipped["reason"]
