"""What the host reports about a strategy: its state, its counts, its safe-state runs."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from plugins.config import SafeStateAction

__all__ = [
    "SafeStatePath",
    "SafeStateRun",
    "SafeStateTrigger",
    "StrategyState",
    "StrategyStatus",
]


class StrategyState(enum.Enum):
    """Where a strategy is (the metrics one-hot over these names)."""

    LOADED = "loaded"  # created, not yet connected and reconciled
    RUNNING = "running"  # reconciled, hooks run, orders allowed
    HALTED = "halted"  # an operator paused it (kill also ends here); resume restarts it
    SAFE_STATE = "safe_state"  # safe state running, or done and waiting for a gateway
    FAILING_OVER = "failing_over"  # moving to the next gateway, reconciling there
    STOPPED = "stopped"  # host shut down
    CRASHED = "crashed"  # a hook raised; safe state ran; resume restarts a fresh instance


class SafeStateTrigger(enum.Enum):
    """Why safe state ran."""

    GATEWAY_LOST = "gateway_lost"
    CRASH = "crash"
    KILL = "kill"
    SHUTDOWN = "shutdown"


class SafeStatePath(enum.Enum):
    """Which path safe state took."""

    SAME_GATEWAY = "same_gateway"
    FAILOVER_GATEWAY = "failover_gateway"
    ALERT_ONLY = "alert_only"  # no session could act: humans were told what may be live
    NOTHING = "nothing"  # hold policy, or nothing was open


@dataclass(frozen=True, slots=True)
class SafeStateRun:
    """The record of one safe-state run (also written to the journal as an event)."""

    strategy: str
    trigger: SafeStateTrigger
    action: SafeStateAction
    path: SafeStatePath
    gateway: str | None
    started_at: datetime
    duration_seconds: float
    cancelled: tuple[str, ...]
    closing_orders: tuple[str, ...]
    still_live: tuple[str, ...]
    ok: bool


@dataclass(frozen=True, slots=True)
class StrategyStatus:
    """What ``ibfleet strategies`` and ``GET /api/v1/strategies`` show."""

    name: str
    plugin: str
    state: StrategyState
    gateway: str | None
    client_id: int | None
    open_orders: int
    orders_sent: int
    orders_refused: int
    fills: int
    safe_state_runs: int
    failovers: int
    unknown_intents: int
    last_error: str | None

    def to_json(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return {
            "name": self.name,
            "plugin": self.plugin,
            "state": self.state.name,
            "gateway": self.gateway,
            "client_id": self.client_id,
            "open_orders": self.open_orders,
            "orders_sent": self.orders_sent,
            "orders_refused": self.orders_refused,
            "fills": self.fills,
            "safe_state_runs": self.safe_state_runs,
            "failovers": self.failovers,
            "unknown_intents": self.unknown_intents,
            "last_error": self.last_error,
        }
