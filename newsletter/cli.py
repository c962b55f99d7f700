"""The `newsletter` command: thin click commands over the library."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from newsletter import __version__
from newsletter.config import Settings, load_settings
from newsletter.errors import NewsletterError
from newsletter.window import Window, resolve_window

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """Library errors become one line on stderr and their exit code; never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


class _Context:
    def __init__(self, config: str | None) -> None:
        self.config = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config)
        return self._settings


pass_ctx = click.make_pass_decorator(_Context)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=click.Path(dir_okay=False),
              help="Config file (default: ./newsletter.toml or $NEWSLETTER_CONFIG).")
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """Turn a site's digest posts into a weekly email newsletter and deliver it."""
    ctx.obj = _Context(config)


def window_options(func: F) -> F:
    """--since/--until/--week/--days, shared by digests, preview and send."""
    options = [
        click.option("--since", help="Start (inclusive): 2025-12-15 or 2025-12-15T08:00."),
        click.option("--until", help="End (exclusive): a date means midnight at its start."),
        click.option("--week", is_flag=False, flag_value="", default=None, metavar="[YYYY-Www]",
                     help="An ISO week; alone, the last complete week (the default window)."),
        click.option("--days", type=int, help="N days ending at --until (or now), "
                     "or starting at --since."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def make_window(settings: Settings, since: str | None, until: str | None, week: str | None,
                days: int | None) -> Window:
    return resolve_window(tz=settings.timezone, since=since, until=until, week=week, days=days)


@cli.command()
@window_options
@click.option("--json", "as_json", is_flag=True, help="Every digest with its items, as JSON.")
@click.option("--strict", is_flag=True, help="Exit 1 when any digest file had to be skipped.")
@pass_ctx
def digests(obj: _Context, since: str | None, until: str | None, week: str | None,
            days: int | None, as_json: bool, strict: bool) -> None:
    """List the digests of a time window."""
    from newsletter.content import load_digests

    settings = obj.settings
    window = make_window(settings, since, until, week, days)
    result = load_digests(settings, window)
    for problem in result.problems:
        click.echo(f"warning: {problem}", err=True)
    if as_json:
        payload = {"window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
                   "digests": [d.to_dict() for d in result.digests]}
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        for d in result.digests:
            local = d.date.astimezone(settings.timezone).strftime("%Y-%m-%d %H:%M")
            cats = ", ".join(d.categories) or "-"
            click.echo(f"{local}  {len(d.items):>3} items  {d.title}  [{cats}]")
        click.echo(f"{len(result.digests)} digests in {window.label()} "
                   f"({result.scanned} files scanned, {len(result.problems)} skipped)", err=True)
    if strict and result.problems:
        sys.exit(1)


@cli.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Write a starter config, the default templates and a sample subscriber CSV."""
    from newsletter.starter import write_starter

    for path in write_starter(directory):
        click.echo(f"wrote {path}")
    click.echo("Next: edit newsletter.toml, put digests in content/, then run "
               "`newsletter preview`.")


def main() -> None:
    cli(prog_name="newsletter")
