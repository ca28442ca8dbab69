"""The journal's operations on its tables, written once in the SQL SQLite and PostgreSQL share.

``?`` placeholders, ``INSERT ... ON CONFLICT DO UPDATE``, ``RETURNING``, ISO-8601 text
timestamps and JSON as text; each engine's plumbing (:mod:`supervisor.journal.sqlite_file`,
:mod:`supervisor.journal.postgres`) runs them and maps its errors to the journal's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from supervisor.journal.records import (
    Durability,
    EventRecord,
    IntentChange,
    IntentStatus,
    JournalError,
    OperatorState,
    OrderIntent,
    _dt,
    _json,
    _ts,
)

# Still working at IB, or may be: an intent written before the send may have left the process.
_OPEN = (IntentStatus.PENDING_SEND, IntentStatus.SENT, IntentStatus.ACKED)
_MAYBE_LIVE = (*_OPEN, IntentStatus.UNKNOWN)

_ALERT_BOOK = "alert_book"
_LOGIN_LEDGER = "login_ledger"


class Executor(Protocol):
    """What the table operations need of a connection: ``execute`` with ``?`` parameters."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any: ...


class JournalTables:
    """The journal's operations on its tables, over the plumbing of one SQL engine.

    A subclass (:class:`SqliteJournal`, :class:`PostgresJournal`) provides ``_write`` (one
    bounded write transaction yielding an :class:`Executor`, health reported), ``_reading``
    (a bounded read), ``_read``, ``_fence`` (the leader check inside a write transaction;
    returns the epoch to stamp on an intent), ``_duplicate`` (the engine's unique-key errors)
    and ``where`` (the journal's name in messages: a path or a URL without password).
    """

    where: str
    _event_sync: Durability
    _intent_sync: Durability
    _duplicate: tuple[type[Exception], ...]

    def _write(self, durability: Durability) -> AbstractContextManager[Executor]:
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[Executor]:
        raise NotImplementedError

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _fence(self, db: Executor) -> int:
        raise NotImplementedError

    # -- events ----------------------------------------------------------------------------

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
        row = (
            _ts(at, "event time"),
            kind,
            gateway,
            strategy,
            severity,
            message,
            _json(dict(fields or {}), f"event {kind} fields"),
        )
        with self._write(self._event_sync) as db:
            # RETURNING is shared by both dialects (SQLite since 3.35).
            cur = db.execute(
                "INSERT INTO events (at, kind, gateway, strategy, severity, message, fields) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                row,
            )
            return int(cur.fetchone()[0])

    def events(
        self,
        *,
        since_id: int | None = None,
        since: datetime | None = None,
        gateway: str | None = None,
        limit: int = 100,
    ) -> list[EventRecord]:
        """Events after ``since_id`` / at or after ``since``, oldest first, at most ``limit``."""
        if limit < 1:
            raise ValueError(f"events limit must be >= 1, got {limit}")
        where: list[str] = []
        params: list[Any] = []
        if since_id is not None:
            where.append("id > ?")
            params.append(since_id)
        if since is not None:
            where.append("at >= ?")
            params.append(_ts(since, "events since"))
        if gateway is not None:
            where.append("gateway = ?")
            params.append(gateway)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(
            # The clause holds only constant fragments; values are bound parameters.
            "SELECT id, at, kind, gateway, strategy, severity, message, fields FROM events"  # noqa: S608
            f"{clause} ORDER BY id LIMIT ?",
            (*params, limit),
        )
        return [
            EventRecord(
                id=r[0],
                at=_dt(r[1]),
                kind=r[2],
                gateway=r[3],
                strategy=r[4],
                severity=r[5],
                message=r[6],
                fields=json.loads(r[7]),
            )
            for r in rows
        ]

    # -- alert book, login ledger ----------------------------------------------------------

    def _save_state(self, name: str, record: Mapping[str, Any], now: datetime) -> None:
        value = _json(dict(record), name)
        with self._write(self._intent_sync) as db:
            self._fence(db)
            db.execute(
                "INSERT INTO state (name, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (name, value, _ts(now)),
            )

    def _load_state(self, name: str) -> dict[str, Any] | None:
        rows = self._read("SELECT value FROM state WHERE name = ?", (name,))
        if not rows:
            return None
        try:
            value = json.loads(rows[0][0])
        except json.JSONDecodeError as exc:
            raise JournalError(f"journal {self.where}: stored {name} is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise JournalError(f"journal {self.where}: stored {name} is not a JSON object")
        return value

    def save_alert_book(self, record: Mapping[str, Any], *, now: datetime) -> None:
        """Replace the stored ``AlertBook.to_record()``."""
        self._save_state(_ALERT_BOOK, record, now)

    def load_alert_book(self) -> dict[str, Any] | None:
        """The last saved alert book record, or None on a fresh journal."""
        return self._load_state(_ALERT_BOOK)

    def save_login_ledger(self, record: Mapping[str, Any], *, now: datetime) -> None:
        """Replace the stored ``budget.ledger_to_record()``."""
        self._save_state(_LOGIN_LEDGER, record, now)

    def load_login_ledger(self) -> dict[str, Any] | None:
        """The last saved login ledger record, or None on a fresh journal."""
        return self._load_state(_LOGIN_LEDGER)

    def save_record(self, name: str, record: Mapping[str, Any], *, now: datetime) -> None:
        """Replace a named JSON record (e.g. ``gateway:paper-a:status`` for the lifecycle)."""
        # Prefixed so a record can never overwrite the alert book or the login ledger.
        self._save_state(f"record:{name}", record, now)

    def load_record(self, name: str) -> dict[str, Any] | None:
        """A named record saved with :meth:`save_record`, or None."""
        return self._load_state(f"record:{name}")

    # -- operator state --------------------------------------------------------------------

    def set_operator_state(
        self,
        gateway: str,
        *,
        stopped_by_operator: bool,
        fatal_acknowledged_at: datetime | None,
        now: datetime,
    ) -> OperatorState:
        """Store what the operator decided for ``gateway``."""
        ack = None if fatal_acknowledged_at is None else _ts(fatal_acknowledged_at)
        with self._write(self._intent_sync) as db:
            self._fence(db)
            db.execute(
                "INSERT INTO gateway_operator"
                " (gateway, stopped_by_operator, fatal_acknowledged_at, updated_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (gateway) DO UPDATE SET"
                " stopped_by_operator = excluded.stopped_by_operator,"
                " fatal_acknowledged_at = excluded.fatal_acknowledged_at,"
                " updated_at = excluded.updated_at",
                (gateway, int(stopped_by_operator), ack, _ts(now)),
            )
        return OperatorState(
            gateway=gateway,
            stopped_by_operator=stopped_by_operator,
            fatal_acknowledged_at=None if ack is None else _dt(ack),
            updated_at=_dt(_ts(now)),
        )

    def operator_states(self) -> dict[str, OperatorState]:
        """All stored operator decisions by gateway name."""
        rows = self._read(
            "SELECT gateway, stopped_by_operator, fatal_acknowledged_at, updated_at"
            " FROM gateway_operator ORDER BY gateway"
        )
        return {
            r[0]: OperatorState(
                gateway=r[0],
                stopped_by_operator=bool(r[1]),
                fatal_acknowledged_at=None if r[2] is None else _dt(r[2]),
                updated_at=_dt(r[3]),
            )
            for r in rows
        }

    # -- order intents ---------------------------------------------------------------------

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
        if not key:
            raise ValueError("order intent key must not be empty")
        at = _ts(now, "intent time")
        contract_json = _json(dict(contract), f"intent {key} contract")
        order_json = _json(dict(order), f"intent {key} order")
        status = IntentStatus.PENDING_SEND.value
        try:
            with self._write(self._intent_sync) as db:
                # A stale leader is refused here, inside the transaction: nothing is written
                # and the order is never sent.
                epoch = self._fence(db)
                db.execute(
                    "INSERT INTO order_intents (intent_key, strategy, gateway, account,"
                    " client_id, order_id, perm_id, contract, order_json, status, filled,"
                    " created_at, updated_at, epoch)"
                    " VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, 0, ?, ?, ?)",
                    (
                        key,
                        strategy,
                        gateway,
                        account,
                        client_id,
                        order_id,
                        contract_json,
                        order_json,
                        status,
                        at,
                        at,
                        epoch,
                    ),
                )
                db.execute(
                    "INSERT INTO order_intent_history (intent_key, at, status, detail)"
                    " VALUES (?, ?, ?, ?)",
                    (key, at, status, _json({"order_id": order_id}, "history")),
                )
        except self._duplicate:
            raise ValueError(
                f"order intent {key!r} already exists; intent keys are unique"
            ) from None
        found = self.intent(key)
        assert found is not None  # written in the transaction above
        return found

    def _transition(
        self, key: str, now: datetime, apply: Callable[[OrderIntent], dict[str, Any] | None]
    ) -> OrderIntent | None:
        # Read-modify-write under one write transaction so two updates never interleave.
        at = _ts(now, "intent time")
        with self._write(self._intent_sync) as db:
            epoch = self._fence(db)
            current = self._intent_unlocked(db, key)
            if current is None:
                return None
            changes = apply(current)
            if changes is None:
                return current
            db.execute(
                "UPDATE order_intents SET status = ?, order_id = ?, perm_id = ?, filled = ?,"
                " updated_at = ?, epoch = ? WHERE intent_key = ?",
                (
                    changes["status"].value,
                    changes["order_id"],
                    changes["perm_id"],
                    changes["filled"],
                    at,
                    epoch,
                    key,
                ),
            )
            detail = {k: changes[k] for k in ("order_id", "perm_id", "filled")}
            db.execute(
                "INSERT INTO order_intent_history (intent_key, at, status, detail)"
                " VALUES (?, ?, ?, ?)",
                (key, at, changes["status"].value, _json(detail, "history")),
            )
            return self._intent_unlocked(db, key)

    def mark_sent(self, key: str, *, now: datetime, order_id: int | None = None) -> OrderIntent:
        """PENDING_SEND -> SENT once ``placeOrder`` has been called."""

        def apply(current: OrderIntent) -> dict[str, Any] | None:
            if current.status is not IntentStatus.PENDING_SEND:
                # A broker report may already have moved it on; never move it back.
                return None
            return {
                "status": IntentStatus.SENT,
                "order_id": order_id if order_id is not None else current.order_id,
                "perm_id": current.perm_id,
                "filled": current.filled,
            }

        found = self._transition(key, now, apply)
        if found is None:
            raise KeyError(f"no order intent {key!r} in journal {self.where}")
        return found

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

        def apply(current: OrderIntent) -> dict[str, Any] | None:
            new_status = status
            if current.status.terminal and not status.terminal:
                # Late or replayed reports (a reconnect resends open orders) never revive it.
                new_status = current.status
            new_perm = perm_id if perm_id is not None else current.perm_id
            new_filled = max(filled, current.filled)
            if (new_status, new_perm, new_filled) == (
                current.status,
                current.perm_id,
                current.filled,
            ):
                return None
            return {
                "status": new_status,
                "order_id": current.order_id,
                "perm_id": new_perm,
                "filled": new_filled,
            }

        return self._transition(order_ref, now, apply)

    def _intent_unlocked(self, db: Executor, key: str) -> OrderIntent | None:
        row = db.execute(
            "SELECT intent_key, strategy, gateway, account, client_id, order_id, perm_id,"
            " contract, order_json, status, filled, created_at, updated_at"
            " FROM order_intents WHERE intent_key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        history = db.execute(
            "SELECT at, status, detail FROM order_intent_history WHERE intent_key = ? ORDER BY id",
            (key,),
        ).fetchall()
        return self._intent_from_row(row, history)

    @staticmethod
    def _intent_from_row(row: Sequence[Any], history: Sequence[Sequence[Any]] = ()) -> OrderIntent:
        return OrderIntent(
            key=row[0],
            strategy=row[1],
            gateway=row[2],
            account=row[3],
            client_id=row[4],
            order_id=row[5],
            perm_id=row[6],
            contract=json.loads(row[7]),
            order=json.loads(row[8]),
            status=IntentStatus(row[9]),
            filled=float(row[10]),
            created_at=_dt(row[11]),
            updated_at=_dt(row[12]),
            history=tuple(
                IntentChange(at=_dt(h[0]), status=IntentStatus(h[1]), detail=json.loads(h[2]))
                for h in history
            ),
        )

    def intent(self, key: str) -> OrderIntent | None:
        """One intent with its history."""
        with self._reading() as db:
            return self._intent_unlocked(db, key)

    def _intents(self, strategy: str, statuses: Sequence[IntentStatus]) -> list[OrderIntent]:
        marks = ", ".join("?" for _ in statuses)
        rows = self._read(
            "SELECT intent_key, strategy, gateway, account, client_id, order_id, perm_id,"  # noqa: S608
            " contract, order_json, status, filled, created_at, updated_at"
            f" FROM order_intents WHERE strategy = ? AND status IN ({marks})"
            " ORDER BY created_at, intent_key",
            (strategy, *(s.value for s in statuses)),
        )
        return [self._intent_from_row(r) for r in rows]

    def open_intents(self, strategy: str) -> list[OrderIntent]:
        """Intents believed working: PENDING_SEND, SENT or ACKED (history not loaded)."""
        return self._intents(strategy, _OPEN)

    def intents_maybe_live(self, strategy: str) -> list[OrderIntent]:
        """Every intent that may be live at IB (open ones and UNKNOWN): never resend blind."""
        return self._intents(strategy, _MAYBE_LIVE)

    # -- per-strategy key-value store ------------------------------------------------------

    def kv_get(self, strategy: str, name: str) -> Any | None:
        """The JSON value stored under ``name``, or None."""
        rows = self._read(
            "SELECT value FROM strategy_kv WHERE strategy = ? AND name = ?", (strategy, name)
        )
        return json.loads(rows[0][0]) if rows else None

    def kv_items(self, strategy: str) -> dict[str, Any]:
        """Every name and JSON value the strategy stored (the host loads them at once)."""
        rows = self._read("SELECT name, value FROM strategy_kv WHERE strategy = ?", (strategy,))
        return {str(name): json.loads(value) for name, value in rows}

    def kv_set(self, strategy: str, name: str, value: Any, *, now: datetime) -> None:
        """Store a JSON-compatible value."""
        text = _json(value, f"strategy {strategy} value {name!r}")
        with self._write(self._intent_sync) as db:
            self._fence(db)
            db.execute(
                "INSERT INTO strategy_kv (strategy, name, value, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (strategy, name) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (strategy, name, text, _ts(now)),
            )

    def kv_delete(self, strategy: str, name: str) -> bool:
        """Remove ``name``; True if it existed."""
        with self._write(self._intent_sync) as db:
            self._fence(db)
            cur = db.execute(
                "DELETE FROM strategy_kv WHERE strategy = ? AND name = ?", (strategy, name)
            )
            return bool(cur.rowcount > 0)
