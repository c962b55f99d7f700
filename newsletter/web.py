"""The preference center: choose categories, unsubscribe (RFC 8058 one-click), sign up.

Every link carries a signed, purpose-bound token; a GET never changes anything (mail
scanners follow links); forms carry a signed anti-forgery value; bad tokens get a plain
400 page with no detail. Each request opens its own store connection in a worker thread,
so the server never blocks on a send that is writing the journal.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any
from urllib.parse import urlsplit

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter.config import Settings
from newsletter.errors import SubscriberError
from newsletter.message import ascii_address
from newsletter.starter import packaged_templates
from newsletter.store import Store, Subscriber
from newsletter.subscribers import Subscribers, clean_name, new_address
from newsletter.tokens import CONFIRM, FORM, PREFERENCES, UNSUBSCRIBE, Tokens
from newsletter.transport import make_transport, send_one

MAX_BODY = 16 * 1024
FORM_MAX_AGE = 2 * 24 * 3600
CONFIRM_DAYS = 7
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class RateLimit:
    """At most `limit` events per key in a sliding `seconds` window (memory bounded)."""

    def __init__(self, limit: int, seconds: float, max_keys: int = 10_000) -> None:
        self.limit, self.seconds, self.max_keys = limit, seconds, max_keys
        self.events: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        if len(self.events) > self.max_keys:
            self.events.clear()
        seen = self.events[key]
        while seen and now - seen[0] > self.seconds:
            seen.popleft()
        if len(seen) >= self.limit:
            return False
        seen.append(now)
        return True


class BodyLimit:
    """Refuse request bodies over MAX_BODY, whether or not Content-Length says so."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > MAX_BODY:
            await _plain(413, "Request too large")(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY:
                raise HTTPException(413)
            return message

        await self.app(scope, limited, send)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def _plain(status: int, text: str) -> Response:
    return Response(text + "\n", status_code=status, media_type="text/plain; charset=utf-8")


class PreferenceCenter:
    def __init__(self, settings: Settings, secret: str) -> None:
        self.settings = settings
        self.tokens = Tokens(secret)
        loaders = [FileSystemLoader(str(settings.templates_dir / "web")),
                   FileSystemLoader(str(packaged_templates() / "web"))]
        self.env = Environment(loader=ChoiceLoader(loaders), undefined=StrictUndefined,
                               autoescape=select_autoescape(["html.j2"]))
        self.words: dict[str, str] = self.env.get_template("strings.j2").make_module(
            {"lang": settings.language}).t  # type: ignore[attr-defined]
        self.by_client = RateLimit(limit=10, seconds=600)
        self.by_address = RateLimit(limit=3, seconds=3600)

    # ------------------------------------------------------------ helpers

    def page(self, template: str, status: int = 200, /, **values: Any) -> HTMLResponse:
        s = self.settings
        html = self.env.get_template(template).render(
            lang=s.language, name=s.name, site_url=s.base_url, postal_address=s.postal_address,
            title=values.pop("title", s.name), **values)
        return HTMLResponse(html, status_code=status)

    def invalid(self) -> HTMLResponse:
        return self.page("message.html.j2", 400, title=self.words["invalid"],
                         text=self.words["invalid"], error=True)

    def bad_form(self) -> HTMLResponse:
        return self.page("message.html.j2", 400, text=self.words["bad_form"], error=True)

    def url(self, path: str) -> str:
        return f"{self.settings.public_url}{path}"

    def links(self, subscriber_id: int) -> dict[str, str]:
        return {f"{purpose}_url": self.url(f"/{purpose}/{self.tokens.make(purpose, subscriber_id)}")
                for purpose in (PREFERENCES, UNSUBSCRIBE)}

    def same_origin(self, request: Request) -> bool:
        """No browser POST from another site. (The one-click POST of a mail provider sends
        no Origin; under `no-referrer` a browser's own form sends `Origin: null`.)"""
        if request.headers.get("sec-fetch-site") == "cross-site":
            return False
        origin = request.headers.get("origin")
        if origin is None or origin == "null":
            return True
        ours = {urlsplit(self.settings.public_url).netloc, request.headers.get("host", "")}
        return urlsplit(origin).netloc in ours

    async def form(self, request: Request) -> FormData | None:
        try:
            return await request.form(max_files=0, max_fields=50)
        except HTTPException:
            raise
        except Exception:  # a malformed body is the client's problem, never a 500
            return None

    def subscriber(self, purpose: str, token: str) -> Subscriber | None:
        subscriber_id = self.tokens.read(purpose, token)
        if subscriber_id is None:
            return None
        with Store(self.settings.store_path) as store:
            return store.subscriber_by_id(subscriber_id)

    def chosen_categories(self, form: FormData) -> tuple[str, ...] | None:
        names = [str(v) for v in form.getlist("categories")]
        valid = self.settings.category_names
        if any(n not in valid for n in names) or len(names) > len(valid):
            return None
        return tuple(sorted(set(names)))

    # ------------------------------------------------------------ preferences

    async def preferences(self, request: Request) -> Response:
        token = request.path_params["token"]
        sub = await run_in_threadpool(self.subscriber, PREFERENCES, token)
        if sub is None:
            return self.invalid()
        if request.method == "GET":
            return self.preferences_page(sub)
        form = await self.form(request)
        if form is None or not self.same_origin(request) or \
                self.tokens.read(FORM, str(form.get("form_token", "")), FORM_MAX_AGE) != sub.id:
            return self.bad_form()
        chosen = self.chosen_categories(form)
        name = str(form.get("name", ""))
        if chosen is None or len(name) > 200:
            return self.bad_form()
        if not chosen:
            return self.preferences_page(sub, error=self.words["pick_one"], status=422)
        stored = () if set(chosen) == set(self.settings.category_names) else chosen
        updated = await run_in_threadpool(self._save, sub.id, clean_name(name), stored)
        return self.preferences_page(updated, message=self._changes(sub, updated))

    def _save(self, subscriber_id: int, name: str, categories: tuple[str, ...]) -> Subscriber:
        with Store(self.settings.store_path) as store:
            with store.write() as db:
                store.update_subscriber(db, subscriber_id, name=name, categories=categories)
            found = store.subscriber_by_id(subscriber_id)
        assert found is not None
        return found

    def _effective(self, sub: Subscriber) -> list[str]:
        return list(sub.categories) or list(self.settings.category_names)

    def _changes(self, before: Subscriber, after: Subscriber) -> str:
        labels = {c.name: c.label for c in self.settings.categories}
        old, new = set(self._effective(before)), set(self._effective(after))
        parts = [f"{self.words[word]}: " + ", ".join(labels[c] for c in sorted(names))
                 for word, names in (("added", new - old), ("removed", old - new)) if names]
        if before.name != after.name:
            parts.append(f"{self.words['name']}: {after.name}")
        return f"{self.words['saved']} " + ("; ".join(parts) if parts else
                                            self.words["nothing_changed"])

    def preferences_page(self, sub: Subscriber, *, message: str = "", error: str = "",
                         status: int = 200) -> HTMLResponse:
        return self.page("preferences.html.j2", status, title=self.words["preferences"],
                         subscriber=sub, categories=self.settings.categories,
                         chosen=self._effective(sub), active=sub.status == "active",
                         form_token=self.tokens.make(FORM, sub.id), message=message,
                         error=error, **self.links(sub.id))

    # ------------------------------------------------------------ unsubscribe

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        sub = await run_in_threadpool(self.subscriber, UNSUBSCRIBE, token)
        if sub is None:
            return self.invalid()
        values = {"title": self.words["unsubscribe_title"], **self.links(sub.id),
                  "resubscribe_url": self.url(f"/resubscribe/{token}")}
        if request.method == "GET":  # never unsubscribes: link scanners follow GETs
            return self.page("unsubscribe.html.j2", done=False, **values)
        # POST: the confirm button, or the RFC 8058 one-click POST from a mail provider
        if await self.form(request) is None or not self.same_origin(request):
            return self.bad_form()
        await run_in_threadpool(self._set_status, sub, "unsubscribed")
        return self.page("unsubscribe.html.j2", done=True, **values)

    async def resubscribe(self, request: Request) -> Response:
        sub = await run_in_threadpool(self.subscriber, UNSUBSCRIBE, request.path_params["token"])
        if sub is None or sub.status not in ("unsubscribed", "active"):
            return self.invalid()
        if not self.same_origin(request):
            return self.bad_form()
        await run_in_threadpool(self._set_status, sub, "active")
        return self.page("message.html.j2", title=self.words["resubscribe"],
                         text=self.words["resubscribed"], error=False)

    def _set_status(self, sub: Subscriber, status: str) -> None:
        with Store(self.settings.store_path) as store, store.write() as db:
            current = store.subscriber_by_id(sub.id)
            if current is not None and current.status != status:
                store.update_subscriber(db, sub.id, status=status)

    # ------------------------------------------------------------ signup

    async def subscribe(self, request: Request) -> Response:
        words = self.words
        if request.method == "GET":
            return self.signup_page()
        client = request.client.host if request.client else "unknown"
        if not self.by_client.allow(client):
            return self.page("message.html.j2", 429, text=words["too_many"], error=True)
        form = await self.form(request)
        if form is None or not self.same_origin(request) or \
                self.tokens.read(FORM, str(form.get("form_token", "")), FORM_MAX_AGE) != 0:
            return self.bad_form()
        chosen = self.chosen_categories(form)
        name = str(form.get("name", ""))
        typed = str(form.get("email", ""))[:254]
        try:
            address, key = new_address(typed, self.settings)
        except SubscriberError:  # one line saying why, in the reader's language
            ascii_only = not typed.rpartition("@")[0].isascii()
            return self.signup_page(error=words["ascii_email" if ascii_only else "bad_email"],
                                    status=422, form=form)
        if chosen is None or len(name) > 200:
            return self.signup_page(error=words["bad_form"], status=422, form=form)
        stored = () if set(chosen) == set(self.settings.category_names) else chosen
        to_confirm = await run_in_threadpool(self._signup, address, key, clean_name(name),
                                             stored)
        if to_confirm is not None and self.by_address.allow(key):
            await self._send_confirmation(to_confirm)
        # the same answer whether or not the address was known: no enumeration
        return self.page("message.html.j2", title=words["subscribe_title"],
                         text=words["check_inbox"], error=False)

    def signup_page(self, *, error: str = "", status: int = 200,
                    form: FormData | None = None) -> HTMLResponse:
        chosen = [str(v) for v in form.getlist("categories")] if form else []
        return self.page("subscribe.html.j2", status, title=self.words["subscribe_title"],
                         categories=self.settings.categories, chosen=chosen,
                         form_token=self.tokens.make(FORM, 0), error=error,
                         email=str(form.get("email", "")) if form else "",
                         subscriber_name=str(form.get("name", "")) if form else "")

    def _signup(self, address: str, key: str, name: str,
                categories: tuple[str, ...]) -> Subscriber | None:
        """A new or still pending address gets (another) confirmation; others nothing."""
        with Store(self.settings.store_path) as store:
            found = store.subscriber(key)
            if found is None:
                Subscribers(store, self.settings).add(address, name=name,
                                                      categories=";".join(categories),
                                                      status="pending", source="web")
                return store.subscriber(key)
            return found if found.status == "pending" else None

    async def _send_confirmation(self, sub: Subscriber) -> None:
        s = self.settings
        confirm_url = self.url(f"/confirm/{self.tokens.make(CONFIRM, sub.id)}")
        body = self.env.get_template("confirm_email.txt.j2").render(
            lang=s.language, name=s.name, subscriber_name=sub.name, confirm_url=confirm_url,
            days=CONFIRM_DAYS, postal_address=s.postal_address)
        message = EmailMessage()
        message["From"] = formataddr((s.from_name or s.name, s.from_address))
        message["To"] = formataddr((sub.name, ascii_address(sub.email)))
        message["Subject"] = f"{self.words['confirm_subject']} · {s.name}"
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = make_msgid(domain=s.from_address.rpartition("@")[2])
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(body)
        await send_one(make_transport(s), s.from_address, ascii_address(sub.email),
                       message.as_bytes())

    async def confirm(self, request: Request) -> Response:
        subscriber_id = self.tokens.read(CONFIRM, request.path_params["token"],
                                         max_age=CONFIRM_DAYS * 24 * 3600)
        sub = None if subscriber_id is None else await run_in_threadpool(
            self._by_id, subscriber_id)
        if sub is None or sub.status not in ("pending", "active"):
            return self.invalid()
        values = {"title": self.words["confirm_title"], **self.links(sub.id)}
        if request.method == "GET":
            return self.page("confirm.html.j2", done=sub.status == "active", **values)
        if not self.same_origin(request):
            return self.bad_form()
        await run_in_threadpool(self._set_status, sub, "active")
        return self.page("confirm.html.j2", done=True, **values)

    def _by_id(self, subscriber_id: int) -> Subscriber | None:
        with Store(self.settings.store_path) as store:
            return store.subscriber_by_id(subscriber_id)


def create_app(settings: Settings, secret: str) -> ASGIApp:
    center = PreferenceCenter(settings, secret)
    both = ["GET", "POST"]

    def guard(handler: Callable[[Request], Awaitable[Response]]
              ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as exc:
                return _plain(exc.status_code, "Request too large" if exc.status_code == 413
                              else "Bad request")
        return endpoint

    routes = [
        Route("/preferences/{token}", guard(center.preferences), methods=both),
        Route("/unsubscribe/{token}", guard(center.unsubscribe), methods=both),
        Route("/resubscribe/{token}", guard(center.resubscribe), methods=["POST"]),
        Route("/subscribe", guard(center.subscribe), methods=both),
        Route("/confirm/{token}", guard(center.confirm), methods=both),
        Route("/", lambda request: center.signup_page(), methods=["GET"]),
    ]

    async def server_error(request: Request, exc: Exception) -> Response:
        return _plain(500, "Something went wrong; please try again later.")

    app = Starlette(routes=routes, exception_handlers={500: server_error})
    return SecurityHeaders(BodyLimit(app))


def serve(settings: Settings, secret: str, *, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(create_app(settings, secret), host=host, port=port, log_level="info",
                proxy_headers=True, server_header=False)
