"""The :class:`Journal` Protocol: what the supervisor and the strategy host need from storage."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from supervisor.journal.records import (
    EventRecord,
    IntentStatus,
    LeaderInfo,
    OperatorState,
    OrderIntent,
)


class Journal(Protocol):
    """What the supervisor and the strategy host need from durable storage.

    Every timestamp is a timezone-aware datetime passed in by the caller (no clock inside).
    """

    def close(self) -> None:
        """Release the file and the lock."""

    # events
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
    ) -> int:
        """Store one event and return its id (ids only grow)."""

    def events(
        self,
        *,
        since_id: int | None = None,
        since: datetime | None = None,
        gateway: str | None = None,
        limit: int = 100,
    ) -> list[EventRecord]:
        """Events after ``since_id`` / at or after ``since``, oldest first, at most ``limit``."""

    # alert book and login ledger
    def save_alert_book(self, record: Mapping[str, Any], *, now: datetime) -> None:
        """Replace the stored ``AlertBook.to_record()``."""

    def load_alert_book(self) -> dict[str, Any] | None:
        """The last saved alert book record, or None on a fresh journal."""

    def save_login_ledger(self, record: Mapping[str, Any], *, now: datetime) -> None:
        """Replace the stored ``budget.ledger_to_record()``."""

    def load_login_ledger(self) -> dict[str, Any] | None:
        """The last saved login ledger record, or None on a fresh journal."""

    def save_record(self, name: str, record: Mapping[str, Any], *, now: datetime) -> None:
        """Replace a named JSON record (e.g. ``gateway:paper-a:status`` for the lifecycle)."""

    def load_record(self, name: str) -> dict[str, Any] | None:
        """A named record saved with :meth:`save_record`, or None."""

    # operator state
    def set_operator_state(
        self,
        gateway: str,
        *,
        stopped_by_operator: bool,
        fatal_acknowledged_at: datetime | None,
        now: datetime,
    ) -> OperatorState:
        """Store what the operator decided for ``gateway``."""

    def operator_states(self) -> dict[str, OperatorState]:
        """All stored operator decisions by gateway name."""

    # order intents
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
    ) -> OrderIntent:
        """Write a new PENDING_SEND intent durably; returns only once it is on disk."""

    def mark_sent(self, key: str, *, now: datetime, order_id: int | None = None) -> OrderIntent:
        """PENDING_SEND -> SENT once ``placeOrder`` has been called."""

    def update_from_broker(
        self,
        order_ref: str,
        *,
        perm_id: int | None,
        status: IntentStatus,
        filled: float,
        now: datetime,
    ) -> OrderIntent | None:
        """Apply what IB reports for ``orderRef``; None when no intent has that key."""

    def intent(self, key: str) -> OrderIntent | None:
        """One intent with its history."""

    def open_intents(self, strategy: str) -> list[OrderIntent]:
        """Intents believed working: PENDING_SEND, SENT or ACKED."""

    def intents_maybe_live(self, strategy: str) -> list[OrderIntent]:
        """Every intent that may be live at IB (open ones and UNKNOWN): never resend blind."""

    # per-strategy key-value store
    def kv_get(self, strategy: str, name: str) -> Any | None:
        """The JSON value stored under ``name``, or None."""

    def kv_items(self, strategy: str) -> dict[str, Any]:
        """Every name and JSON value the strategy stored (the host loads them at once)."""

    def kv_set(self, strategy: str, name: str, value: Any, *, now: datetime) -> None:
        """Store a JSON-compatible value."""

    def kv_delete(self, strategy: str, name: str) -> bool:
        """Remove ``name``; True if it existed."""


class Leadership(Protocol):
    """Which supervisor may act on a journal shared by a leader and its standbys.

    A single-host journal (SQLite, held with a file lock) always leads with epoch 0. A shared
    one (PostgreSQL) leads while it holds the lease; its intent and state writes carry its
    epoch and raise :class:`~supervisor.journal.records.JournalFenced` once a newer one exists.
    """

    @property
    def is_leader(self) -> bool:
        """True while this journal holds the lease (as far as it last heard)."""

    @property
    def epoch(self) -> int | None:
        """The epoch this journal writes with, or None when it has never led."""

    def leader(self) -> LeaderInfo | None:
        """Who leads now (read from the journal), or None when nobody ever has."""
