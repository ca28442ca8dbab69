"""Recent heartbeat results of one gateway: a bounded ring buffer for the status page.

The gateway controller owns its probe's results and records each one here; the HTTP API reads
the last minutes of them (``GET /api/v1/gateways/{name}/heartbeats``). Pure: times come in
from the caller's clock, nothing here does I/O.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["HISTORY_SPAN", "MAX_SAMPLES", "HeartbeatHistory", "HeartbeatSample", "capacity_for"]

#: How far back the status page draws a gateway's heartbeats.
HISTORY_SPAN = timedelta(minutes=5)
#: A hard bound whatever the heartbeat period: memory per gateway stays small.
MAX_SAMPLES = 1500


@dataclass(frozen=True, slots=True)
class HeartbeatSample:
    """One heartbeat: answered after ``rtt`` seconds, or missed (``rtt`` is None)."""

    at: datetime
    rtt: float | None

    @property
    def missed(self) -> bool:
        return self.rtt is None


def capacity_for(every: timedelta, span: timedelta = HISTORY_SPAN) -> int:
    """Samples needed to hold ``span`` of heartbeats sent every ``every`` (bounded)."""
    if every <= timedelta(0):
        raise ValueError(f"heartbeat period must be > 0, got {every}")
    needed = math.ceil(span / every) + 1
    return max(1, min(MAX_SAMPLES, needed))


class HeartbeatHistory:
    """The last ``capacity`` heartbeats, oldest first; older ones fall off the end."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"heartbeat history capacity must be >= 1, got {capacity}")
        self._samples: deque[HeartbeatSample] = deque(maxlen=capacity)

    @property
    def capacity(self) -> int:
        return self._samples.maxlen or 0

    def __len__(self) -> int:
        return len(self._samples)

    def answered(self, at: datetime, rtt: float) -> None:
        """A heartbeat answered after ``rtt`` seconds."""
        if not math.isfinite(rtt) or rtt < 0:
            raise ValueError(f"heartbeat rtt must be a finite number >= 0, got {rtt!r}")
        self._samples.append(HeartbeatSample(at=at, rtt=rtt))

    def missed(self, at: datetime) -> None:
        """A heartbeat not answered within the deadline (the gateway stalls)."""
        self._samples.append(HeartbeatSample(at=at, rtt=None))

    def since(self, start: datetime) -> list[HeartbeatSample]:
        """The samples at or after ``start``, oldest first."""
        return [s for s in self._samples if s.at >= start]

    def recent(self, now: datetime, span: timedelta = HISTORY_SPAN) -> list[HeartbeatSample]:
        """The samples of the last ``span`` before ``now``, oldest first."""
        return self.since(now - span)
