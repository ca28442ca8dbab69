""":class:`AsyncJournal`: a journal's blocking calls run on one thread for the event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from supervisor.journal.port import Journal
from supervisor.journal.records import EventRecord, JournalUnavailable, OperatorState

# The journal logs under one name whichever of its modules speaks.
log = logging.getLogger("supervisor.journal")

T = TypeVar("T")


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
