"""Local preview: every variant as .html, .txt and .eml, an index, and a small server."""

from __future__ import annotations

import functools
import html
import http.server
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from newsletter import dates
from newsletter.compose import Edition, compose_window
from newsletter.config import Settings, secret_key
from newsletter.content import Problem
from newsletter.message import MessageFactory, Recipient
from newsletter.render import RenderedVariant, Renderer, template_dirs
from newsletter.store import Store, split_categories
from newsletter.subscribers import Subscribers, parse_categories
from newsletter.tokens import Tokens
from newsletter.window import Window

SAMPLE = Recipient(email="reader@example.com", name="")  # whom a preview is personalized for
DEMO_PAGE = "demo-link.html"
_PAGE_STYLE = ("body{margin:0;padding:16px;font:16px/1.5 sans-serif;background:#f2f3f5;"
               "color:#222}a{color:#1a5fb4}h1{font-size:22px}h2{font-size:18px}"
               ".views{display:flex;flex-wrap:wrap;gap:12px}iframe{height:720px;"
               "border:1px solid #767d87;background:#fff;max-width:100%;flex:none}"
               "@media (prefers-color-scheme:dark){body{background:#111418;color:#e4e6ea}"
               "a{color:#8ab4f8}}")


@dataclass
class PreviewReport:
    out_dir: Path
    edition: Edition
    variants: list[RenderedVariant] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)  # category sets with nothing this week
    problems: list[Problem] = field(default_factory=list)


def _variant_sets(store: Store, settings: Settings, categories: str | None,
                  subscriber: str | None) -> tuple[list[tuple[str, ...]], Recipient]:
    """The category sets to preview, and whom to personalize for."""
    if categories is not None:
        return [parse_categories(categories, settings)], SAMPLE
    if subscriber is not None:
        sub = Subscribers(store, settings).get(subscriber)
        return [sub.categories], Recipient(sub.email, sub.name, sub.id)
    return [()] + [split_categories(key) for key in store.variant_demand() if key], SAMPLE


def write_preview(settings: Settings, window: Window, out_dir: Path, *,
                  categories: str | None = None, subscriber: str | None = None,
                  intro_file: Path | None = None) -> PreviewReport:
    if categories is not None and not settings.store_url and not settings.store_path.exists():
        sets, recipient, number = [parse_categories(categories, settings)], SAMPLE, 1
    else:
        with Store(settings.store_location) as store:
            sets, recipient = _variant_sets(store, settings, categories, subscriber)
            number = store.edition_number(window)
    edition, loaded = compose_window(settings, window, number, intro_file)
    report = PreviewReport(out_dir, edition, problems=loaded.problems)
    renderer = Renderer(settings)
    tokens = Tokens(secret_key(development=True))
    out_dir.mkdir(parents=True, exist_ok=True)
    for cats in sets:
        plan = edition.plan(cats)
        if not plan.stories:
            report.empty.append(plan.key)
            continue
        variant = renderer.render(edition, plan)
        factory = MessageFactory(settings, variant, renderer, tokens)
        preferences_url, unsubscribe_url = factory.links(recipient)
        if subscriber is None:  # a sample reader: links lead to a harmless demo page
            preferences_url = unsubscribe_url = DEMO_PAGE
        page, text = variant.personalize(renderer, name=recipient.name,
                                         preferences_url=preferences_url,
                                         unsubscribe_url=unsubscribe_url)
        (out_dir / f"{variant.key}.html").write_text(page, encoding="utf-8")
        (out_dir / f"{variant.key}.txt").write_text(text, encoding="utf-8")
        (out_dir / f"{variant.key}.eml").write_bytes(factory.build(recipient))
        report.variants.append(variant)
    (out_dir / "index.html").write_text(_index(report, settings), encoding="utf-8")
    (out_dir / DEMO_PAGE).write_text(_demo(settings), encoding="utf-8")
    return report


def _head(settings: Settings, title: str) -> str:
    return (f"<!DOCTYPE html><html lang='{html.escape(settings.language)}'><head>"
            "<meta charset='utf-8'><meta name='viewport' content='width=device-width, "
            f"initial-scale=1'><meta name='color-scheme' content='light dark'>"
            f"<title>{html.escape(title)}</title><style>{_PAGE_STYLE}</style>")


def _index(report: PreviewReport, settings: Settings) -> str:
    edition = report.edition
    window = dates.span(edition.window.start.astimezone(settings.timezone).date(),
                        edition.window.last_day, settings.language)
    rows = []
    for v in report.variants:
        size = (report.out_dir / f"{v.key}.html").stat().st_size
        key = html.escape(v.key)
        left = f" ({v.dropped} left for the web version)" if v.dropped else ""
        rows.append(
            f"<section><h2>{key} · {html.escape(v.subject)}</h2>"
            f"<p>{v.stories} stories{left}"
            f" · HTML {size:,} bytes (budget {settings.max_html_bytes:,}) · "
            f'<a href="{key}.html">HTML</a> · <a href="{key}.txt">text</a> · '
            f'<a href="{key}.eml">.eml</a></p><div class="views">'
            f'<iframe title="desktop" src="{key}.html" style="width:640px"></iframe>'
            f'<iframe title="phone" src="{key}.html" style="width:375px"></iframe>'
            f'<iframe title="text" src="{key}.txt" style="width:640px"></iframe></div></section>')
    empty = "".join(f"<p>{html.escape(k)}: no stories this week; nothing would be sent.</p>"
                    for k in report.empty)
    return (_head(settings, f"Preview · {settings.name}") +
            "<script>let v=null;setInterval(async()=>{try{const r=await fetch('version.txt',"
            "{cache:'no-store'});const t=await r.text();if(v&&t!==v)location.reload();v=t}"
            "catch(e){}},1000)</script></head><body>"
            f"<h1>{html.escape(settings.name)} · {html.escape(window)}</h1>{empty}"
            f"{''.join(rows)}</body></html>")


def _demo(settings: Settings) -> str:
    """Where a preview's preference and unsubscribe links lead: nothing happens here."""
    return (_head(settings, "Preview link") + "</head><body><h1>Preview link</h1>"
            "<p>In a real email this link opens the reader's own preference or unsubscribe "
            "page. Previews for a sample reader link here, so nothing changes. Use "
            "<code>newsletter preview --subscriber EMAIL</code> to get that subscriber's "
            "real links.</p></body></html>")


def _snapshot(paths: list[Path]) -> dict[Path, float]:
    seen: dict[Path, float] = {}
    for root in paths:
        if root.is_dir():
            for path in root.rglob("*"):
                if path.is_file():
                    seen[path] = path.stat().st_mtime
    return seen


def serve_preview(settings: Settings, build: Callable[[], PreviewReport], out_dir: Path, *,
                  port: int, on_build: Callable[[PreviewReport], None],
                  stop: threading.Event | None = None) -> None:
    """Serve the preview on 127.0.0.1 and re-render when a template or digest changes."""
    stop = stop or threading.Event()
    handler = functools.partial(_QuietHandler, directory=str(out_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    watched = [settings.content_dir, *template_dirs(settings)]
    before = _snapshot(watched)
    version = 0
    try:
        while not stop.wait(1.0):
            now = _snapshot(watched)
            if now != before:
                before = now
                version += 1
                on_build(build())
                (out_dir / "version.txt").write_text(str(version))
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

