"""The public archive: every stored edition as web pages and an Atom feed.

`/editions/` lists the editions, `/editions/N/` shows one (its editor's note, its
versions per category set and the digests it drew on), `/editions/N/KEY/` is a version's
email as a page: rendered from the stored edition with `web=True`, so it carries no
greeting, no token and no address, and no size budget applies. `newsletter serve` mounts
these routes; `write_archive` writes the same pages as static files. Links between the
pages are relative, so the folder works wherever a site publishes it.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from newsletter import dates
from newsletter.compose import Edition, edition_from_json, variant_categories, variant_key
from newsletter.config import Settings
from newsletter.render import Renderer, archive_url, markdown_html
from newsletter.rows import EditionRow
from newsletter.starter import template_env
from newsletter.store import Store

ATOM = "http://www.w3.org/2005/Atom"
CACHED_PAGES = 64


@dataclass(frozen=True)
class Version:
    key: str  # variant key, "all" for every section
    labels: tuple[str, ...]
    stories: int


@dataclass(frozen=True)
class StoredEdition:
    number: int
    created: datetime
    edition: Edition
    subject: str
    versions: tuple[Version, ...]


class Archive:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.renderer = Renderer(settings)
        self.env = template_env(settings.templates_dir, "web")
        self.env.filters["markdown"] = markdown_html
        lang = settings.language
        self.env.filters["span"] = lambda start, end: dates.span(start, end, lang)
        self.env.filters["day"] = lambda value: dates.day(value, lang)
        self._pages: OrderedDict[tuple[int, str], str] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ reading the store

    def editions(self) -> list[StoredEdition]:
        """Every stored edition, newest first."""
        if not self.settings.store_url and not self.settings.store_path.exists():
            return []
        with Store(self.settings.store_location, pooled=True) as store:
            return [self._stored(store, row) for row, _ in reversed(store.editions())]

    def edition(self, number: int) -> StoredEdition | None:
        if not self.settings.store_url and not self.settings.store_path.exists():
            return None
        with Store(self.settings.store_location, pooled=True) as store:
            row = store.edition(number=number)
            return None if row is None else self._stored(store, row)

    def _stored(self, store: Store, row: EditionRow) -> StoredEdition:
        edition = edition_from_json(row.payload)
        keys = ["all"] + [k for k in store.recipients_per_variant(row.id) if k != "all"]
        versions = []
        for key in keys:
            plan = edition.plan(variant_categories(key))
            if plan.stories:
                labels = tuple(edition.labels.get(c, c) for c in sorted(plan.categories))
                versions.append(Version(key, labels, len(plan.stories)))
        subject = self.renderer.subject(edition, edition.plan())
        created = datetime.fromisoformat(row.created_at)
        return StoredEdition(edition.number, created, edition, subject, tuple(versions))

    # ------------------------------------------------------------ pages

    def _page(self, template: str, **values: object) -> str:
        s = self.settings
        return self.env.get_template(template).render(
            lang=s.language, name=s.name, site_url=s.base_url, postal_address=s.postal_address,
            subscribe_url=f"{s.public_url}/subscribe", **values)

    def index_page(self) -> str:
        editions = self.editions()
        return self._page("archive.html.j2", title=self.words("archive"), editions=editions)

    def edition_page(self, stored: StoredEdition) -> str:
        e = stored.edition
        tz = self.settings.timezone
        return self._page("edition.html.j2", title=stored.subject, stored=stored,
                          start=e.window.start.astimezone(tz).date(), end=e.window.last_day,
                          top=e.plan().stories[:5], digests=e.digests, tz=tz)

    def version_page(self, stored: StoredEdition, key: str) -> str | None:
        """The version's email as a page; None for a set of categories it does not have."""
        if key not in {v.key for v in stored.versions}:
            return None
        with self._lock:
            if (stored.number, key) in self._pages:
                self._pages.move_to_end((stored.number, key))
                return self._pages[(stored.number, key)]
        edition = stored.edition
        variant = self.renderer.render(edition, edition.plan(variant_categories(key)), web=True)
        page, _ = variant.personalize(self.renderer, name="", preferences_url="",
                                      unsubscribe_url="")
        with self._lock:
            self._pages[(stored.number, key)] = page
            while len(self._pages) > CACHED_PAGES:
                self._pages.popitem(last=False)
        return page

    def words(self, key: str) -> str:
        module = self.env.get_template("strings.j2").make_module({"lang": self.settings.language})
        return str(module.t[key])  # type: ignore[attr-defined]

    def feed(self) -> str:
        """An Atom feed of the editions (newest first), each linking to its page."""
        s = self.settings
        base = f"{s.public_url}/editions/"
        ET.register_namespace("", ATOM)
        root = ET.Element(f"{{{ATOM}}}feed")
        editions = self.editions()
        ET.SubElement(root, f"{{{ATOM}}}title").text = s.name
        ET.SubElement(root, f"{{{ATOM}}}id").text = base
        ET.SubElement(root, f"{{{ATOM}}}link", href=base)
        ET.SubElement(root, f"{{{ATOM}}}link", rel="self", href=f"{base}feed.xml")
        newest = editions[0].created if editions else datetime.fromtimestamp(0).astimezone()
        ET.SubElement(root, f"{{{ATOM}}}updated").text = newest.isoformat()
        ET.SubElement(ET.SubElement(root, f"{{{ATOM}}}author"), f"{{{ATOM}}}name").text = s.name
        for stored in editions:
            url = archive_url(s, stored.number)
            entry = ET.SubElement(root, f"{{{ATOM}}}entry")
            ET.SubElement(entry, f"{{{ATOM}}}title").text = stored.subject
            ET.SubElement(entry, f"{{{ATOM}}}id").text = url
            ET.SubElement(entry, f"{{{ATOM}}}link", href=url)
            ET.SubElement(entry, f"{{{ATOM}}}updated").text = stored.created.isoformat()
            headlines = [st.headline for st in stored.edition.plan().stories[:5]]
            ET.SubElement(entry, f"{{{ATOM}}}summary").text = " · ".join(headlines)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode")


# ---------------------------------------------------------------- web routes

def archive_routes(settings: Settings) -> list[Route]:
    """The archive's routes for `newsletter serve`."""
    archive = Archive(settings)

    def html(page: str | None) -> Response:
        if page is None:
            return Response("Not found\n", status_code=404, media_type="text/plain")
        return HTMLResponse(page)

    async def index(request: Request) -> Response:
        return html(await run_in_threadpool(archive.index_page))

    async def feed(request: Request) -> Response:
        return Response(await run_in_threadpool(archive.feed),
                        media_type="application/atom+xml; charset=utf-8")

    async def one(request: Request) -> Response:
        stored = await run_in_threadpool(archive.edition, request.path_params["number"])
        return html(None if stored is None else archive.edition_page(stored))

    async def version(request: Request) -> Response:
        stored = await run_in_threadpool(archive.edition, request.path_params["number"])
        if stored is None:
            return html(None)
        key = variant_key(variant_categories(request.path_params["key"]))
        return html(await run_in_threadpool(archive.version_page, stored, key))

    return [Route("/editions/", index, methods=["GET"]),
            Route("/editions/feed.xml", feed, methods=["GET"]),
            Route("/editions/{number:int}/", one, methods=["GET"]),
            Route("/editions/{number:int}/{key}/", version, methods=["GET"])]


# ---------------------------------------------------------------- static files

def write_archive(settings: Settings, out_dir: Path) -> int:
    """Write `editions/` (pages and feed.xml) under `out_dir`; returns the edition count."""
    archive = Archive(settings)
    root = out_dir / "editions"
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(archive.index_page(), encoding="utf-8")
    (root / "feed.xml").write_text(archive.feed(), encoding="utf-8")
    editions = archive.editions()
    for stored in editions:
        folder = root / str(stored.number)
        folder.mkdir(exist_ok=True)
        (folder / "index.html").write_text(archive.edition_page(stored), encoding="utf-8")
        for v in stored.versions:
            page = archive.version_page(stored, v.key)
            assert page is not None
            (folder / v.key).mkdir(exist_ok=True)
            (folder / v.key / "index.html").write_text(page, encoding="utf-8")
    return len(editions)
