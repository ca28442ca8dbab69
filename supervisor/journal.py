"""The supervisor's journal: events, alert and login-budget state, operator state, order intents.

One SQLite file in WAL mode behind the :class:`Journal` Protocol, so a PostgreSQL journal can
follow for a supervisor that moves between nodes (the SQL sticks to what both dialects share:
``INSERT ... ON CONFLICT DO UPDATE``, ISO-8601 text timestamps, JSON as text).

Durability: order intents, the alert book, the login ledger and operator state are committed
with ``synchronous=FULL`` (fsync before the call returns: an intent is on disk before the order
is sent). Events use ``synchronous=NORMAL`` by default: in WAL mode a crash may lose the last
few events but never corrupts the file, and the next FULL commit makes them durable too.

Two supervisors must never share a journal: opening takes an exclusive ``flock`` on
``<journal>.lock`` holding the owner's pid; the kernel drops it when the process dies, so a
crash leaves no stale lock behind.

The sync API is for the order path (one short fsync). The event loop uses :class:`AsyncJournal`,
which runs every call on one dedicated thread so a slow disk never stalls the loop.

A sick journal (another process holding the write lock, a full disk, an I/O error) is an
incident, not a freeze: every call waits at most ``wait`` seconds for the connection and for
SQLite's locks and then raises :class:`JournalUnavailable`; a failed write marks the journal
unhealthy (:attr:`SqliteJournal.problem`, listeners told) until a later write succeeds. An
order intent that cannot be written within that bound is therefore never sent. The file and its
companions are created 0600 and checked with ``PRAGMA quick_check`` at open.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import errno
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from plugins.intents import IntentState

__all__ = [
    "SCHEMA_VERSION",
    "AsyncJournal",
    "Durability",
    "EventRecord",
    "IntentChange",
    "IntentStatus",
    "Journal",
    "JournalError",
    "JournalLockedError",
    "JournalUnavailable",
    "Migration",
    "OperatorState",
    "OrderIntent",
    "SqliteJournal",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class JournalError(Exception):
    """The journal cannot be used; the message names the file and what to do."""


class JournalLockedError(JournalError):
    """Another supervisor process holds the journal."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        owner = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"journal {path} is locked by another supervisor ({owner}); "
            "a supervisor must never run twice against one journal"
        )


class JournalUnavailable(JournalError):
    """A journal call did not complete within its bound, or SQLite refused the write.

    The journal is locked by someone else, the disk is full or failing; the message says which
    and never holds the data that was being written.
    """


class Durability(enum.Enum):
    """How hard a commit waits for the disk (SQLite ``PRAGMA synchronous``)."""

    FULL = "FULL"  # fsync on every commit: survives power loss
    NORMAL = "NORMAL"  # WAL fsync at checkpoints: survives a process crash


#: The intent state is the strategy host's (one enum for both layers): the journal stores
#: its values and hands it back.
IntentStatus = IntentState

# Still working at IB, or may be: an intent written before the send may have left the process.
_OPEN = (IntentStatus.PENDING_SEND, IntentStatus.SENT, IntentStatus.ACKED)
_MAYBE_LIVE = (*_OPEN, IntentStatus.UNKNOWN)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One journal event (what ``GET /api/v1/events`` returns)."""

    id: int
    at: datetime
    kind: str
    gateway: str | None
    strategy: str | None
    severity: str
    message: str
    fields: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        """JSON-compatible dict for the HTTP API and the CLI."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "kind": self.kind,
            "gateway": self.gateway,
            "strategy": self.strategy,
            "severity": self.severity,
            "message": self.message,
            "fields": dict(self.fields),
        }


@dataclass(frozen=True, slots=True)
class IntentChange:
    """One step of an intent's history."""

    at: datetime
    status: IntentStatus
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order a strategy meant to place; ``key`` travels to IB as ``orderRef``."""

    key: str
    strategy: str
    gateway: str
    account: str
    client_id: int
    order_id: int | None
    perm_id: int | None
    contract: Mapping[str, Any]
    order: Mapping[str, Any]
    status: IntentStatus
    filled: float
    created_at: datetime
    updated_at: datetime
    history: tuple[IntentChange, ...] = ()


@dataclass(frozen=True, slots=True)
class OperatorState:
    """What a human decided about a gateway; it must survive a supervisor restart."""

    gateway: str
    stopped_by_operator: bool
    fatal_acknowledged_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Migration:
    """Schema step to ``version``: statements run in one transaction."""

    version: int
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        (
            "CREATE TABLE events ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " at TEXT NOT NULL, kind TEXT NOT NULL, gateway TEXT, strategy TEXT,"
            " severity TEXT NOT NULL, message TEXT NOT NULL, fields TEXT NOT NULL)",
            "CREATE INDEX events_at ON events (at)",
            "CREATE INDEX events_gateway ON events (gateway, id)",
            "CREATE TABLE state ("
            " name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL)",
            "CREATE TABLE gateway_operator ("
            " gateway TEXT PRIMARY KEY, stopped_by_operator INTEGER NOT NULL,"
            " fatal_acknowledged_at TEXT, updated_at TEXT NOT NULL)",
            "CREATE TABLE order_intents ("
            " intent_key TEXT PRIMARY KEY, strategy TEXT NOT NULL, gateway TEXT NOT NULL,"
            " account TEXT NOT NULL, client_id INTEGER NOT NULL, order_id INTEGER,"
            " perm_id INTEGER, contract TEXT NOT NULL, order_json TEXT NOT NULL,"
            " status TEXT NOT NULL, filled REAL NOT NULL,"
            " created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
            "CREATE INDEX order_intents_strategy ON order_intents (strategy, status)",
            "CREATE INDEX order_intents_perm ON order_intents (perm_id)",
            "CREATE TABLE order_intent_history ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT, intent_key TEXT NOT NULL,"
            " at TEXT NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL)",
            "CREATE INDEX order_intent_history_key ON order_intent_history (intent_key, id)",
            "CREATE TABLE strategy_kv ("
            " strategy TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,"
            " updated_at TEXT NOT NULL, PRIMARY KEY (strategy, name))",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

_ALERT_BOOK = "alert_book"
_LOGIN_LEDGER = "login_ledger"


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

    def kv_set(self, strategy: str, name: str, value: Any, *, now: datetime) -> None:
        """Store a JSON-compatible value."""

    def kv_delete(self, strategy: str, name: str) -> bool:
        """Remove ``name``; True if it existed."""


def _ts(value: datetime, what: str = "timestamp") -> str:
    # One fixed UTC format so text order is time order in every dialect.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-compatible: {exc}") from None


class SqliteJournal:
    """The journal in one SQLite file (WAL); thread-safe, one connection behind a lock."""

    def __init__(
        self,
        path: Path | str,
        *,
        event_durability: Durability = Durability.NORMAL,
        intent_durability: Durability = Durability.FULL,
        migrations: Sequence[Migration] = MIGRATIONS,
        on_migrate: Callable[[int, int], None] | None = None,
        wait: float = 0.5,
    ) -> None:
        self.path = Path(path)
        self.wait = wait
        self._event_sync = event_durability
        self._intent_sync = intent_durability
        self._lock = threading.Lock()
        self._sync: Durability | None = None
        self._busy_ms: int | None = None
        self._problem: str | None = None
        self._listeners: list[Callable[[str | None], None]] = []
        self._lock_fd = self._take_lock()
        try:
            self._db = self._connect()
            self._check_integrity()
            self._migrate(migrations, on_migrate)
        except BaseException:
            self._release_lock()
            raise
        log.info(
            "journal_opened path=%s schema=%d events=%s intents=%s",
            self.path,
            self._schema_version(),
            event_durability.value,
            intent_durability.value,
        )

    # -- opening ---------------------------------------------------------------------------

    def _take_lock(self) -> int:
        if not self.path.parent.is_dir():
            raise JournalError(f"journal {self.path}: directory {self.path.parent} does not exist")
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise JournalError(
                f"journal {self.path}: cannot create lock file {lock_path}: {exc.strerror}; "
                "check that the directory exists and is writable"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder: int | None = None
            with contextlib.suppress(OSError, ValueError):
                holder = int(os.pread(fd, 32, 0).decode().strip() or "x")
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise JournalLockedError(self.path, holder) from None
            raise JournalError(f"journal {self.path}: cannot lock {lock_path}: {exc}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    def _create_private(self) -> None:
        # SQLite gives the -wal and -shm files the database file's mode, so 0600 here covers
        # all three; an existing file readable by others is tightened.
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                mode = os.fstat(fd).st_mode & 0o777
                if mode & 0o077:
                    os.fchmod(fd, 0o600)
                    log.warning(
                        "journal_permissions_tightened path=%s was=%o now=600", self.path, mode
                    )
            finally:
                os.close(fd)
        except OSError as exc:
            raise JournalError(f"journal {self.path}: cannot create: {exc.strerror}") from None

    def _check_integrity(self) -> None:
        try:
            rows = self._db.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            rows = [(str(exc),)]
        found = [str(r[0]) for r in rows]
        if found != ["ok"]:
            self._db.close()
            raise JournalError(
                f"journal {self.path} is damaged ({'; '.join(found[:3])}); move it aside to "
                "start a fresh journal, or restore a backup (open orders are then reconciled "
                "from IB)"
            )

    def _connect(self) -> sqlite3.Connection:
        self._create_private()
        try:
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=5.0
            )
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: cannot open: {exc}") from None
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            db.close()
            raise JournalError(
                f"journal {self.path}: not a usable SQLite database ({exc}); "
                "move the file aside to start a fresh journal, or restore a backup"
            ) from None
        if str(mode).lower() != "wal":
            db.close()
            raise JournalError(f"journal {self.path}: WAL mode refused (got {mode!r})")
        return db

    def _schema_version(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(
        self, migrations: Sequence[Migration], on_migrate: Callable[[int, int], None] | None
    ) -> None:
        try:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            current = self._schema_version()
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"journal {self.path}: cannot read the schema: {exc}") from None
        known = max((m.version for m in migrations), default=0)
        if current > known:
            raise JournalError(
                f"journal {self.path}: schema version {current} is newer than this ibfleet "
                f"supports ({known}); upgrade ibfleet"
            )
        for migration in sorted(migrations, key=lambda m: m.version):
            if migration.version <= current:
                continue
            self._set_sync(Durability.FULL)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for statement in migration.statements:
                    self._db.execute(statement)
                self._db.execute(
                    "INSERT INTO meta (name, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (str(migration.version),),
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise JournalError(
                    f"journal {self.path}: migration to schema {migration.version} failed: {exc}"
                ) from None
            log.info(
                "journal_migrated path=%s from=%d to=%d", self.path, current, migration.version
            )
            if on_migrate is not None:
                on_migrate(current, migration.version)
            current = migration.version
        try:
            # A write at open: an unwritable file fails here, not at the first event.
            self._db.execute(
                "INSERT INTO meta (name, value) VALUES ('opened_by_pid', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (str(os.getpid()),),
            )
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: not writable: {exc}") from None

    # -- plumbing --------------------------------------------------------------------------

    @property
    def problem(self) -> str | None:
        """Why the last write failed, or None while writes succeed."""
        return self._problem

    def add_listener(self, listener: Callable[[str | None], None]) -> None:
        """Call ``listener(problem)`` when writes start failing (a reason) or recover (None).

        Called on whichever thread made the write, outside the journal's lock.
        """
        self._listeners.append(listener)

    def _health(self, problem: str | None) -> None:
        was, self._problem = self._problem, problem
        if (was is None) == (problem is None):
            return
        if problem is None:
            log.warning("journal_recovered path=%s", self.path)
        else:
            log.error("journal_unwritable path=%s reason=%s", self.path, problem)
        for listener in list(self._listeners):
            try:
                listener(problem)
            except Exception:
                log.exception("journal_listener_failed")

    @contextlib.contextmanager
    def _held(self) -> Iterator[float]:
        """The connection's lock within ``wait``; yields the time left for SQLite's own locks."""
        started = time.monotonic()
        if not self._lock.acquire(timeout=self.wait):
            raise JournalUnavailable(
                f"journal {self.path}: busy for more than {self.wait:g}s (a slow or stuck disk)"
            )
        try:
            if self._lock_fd < 0:
                raise JournalError(f"journal {self.path} is closed")
            left = max(0.001, self.wait - (time.monotonic() - started))
            busy_ms = max(1, int(left * 1000))
            if busy_ms != self._busy_ms:
                self._db.execute(f"PRAGMA busy_timeout={busy_ms}")
                self._busy_ms = busy_ms
            yield left
        finally:
            self._lock.release()

    def _unavailable(self, exc: sqlite3.Error) -> JournalUnavailable:
        text = str(exc)
        if "locked" in text or "busy" in text:
            reason = f"locked by another process for more than {self.wait:g}s"
        elif "full" in text:
            reason = "the disk is full"
        else:
            reason = f"SQLite refused the write ({text})"
        return JournalUnavailable(f"journal {self.path}: {reason}")

    def _set_sync(self, durability: Durability) -> None:
        # Per-connection and cheap; switched between transactions only.
        if self._sync is not durability:
            self._db.execute(f"PRAGMA synchronous={durability.value}")
            self._sync = durability

    @contextlib.contextmanager
    def _write(self, durability: Durability) -> Iterator[sqlite3.Connection]:
        failure: JournalUnavailable | None = None
        try:
            with self._held():
                try:
                    self._set_sync(durability)
                    self._db.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    failure = self._unavailable(exc)
                    raise failure from None
                try:
                    yield self._db
                except sqlite3.IntegrityError:
                    self._rollback()
                    raise
                except sqlite3.Error as exc:
                    self._rollback()
                    failure = self._unavailable(exc)
                    raise failure from None
                except BaseException:
                    self._rollback()
                    raise
                try:
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._rollback()
                    failure = self._unavailable(exc)
                    raise failure from None
        except JournalUnavailable as exc:
            self._health(str(exc).split(": ", 1)[-1])
            raise
        self._health(None)

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._held():
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise self._unavailable(exc) from None

    @property
    def journal_mode(self) -> str:
        """SQLite's journal mode (``wal``), for health checks and tests."""
        return str(self._read("PRAGMA journal_mode")[0][0])

    @property
    def schema_version(self) -> int:
        """The schema version on disk."""
        with self._lock:
            return self._schema_version()

    def close(self) -> None:
        """Checkpoint, close the file and release the lock; idempotent."""
        with self._lock:
            if self._lock_fd < 0:
                return
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._release_lock()
        log.info("journal_closed path=%s", self.path)

    def __enter__(self) -> SqliteJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
            cur = db.execute(
                "INSERT INTO events (at, kind, gateway, strategy, severity, message, fields) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return int(cur.lastrowid or 0)

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
            raise JournalError(f"journal {self.path}: stored {name} is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise JournalError(f"journal {self.path}: stored {name} is not a JSON object")
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
                db.execute(
                    "INSERT INTO order_intents (intent_key, strategy, gateway, account,"
                    " client_id, order_id, perm_id, contract, order_json, status, filled,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, 0, ?, ?)",
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
                    ),
                )
                db.execute(
                    "INSERT INTO order_intent_history (intent_key, at, status, detail)"
                    " VALUES (?, ?, ?, ?)",
                    (key, at, status, _json({"order_id": order_id}, "history")),
                )
        except sqlite3.IntegrityError:
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
            current = self._intent_unlocked(db, key)
            if current is None:
                return None
            changes = apply(current)
            if changes is None:
                return current
            db.execute(
                "UPDATE order_intents SET status = ?, order_id = ?, perm_id = ?, filled = ?,"
                " updated_at = ? WHERE intent_key = ?",
                (
                    changes["status"].value,
                    changes["order_id"],
                    changes["perm_id"],
                    changes["filled"],
                    at,
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
            raise KeyError(f"no order intent {key!r} in journal {self.path}")
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

    def _intent_unlocked(self, db: sqlite3.Connection, key: str) -> OrderIntent | None:
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
        with self._held():
            try:
                return self._intent_unlocked(self._db, key)
            except sqlite3.OperationalError as exc:
                raise self._unavailable(exc) from None

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

    def kv_set(self, strategy: str, name: str, value: Any, *, now: datetime) -> None:
        """Store a JSON-compatible value."""
        text = _json(value, f"strategy {strategy} value {name!r}")
        with self._write(self._intent_sync) as db:
            db.execute(
                "INSERT INTO strategy_kv (strategy, name, value, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (strategy, name) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (strategy, name, text, _ts(now)),
            )

    def kv_delete(self, strategy: str, name: str) -> bool:
        """Remove ``name``; True if it existed."""
        with self._write(self._intent_sync) as db:
            cur = db.execute(
                "DELETE FROM strategy_kv WHERE strategy = ? AND name = ?", (strategy, name)
            )
            return cur.rowcount > 0


class AsyncJournal:
    """Runs a :class:`Journal`'s blocking calls on one dedicated thread, in call order.

    One thread keeps writes in submission order (the last saved alert book wins) and leaves
    the loop's default executor to others. Reads and operator-state writes are awaited within
    ``wait`` and raise :class:`JournalUnavailable` past it. Events, the alert book, the login
    ledger and saved records are best effort: a failure is logged and reported through the
    journal's health, never raised into the caller, and while the journal is unhealthy they are
    queued without being awaited (at most ``max_backlog``; more are dropped and counted).
    """

    def __init__(self, journal: Journal, *, wait: float = 5.0, max_backlog: int = 10_000) -> None:
        self.journal = journal
        self.wait = wait
        self.max_backlog = max_backlog
        self.dropped = 0
        self._backlog = 0
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="ibfleet-journal"
        )

    @property
    def problem(self) -> str | None:
        """Why the journal cannot be written, or None (see :attr:`SqliteJournal.problem`)."""
        return getattr(self.journal, "problem", None)

    def add_listener(self, listener: Callable[[str | None], None]) -> None:
        """See :meth:`SqliteJournal.add_listener` (a journal without health never calls it)."""
        add = getattr(self.journal, "add_listener", None)
        if add is not None:
            add(listener)

    async def run(self, call: Callable[[], T]) -> T:
        """Run ``call`` on the journal thread and await its result, at most ``wait`` seconds."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, call)
        try:
            return await asyncio.wait_for(future, self.wait)
        except TimeoutError:
            raise JournalUnavailable(
                f"journal: no answer within {self.wait:g}s (locked, or a stuck disk)"
            ) from None

    async def _best_effort(self, what: str, call: Callable[[], T]) -> T | None:
        if self._backlog >= self.max_backlog:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("journal_backlog_full what=%s dropped=%d", what, self.dropped)
            return None
        self._backlog += 1
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, call)

        def done(f: asyncio.Future[T]) -> None:
            self._backlog -= 1
            if not f.cancelled() and f.exception() is not None:
                log.error("journal_write_failed what=%s error=%s", what, f.exception())

        future.add_done_callback(done)
        if self.problem is not None:
            return None  # queued behind the failing writes; the caller goes on at once
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.wait)
        except (TimeoutError, Exception):
            return None

    async def append_event(
        self,
        *,
        at: datetime,
        kind: str,
        gateway: str | None = None,
        strategy: str | None = None,
        severity: str = "info",
        message: str = "",
        fields: Mapping[str, Any] | None = None,
    ) -> int | None:
        """See :meth:`Journal.append_event`; None when it was not written (yet)."""
        return await self._best_effort(
            "event",
            lambda: self.journal.append_event(
                at=at,
                kind=kind,
                gateway=gateway,
                strategy=strategy,
                severity=severity,
                message=message,
                fields=fields,
            ),
        )

    async def events(
        self,
        *,
        since_id: int | None = None,
        since: datetime | None = None,
        gateway: str | None = None,
        limit: int = 100,
    ) -> list[EventRecord]:
        """See :meth:`Journal.events`."""
        return await self.run(
            lambda: self.journal.events(
                since_id=since_id, since=since, gateway=gateway, limit=limit
            )
        )

    async def save_alert_book(self, record: Mapping[str, Any], *, now: datetime) -> None:
        """See :meth:`Journal.save_alert_book`."""
        await self._best_effort("alert_book", lambda: self.journal.save_alert_book(record, now=now))

    async def load_alert_book(self) -> dict[str, Any] | None:
        """See :meth:`Journal.load_alert_book`."""
        return await self.run(self.journal.load_alert_book)

    async def save_login_ledger(self, record: Mapping[str, Any], *, now: datetime) -> None:
        """See :meth:`Journal.save_login_ledger`."""
        await self._best_effort(
            "login_ledger", lambda: self.journal.save_login_ledger(record, now=now)
        )

    async def load_login_ledger(self) -> dict[str, Any] | None:
        """See :meth:`Journal.load_login_ledger`."""
        return await self.run(self.journal.load_login_ledger)

    async def save_record(self, name: str, record: Mapping[str, Any], *, now: datetime) -> None:
        """See :meth:`Journal.save_record`."""
        await self._best_effort("record", lambda: self.journal.save_record(name, record, now=now))

    async def load_record(self, name: str) -> dict[str, Any] | None:
        """See :meth:`Journal.load_record`."""
        return await self.run(lambda: self.journal.load_record(name))

    async def set_operator_state(
        self,
        gateway: str,
        *,
        stopped_by_operator: bool,
        fatal_acknowledged_at: datetime | None,
        now: datetime,
    ) -> OperatorState:
        """See :meth:`Journal.set_operator_state`."""
        return await self.run(
            lambda: self.journal.set_operator_state(
                gateway,
                stopped_by_operator=stopped_by_operator,
                fatal_acknowledged_at=fatal_acknowledged_at,
                now=now,
            )
        )

    async def operator_states(self) -> dict[str, OperatorState]:
        """See :meth:`Journal.operator_states`."""
        return await self.run(self.journal.operator_states)

    async def aclose(self) -> None:
        """Finish queued calls, then close the journal."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.journal.close)
        self._executor.shutdown(wait=True)


def _conforms(journal: SqliteJournal) -> Journal:
    # mypy checks here that SqliteJournal satisfies the Journal Protocol.
    return journal
