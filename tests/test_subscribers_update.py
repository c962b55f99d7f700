"""`import --update` changes only the columns a file has and never re-subscribes anyone
who left; `set --status active` starts a clean subscription."""

from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.store import Store
from tests.pg import both_backends  # noqa: F401 (every test on both stores)


def people(settings: Settings) -> dict[str, tuple[str, str, str]]:
    with Store(settings.store_location) as store:
        return {s.email: (s.name, ";".join(s.categories), s.status)
                for s in store.subscribers()}


def test_update_changes_only_present_columns_and_keeps_leavers_out(settings: Settings,
                                                                   site: Path) -> None:
    runner = CliRunner()
    for email, cats, status in [("robo@example.com", "robots", "unsubscribed"),
                                ("gone@example.com", "models", "bounced"),
                                ("spam@example.com", "", "complained"),
                                ("keep@example.com", "apps", "active")]:
        added = runner.invoke(cli, ["subscribers", "add", email, "--categories", cats,
                                    "--status", status, "--name", "Old"])
        assert added.exit_code == 0, added.output
    (site / "names.csv").write_text(
        "email,name\nrobo@example.com,Robo\ngone@example.com,Gone\nspam@example.com,Spam\n"
        "keep@example.com,Keep\n", encoding="utf-8")
    names = runner.invoke(cli, ["subscribers", "import", "names.csv", "--update"])
    assert names.exit_code == 0, names.output
    assert people(settings) == {
        "robo@example.com": ("Robo", "robots", "unsubscribed"),
        "gone@example.com": ("Gone", "models", "bounced"),
        "spam@example.com": ("Spam", "", "complained"),
        "keep@example.com": ("Keep", "apps", "active")}
    (site / "status.csv").write_text(
        "email,status,categories\nrobo@example.com,active,models\ngone@example.com,pending,\n"
        "keep@example.com,unsubscribed,apps\n", encoding="utf-8")
    statuses = runner.invoke(cli, ["subscribers", "import", "status.csv", "--update"])
    assert statuses.exit_code == 0, statuses.output
    assert "status.csv:2: robo@example.com is unsubscribed: an import never subscribes" \
        in statuses.output
    assert "status.csv:3: gone@example.com is bounced" in statuses.output
    assert "2 who left kept out" in statuses.output
    assert people(settings) == {
        "robo@example.com": ("Robo", "models", "unsubscribed"),
        "gone@example.com": ("Gone", "", "bounced"),
        "spam@example.com": ("Spam", "", "complained"),
        "keep@example.com": ("Keep", "apps", "unsubscribed")}  # leaving is always allowed


def test_set_active_clears_the_unsubscribe_time(settings: Settings) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["subscribers", "add", "a@example.com", "--status", "unsubscribed"])
    with Store(settings.store_location) as store:
        assert store.subscriber("a@example.com").unsubscribed_at  # type: ignore[union-attr]
    assert runner.invoke(cli, ["subscribers", "set", "a@example.com", "--status",
                               "active"]).exit_code == 0
    with Store(settings.store_location) as store:
        sub = store.subscriber("a@example.com")
        assert sub is not None and sub.unsubscribed_at is None and sub.status == "active"
