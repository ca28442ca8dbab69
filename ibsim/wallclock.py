"""The simulated gateway's wall clock: the injected base clock moved by the control API's
``clock`` fault, in the JVM's zone (TZ), and IBC's next daily and Sunday times on it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta

__all__ = ["GatewayClock", "next_daily", "next_sunday", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


class GatewayClock:
    """The gateway's wall clock: a base clock moved by an offset the control API sets."""

    def __init__(self, base: Callable[[], datetime], zone: object) -> None:
        self._base = base
        self.zone = zone
        self.offset = 0.0
        self._changed = asyncio.Event()

    def now(self) -> datetime:
        moved = self._base() + timedelta(seconds=self.offset)
        return moved.astimezone(self.zone)  # type: ignore[arg-type]

    def move(self, offset: float) -> None:
        if offset != self.offset:
            self.offset = offset
            self._changed.set()

    async def sleep_until(self, when: datetime) -> None:
        """Return once the wall clock reaches ``when`` (re-checked when the clock moves)."""
        while True:
            left = (when - self.now()).total_seconds()
            if left <= 0:
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=left)


def next_daily(now: datetime, at: time) -> datetime:
    """The next wall-clock ``at`` strictly after ``now``, in ``now``'s zone."""
    candidate = now.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    if candidate <= now:
        candidate += timedelta(days=1)
    return candidate


def next_sunday(now: datetime, at: time) -> datetime:
    """IbcTws.getColdRestartTime: Sunday at ``at`` in the JVM's zone, strictly after now."""
    candidate = now.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    candidate += timedelta(days=(6 - candidate.weekday()) % 7)
    if candidate <= now:
        candidate += timedelta(days=7)
    return candidate
