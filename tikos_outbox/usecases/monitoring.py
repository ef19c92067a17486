"""What `status` shows: the last error, the heartbeat of `run`, counts and runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tikos_outbox.core.ports import Clock, OutboxCommands, OutboxQueries
from tikos_outbox.core.settings import Config

HEARTBEAT_STALE_S = 180


@dataclass(frozen=True)
class ServiceState:
    running: bool
    last_seen: str | None
    worker: str | None


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

    def as_json(self) -> dict[str, Any]:
        return {"counts": self.counts, "attention": self.attention, "last_run": self.last_run,
                "last_run_report": self.last_run_report, "next_run": self.next_run,
                "last_error": self.last_error,
                "first_pass_waiting": self.first_pass_waiting,
                "service": {"running": self.service.running,
                            "last_seen": self.service.last_seen,
                            "worker": self.service.worker}}


class Monitor:
    """The Notes port, the heartbeat, and the status view."""

    def __init__(self, config: Config, queries: OutboxQueries, commands: OutboxCommands,
                 clock: Clock, worker: str) -> None:
        self.config = config
        self.queries = queries
        self.commands = commands
        self.clock = clock
        self.worker = worker

    def note_error(self, text: str) -> None:
        now = self.clock.now()
        self.commands.set_meta("last_error", json.dumps({"at": now.isoformat(), "text": text}),
                               now)

    def heartbeat(self, running: bool = True) -> None:
        now = self.clock.now()
        self.commands.set_meta("heartbeat", json.dumps(
            {"at": now.isoformat(), "worker": self.worker, "running": running}), now)

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
                                 worker=heartbeat.get("worker") if heartbeat else None),
            first_pass_waiting=[m.id for m in self.config.enabled_mandants
                                if q.get_meta(f"first_pass:{m.id}")
                                and not q.get_meta(f"baseline:{m.id}")])


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None
