"""The preference center: choose categories, unsubscribe (RFC 8058 one-click), sign up.

Every link carries a signed, purpose-bound token; only a POST changes anything (mail
scanners send GET and HEAD to links); form posts need our own Origin and a signed
anti-forgery value, while the one-click unsubscribe POST is authorized by its token alone
(RFC 8058); bad tokens get a plain 400 page with no detail. Each request opens its own
store connection in a worker thread, so the server never blocks on a send that is writing
the journal. Signup lives in `signup.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter.archive import archive_routes
from newsletter.config import Settings
from newsletter.errors import SubscriberError
from newsletter.signup import Confirmations, clean_signup_name, client_network
from newsletter.starter import template_env
from newsletter.store import Store, Subscriber
from newsletter.subscribers import clean_name, new_address
from newsletter.tokens import CONFIRM, FORM, PREFERENCES, UNSUBSCRIBE, Tokens

MAX_BODY = 16 * 1024
FORM_MAX_AGE = 2 * 24 * 3600
NETWORK_WINDOW = 3600  # seconds over which `[web] signups_per_network` counts
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    # not no-referrer: under it a browser sends `Origin: null` with our own forms
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


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
        self.env = template_env(settings.templates_dir, "web")
        self.words: dict[str, str] = self.env.get_template("strings.j2").make_module(
            {"lang": settings.language}).t  # type: ignore[attr-defined]
        self.confirmations = Confirmations(settings, self.tokens, self.env,
                                           self.words["confirm_subject"])
        self.our_host = urlsplit(settings.public_url).netloc

    # ------------------------------------------------------------ helpers

    def page(self, template: str, status: int = 200, /, **values: Any) -> HTMLResponse:
        s = self.settings
        html = self.env.get_template(template).render(
            lang=s.language, name=s.name, site_url=s.base_url, postal_address=s.postal_address,
            title=values.pop("title", s.name), subscribe_url=self.url("/subscribe"), **values)
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
        """A form post from one of our own pages. Browsers send `Origin` with every POST;
        a `null` or missing one (a sandboxed frame, a `no-referrer` form on another site)
        passes only when the browser itself says the post is same-origin."""
        fetch_site = request.headers.get("sec-fetch-site")
        if fetch_site in ("cross-site", "same-site"):
            return False
        origin = request.headers.get("origin", "null")
        if origin == "null":
            return fetch_site == "same-origin"
        # the Host header too: `serve --dev` on 127.0.0.1 while links name the site
        return urlsplit(origin).netloc in {self.our_host, request.headers.get("host", "")}

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
        with Store(self.settings.store_location, pooled=True) as store:
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
        if request.method != "POST":  # GET and HEAD only look
            return self.preferences_page(sub)
        form = await self.form(request)
        if form is None or not self.same_origin(request) or \
                self.tokens.read(FORM, str(form.get("form_token", "")), FORM_MAX_AGE) != sub.id:
            return self.bad_form()
        chosen = self.chosen_categories(form)
        name = str(form.get("name", ""))
        if chosen is None or len(name) > 200:
            return self.bad_form()
        # nothing ticked means every section, as on the signup form
        stored = () if set(chosen) in (set(), set(self.settings.category_names)) else chosen
        updated = await run_in_threadpool(self._save, sub.id, clean_name(name), stored)
        return self.preferences_page(updated, message=self._changes(sub, updated))

    def _save(self, subscriber_id: int, name: str, categories: tuple[str, ...]) -> Subscriber:
        with Store(self.settings.store_location, pooled=True) as store:
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
                         error=error, **self.links(sub.id),
                         # the page offers "subscribe again" to an unsubscribed reader
                         resubscribe_url=self.url(
                             f"/resubscribe/{self.tokens.make(UNSUBSCRIBE, sub.id)}"))

    # ------------------------------------------------------------ unsubscribe

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        sub = await run_in_threadpool(self.subscriber, UNSUBSCRIBE, token)
        if sub is None:
            return self.invalid()
        values = {"title": self.words["unsubscribe_title"], **self.links(sub.id),
                  "resubscribe_url": self.url(f"/resubscribe/{token}")}
        if request.method != "POST":  # never unsubscribes: link scanners send GET and HEAD
            return self.page("unsubscribe.html.j2", done=False, **values)
        # POST: the confirm button, or the RFC 8058 one-click POST of a mail provider (from
        # its servers or a browser context, any Origin): the signed token alone authorizes
        if await self.form(request) is None:
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
        with Store(self.settings.store_location, pooled=True) as store:
            store.set_status(sub.id, status)

    # ------------------------------------------------------------ signup

    async def subscribe(self, request: Request) -> Response:
        words = self.words
        if request.method != "POST":
            return self.signup_page()
        form = await self.form(request)
        if form is None or not self.same_origin(request) or \
                self.tokens.read(FORM, str(form.get("form_token", "")), FORM_MAX_AGE) != 0:
            return self.bad_form()
        chosen = self.chosen_categories(form)
        name = clean_signup_name(str(form.get("name", ""))[:1000])
        typed = str(form.get("email", ""))[:254]
        try:
            address, key = new_address(typed, self.settings)
        except SubscriberError:  # one line saying why, in the reader's language
            ascii_only = not typed.rpartition("@")[0].isascii()
            return self.signup_page(error=words["ascii_email" if ascii_only else "bad_email"],
                                    status=422, form=form)
        if chosen is None:
            return self.signup_page(error=words["bad_form"], status=422, form=form)
        if name is None:
            return self.signup_page(error=words["bad_name"], status=422, form=form)
        web = self.settings.web
        network = client_network(request.client.host if request.client else "",
                                 request.headers.get("x-forwarded-for", ""),
                                 web.trusted_proxies)
        stored = () if set(chosen) == set(self.settings.category_names) else chosen
        now = time.time()

        def record() -> str | None:
            with Store(self.settings.store_location, pooled=True) as store:
                return store.record_signup(
                    at=now, network=network, email=address, email_key=key, name=name,
                    categories=stored, since_network=now - NETWORK_WINDOW,
                    per_network=web.signups_per_network, per_day=web.confirmations_per_day)

        state = await run_in_threadpool(record)
        if state is None:
            return self.page("message.html.j2", 429, text=words["too_many"], error=True)
        if state == "queued":
            self.confirmations.wake.set()  # sent by the queue's task, after this answer
        # the same answer (and the same work) whatever the address's state: no enumeration
        return self.page("check_inbox.html.j2", title=words["check_inbox_title"],
                         address=address)

    def signup_page(self, *, error: str = "", status: int = 200,
                    form: FormData | None = None) -> HTMLResponse:
        chosen = [str(v) for v in form.getlist("categories")] if form else []
        return self.page("subscribe.html.j2", status, title=self.words["subscribe_title"],
                         categories=self.settings.categories, chosen=chosen,
                         form_token=self.tokens.make(FORM, 0), error=error,
                         email=str(form.get("email", "")) if form else "",
                         subscriber_name=str(form.get("name", "")) if form else "")

    async def confirm(self, request: Request) -> Response:
        signup_id = self.tokens.read(CONFIRM, request.path_params["token"],
                                     max_age=self.settings.web.pending_days * 24 * 3600)
        found = None if signup_id is None else await run_in_threadpool(self._signup,
                                                                       signup_id)
        if signup_id is None or found is None:
            return self.invalid()
        if request.method != "POST":  # GET and HEAD only show the button
            return self.page("confirm.html.j2", title=self.words["confirm_title"], done=False,
                             address=found["email_key"])
        if not self.same_origin(request):
            return self.bad_form()
        sub = await run_in_threadpool(self._confirm, signup_id)
        if sub is None:
            return self.invalid()
        return self.page("confirm.html.j2", title=self.words["confirm_title"], done=True,
                         **self.links(sub.id))

    def _signup(self, signup_id: int) -> Any:
        with Store(self.settings.store_location, pooled=True) as store:
            return store.signup_state(signup_id)

    def _confirm(self, signup_id: int) -> Subscriber | None:
        with Store(self.settings.store_location, pooled=True) as store:
            return store.confirm_signup(signup_id)

    def slash_redirect(self, request: Request) -> Response:
        """`/path/` to `/path` on the configured address, never the request's Host."""
        path = quote(request.path_params["path"], safe="/")
        return RedirectResponse(f"{self.settings.public_url}/{path}", status_code=308)


def create_app(settings: Settings, secret: str) -> ASGIApp:
    center = PreferenceCenter(settings, secret)
    both = ["GET", "POST"]  # HEAD comes with GET and is answered like it

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
        Route("/", guard(center.subscribe), methods=both),  # the page `serve` prints
        *archive_routes(settings),  # /editions/...: public pages, no tokens
        Route("/{path:path}/", center.slash_redirect, methods=["GET"]),
    ]

    async def server_error(request: Request, exc: Exception) -> Response:
        return _plain(500, "Something went wrong; please try again later.")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(center.confirmations.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if settings.store_url:  # the requests' pooled connections
                from newsletter.store_pg import close_pool

                close_pool(settings.store_url)

    app = Starlette(routes=routes, exception_handlers={500: server_error}, lifespan=lifespan)
    app.router.redirect_slashes = False  # ours redirects to `[web] url`, not to Host
    return SecurityHeaders(BodyLimit(app))


def server_config(settings: Settings, secret: str, *, host: str, port: int,
                  log_level: str = "info") -> Any:
    """uvicorn's settings for the app. Forwarded headers are not uvicorn's to believe:
    the app reads `X-Forwarded-For` itself, only from `[web] trusted_proxies`."""
    import uvicorn

    return uvicorn.Config(create_app(settings, secret), host=host, port=port,
                          log_level=log_level, proxy_headers=False, server_header=False)


def serve(settings: Settings, secret: str, *, host: str, port: int) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    uvicorn.Server(server_config(settings, secret, host=host, port=port)).run()
