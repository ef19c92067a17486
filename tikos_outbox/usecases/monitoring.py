"""What `status` shows: the last error, the heartbeat of `run`, counts and runs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tikos_outbox.core.pacing import AccountState, Limits, account_limits, account_of
from tikos_outbox.core.ports import Clock, OutboxCommands, OutboxQueries, SendingAccounts
from tikos_outbox.core.settings import Config

HEARTBEAT_STALE_S = 180


@dataclass(frozen=True)
class ServiceState:
    running: bool
    last_seen: str | None
    worker: str | None
    config_current: bool = True  # False: the config was changed after the service started


@dataclass(frozen=True)
class AccountStatus:
    """One sending account as `status` shows it: what it sent, its limits, and why it
    waits, if it does."""

    name: str
    mandants: list[int]
    limits: Limits
    state: AccountState | None  # None: nothing sent with it yet
    paused_until: datetime | None
    paused_because: str | None
    blocked: bool
    problem: str | None = None  # sending stopped on a session reply, until fixed

    def as_json(self) -> dict[str, Any]:
        st = self.state
        return {"account": self.name, "mandants": self.mandants,
                "limits": {"max_per_minute": self.limits.per_minute,
                           "max_per_hour": self.limits.per_hour,
                           "max_per_day": self.limits.per_day,
                           "max_recipients_per_day": self.limits.recipients_per_day},
                "sent_last_hour": st.sent_last_hour if st else 0,
                "sent_last_day": st.sent_last_day if st else 0,
                "recipients_last_day": st.recipients_last_day if st else 0,
                "paused_until": self.paused_until.isoformat() if self.paused_until else None,
                "paused_because": self.paused_because, "blocked": self.blocked,
                "problem": self.problem}


@dataclass(frozen=True)
class Status:
    counts: dict[str, int]
    attention: int
    last_run: str | None
    last_run_report: dict[str, Any] | None
    next_run: str
    last_error: dict[str, str] | None
    service: ServiceState
    first_pass_waiting: list[int]  # mandants whose folder was never listed completely
    accounts: list[AccountStatus]
    bounces: dict[str, Any]  # enabled, last_pass {at, text}, last_error (text or None)
    einvoice: dict[str, Any] = field(default_factory=dict)  # this month's invoices by kind
    history_unread: int = 0  # history files the first start did not read yet

    def as_json(self) -> dict[str, Any]:
        return {"counts": self.counts, "attention": self.attention, "last_run": self.last_run,
                "last_run_report": self.last_run_report, "next_run": self.next_run,
                "last_error": self.last_error,
                "first_pass_waiting": self.first_pass_waiting,
                "accounts": [a.as_json() for a in self.accounts],
                "bounces": self.bounces, "einvoice": self.einvoice,
                "history_unread": self.history_unread,
                "service": {"running": self.service.running,
                            "last_seen": self.service.last_seen,
                            "worker": self.service.worker,
                            "config_current": self.service.config_current}}


class Monitor:
    """The Notes port, the heartbeat, and the status view."""

    def __init__(self, config: Config, queries: OutboxQueries, commands: OutboxCommands,
                 accounts: SendingAccounts, clock: Clock, worker: str) -> None:
        self.config = config
        self.queries = queries
        self.commands = commands
        self.accounts = accounts
        self.clock = clock
        self.worker = worker

    def note_error(self, text: str) -> None:
        now = self.clock.now()
        self.commands.set_meta("last_error", json.dumps({"at": now.isoformat(), "text": text}),
                               now)

    def resolved(self, prefix: str) -> None:
        last = _json(self.queries.get_meta("last_error"))
        if last and str(last.get("text", "")).startswith(prefix):
            self.commands.set_meta("last_error", "", self.clock.now())

    def heartbeat(self, running: bool = True) -> None:
        now = self.clock.now()
        self.commands.set_meta("heartbeat", json.dumps(
            {"at": now.isoformat(), "worker": self.worker, "running": running,
             "config": self.config.digest}), now)

    def status(self) -> Status:
        now = self.clock.now()
        q = self.queries
        heartbeat = _json(q.get_meta("heartbeat"))
        running = bool(
            heartbeat and heartbeat.get("running")
            and (now - datetime.fromisoformat(heartbeat["at"])).total_seconds()
            < HEARTBEAT_STALE_S)
        return Status(
            counts=q.counts(), attention=q.attention_count(), last_run=q.get_meta("last_run"),
            last_run_report=_json(q.get_meta("last_run_report")),
            next_run=self.config.window.next_slot(now).isoformat(),
            last_error=_json(q.get_meta("last_error")),
            service=ServiceState(running=running,
                                 last_seen=heartbeat["at"] if heartbeat else None,
                                 worker=heartbeat.get("worker") if heartbeat else None,
                                 config_current=not running or heartbeat.get(
                                     "config", self.config.digest) == self.config.digest),
            first_pass_waiting=[m.id for m in self.config.enabled_mandants
                                if q.get_meta(f"first_pass:{m.id}")
                                and not q.get_meta(f"baseline:{m.id}")],
            accounts=self.account_statuses(now),
            bounces=self._bounces(), einvoice=self._einvoices(now),
            history_unread=q.unread_count())

    def _einvoices(self, now: datetime) -> dict[str, Any]:
        """The invoices recorded this (local) month by their e-invoice data, and the rule."""
        rule = self.config.einvoice
        local = now.astimezone(self.config.window.tz)
        start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        counts = self.queries.einvoice_counts(start, rule.doctypes)
        return {"month": f"{local:%Y-%m}", "doctypes": list(rule.doctypes), **counts,
                "required_from": rule.required_from.isoformat() if rule.required_from
                else None, "action": rule.action.value}

    def _bounces(self) -> dict[str, Any]:
        error = _json(self.queries.get_meta("bounces:last_error"))
        return {"enabled": self.config.bounces.enabled,
                "last_pass": _json(self.queries.get_meta("bounces:last_pass")),
                "last_error": error["text"] if error else None,
                "last_error_at": error["at"] if error else None}

    def account_statuses(self, now: datetime) -> list[AccountStatus]:
        """Every account the enabled mandants send with, and any other that rests."""
        states = {a.name: a for a in self.accounts.states(now)}
        limits_of = account_limits(m.smtp for m in self.config.enabled_mandants)
        configured: dict[str, tuple[Limits, list[int]]] = {}
        for m in self.config.enabled_mandants:
            account = account_of(m.smtp)
            configured.setdefault(account, (limits_of[account], []))[1].append(m.id)
        out = []
        for name in [*configured, *(n for n in states if n not in configured)]:
            state = states.get(name)
            pause = state.pause(now) if state else None
            if name not in configured and pause is None:
                continue  # an account no longer in the config, resting no more
            problem = state.problem if state else None
            limits, mandants = configured.get(name, (Limits(), []))
            out.append(AccountStatus(name, mandants, limits, state,
                                     pause.until if pause else None,
                                     pause.reason if pause else None,
                                     bool(pause and pause.blocked), problem))
        return out


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None
