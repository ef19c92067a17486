"""Sessions in a signed cookie, the CSRF token they carry, and the brake on login
attempts.

The cookie holds who is logged in, when the session began, when it was last used,
and a random CSRF token, signed with HMAC-SHA256 under a key made at the start of
the process: nothing about a session is stored, and a restart logs everyone out.
Whether the user still exists, with which role, is read from the outbox at every
request (a removed user or a new password ends the session at once)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, replace
from datetime import datetime

COOKIE = "tikos_session"
MAX_AGE_S = 12 * 3600  # a session ends after a working day, however busy


@dataclass(frozen=True)
class Session:
    user: str  # "" before login: the login form's CSRF token lives here too
    csrf: str
    began: float  # POSIX seconds
    seen: float

    @property
    def logged_in(self) -> bool:
        return bool(self.user)


class Sessions:
    def __init__(self, idle_s: float, key: bytes | None = None) -> None:
        self.idle_s = idle_s
        self._key = key or secrets.token_bytes(32)

    def new(self, now: datetime, user: str = "") -> Session:
        t = now.timestamp()
        return Session(user, secrets.token_urlsafe(24), t, t)

    def seal(self, s: Session) -> str:
        body = base64.urlsafe_b64encode(json.dumps(
            {"u": s.user, "c": s.csrf, "b": s.began, "s": s.seen},
            separators=(",", ":")).encode()).decode().rstrip("=")
        return f"{body}.{self._sign(body)}"

    def open(self, raw: str | None, now: datetime) -> tuple[Session | None, bool]:
        """(the session, whether one was there but ended). A cookie that is forged,
        damaged, idle too long or too old gives no session."""
        if not raw or "." not in raw:
            return None, False
        body, sig = raw.rsplit(".", 1)
        if not hmac.compare_digest(sig, self._sign(body)):
            return None, False
        try:
            d = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            s = Session(str(d["u"]), str(d["c"]), float(d["b"]), float(d["s"]))
        except (ValueError, KeyError, TypeError):
            return None, False
        t = now.timestamp()
        if t - s.seen > self.idle_s or t - s.began > MAX_AGE_S or s.seen > t + 60:
            return None, s.logged_in
        return replace(s, seen=t), False

    def _sign(self, body: str) -> str:
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def csrf_ok(session: Session | None, sent: str | None) -> bool:
    return bool(session and sent and hmac.compare_digest(session.csrf, sent))


@dataclass
class _Failures:
    times: list[float]


class LoginThrottle:
    """After `free` failed logins within WINDOW_S for one key, every further attempt
    with it waits: 30 s, then twice as long each time, at most 15 minutes from the
    last failure. While it waits, no password is even checked.

    The console keeps three: a name from one address (5 free: the brake a guesser
    meets), a name from anywhere (50: someone elsewhere cannot lock a colleague out
    with a few tries), an address for any name (20: trying many names)."""

    WINDOW_S = 15 * 60
    FIRST_WAIT_S = 30
    MAX_WAIT_S = 15 * 60
    MAX_KEYS = 10_000

    def __init__(self, free: int = 5) -> None:
        self.free = free
        self._failed: dict[str, _Failures] = {}

    def wait_s(self, keys: list[str], now: datetime) -> int:
        t = now.timestamp()
        longest = 0.0
        for key in keys:
            f = self._failed.get(key)
            if f is None:
                continue
            f.times = [x for x in f.times if t - x < self.WINDOW_S]
            over = len(f.times) - self.free
            if over >= 0 and f.times:
                wait = min(self.FIRST_WAIT_S * 2 ** over, self.MAX_WAIT_S)
                longest = max(longest, f.times[-1] + wait - t)
        return max(0, int(longest + 0.999))

    def failed(self, keys: list[str], now: datetime) -> None:
        if len(self._failed) > self.MAX_KEYS:  # someone tries very many names: forget old
            oldest = sorted(self._failed, key=lambda k: self._failed[k].times[-1:] or [0])
            for key in oldest[: self.MAX_KEYS // 2]:
                del self._failed[key]
        for key in keys:
            self._failed.setdefault(key, _Failures([])).times.append(now.timestamp())

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._failed.pop(key, None)
