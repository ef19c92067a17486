"""The identity rules: what a newly settled file becomes, given what the outbox
already holds for its path and its content."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tikos_outbox.core.states import State

#: States of an earlier version that mean the customer already has (or may have) it.
_DELIVERED_OR_IN_FLIGHT = frozenset({State.SENT, State.SENDING})
#: States of an earlier version that a newer version replaces.
_REPLACEABLE = frozenset({State.PENDING, State.DEFERRED, State.HELD, State.FAILED})


@dataclass(frozen=True)
class Prior:
    """An entry the outbox already has."""

    id: int
    state: State
    sha256: str


@dataclass(frozen=True)
class Decision:
    state: State
    reason: str | None
    supersede: tuple[int, ...] = ()  # earlier entries that become skipped


def decide(
    *,
    sha256: str,
    same_path: Sequence[Prior],
    same_content: Prior | None,
    baseline: bool,
    problem: str | None,
    no_address: str | None = None,
) -> Decision | None:
    """What a settled file becomes; None when it is already recorded as it is.

    `same_path`: entries of the same mandant and relative path; `same_content`:
    an entry of the same mandant with the same bytes under another path;
    `problem`: why the file is not mailable (incomplete PDF, too large);
    `no_address`: why there is no one to mail it to, when the lookup found nobody.
    """
    if any(p.sha256 == sha256 for p in same_path):
        return None
    if baseline:
        return Decision(State.SKIPPED, "baseline: in the archive before the first start")
    replaceable = tuple(p.id for p in same_path if p.state in _REPLACEABLE)
    if problem is not None:
        return Decision(State.HELD, problem, replaceable)
    if same_content is not None:
        return Decision(State.SKIPPED, f"duplicate of entry {same_content.id}")
    delivered = [p for p in same_path if p.state in _DELIVERED_OR_IN_FLIGHT]
    if delivered:
        n = max(p.id for p in delivered)
        return Decision(State.HELD, f"changed after it was sent as entry {n}", replaceable)
    if no_address is not None:
        return Decision(State.SKIPPED, no_address, replaceable)
    return Decision(State.PENDING, None, replaceable)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bind(*, sha256: str, baseline: bool, problem: str | None,
         no_address: str | None) -> Callable[[list[Prior], Prior | None], Decision | None]:
    """The rules for one file, waiting for what the outbox holds for it."""

    def decide_here(same_path: list[Prior], same_content: Prior | None) -> Decision | None:
        return decide(sha256=sha256, same_path=same_path, same_content=same_content,
                      baseline=baseline, problem=problem, no_address=no_address)

    return decide_here
