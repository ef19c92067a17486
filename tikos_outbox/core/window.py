"""When send runs are due: every `every_minutes` from `first` to `last` on the
configured weekdays, in local wall-clock time of the configured time zone.

All instants going in and out are timezone-aware. Local times that do not
exist (the hour skipped when clocks go forward) have no slot; a local time
that occurs twice (clocks go back) has one slot, at its first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class SendWindow:
    tz: ZoneInfo
    first: time
    last: time
    every_minutes: int
    days: frozenset[int]  # 0 = Monday … 6 = Sunday

    def __post_init__(self) -> None:
        if self.every_minutes < 1:
            raise ValueError("every_minutes must be at least 1")
        if self.last < self.first:
            raise ValueError("last must not be before first")

    def local_times(self) -> list[time]:
        """The wall-clock times of the slots of one day."""
        start = self.first.hour * 60 + self.first.minute
        end = self.last.hour * 60 + self.last.minute
        return [time(m // 60, m % 60) for m in range(start, end + 1, self.every_minutes)]

    def slots_on(self, day: date) -> list[datetime]:
        """The slots of a local calendar day, as aware UTC instants, ascending."""
        if day.weekday() not in self.days:
            return []
        out: list[datetime] = []
        for t in self.local_times():
            local = datetime.combine(day, t, tzinfo=self.tz)  # fold=0: first occurrence
            instant = local.astimezone(UTC)
            if instant.astimezone(self.tz).replace(tzinfo=None) != local.replace(tzinfo=None):
                continue  # does not exist on this day (clocks went forward)
            out.append(instant)
        return out

    def next_slot(self, after: datetime) -> datetime:
        """The first slot strictly after `after`."""
        _require_aware(after)
        day = after.astimezone(self.tz).date()
        for offset in range(0, 15):
            for slot in self.slots_on(day + timedelta(days=offset)):
                if slot > after:
                    return slot
        raise ValueError("the send window has no slot within two weeks")  # no days configured

    def last_slot(self, at_or_before: datetime) -> datetime | None:
        """The latest slot at or before the instant, looking back up to two weeks."""
        _require_aware(at_or_before)
        day = at_or_before.astimezone(self.tz).date()
        for offset in range(0, 15):
            for slot in reversed(self.slots_on(day - timedelta(days=offset))):
                if slot <= at_or_before:
                    return slot
        return None

    def due(self, consumed: datetime | None, now: datetime) -> datetime | None:
        """The slot to run now, if any: the latest slot at or before `now` that is
        later than `consumed` (the last slot already run or passed over).

        Missed slots never pile up: after any gap there is at most one run.
        """
        slot = self.last_slot(now)
        if slot is None or (consumed is not None and slot <= consumed):
            return None
        return slot


def _require_aware(value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("instants must be timezone-aware")


def parse_hhmm(text: str) -> time:
    """'08:00' -> time(8, 0); raises ValueError with a readable message."""
    parts = text.split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"'{text}' is not a time like '08:00'")
    hour, minute = int(parts[0]), int(parts[1])
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise ValueError(f"'{text}' is not a time of day")
    return time(hour, minute)
