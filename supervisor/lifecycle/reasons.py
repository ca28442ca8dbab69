"""Why a session is degraded: the reason strings the machine keeps and the gate reads."""

from __future__ import annotations

__all__ = [
    "ALWAYS_PAGED_REASONS",
    "DISCONNECTED",
    "FARM_PREFIX",
    "LINK_LOST",
    "OVERDUE",
    "PERMISSION_PREFIX",
    "SLOW",
    "STALL",
    "STALL_REASONS",
]

LINK_LOST = "ib link lost (1100)"
STALL = "api stalled: heartbeat deadline exceeded"
OVERDUE = "no heartbeat answer within the deadline"
DISCONNECTED = "api disconnected"
SLOW = "slow heartbeat"
FARM_PREFIX = "farm broken: "
PERMISSION_PREFIX = "permissions: "
# The API itself is not answering (as opposed to IB's link or a farm behind it).
STALL_REASONS = frozenset({STALL, OVERDUE, DISCONNECTED})
# Degradations that an IB reset window does not explain: they page even inside a window.
ALWAYS_PAGED_REASONS = (PERMISSION_PREFIX,)
