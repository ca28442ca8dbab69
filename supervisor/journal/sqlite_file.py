"""The journal's SQLite file: owner lock, private creation, integrity check, migrations, and
writes bounded by ``wait`` that mark the journal unhealthy when they fail.

:class:`SqliteFile` is the plumbing; :class:`supervisor.journal.sqlite.SqliteJournal` adds
the tables' operations on top of it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

from supervisor.journal.health import JournalHealth
from supervisor.journal.records import (
    Durability,
    JournalError,
    JournalLockedError,
    JournalUnavailable,
    LeaderInfo,
)
from supervisor.journal.schema import META_TABLE, MIGRATIONS, SQLITE, Migration, pending

# The journal logs under one name whichever of its modules speaks.
log = logging.getLogger("supervisor.journal")


class SqliteFile(JournalHealth):
    """The SQLite file under a journal: its lock, opening and migration, bounded writes, health."""

    # A duplicate intent key; every other engine error is the journal being unavailable.
    _duplicate: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)

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
        self.where = str(self.path)
        self.wait = wait
        self._event_sync = event_durability
        self._intent_sync = intent_durability
        self._lock = threading.Lock()
        self._sync: Durability | None = None
        self._busy_ms: int | None = None
        self._init_health()
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
            self._db.execute(META_TABLE)
            current = self._schema_version()
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"journal {self.path}: cannot read the schema: {exc}") from None
        for migration in pending(current, migrations, self.where):
            self._set_sync(Durability.FULL)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for statement in migration.statements:
                    self._db.execute(SQLITE.render(statement))
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

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._held():
            try:
                yield self._db
            except sqlite3.OperationalError as exc:
                raise self._unavailable(exc) from None

    def _fence(self, db: object) -> int:
        # The flock makes this process the only writer on the host: it always leads.
        return 0

    @property
    def is_leader(self) -> bool:
        """Always: the file lock already keeps a second supervisor out."""
        return self._lock_fd >= 0

    @property
    def epoch(self) -> int | None:
        """0: a single-host journal has no lease and no epochs."""
        return 0

    def leader(self) -> LeaderInfo | None:
        """This process, for as long as it holds the file."""
        return LeaderInfo(holder=f"{socket.gethostname()}:{os.getpid()}", epoch=0, expires_in=None)

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
