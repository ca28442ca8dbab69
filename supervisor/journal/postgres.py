"""The journal on a PostgreSQL server (psycopg 3), for supervisors on more than one host.

The same tables, migrations and operations as the SQLite journal (:class:`JournalTables`, the
one schema in :mod:`supervisor.journal.schema`); what differs is named here:

- Durability: the session runs with ``synchronous_commit = on``, so an order intent (and the
  alert book, the login ledger, operator state, the lease) is in the server's WAL on disk, and
  on a synchronous standby when the server has one, before the call returns. Events commit with
  ``SET LOCAL synchronous_commit = off`` (the SQLite journal's ``NORMAL``): a server crash may
  lose the last few events, never corrupt the journal.
- The bound: ``statement_timeout`` and ``lock_timeout`` are ``wait`` (``storage.write_wait``),
  ``connect_timeout`` is ``wait`` rounded up to libpq's whole seconds (its minimum is 2 s), and
  ``tcp_user_timeout`` drops a connection whose packets go unanswered. A call that cannot get a
  connection, a lock or an answer within the bound raises :class:`JournalUnavailable`, and a
  failed write marks the journal unhealthy (``problem``, listeners told) until a write succeeds.
  A lost connection is dropped and the next call connects again, so a server that comes back
  is used again without a restart.
- One connection behind a lock, as the SQLite journal has: the supervisor writes from one
  journal thread and the order path, so a pool would add connections and no throughput.
- Two supervisors may share the journal: the leader lease (:mod:`supervisor.journal.lease`)
  says which one acts, and every intent or state write checks it in its own transaction.
- The password never appears in the URL ibfleet prints (:func:`safe_url`): it comes from
  ``password`` (``storage.password``), or from libpq's ``PGPASSWORD`` / ``PGPASSFILE``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import psycopg.errors

from supervisor.journal.health import JournalHealth
from supervisor.journal.lease import LeaderLease
from supervisor.journal.port import Journal, Leadership
from supervisor.journal.records import Durability, JournalError, JournalUnavailable
from supervisor.journal.schema import META_TABLE, MIGRATIONS, POSTGRES, Migration, pending
from supervisor.journal.tables import Executor, JournalTables

# The journal logs under one name whichever of its modules speaks.
log = logging.getLogger("supervisor.journal")

#: pg_advisory_xact_lock key serialising migrations of supervisors opening one database at once.
_MIGRATION_LOCK = 0x1BF1EE7

_SYNC = {Durability.FULL: "on", Durability.NORMAL: "off"}


def safe_url(url: str) -> str:
    """``url`` without a password (in the authority or as ``?password=``), safe to print."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        host = netloc.rpartition("@")[2]
        netloc = f"{user}@{host}" if user else host
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), parts.fragment))


@functools.lru_cache(maxsize=256)
def _pg_sql(sql: str) -> str:
    # The shared SQL uses SQLite's ``?``; psycopg wants ``%s`` and a literal percent doubled.
    return sql.replace("%", "%%").replace("?", "%s")


class _Statements:
    """A psycopg connection that takes the shared SQL's ``?`` placeholders."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        if not parameters:
            return self._conn.execute(sql)
        return self._conn.execute(_pg_sql(sql), tuple(parameters))


class PostgresStore(JournalHealth):
    """The PostgreSQL database under a journal: connection, migrations, bounded calls, health."""

    # A duplicate intent key; every other server error is the journal being unavailable.
    _duplicate: tuple[type[Exception], ...] = (psycopg.errors.UniqueViolation,)

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        event_durability: Durability = Durability.NORMAL,
        intent_durability: Durability = Durability.FULL,
        migrations: Sequence[Migration] = MIGRATIONS,
        on_migrate: Callable[[int, int], None] | None = None,
        wait: float = 0.5,
    ) -> None:
        self.url = url
        self.where = safe_url(url)
        self.wait = wait
        self._password = password
        self._event_sync = event_durability
        self._intent_sync = intent_durability
        self._lock = threading.Lock()
        self._closed = False
        self._init_health()
        try:
            self._conn: psycopg.Connection[Any] | None = self._connect()
        except psycopg.Error as exc:
            raise JournalError(f"journal {self.where}: cannot connect: {_reason(exc)}") from None
        try:
            self._migrate(migrations, on_migrate)
        except BaseException:
            self._drop()
            raise
        log.info(
            "journal_opened url=%s schema=%d events=%s intents=%s",
            self.where,
            self.schema_version,
            event_durability.value,
            intent_durability.value,
        )

    # -- connecting, migrating -------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        ms = max(1, int(self.wait * 1000))
        options = (
            f"-c statement_timeout={ms} -c lock_timeout={ms}"
            f" -c synchronous_commit={_SYNC[self._intent_sync]}"
            # A client that vanished inside a transaction must not hold the lease row's lock.
            f" -c idle_in_transaction_session_timeout={max(1000, 4 * ms)}"
        )
        extra: dict[str, Any] = {}
        if self._password is not None:
            extra["password"] = self._password
        return psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=max(2, math.ceil(self.wait)),
            application_name="ibfleet-supervisor",
            options=options,
            tcp_user_timeout=max(1000, 2 * ms),
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=2,
            **extra,
        )

    def _migrate(
        self, migrations: Sequence[Migration], on_migrate: Callable[[int, int], None] | None
    ) -> None:
        conn = self._conn
        assert conn is not None
        # One transaction per migration under an advisory lock, so a leader and a standby
        # opening a fresh database together migrate it once.
        while True:
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                    conn.execute(META_TABLE)
                    current = self._version(conn)
                    todo = pending(current, migrations, self.where)
                    if not todo:
                        break
                    migration = todo[0]
                    for statement in migration.statements:
                        conn.execute(POSTGRES.render(statement))
                    conn.execute(
                        "INSERT INTO meta (name, value) VALUES ('schema_version', %s) "
                        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        (str(migration.version),),
                    )
            except psycopg.Error as exc:
                raise JournalError(
                    f"journal {self.where}: cannot migrate the schema: {_reason(exc)}"
                ) from None
            log.info(
                "journal_migrated url=%s from=%d to=%d", self.where, current, migration.version
            )
            if on_migrate is not None:
                on_migrate(current, migration.version)
        try:
            # A write at open: a read-only server or role fails here, not at the first event.
            conn.execute(
                "INSERT INTO meta (name, value) VALUES ('opened_by_pid', %s) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (str(os.getpid()),),
            )
        except psycopg.Error as exc:
            raise JournalError(f"journal {self.where}: not writable: {_reason(exc)}") from None

    @staticmethod
    def _version(conn: psycopg.Connection[Any]) -> int:
        row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    @property
    def schema_version(self) -> int:
        """The schema version in the database."""
        with self._reading() as db:
            row = db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    # -- bounded calls ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _held(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection, within ``wait`` for the lock; connects again after a loss."""
        if not self._lock.acquire(timeout=self.wait):
            raise JournalUnavailable(
                f"journal {self.where}: busy for more than {self.wait:g}s (a slow server)"
            )
        try:
            if self._closed:
                raise JournalError(f"journal {self.where} is closed")
            if self._conn is None or self._conn.closed:
                try:
                    self._conn = self._connect()
                except psycopg.Error as exc:
                    self._conn = None
                    raise JournalUnavailable(
                        f"journal {self.where}: cannot reach the server ({_reason(exc)})"
                    ) from None
                log.info("journal_reconnected url=%s", self.where)
            yield self._conn
        finally:
            self._lock.release()

    def _unavailable(self, exc: psycopg.Error) -> JournalUnavailable:
        # Called under the lock: a connection the error broke is dropped for the next call.
        if self._conn is not None and (self._conn.broken or self._conn.closed):
            self._drop()
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            reason = f"locked by another session for more than {self.wait:g}s"
        elif isinstance(exc, psycopg.errors.QueryCanceled):
            # statement_timeout: a busy server, or a lock (both bounds are ``wait``).
            reason = f"no answer within {self.wait:g}s (busy, or locked by another session)"
        elif isinstance(exc, psycopg.errors.DiskFull):
            reason = "the server's disk is full"
        elif self._conn is None:
            reason = f"lost the server ({_reason(exc)})"
        else:
            reason = f"the server refused the write ({_reason(exc)})"
        return JournalUnavailable(f"journal {self.where}: {reason}")

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    @contextlib.contextmanager
    def _write(self, durability: Durability) -> Iterator[Executor]:
        try:
            with self._held() as conn:
                try:
                    with conn.transaction():
                        if durability is not self._intent_sync:
                            conn.execute(f"SET LOCAL synchronous_commit TO {_SYNC[durability]}")
                        yield _Statements(conn)
                except psycopg.errors.IntegrityError:
                    raise
                except psycopg.Error as exc:
                    raise self._unavailable(exc) from None
        except JournalUnavailable as exc:
            self._health(str(exc).split(": ", 1)[-1])
            raise
        self._health(None)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Executor]:
        with self._held() as conn:
            try:
                yield _Statements(conn)
            except psycopg.Error as exc:
                raise self._unavailable(exc) from None

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._reading() as db:
            return list(db.execute(sql, params).fetchall())

    def close(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._drop()
        log.info("journal_closed url=%s", self.where)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason(exc: psycopg.Error) -> str:
    # libpq's messages name the host and port, never the password; one line is enough.
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class PostgresJournal(PostgresStore, LeaderLease, JournalTables):
    """The journal in a PostgreSQL database, shared by a leader and its standbys.

    Open it, then :meth:`try_lead`; writes other than events are refused
    (:class:`~supervisor.journal.records.JournalFenced`) until it leads and once a newer
    leader exists. Thread-safe, one connection behind a lock.
    """

    def __init__(
        self,
        url: str,
        *,
        lease_ttl: float = 5.0,
        holder: str | None = None,
        **options: Any,
    ) -> None:
        PostgresStore.__init__(self, url, **options)
        self._init_lease(lease_ttl=lease_ttl, holder=holder)

    def close(self) -> None:
        """Hand the lease on (a standby takes over at once), then close; idempotent."""
        self._stop_lease()
        PostgresStore.close(self)


def _conforms(journal: PostgresJournal) -> tuple[Journal, Leadership]:
    # mypy checks here that PostgresJournal satisfies the Journal and Leadership Protocols.
    return journal, journal
