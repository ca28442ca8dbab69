"""The host's one clock: wall time for records, monotonic seconds for elapsed time.

Injected, so that a unit test can move time; the host reads no other clock (``asyncio``'s
waits still run on the event loop, they only bound how long a task sleeps).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall time (aware), for the journal, hooks and intent keys."""
        ...

    def monotonic(self) -> float:
        """Seconds that never go back, for outage times, deadlines and the rate limiters."""
        ...


class SystemClock:
    """The real clock; ``wall`` may be shifted (the supervisor's own clock) without moving
    the monotonic seconds."""

    def __init__(self, wall: Callable[[], datetime] | None = None) -> None:
        self._wall = wall or (lambda: datetime.now(UTC))

    def now(self) -> datetime:
        return self._wall()

    def monotonic(self) -> float:
        return time.monotonic()
