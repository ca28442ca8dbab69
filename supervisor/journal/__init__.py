"""The supervisor's journal: events, alert and login-budget state, operator state, order intents.

Behind the :class:`Journal` Protocol, one schema and one set of operations
(:mod:`~supervisor.journal.tables`, in the SQL both dialects share: ``?`` parameters,
``INSERT ... ON CONFLICT DO UPDATE``, ``RETURNING``, ISO-8601 text timestamps, JSON as text)
on two engines: one SQLite file in WAL mode (:class:`SqliteJournal`, one host), or a
PostgreSQL database (:class:`PostgresJournal`, see :mod:`~supervisor.journal.postgres`) shared
by a leader and its standbys through a fenced lease (:mod:`~supervisor.journal.lease`).
:func:`open_journal` picks the engine from ``storage``. What follows describes SQLite; the
PostgreSQL module names its equivalents.

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

from supervisor.journal.async_journal import AsyncJournal
from supervisor.journal.port import Journal, Leadership
from supervisor.journal.records import (
    Durability,
    EventRecord,
    IntentChange,
    IntentStatus,
    JournalError,
    JournalFenced,
    JournalLockedError,
    JournalUnavailable,
    LeaderInfo,
    OperatorState,
    OrderIntent,
)
from supervisor.journal.schema import MIGRATIONS, SCHEMA_VERSION, Migration
from supervisor.journal.sqlite import SqliteJournal

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AsyncJournal",
    "Durability",
    "EventRecord",
    "IntentChange",
    "IntentStatus",
    "Journal",
    "JournalError",
    "JournalFenced",
    "JournalLockedError",
    "JournalUnavailable",
    "LeaderInfo",
    "Leadership",
    "Migration",
    "OperatorState",
    "OrderIntent",
    "SqliteJournal",
]
