"""What kind of outage a gateway is in: the value the order gate carries.

The supervisor's lifecycle is the one owner of this decision; the strategy host only reacts to
it (a pure function of kind, policy and elapsed time). Both import it from here so the two
layers never mirror the enum by hand.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta


class OutageKind(enum.Enum):
    """Why a gateway's order gate is closed."""

    #: IBC relaunches the Gateway for a planned reason: the daily auto-restart, a RESTART
    #: command, the weekly cold restart. Expected, bounded: orders at IB stay, no failover
    #: unless it outlasts its bound.
    PLANNED_RESTART = "planned_restart"
    #: IB's servers are in their daily reset window: expected, bounded like a planned restart.
    RESET_WINDOW = "reset_window"
    #: The container died, the IB link stayed lost past its bound, the login failed.
    LOST = "lost"
    #: The API stopped answering the probe (missed heartbeats, a dropped API socket).
    STALLED = "stalled"
    #: The supervisor itself is stopping.
    SHUTDOWN = "shutdown"

    @property
    def planned(self) -> bool:
        """An expected, bounded outage: hold orders, do not fail over within the bound."""
        return self in (OutageKind.PLANNED_RESTART, OutageKind.RESET_WINDOW)


@dataclass(frozen=True, slots=True, kw_only=True)
class Gate:
    """The order gate of one gateway: open, or closed for an outage of ``kind``.

    ``bound`` is how long a planned outage is expected to last at most (None for unplanned
    kinds); a planned outage that outlasts it is treated as lost by the host.
    """

    open: bool
    kind: OutageKind | None = None
    reason: str = ""
    bound: timedelta | None = None

    def __post_init__(self) -> None:
        if self.open and self.kind is not None:
            raise ValueError("an open gate has no outage kind")
        if not self.open and self.kind is None:
            raise ValueError("a closed gate names its outage kind")
