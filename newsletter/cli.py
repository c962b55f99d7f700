"""The `newsletter` command: thin click commands over the library."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import jinja2

from newsletter import __version__
from newsletter.config import Settings, load_settings
from newsletter.errors import NewsletterError
from newsletter.window import Window, resolve_window

if TYPE_CHECKING:  # imported by the commands that need it, to keep start-up light
    from newsletter.subscribers import Subscribers

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """Library errors become one line on stderr and their exit code; never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except jinja2.TemplateError as exc:  # a site owner's template edit
            where = getattr(exc, "filename", None) or getattr(exc, "name", None) or "template"
            line = getattr(exc, "lineno", None)
            click.echo(f"Error: {where}{f':{line}' if line else ''}: {exc.message or exc} "
                       "(fix the template)", err=True)
            ctx.exit(2)
        except BrokenPipeError:  # `newsletter editions show 1 | head`: the reader left
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(0)
        except OSError as exc:  # unreadable or unwritable files and folders
            target = exc.filename or ""
            click.echo(f"Error: {target}: {exc.strerror or exc}", err=True)
            ctx.exit(2)
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
@click.option("--json", "as_json", is_flag=True,
              help="Every digest with its items, and the skipped files, as JSON.")
@click.option("--check", is_flag=True, help="Per post: items found, the shapes they were "
              "written in and the sections left out; warn when many posts yield no items.")
@click.option("--stories", is_flag=True, help="The window's stories, ranked, each with the "
              "mentions merged into it and why (same page, similar headlines).")
@click.option("--strict", is_flag=True, help="Exit 1 when any digest file had to be skipped.")
@pass_ctx
def digests(obj: _Context, since: str | None, until: str | None, week: str | None,
            days: int | None, as_json: bool, check: bool, stories: bool, strict: bool) -> None:
    """List the digests of a time window (one post at a time: any window, flat memory)."""
    from newsletter.content import select_digests

    settings = obj.settings
    window = make_window(settings, since, until, week, days)
    if stories:
        _explain_stories(settings, window)
        return
    selection = select_digests(settings, window)
    result = selection.result
    listed = empty = 0
    if as_json:
        click.echo('{"window": ' + json.dumps({"start": window.start.isoformat(),
                                                 "end": window.end.isoformat()}))
        click.echo(', "digests": [')
    for d in selection.digests():
        listed += 1
        empty += not d.items
        if as_json:
            click.echo(("," if listed > 1 else "")
                       + json.dumps(d.to_dict(), ensure_ascii=False, indent=2))
            continue
        local = d.date.astimezone(settings.timezone).strftime("%Y-%m-%d %H:%M")
        if check:
            shapes = ", ".join(f"{shape} {n}" for shape, n in d.shapes) or "no items"
            left_out = f"; left out: {', '.join(d.excluded_sections)}" \
                if d.excluded_sections else ""
            click.echo(f"{local}  {len(d.items):>3} items  {d.path.name}  ({shapes}{left_out})")
        else:
            cats = ", ".join(d.categories) or "-"
            click.echo(f"{local}  {len(d.items):>3} items  {d.title}  [{cats}]")
    if as_json:
        skipped = [{"path": str(p.path), "reason": p.reason} for p in result.problems]
        click.echo('], "skipped": ' + json.dumps(skipped, ensure_ascii=False) + "}")
    for problem in result.problems:
        click.echo(f"warning: {problem}", err=True)
    if check and listed and empty * 4 > listed:
        click.echo(f"warning: {empty} of {listed} posts yield no items. If they are pages, not "
                   "digests, leave them out with [content] exclude; if their items sit under "
                   "headings that [content] exclude_sections matches, narrow it; "
                   "`newsletter digests --json` shows what each post gave.", err=True)
    if not as_json:
        pages = f", {result.pages} pages left out" if result.pages else ""
        click.echo(f"{listed} digests in {window.label()} ({result.scanned} files scanned, "
                   f"{len(result.problems)} skipped{pages})", err=True)
    if strict and result.problems:
        sys.exit(1)


def _explain_stories(settings: Settings, window: Window) -> None:
    from newsletter.compose import explain
    from newsletter.content import load_digests

    loaded = load_digests(settings, window)
    for problem in loaded.problems:
        click.echo(f"warning: {problem}", err=True)
    for n, told in enumerate(explain(loaded.digests, settings), start=1):
        story = told.story
        cats = ", ".join(sorted(story.categories)) or "(no category)"
        standing = ", standing item" if story.standing else ""
        click.echo(f"{n:>4}. {story.headline}  [{cats}; {len(story.coverage)} digests, "
                   f"{len(story.sources) + len(story.also)} sources{standing}]")
        if len(told.mentions) > 1:
            for headline, url, title in told.mentions:
                click.echo(f"        - {headline}  <{url or 'no link'}>  ({title})")
            click.echo(f"        merged: {'; '.join(told.reasons)}")


@cli.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Write a starter config, the default templates and a sample subscriber CSV."""
    from newsletter.starter import write_starter

    for path in write_starter(directory):
        click.echo(f"wrote {path}")
    click.echo("Next: edit newsletter.toml, put digests in content/, then run "
               "`newsletter preview`.")


@cli.command()
@window_options
@click.option("--categories", help="Preview the variant of these categories (A,B).")
@click.option("--subscriber", metavar="EMAIL", help="Preview exactly what EMAIL gets.")
@click.option("--out", "out_dir", default="preview", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--serve", is_flag=True, help="Serve the preview on 127.0.0.1, re-rendering "
              "when a template or digest changes.")
@click.option("--port", default=8025, show_default=True, help="Port for --serve.")
@click.option("--intro", "intro_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Editor's note (Markdown) shown above the stories; default: "
              "editions/YYYY-Www.md next to the content folder.")
@pass_ctx
def preview(obj: _Context, since: str | None, until: str | None, week: str | None,
            days: int | None, categories: str | None, subscriber: str | None, out_dir: Path,
            serve: bool, port: int, intro_file: Path | None) -> None:
    """Write each variant as .html, .txt and .eml, with an index.html to compare them."""
    from newsletter.preview import PreviewReport, serve_preview, write_preview

    if categories is not None and subscriber is not None:
        raise click.UsageError("choose one of --categories and --subscriber")
    settings = obj.settings
    window = make_window(settings, since, until, week, days)

    def build() -> PreviewReport:
        return write_preview(settings, window, out_dir, categories=categories,
                             subscriber=subscriber, intro_file=intro_file)

    def show(report: PreviewReport) -> None:
        for problem in report.problems:
            click.echo(f"warning: {problem}", err=True)
        for key in report.empty:
            click.echo(f"{key}: no stories in this window; this variant sends nothing")
        for v in report.variants:
            size = (out_dir / f"{v.key}.html").stat().st_size
            more = f", {v.dropped} more on the site" if v.dropped else ""
            click.echo(f"{v.key}: {v.stories} stories{more}, HTML {size:,} bytes  {v.subject}")
        click.echo(f"Open {(out_dir / 'index.html').resolve()}")

    show(build())
    if serve:
        click.echo(f"Serving http://127.0.0.1:{port}/ (Ctrl+C to stop)")
        serve_preview(settings, build, out_dir, port=port, on_build=show)


@cli.group()
def subscribers() -> None:
    """Add, change, remove, list, import and export subscribers."""


def _subscribers(obj: _Context) -> Subscribers:
    from newsletter.store import Store
    from newsletter.subscribers import Subscribers

    return Subscribers(Store(obj.settings.store_location), obj.settings)


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", help="Display name.")
@click.option("--categories", help="Categories A,B (default: every category).")
@click.option("--status", default="active", show_default=True,
              help="pending, active, unsubscribed, bounced or complained.")
@pass_ctx
def subscribers_add(obj: _Context, email: str, name: str, categories: str | None,
                    status: str) -> None:
    """Add one subscriber."""
    from newsletter.subscribers import subscriber_line

    sub = _subscribers(obj).add(email, name=name, categories=categories, status=status)
    click.echo(f"added {subscriber_line(sub)}")


@subscribers.command("set")
@click.argument("email")
@click.option("--name", help="New display name.")
@click.option("--categories", help="New categories A,B ('' for every category).")
@click.option("--status", help="New status.")
@pass_ctx
def subscribers_set(obj: _Context, email: str, name: str | None, categories: str | None,
                    status: str | None) -> None:
    """Change a subscriber's name, categories or status."""
    from newsletter.subscribers import subscriber_line

    sub = _subscribers(obj).set(email, name=name, categories=categories, status=status)
    click.echo(f"updated {subscriber_line(sub)}")


@subscribers.command("remove")
@click.argument("email")
@pass_ctx
def subscribers_remove(obj: _Context, email: str) -> None:
    """Erase a person: their subscriber row and every delivery row naming them."""
    rows = _subscribers(obj).remove(email)
    click.echo(f"erased {email} ({rows} rows)")


@subscribers.command("prune")
@pass_ctx
def subscribers_prune(obj: _Context) -> None:
    """Remove signups not confirmed within [web] pending_days (run it daily)."""
    people, records = _subscribers(obj).prune()
    click.echo(f"removed {people} unconfirmed signups and {records} old signup records "
               f"(older than {obj.settings.web.pending_days} days)")


@subscribers.command("list")
@click.option("--status", help="Only this status.")
@click.option("--category", help="Only subscribers who get this category.")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
@pass_ctx
def subscribers_list(obj: _Context, status: str | None, category: str | None,
                     as_json: bool) -> None:
    """List subscribers, then counts per status and per category."""
    from newsletter.subscribers import json_listing, parse_categories, parse_status, subscriber_line

    subs = _subscribers(obj)
    status = parse_status(status) if status else None
    if category:
        parse_categories(category, obj.settings)
    with subs.store.snapshot():  # the rows and the counts of one moment
        found = subs.store.subscribers(status=status, category=category)
        by_status, by_category = subs.store.counts()
        if as_json:
            for piece in json_listing(found, {"status": by_status, "category": by_category}):
                click.echo(piece, nl=False)
            click.echo()
            return
        for sub in found:
            click.echo(subscriber_line(sub))
    click.echo("status: " + ", ".join(f"{k} {v}" for k, v in by_status.items()))
    click.echo("active per category: " + ", ".join(
        f"{k or '(all)'} {v}" for k, v in sorted(by_category.items())))


@subscribers.command("import")
@click.argument("csv_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check every row, write nothing.")
@click.option("--skip-invalid", is_flag=True, help="Import the good rows, report the bad.")
@click.option("--update", is_flag=True, help="Overwrite existing subscribers from the file.")
@pass_ctx
def subscribers_import(obj: _Context, csv_file: Path, dry_run: bool, skip_invalid: bool,
                       update: bool) -> None:
    """Import subscribers from a CSV file (email, name, categories, status, created)."""
    from newsletter.subscribers import import_csv

    subs = _subscribers(obj)
    report = import_csv(subs.store, obj.settings, csv_file, dry_run=dry_run,
                        skip_invalid=skip_invalid, update=update)
    for problem in report.problems:
        click.echo(str(problem), err=True)
    for note in report.kept_out:
        click.echo(f"{note} (kept)", err=True)
    verb = "would import" if dry_run else "imported" if report.written else "not imported"
    click.echo(f"{verb}: {report.added} added, {report.updated} updated, "
               f"{report.unchanged} already subscribed (unchanged), "
               f"{len(report.kept_out)} who left kept out, {len(report.problems)} invalid")
    if report.problems and not skip_invalid:
        click.echo("Nothing was written: fix the rows above or use --skip-invalid.", err=True)
        sys.exit(1)


@subscribers.command("export")
@click.argument("csv_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
def subscribers_export(obj: _Context, csv_file: Path | None) -> None:
    """Export every subscriber as CSV (to stdout by default)."""
    from newsletter.subscribers import export_csv

    store = _subscribers(obj).store
    if csv_file is None:
        export_csv(store, sys.stdout)
        return
    with csv_file.open("w", encoding="utf-8", newline="") as out:
        count = export_csv(store, out)
    click.echo(f"exported {count} subscribers to {csv_file}")


@cli.command()
@window_options
@click.option("--dry-run", is_flag=True, help="Show what would be sent; send and store nothing.")
@click.option("--yes", is_flag=True, help="Send without asking (needed without a terminal).")
@click.option("--to", "to", metavar="EMAIL", help="Send one copy to EMAIL only, outside the "
              "journal (a test send).")
@click.option("--categories", help="With --to: the variant of these categories (A,B).")
@click.option("--limit", type=click.IntRange(min=1), help="Send at most N messages this run.")
@click.option("--concurrency", type=click.IntRange(min=1), help="SMTP connections.")
@click.option("--rate", type=click.FloatRange(min=0), help="Messages per second (0: no limit).")
@click.option("--intro", "intro_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Editor's note (Markdown) shown above the stories; default: "
              "editions/YYYY-Www.md next to the content folder.")
@click.option("--retry-failed", is_flag=True, help="Send the edition's failed deliveries "
              "again (after fixing what refused them).")
@click.option("--allow-overlap", is_flag=True, help="Send a window that overlaps an edition "
              "already stored.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Sender processes on this machine sharing the edition.")
@click.option("--join", is_flag=True, help="Join the window's edition another sender "
              "(e.g. on another host) is sending; never start a new one.")
@pass_ctx
def send(obj: _Context, since: str | None, until: str | None, week: str | None,
         days: int | None, dry_run: bool, yes: bool, to: str | None, categories: str | None,
         limit: int | None, concurrency: int | None, rate: float | None,
         intro_file: Path | None, retry_failed: bool, allow_overlap: bool, workers: int,
         join: bool) -> None:
    """Compose the window's edition and deliver it to every active subscriber."""
    from newsletter import send_job as sending

    settings = obj.settings
    window = make_window(settings, since, until, week, days)
    if categories is not None and to is None:
        raise click.UsageError("--categories goes with --to")
    if to is not None:
        click.echo(sending.test_copy(settings, window, to, categories, intro_file))
        return
    job = sending.SendJob(settings, window, limit=limit, concurrency=concurrency, rate=rate,
                          intro_file=intro_file, retry_failed=retry_failed,
                          allow_overlap=allow_overlap, workers=workers, join=join)
    with job:
        click.echo(job.describe())
        if dry_run:
            click.echo("Dry run: nothing was sent or stored.")
            return
        if not job.todo():
            click.echo(job.done_message())
            return
        if not yes:
            if not sys.stdin.isatty():
                raise click.UsageError("refusing to send without a terminal to confirm; "
                                       "add --yes")
            click.confirm(f"Send to {job.todo()} recipients via {job.via}?", abort=True)
        report = job.run(progress=sys.stderr.isatty())
        click.echo(job.summary(report))
    if report.failed or report.deferred or report.stopped:
        sys.exit(1)


@cli.group(invoke_without_command=True)
@click.pass_context
def editions(ctx: click.Context) -> None:
    """List editions with their delivery counts."""
    if ctx.invoked_subcommand is None:
        from newsletter import send_job as sending

        obj = ctx.find_object(_Context)
        assert obj is not None
        for line in sending.edition_lines(obj.settings):
            click.echo(line)


@editions.command("show")
@click.argument("number", type=int)
@pass_ctx
def editions_show(obj: _Context, number: int) -> None:
    """Show one edition: its window, variants, counts and every failure."""
    from newsletter import send_job as sending

    for line in sending.edition_detail(obj.settings, number):
        click.echo(line)


@cli.group("store")
def store_group() -> None:
    """The subscriber and journal database itself."""


@store_group.command("migrate")
@click.option("--to", "target", required=True, metavar="URL",
              help="An empty PostgreSQL database: postgresql://user@host:port/db "
              "(password from PGPASSWORD).")
@pass_ctx
def store_migrate(obj: _Context, target: str) -> None:
    """Copy the SQLite store into PostgreSQL and compare the counts of every table."""
    from newsletter.store_migrate import migrate_store, report_lines

    for line in report_lines(migrate_store(obj.settings, target)):
        click.echo(line)


@cli.command("bounces")
@click.option("--maildir", type=click.Path(file_okay=False, path_type=Path),
              help="Read this Maildir; processed messages move into its .processed folder.")
@click.option("--mbox", type=click.Path(dir_okay=False, path_type=Path),
              help="Read this mbox file (left as it is).")
@click.option("--imap", metavar="URL", help="Read imaps://user@host/INBOX (password from "
              "NEWSLETTER_IMAP_PASSWORD); processed messages are flagged and moved.")
@pass_ctx
def bounces_command(obj: _Context, maildir: Path | None, mbox: Path | None,
                    imap: str | None) -> None:
    """Read bounces and complaints; mark subscribers bounced or complained."""
    from newsletter.bounces.mailboxes import open_mailbox
    from newsletter.bounces.process import process_mailbox, report_lines

    box = open_mailbox(maildir=maildir, mbox=mbox, imap=imap)
    for line in report_lines(process_mailbox(obj.settings, box)):
        click.echo(line)


@cli.command("dkim-key")
@click.option("--type", "kind", type=click.Choice(["rsa", "ed25519"]), default="rsa",
              show_default=True, help="Key type: RSA-2048 (every receiver) or Ed25519.")
@click.option("--selector", help="DNS selector (default: [dkim] selector, else news<year>).")
@click.option("--domain", help="Signing domain (default: [dkim] domain, else the From domain).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Private key file to create (default: dkim-SELECTOR.pem); never overwritten.")
@pass_ctx
def dkim_key(obj: _Context, kind: str, selector: str | None, domain: str | None,
             out: Path | None) -> None:
    """Write a DKIM key pair and print the DNS TXT record to publish."""
    import datetime

    from newsletter.dkim import generate_key, write_key, zone_line

    settings = obj.settings
    dkim = settings.dkim
    selector = selector or (dkim.selector if dkim else f"news{datetime.date.today().year}")
    domain = domain or (dkim.domain if dkim else settings.from_address.rpartition("@")[2])
    out = out or Path(f"dkim-{selector}.pem")
    pem, record = generate_key(kind)
    write_key(out, pem)
    click.echo(f"wrote {out} (private: keep it out of the repository)")
    click.echo(f"Publish this TXT record at {selector}._domainkey.{domain}:")
    click.echo(f"  {record}")
    click.echo("As a zone-file line:")
    click.echo(f"  {zone_line(selector, domain, record)}")
    click.echo(f'Then in newsletter.toml:  [dkim] domain = "{domain}", selector = "{selector}", '
               f'key_file = "{out}"  (or the PEM in NEWSLETTER_DKIM_KEY)')


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, help="Port to listen on.")
@click.option("--dev", is_flag=True, help="Allow running without NEWSLETTER_SECRET_KEY "
              "(a fixed development key: never in production).")
@pass_ctx
def serve_command(obj: _Context, host: str, port: int, dev: bool) -> None:
    """Serve the preference center, unsubscribe and signup pages."""
    from newsletter.config import secret_key
    from newsletter.web import serve

    secret = secret_key(development=dev)
    click.echo(f"Preference center on http://{host}:{port}/ (links in emails use "
               f"{obj.settings.public_url})")
    if not obj.settings.public_url.startswith("https://"):
        click.echo("Warning: [web] allow_http is on: plain http is for local testing only; "
                   "mail providers need https for one-click unsubscribe.", err=True)
    serve(obj.settings, secret, host=host, port=port)


@cli.command("archive")
@click.option("--out", "out_dir", default="public", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write editions/ into (e.g. your site's static folder).")
@pass_ctx
def archive_command(obj: _Context, out_dir: Path) -> None:
    """Write the web archive of sent editions (pages and an Atom feed) as static files."""
    from newsletter.archive import write_archive

    count = write_archive(obj.settings, out_dir)
    click.echo(f"wrote {count} editions to {out_dir / 'editions'}/ (feed: "
               f"{out_dir / 'editions' / 'feed.xml'})")


def main() -> None:
    cli(prog_name="newsletter")
