"""The leader lease of a journal shared by several supervisors (PostgreSQL), and its fencing.

Choice: a lease row (``leader_lease``: holder, epoch, expiry) rather than a session advisory
lock. An advisory lock lives as long as one server session: a leader whose connection drops
for a second loses it (and must win it back against the standby), while a partitioned leader's
session may linger on the server until TCP keepalives give up, minutes later, keeping the
standby out far longer than the 10 s takeover target. A row expires on the server's own clock
(the one clock every host shares, so host clock skew does not matter) after ``lease_ttl``,
survives reconnects, can be read by anyone (``ibfleet status`` shows the holder and its expiry)
and works through a transaction pooler.

Epochs fence the writes: each takeover adds one to ``epoch``. An intent or state write reads
the row ``FOR SHARE`` inside its own transaction and is refused with :class:`JournalFenced`
unless it still names this holder and epoch, so it either commits before a takeover (which
then waits for the row lock and sees the intent) or is refused after one: a stale leader's
order is never sent. Renewal keeps the epoch; only a holder that let its lease expire and was
replaced gets a new one on its next :meth:`LeaderLease.try_lead`.

The leader renews every ``lease_ttl / 3`` on a thread of its own; a renewal that finds another
holder marks this journal a follower and tells the role listeners. Closing hands the lease on
(expiry set to 0) so a standby takes over at its next attempt.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from supervisor.journal.records import (
    Durability,
    JournalError,
    JournalFenced,
    LeaderInfo,
)
from supervisor.journal.tables import Executor

log = logging.getLogger("supervisor.journal")

_ROW = "leader"
# Seconds since 1970 on the database server's clock (PostgreSQL spelling).
_SERVER_NOW = "extract(epoch FROM clock_timestamp())"


def default_holder() -> str:
    """``host:pid:tag``: unique per journal object, readable in ``ibfleet status``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class LeaderLease:
    """The lease half of a shared journal: take, renew, hand on, fence (see the module doc)."""

    where: str

    if TYPE_CHECKING:
        # Provided by the store this mixes into (PostgresStore): declared, not defined, so
        # they never shadow the store's methods.
        def _write(self, durability: Durability) -> AbstractContextManager[Executor]: ...

        def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def _init_lease(self, *, lease_ttl: float, holder: str | None) -> None:
        if lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be > 0 seconds, got {lease_ttl}")
        self.lease_ttl = lease_ttl
        self.holder = holder or default_holder()
        self._epoch: int | None = None
        self._renewed_at: float | None = None  # monotonic time of the last confirmation
        self._superseded = False
        self._role_listeners: list[Callable[[bool], None]] = []
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    # -- role ------------------------------------------------------------------------------

    @property
    def epoch(self) -> int | None:
        """The epoch this journal writes with, or None when it has never led."""
        return self._epoch

    @property
    def is_leader(self) -> bool:
        """True while the lease was confirmed less than ``lease_ttl`` ago and not lost."""
        if self._epoch is None or self._superseded or self._renewed_at is None:
            return False
        return time.monotonic() - self._renewed_at < self.lease_ttl

    @property
    def confirmed_at(self) -> float | None:
        """``time.monotonic()`` at the start of the last call that confirmed the lease, or None.

        The server's expiry was set later than this, so ``confirmed_at + lease_ttl`` is never
        past it: a leader that stops acting then stops before any standby can take over.
        """
        return None if self._epoch is None or self._superseded else self._renewed_at

    def add_role_listener(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(True)`` when this journal takes the lease, ``(False)`` when it loses it.

        Called on the thread that found out (the caller of :meth:`try_lead`, or the renewer).
        """
        self._role_listeners.append(listener)

    def _role(self, leading: bool) -> None:
        for listener in list(self._role_listeners):
            try:
                listener(leading)
            except Exception:
                log.exception("journal_role_listener_failed")

    def leader(self) -> LeaderInfo | None:
        """Who leads now (the row as the server has it), or None when nobody ever has."""
        rows = self._read(
            f"SELECT holder, epoch, expires_at - {_SERVER_NOW} FROM leader_lease WHERE name = ?",  # noqa: S608
            (_ROW,),
        )
        if not rows:
            return None
        holder, epoch, left = rows[0]
        return LeaderInfo(holder=holder, epoch=int(epoch), expires_in=max(0.0, float(left)))

    # -- taking, renewing, handing on ------------------------------------------------------

    def try_lead(self, *, keep: bool = True) -> bool:
        """Take the lease if nobody holds it or it expired; True when this journal leads.

        ``keep`` starts the renewer thread (the supervisor's case); tests drive :meth:`renew`.
        """
        if self._epoch is not None and not self._superseded:
            return self.renew()
        started = time.monotonic()
        with self._write(Durability.FULL) as db:
            row = db.execute(
                # Only constant fragments are formatted in; values are bound parameters.
                "INSERT INTO leader_lease (name, holder, epoch, expires_at, acquired_at)"  # noqa: S608
                f" VALUES (?, ?, 1, {_SERVER_NOW} + ?, CAST(clock_timestamp() AS TEXT))"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
                " epoch = leader_lease.epoch + 1, expires_at = excluded.expires_at,"
                " acquired_at = excluded.acquired_at"
                f" WHERE leader_lease.expires_at < {_SERVER_NOW}"
                " RETURNING epoch",
                (_ROW, self.holder, float(self.lease_ttl)),
            ).fetchone()
        if row is None:
            return False
        self._epoch, self._superseded = int(row[0]), False
        self._renewed_at = started
        log.warning(
            "journal_leading url=%s holder=%s epoch=%d", self.where, self.holder, self._epoch
        )
        self._role(True)
        if keep:
            self._start_keeper()
        return True

    def renew(self) -> bool:
        """Extend the lease by ``lease_ttl``; False (and role listeners told) once it is lost."""
        if self._epoch is None or self._superseded:
            return False
        started = time.monotonic()
        with self._write(Durability.FULL) as db:
            row = db.execute(
                f"UPDATE leader_lease SET expires_at = {_SERVER_NOW} + ?"  # noqa: S608
                " WHERE name = ? AND holder = ? AND epoch = ? RETURNING epoch",
                (float(self.lease_ttl), _ROW, self.holder, self._epoch),
            ).fetchone()
        if row is not None:
            self._renewed_at = started
            return True
        self._superseded = True
        log.error(
            "journal_lease_lost url=%s holder=%s epoch=%d", self.where, self.holder, self._epoch
        )
        self._role(False)
        return False

    def _start_keeper(self) -> None:
        if self._keeper is not None and self._keeper.is_alive():
            return
        self._stop.clear()
        self._keeper = threading.Thread(
            target=self._keep, name="ibfleet-journal-lease", daemon=True
        )
        self._keeper.start()

    def _keep(self) -> None:
        # Three renewals per lease: one lost packet or slow commit does not cost the lease.
        while not self._stop.wait(self.lease_ttl / 3):
            try:
                if not self.renew():
                    return
            except JournalError as exc:
                # Reported through the journal's health already; the next tick tries again.
                log.warning("journal_lease_renew_failed url=%s error=%s", self.where, exc)

    def _stop_lease(self) -> None:
        self._stop.set()
        keeper, self._keeper = self._keeper, None
        if keeper is not None and keeper is not threading.current_thread():
            keeper.join(timeout=self.lease_ttl)
        if self._epoch is None or self._superseded:
            return
        try:
            with self._write(Durability.FULL) as db:
                db.execute(
                    "UPDATE leader_lease SET expires_at = 0"
                    " WHERE name = ? AND holder = ? AND epoch = ?",
                    (_ROW, self.holder, self._epoch),
                )
            log.info("journal_lease_released url=%s epoch=%d", self.where, self._epoch)
        except JournalError as exc:
            # The lease then simply expires after lease_ttl.
            log.warning("journal_lease_not_released url=%s error=%s", self.where, exc)
        self._superseded = True

    # -- fencing ---------------------------------------------------------------------------

    def _fence(self, db: Executor) -> int:
        """Inside a write transaction: this journal's epoch, or JournalFenced (nothing written)."""
        row = db.execute(
            "SELECT holder, epoch FROM leader_lease WHERE name = ? FOR SHARE", (_ROW,)
        ).fetchone()
        mine = self._epoch
        if mine is not None and row is not None and (row[0], int(row[1])) == (self.holder, mine):
            return mine
        if mine is None:
            led = "nobody leads" if row is None else f"epoch {row[1]} is held by {row[0]}"
            raise JournalFenced(
                f"journal {self.where}: this supervisor ({self.holder}) is not the leader "
                f"({led}); the write was refused"
            )
        if not self._superseded:
            self._superseded = True
            self._role(False)
        found = "no lease" if row is None else f"epoch {row[1]} is held by {row[0]}"
        raise JournalFenced(
            f"journal {self.where}: this supervisor ({self.holder}, epoch {mine}) no longer "
            f"leads ({found}); the write was refused"
        )
