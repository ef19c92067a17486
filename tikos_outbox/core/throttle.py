"""Burst protection: at most `per_minute` messages in any 60 seconds."""

from __future__ import annotations

from collections import deque


class Throttle:
    """A sliding-window limiter on a monotonic clock that the caller passes in."""

    def __init__(self, per_minute: int, window_s: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self._sent: deque[float] = deque()

    def wait_time(self, now: float) -> float:
        """Seconds to wait before the next message may go (0.0 = now)."""
        if self.per_minute <= 0:
            return 0.0
        while self._sent and now - self._sent[0] >= self.window_s:
            self._sent.popleft()
        if len(self._sent) < self.per_minute:
            return 0.0
        return self._sent[0] + self.window_s - now

    def record(self, now: float) -> None:
        """Note that a message went out at `now`."""
        if self.per_minute > 0:
            self._sent.append(now)
