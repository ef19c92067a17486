"""The identity rules: what a newly settled file becomes, given what the outbox
already holds for its path and its content."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tikos_outbox.core import attention
from tikos_outbox.core.states import State

#: States of an earlier version that mean the customer already has (or may have) it.
_DELIVERED_OR_IN_FLIGHT = frozenset({State.SENT, State.SENDING})
#: States of an earlier version that a newer version replaces.
_REPLACEABLE = frozenset({State.PENDING, State.DEFERRED, State.HELD, State.FAILED})
#: The start of the reason a document is held for that a new version of the file may
#: cure, though the file could be mailed (release without --force): TIKOS writes it
#: again as an e-invoice, or without the password.
EINVOICE_REASON = "not a valid e-invoice"
#: The content "hash" of a history file recorded without reading it (the first start
#: reads no contents: a ten-year archive on a share is not read for nothing).
UNREAD = "unread:"
#: … and of one that changed before it was read: what it was is not known, for good.
UNKNOWN = "unknown:"
ENCRYPTED_REASON = "encrypted PDF"


#: the office's line for a document held by the `[einvoice]` rule, given the entry
#: that was sent before it (a changed version), or None
RuleLine = Callable[[int | None], str]


def curable(problem: str | None, needs_force: bool) -> bool:
    """Whether an entry held with this problem was held only for its file."""
    return needs_force or (problem or "").startswith((EINVOICE_REASON, ENCRYPTED_REASON))


@dataclass(frozen=True)
class Prior:
    """An entry the outbox already has."""

    id: int
    state: State
    sha256: str
    file_problem: bool = False  # held only because its file was not a mailable PDF
    reached: bool = False  # a customer address already has it (a partly done entry)


@dataclass(frozen=True)
class Decision:
    state: State
    reason: str | None
    supersede: tuple[int, ...] = ()  # earlier entries that become skipped
    attention: str | None = None  # what the office must do (core.attention)
    problem: str | None = None  # why it is held, kept through hold and release
    needs_force: bool = False  # the file is not a mailable PDF: release needs --force


def decide(
    *,
    sha256: str,
    same_path: Sequence[Prior],
    same_content: Prior | None,
    baseline: bool,
    problem: str | None,
    problem_blocks: bool = False,
    no_address: str | None = None,
    no_address_attention: str | None = None,
    einvoice: str | None = None,
    einvoice_line: RuleLine | None = None,
) -> Decision | None:
    """What a settled file becomes; None when it is already recorded as it is.

    `same_path`: entries of the same mandant and relative path; `same_content`:
    an entry of the same mandant with the same bytes under another path;
    `problem`: why the file should not be mailed as it is (`problem_blocks`: it is
    not a complete, mailable PDF at all); `no_address`: why there is no one to
    mail it to, when the lookup found nobody.

    `einvoice`: why the `[einvoice]` rule holds the document (no valid e-invoice),
    with `einvoice_line` the office's line for it. The rule only holds what would
    otherwise go out: a duplicate stays skipped, and a document that is held anyway
    (changed after it was sent, a new version of a held one) is held with both
    reasons, the line naming the entry the customer already has.
    """
    if any(p.sha256 == sha256 for p in same_path):
        return None
    if baseline:
        return Decision(State.SKIPPED, "baseline: in the archive before the first start")
    if is_unread(sha256):
        raise ValueError("only a history file is recorded without reading it")
    replaceable = tuple(p.id for p in same_path if p.state in _REPLACEABLE and not p.reached)
    if problem is not None:
        return _held(problem, replaceable, problem_blocks)
    if same_content is not None:
        return Decision(State.SKIPPED, f"duplicate of entry {same_content.id}")
    also = f"; {einvoice}" if einvoice else ""
    delivered = [p for p in same_path if p.state in _DELIVERED_OR_IN_FLIGHT or p.reached]
    if delivered:
        n = max(p.id for p in delivered)
        return _held(f"changed after it was sent as entry {n}{also}", replaceable,
                     line=einvoice_line(n) if einvoice and einvoice_line else None)
    # a new version of a document that is held stays held, unless the old one was
    # held only for its file (truncated, not a PDF, …): the new file may be right
    held = [p for p in same_path if p.state is State.HELD and not p.file_problem]
    if held:
        return _held(f"a new version of entry {max(p.id for p in held)}, which is held{also}",
                     replaceable)
    # a history file that changed after the first start, which never read it: whether
    # the customer has this version (a copy with a new time) or not cannot be told
    unread = [p.id for p in same_path if is_unread(p.sha256)]
    if unread:
        return _held(f"changed since the first start, which took it as history (entry"
                     f" {max(unread)}) without reading it: whether the customer has this"
                     f" version is not known{also}", replaceable)
    if einvoice is not None:
        return _held(einvoice, replaceable, line=einvoice_line(None) if einvoice_line else None)
    if no_address is not None:
        return Decision(State.SKIPPED, no_address, replaceable, attention=no_address_attention)
    return Decision(State.PENDING, None, replaceable)


def _held(reason: str, supersede: tuple[int, ...], blocks: bool = False,
          line: str | None = None) -> Decision:
    return Decision(State.HELD, reason, supersede,
                    attention=line or attention.held(reason, blocks), problem=reason,
                    needs_force=blocks)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unread_sha(size: int, mtime_ns: int) -> str:
    """What a history file's entry holds for its content until it is read."""
    return f"{UNREAD}{size}:{mtime_ns}"


def unknown_sha(size: int, mtime_ns: int) -> str:
    return f"{UNKNOWN}{size}:{mtime_ns}"


def is_unread(sha256: str) -> bool:
    """A history entry whose content the outbox does not know (not read yet, or
    changed before it was read)."""
    return sha256.startswith((UNREAD, UNKNOWN))


def bind(*, sha256: str, baseline: bool, problem: str | None, problem_blocks: bool = False,
         no_address: str | None = None, no_address_attention: str | None = None,
         einvoice: str | None = None, einvoice_line: RuleLine | None = None,
         ) -> Callable[[list[Prior], Prior | None], Decision | None]:
    """The rules for one file, waiting for what the outbox holds for it."""

    def decide_here(same_path: list[Prior], same_content: Prior | None) -> Decision | None:
        return decide(sha256=sha256, same_path=same_path, same_content=same_content,
                      baseline=baseline, problem=problem, problem_blocks=problem_blocks,
                      no_address=no_address, no_address_attention=no_address_attention,
                      einvoice=einvoice, einvoice_line=einvoice_line)

    return decide_here
