"""The host's seams: journal, alerts and metrics reach ``plugins`` through these Protocols.

``plugins`` never imports ``supervisor``; ``supervisor.journal.SqliteJournal`` and
``supervisor.metrics.FleetMetrics`` satisfy these structurally (the static check lives in
``tests/unit/plugins/test_ports_conformance.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from plugins.intents import IntentState

__all__ = [
    "AlertSink",
    "IntentRecord",
    "IntentStore",
    "StrategyMetrics",
]


class IntentRecord(Protocol):
    """One stored intent (``supervisor.journal.OrderIntent`` has these fields)."""

    @property
    def key(self) -> str: ...
    @property
    def strategy(self) -> str: ...
    @property
    def gateway(self) -> str: ...
    @property
    def account(self) -> str: ...
    @property
    def client_id(self) -> int: ...
    @property
    def order_id(self) -> int | None: ...
    @property
    def perm_id(self) -> int | None: ...
    @property
    def contract(self) -> Mapping[str, Any]: ...
    @property
    def order(self) -> Mapping[str, Any]: ...
    @property
    def status(self) -> IntentState: ...
    @property
    def filled(self) -> float: ...
    @property
    def created_at(self) -> datetime: ...


class IntentStore(Protocol):
    """The durable order journal and the strategies' key-value store (intent states are
    :class:`IntentState`, the one enum both layers use)."""

    def record_intent(
        self,
        *,
        key: str,
        strategy: str,
        gateway: str,
        account: str,
        client_id: int,
        contract: Mapping[str, Any],
        order: Mapping[str, Any],
        now: datetime,
        order_id: int | None = None,
    ) -> IntentRecord: ...

    def mark_sent(
        self, key: str, *, now: datetime, order_id: int | None = None
    ) -> IntentRecord: ...

    def update_from_broker(
        self,
        order_ref: str,
        *,
        perm_id: int | None,
        status: IntentState,
        filled: float,
        now: datetime,
    ) -> IntentRecord | None: ...

    def intent(self, key: str) -> IntentRecord | None: ...

    def open_intents(self, strategy: str) -> list[Any]: ...

    def intents_maybe_live(self, strategy: str) -> list[Any]: ...

    def kv_get(self, strategy: str, name: str) -> Any | None: ...

    def kv_items(self, strategy: str) -> dict[str, Any]: ...

    def kv_set(self, strategy: str, name: str, value: Any, *, now: datetime) -> None: ...

    def kv_delete(self, strategy: str, name: str) -> bool: ...

    def append_event(
        self,
        *,
        at: datetime,
        kind: str,
        gateway: str | None = None,
        strategy: str | None = None,
        severity: str = "info",
        message: str = "",
        fields: Mapping[str, Any] | None = None,
    ) -> int: ...


class AlertSink(Protocol):
    """Where the host raises and resolves alerts (the supervisor routes them to humans)."""

    def raise_(self, key: str, severity: str, title: str, body: str) -> None: ...

    def resolve(self, key: str) -> None: ...


class StrategyMetrics(Protocol):
    """The strategy families of ``supervisor.metrics.FleetMetrics``."""

    def set_strategy_state(self, strategy: str, state: Any) -> None: ...

    def order_counted(self, strategy: str, outcome: str) -> None: ...

    def safe_state_ran(self, strategy: str, trigger: str, duration_seconds: float) -> None: ...

    def failed_over(self, strategy: str) -> None: ...
