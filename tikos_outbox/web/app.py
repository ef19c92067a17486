"""The web console's routes (Starlette): login, overview, search, entry, document,
moves, send log, audit log. Every page reads and moves through the outbox's use
cases (`Console`, `Administration`, `Users`), as the CLI does.

Each request passes `_guard`: the session cookie is opened and renewed, the user
read from the outbox (a removed user is logged out at once), a POST must carry the
session's CSRF token, and a move needs the admin role."""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import date
from time import perf_counter
from typing import ParamSpec, TypeVar
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tikos_outbox.core.console import Search, WebUser
from tikos_outbox.core.ports import StoreError
from tikos_outbox.core.settings import WebSettings
from tikos_outbox.core.states import MoveResult, Refusal, State
from tikos_outbox.core.values import parse_day
from tikos_outbox.web.export import csv_lines, export_name
from tikos_outbox.web.pages import HERE, MOVES, Pages, Visit
from tikos_outbox.web.sessions import (
    COOKIE,
    MAX_AGE_S,
    LoginThrottle,
    Session,
    Sessions,
    csrf_ok,
)
from tikos_outbox.wiring import Outbox

log = logging.getLogger("tikos_outbox")
P = ParamSpec("P")
MAX_FORM_BYTES = 64 * 1024
R = TypeVar("R")


Handler = Callable[[Visit], Awaitable[Response]]


class BadInput(ValueError):
    """A query parameter or form field that cannot be read; the message says which."""


class NotFound(LookupError):
    """No such entry (an id no entry can have)."""


class ConsoleApp:
    def __init__(self, outbox: Outbox, settings: WebSettings) -> None:
        self.outbox = outbox
        self.settings = settings
        self.clock = outbox.clock
        self.sessions = Sessions(settings.idle_minutes * 60)
        self.brakes = (LoginThrottle(5), LoginThrottle(50), LoginThrottle(20))
        # scrypt takes 128 MiB and half a second: two at a time, the others are told to
        # try again (a burst of logins must not take the service's memory)
        self.hashing = asyncio.Semaphore(2)
        self.ended: set[tuple[str, float]] = set()  # sessions logged out: (user, began)
        self.pages = Pages(outbox.config)

    def asgi(self) -> Starlette:
        return Starlette(routes=[
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self._guard(self.logout), methods=["POST"]),
            Route("/", self._guard(self.overview), methods=["GET"]),
            Route("/search", self._guard(self.search), methods=["GET"]),
            Route("/entries/{entry_id:int}", self._guard(self.entry), methods=["GET"]),
            Route("/entries/{entry_id:int}/document", self._guard(self.document),
                  methods=["GET"]),
            Route("/entries/{entry_id:int}/{move:str}", self._guard(self.move, admin=True),
                  methods=["POST"]),
            Route("/export.csv", self._guard(self.export), methods=["GET"]),
            Route("/audit", self._guard(self.audit, admin=True), methods=["GET"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ], exception_handlers={404: self._not_found, 405: self._not_allowed})

    async def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """A use case, on a worker thread: the database and scrypt never block the
        event loop."""
        return await run_in_threadpool(fn, *args, **kwargs)

    # -- the guard --------------------------------------------------------------------------

    def _guard(self, handler: Handler, admin: bool = False
               ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            started = perf_counter()
            response = await guarded(request)
            # the server's own time for the answer (W3C Server Timing): the benchmark
            # reads it, and so can a browser's developer tools
            response.headers["Server-Timing"] = f"app;dur={(perf_counter() - started) * 1000:.1f}"
            return response

        async def guarded(request: Request) -> Response:
            now = self.clock.now()
            session, ended = self.sessions.open(request.cookies.get(COOKIE), now)
            try:
                user = await self.call(self._user_of, session)
                if session is None or user is None:
                    return self._to_login(request, ended)
                visit = Visit(request, session, user)
                if request.method == "POST":
                    try:
                        form = await self._form(request)
                    except BadInput as exc:
                        return self._finish(visit, self.pages.error(visit, 400, "bad_request",
                                                                    what=str(exc)))
                    sent = form.get("csrf")
                    if not csrf_ok(session, sent if isinstance(sent, str) else None):
                        return self._finish(visit, self.pages.error(visit, 403, "csrf"))
                if admin and not user.role.may_act:
                    return self._finish(visit, self.pages.error(visit, 403, "forbidden"))
                try:
                    response = await handler(visit)
                except BadInput as exc:
                    response = self.pages.error(visit, 400, "bad_request", what=str(exc))
                except NotFound:
                    response = self.pages.error(visit, 404, "not_found")
                return self._finish(visit, response)
            except StoreError as exc:
                return self._store_down(None, exc)
        return endpoint

    def _user_of(self, session: Session | None) -> WebUser | None:
        if session is None or not session.logged_in:
            return None
        user = self.outbox.users.get(session.user)
        if user is None or user.valid_from.timestamp() > session.began \
                or (session.user, session.began) in self.ended:
            return None  # removed, a new password since the session began, logged out
        return user

    def _finish(self, visit: Visit, response: Response) -> Response:
        if (visit.session.user, visit.session.began) not in self.ended:
            self._set_cookie(response, visit.session)
        return response

    def _set_cookie(self, response: Response, session: Session) -> None:
        response.set_cookie(COOKIE, self.sessions.seal(session), httponly=True,
                            samesite="strict", secure=self.settings.tls, path="/")

    async def _form(self, request: Request) -> FormData:
        """A small form of fields: no files, no large bodies (read before anyone is
        known, so nothing may fill the disk or the memory)."""
        if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
            raise BadInput("the form is too large")
        try:
            return await request.form(max_files=0, max_fields=20, max_part_size=MAX_FORM_BYTES)
        except (HTTPException, MultiPartException) as exc:
            raise BadInput(f"the form cannot be read ({exc})") from None

    def _to_login(self, request: Request, ended: bool) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":  # after login, back to the page the form was on
            found = re.match(r"/entries/\d+", request.url.path)
            target = found.group(0) if found else "/"
        url = "/login?next=" + quote(target, safe="") + ("&ended=1" if ended else "")
        response = RedirectResponse(url, status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- login ------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        session = self.sessions.new(self.clock.now())
        message = "session_ended" if request.query_params.get("ended") else None
        response = self.pages.login(session, _local(request.query_params.get("next")),
                                    message)
        self._set_cookie(response, session)
        return response

    async def login(self, request: Request) -> Response:
        now = self.clock.now()
        session, _ = self.sessions.open(request.cookies.get(COOKIE), now)
        try:
            form = await self._form(request)
        except BadInput as exc:
            return self.pages.error(None, 400, "bad_request", what=str(exc))
        name, password, sent, target = (str(form.get(k) or "") for k in
                                        ("user", "password", "csrf", "next"))
        if not csrf_ok(session, sent):
            return self.pages.error(None, 403, "csrf")
        assert session is not None
        who = unicodedata.normalize("NFKC", name).strip().casefold()
        address = request.client.host if request.client else "?"
        keys = [[f"{who} from {address}"], [who], [address]]
        wait = max(brake.wait_s(k, now) for brake, k in zip(self.brakes, keys, strict=True))
        response: Response
        if wait:
            response = self.pages.login(session, _local(target), "login_slowed", 429,
                                        seconds=wait, name=name)
        elif self.hashing.locked():
            response = self.pages.login(session, _local(target), "login_busy", 429, name=name)
        else:
            # counted as failed before the password is checked: parallel tries all meet
            # the brake; taken back when it was right
            for brake, k in zip(self.brakes, keys, strict=True):
                brake.failed(k, now)
            try:
                async with self.hashing:
                    found = await self.call(self.outbox.users.login, name.strip(), password)
            except StoreError as exc:
                return self._store_down(None, exc)
            if found.user is not None:
                for brake, k in zip(self.brakes, keys, strict=True):
                    brake.succeeded(k)
                fresh = self.sessions.new(self.clock.now(), found.user.name)  # a new token
                response = RedirectResponse(_local(target) or "/", status_code=303)
                self._set_cookie(response, fresh)
                return response
            response = self.pages.login(session, _local(target), "login_failed", 401,
                                        name=name)
        self._set_cookie(response, session)
        return response

    def _store_down(self, visit: Visit | None, exc: StoreError) -> Response:
        log.error("web console: %s", exc)  # the details in the log, not on a page
        return self.pages.error(visit, 503, "store_down")

    async def logout(self, visit: Visit) -> Response:
        """The session ends here, also for a copy of its cookie: it is remembered as
        ended until it would have expired anyway."""
        now = self.clock.now().timestamp()
        self.ended = {(u, b) for u, b in self.ended if now - b < MAX_AGE_S}
        self.ended.add((visit.session.user, visit.session.began))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- pages ------------------------------------------------------------------------------

    async def overview(self, visit: Visit) -> Response:
        return self.pages.overview(visit, await self.call(self.outbox.console.overview))

    async def search(self, visit: Visit) -> Response:
        q = visit.request.query_params
        console = self.outbox.console
        first, last = _day(q.get("from"), "from"), _day(q.get("to"), "to")
        mandant = _int(q.get("mandant"), "mandant")
        state = q.get("state") or None
        if state is not None and state not in set(State):
            raise BadInput(f"state {state!r}")
        s = Search(text=q.get("q", ""), state=state, mandant=mandant,
                   since=console.midnight(first) if first else None,
                   until=console.midnight(last.fromordinal(last.toordinal() + 1))
                   if last else None, page=_int(q.get("page"), "page") or 1)
        return self.pages.search(visit, s, await self.call(console.search, s))

    async def entry(self, visit: Visit) -> Response:
        found = await self.call(self.outbox.console.entry, _id(visit))
        if found is None:
            return self.pages.error(visit, 404, "not_found")
        q = visit.request.query_params
        return self.pages.entry(visit, *found, done=q.get("done"), refused=q.get("refused"))

    async def document(self, visit: Visit) -> Response:
        doc = await self.call(self.outbox.console.document, _id(visit))
        if doc is None:
            return self.pages.error(visit, 404, "no_document")
        download = visit.request.query_params.get("download") == "1"
        media = doc.media_type
        if media == "application/xml" and not download:
            media = "text/plain; charset=utf-8"  # shown as text: never run as a page
        disposition = "attachment" if download else "inline"
        return Response(doc.data, media_type=media, headers={
            "Content-Disposition": f"{disposition}; filename*=UTF-8''"
                                   f"{quote(doc.file_name, safe='')}",
            "X-Content-Type-Options": "nosniff", "X-Frame-Options": "SAMEORIGIN",
            "Cache-Control": "private, no-store"})

    async def move(self, visit: Visit) -> Response:
        entry_id = _id(visit)
        name = visit.request.path_params["move"]
        if name not in MOVES:
            return self.pages.error(visit, 404, "not_found")
        form = await visit.request.form()  # parsed, within its limits, by the guard
        admin = self.outbox.admin
        back = f"/entries/{entry_id}"
        result: MoveResult
        if name == "requeue":  # the store refuses a resend that was not confirmed
            result = (await self.call(admin.requeue, [entry_id], visit.actor,
                                      form.get("confirm") == "1"))[entry_id]
        elif name == "hold":
            result = (await self.call(admin.hold, [entry_id], visit.actor))[entry_id]
        else:
            result = (await self.call(admin.release, [entry_id], visit.actor,
                                      form.get("force") == "1"))[entry_id]
        if result.refusal is Refusal.NO_SUCH_ENTRY:
            return self.pages.error(visit, 404, "not_found")
        if result.ok:
            return RedirectResponse(f"{back}?done={name}", status_code=303)
        return RedirectResponse(f"{back}?refused={quote(str(result.refusal.value))}"
                                if result.refusal else back, status_code=303)

    async def export(self, visit: Visit) -> Response:
        q = visit.request.query_params
        first, last = _day(q.get("from"), "from"), _day(q.get("to"), "to")
        today = self.outbox.console.today
        first, last = first or today.replace(day=1), last or today
        if last < first:
            raise BadInput("'to' lies before 'from'")
        lines = await self.call(self.outbox.console.send_log, first, last)
        return StreamingResponse(
            csv_lines(lines, self.outbox.config.window.tz, self.pages.language),
            media_type="text/csv; charset=utf-8", headers={
                "Content-Disposition": f'attachment; filename="{export_name(first, last)}"',
                "Cache-Control": "private, no-store"})

    async def audit(self, visit: Visit) -> Response:
        return self.pages.audit(visit, await self.call(self.outbox.console.actions))

    # -- errors -----------------------------------------------------------------------------

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return self.pages.error(None, 404, "not_found")

    async def _not_allowed(self, request: Request, exc: Exception) -> Response:
        return self.pages.error(None, 405, "not_found")


def _local(target: str | None) -> str:
    """A place to go back to after login: a path on this server, nothing else."""
    if target and target.startswith("/") and not target.startswith("//") \
            and "\\" not in target:
        return target
    return ""


def _id(visit: Visit) -> int:
    entry_id = int(visit.request.path_params["entry_id"])
    if entry_id > 2**31:
        raise NotFound
    return entry_id


def _int(text: str | None, what: str) -> int | None:
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise BadInput(f"{what} {text!r} is not a number") from None
    if value < 0 or value > 10**9:
        raise BadInput(f"{what} {text!r}")
    return value


def _day(text: str | None, what: str) -> date | None:
    if not text:
        return None
    day = parse_day(text)
    if day is None or not 2000 <= day.year <= 2199:
        raise BadInput(f"{what} {text!r} is not a date like 2026-12-01 or 01.12.2026")
    return day
