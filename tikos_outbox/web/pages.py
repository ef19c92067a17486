"""The console's pages, rendered from Jinja2 templates (autoescaped) with the words
of `texts` and times in the laundry's zone. Every page carries the same security
headers: no scripts at all, nothing framed but our own documents, nothing cached."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse

from tikos_outbox.core.console import ActionView, Found, Search, WebUser
from tikos_outbox.core.settings import Config
from tikos_outbox.core.states import Event, State, is_resend, sources
from tikos_outbox.core.views import EntryView
from tikos_outbox.usecases.console import Overview
from tikos_outbox.web.sessions import Session
from tikos_outbox.web.texts import delivery_word, move_word, role_word, state_word, texts

HERE = Path(__file__).parent
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self';"
                               " frame-src 'self'; form-action 'self'; base-uri 'none';"
                               " frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
CHART_H = 120
MOVES = {"requeue": Event.REQUEUE, "hold": Event.HOLD, "release": Event.RELEASE}


@dataclass(frozen=True)
class Visit:
    """One request's session and user (None: not logged in)."""

    request: Request
    session: Session
    user: WebUser | None

    @property
    def actor(self) -> str:
        return f"web:{self.user.name}" if self.user else "web"


class Pages:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.language = config.outbox.language
        self.t = texts(self.language)
        self.tz = config.window.tz
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"),
                               autoescape=select_autoescape(["html"]), trim_blocks=True,
                               lstrip_blocks=True)
        lang = self.language
        self.env.filters.update(
            when=self._when, state=lambda s: state_word(s, lang),
            delivery=lambda s: delivery_word(s, lang), role=lambda r: role_word(r, lang),
            move=lambda m: move_word(m, lang))
        self.env.globals.update(t=self.t, states=[s.value for s in State],
                                mandants=[m.id for m in config.mandants])

    def _when(self, value: datetime | str | None) -> str:
        if value is None or value == "":
            return self.t["none"]
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.astimezone(self.tz).strftime("%d.%m.%Y %H:%M")

    def render(self, template: str, visit: Visit | None, status: int = 200,
               session: Session | None = None, **values: object) -> HTMLResponse:
        user = visit.user if visit else None
        html = self.env.get_template(template).render(
            user=user, admin=bool(user and user.role.may_act),
            csrf=(visit.session.csrf if visit else session.csrf if session else ""),
            **values)
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    # -- the pages --------------------------------------------------------------------------

    def login(self, session: Session, target: str, message: str | None = None,
              status: int = 200, seconds: int = 0, name: str = "") -> HTMLResponse:
        text = self.t[message].format(seconds=seconds) if message else None
        return self.render("login.html", None, status, session=session, target=target,
                           message=text, name=name)

    def overview(self, visit: Visit, o: Overview) -> HTMLResponse:
        top = max((d.sent for d in o.days), default=0) or 1
        bars = [{"x": i * 20, "h": round(d.sent / top * CHART_H), "n": d.sent,
                 "day": d.day.strftime("%d.%m."), "label": i % 5 == 4 or i == len(o.days) - 1}
                for i, d in enumerate(o.days)]
        return self.render("overview.html", visit, st=o.status, attention=o.attention,
                           bars=bars, chart_h=CHART_H, top=top)

    def search(self, visit: Visit, s: Search, found: Found) -> HTMLResponse:
        q = visit.request.query_params
        return self.render("search.html", visit, s=s, found=found, q=q,
                           newer=_page_url(q, s.page - 1) if s.page > 1 else None,
                           older=_page_url(q, s.page + 1) if found.more else None)

    def entry(self, visit: Visit, e: EntryView, actions: list[ActionView],
              done: str | None = None, refused: str | None = None) -> HTMLResponse:
        offered = {name: State(e.state) in sources(event) for name, event in MOVES.items()}
        message = None
        if done in MOVES:
            message = self.t["done"].format(id=e.id, move=move_word(done, self.language))
        return self.render("entry.html", visit, e=e, actions=actions, offered=offered,
                           message=message, refused=self._refusal(refused, e),
                           resend=is_resend(State(e.state), e.reason))

    def _refusal(self, refused: str | None, e: EntryView) -> str | None:
        if not refused:
            return None
        de = self.language.value == "de"
        words = {
            "not confirmed": self.t["resend_needs_confirm"],
            "being sent": "Der Eintrag wird gerade gesendet; nichts wurde geändert. Bitte"
                          " nach dem Versandlauf erneut versuchen." if de else
                          "The entry is being sent right now; nothing was changed. Please try"
                          " again after the send run.",
            "content unknown": "Die Archivdatei ist gerade nicht lesbar oder wurde seit dem"
                               " ersten Start geändert, der sie ungelesen als Altbestand"
                               " aufnahm: welche Fassung zu senden wäre, ist nicht bekannt."
                               " Nichts wurde geändert." if de else
                               "The archive file cannot be read now, or changed since the"
                               " first start took it as history without reading it: which"
                               " version to send is not known. Nothing was changed.",
            "needs --force": "Die Datei ist so nicht versendbar; nur „Trotz Dateiproblem"
                             " freigeben“ sendet die aufgenommene Datei trotzdem." if de else
                             "The file cannot be mailed as it is; only 'Release despite the"
                             " file problem' sends the recorded file anyway.",
        }
        other = (f"Im Zustand „{state_word(e.state, self.language)}“ geht das nicht." if de
                 else f"Not possible in the state '{e.state}'.")
        return words.get(refused, other)

    def audit(self, visit: Visit, actions: list[ActionView]) -> HTMLResponse:
        return self.render("audit.html", visit, actions=actions)

    def error(self, visit: Visit | None, status: int, key: str, **values: str) -> HTMLResponse:
        return self.render("error.html", visit, status, status_code=status,
                           message=self.t[key].format(**values))


def _page_url(q: QueryParams, page: int) -> str:
    items = [(k, v) for k, v in q.multi_items() if k != "page"]
    return "/search?" + urlencode([*items, ("page", str(page))])
