"""What every strategy of one host shares: the journal and its writer thread, alerts, metrics,
the clock, the gateways and their gates, and where new broker sessions come from."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from plugins.host.broker import BrokerFactory
from plugins.host.clock import Clock
from plugins.host.gates import GateBoard, GateFeed
from plugins.host.settings import GatewayEndpoint, HostSettings
from plugins.pacing import HistoryRequest, Pacer
from plugins.ports import AlertSink, IntentStore, StrategyMetrics

__all__ = ["HostServices", "JournalFailure", "JournalWriter"]

log = logging.getLogger("plugins.host")

T = TypeVar("T")


class JournalFailure(Exception):
    """The journal did not answer within the host's bound (locked, a stuck disk, a backlog),
    or could not do what was asked (the cause is chained)."""


class JournalWriter:
    """One thread, in order: every journal call the host makes, so none runs on the loop.

    The intents themselves are awaited (:meth:`call`, bounded: an intent not written in time
    is never sent); what follows a send (mark_sent, broker reports, events, the kv store) is
    queued (:meth:`later`) and may lag a little. A locked or slow journal therefore delays
    only the orders waiting on it, never the loop, ``/healthz`` or the other strategies.
    """

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="ibfleet-intents"
        )

    def later(self, write: Callable[[], object]) -> None:
        """Run a journal write on the writer thread, after every write queued before it."""

        def done(future: concurrent.futures.Future[object]) -> None:
            exc = future.exception()
            if exc is not None:
                log.error("journal_write_failed error=%s", exc)

        self._pool.submit(write).add_done_callback(done)

    async def call(self, work: Callable[[], T], *, wait: float) -> T:
        """Run ``work`` on the writer thread (after everything queued before it) and await
        its result at most ``wait`` seconds; :class:`JournalFailure` past that (the call
        itself still runs, in order, so what it writes is never reordered)."""
        future = asyncio.wrap_future(self._pool.submit(work))
        try:
            return await asyncio.wait_for(asyncio.shield(future), wait)
        except TimeoutError:
            future.add_done_callback(_log_late_failure)
            raise JournalFailure(
                f"the journal did not answer within {wait:g}s (locked, or a stuck disk)"
            ) from None

    async def settle(self, *, wait: float | None = None) -> bool:
        """Wait until every queued journal write is done; False when ``wait`` ran out first."""
        drained = asyncio.wrap_future(self._pool.submit(lambda: None))
        if wait is None:
            await drained
            return True
        try:
            await asyncio.wait_for(asyncio.shield(drained), wait)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _log_late_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("journal_write_failed late=true error=%s", future.exception())


@dataclass(eq=False)
class HostServices:
    store: IntentStore
    alert_sink: AlertSink
    metrics: StrategyMetrics | None
    clock: Clock
    settings: HostSettings
    endpoints: Mapping[str, GatewayEndpoint]
    new_broker: BrokerFactory
    rng: random.Random
    gates: GateBoard = field(default_factory=GateBoard)
    writer: JournalWriter = field(default_factory=JournalWriter)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    #: IB's pacing per gateway, shared by every strategy's session there.
    pacers: dict[str, Pacer] = field(default_factory=dict)

    def feed(self, gateway: str) -> GateFeed:
        return self.gates.feed(gateway, now=self.clock.monotonic())

    def usable(self, gateway: str, *, shutting_down: bool = False) -> bool:
        return self.gates.usable(gateway, now=self.clock.monotonic(), shutting_down=shutting_down)

    def keep(self, task: asyncio.Task[None]) -> None:
        """Hold a reference to a background task until it ends."""
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def journal_event(self, **event: Any) -> None:
        """An event for the journal, written on the writer thread; a journal that cannot take
        it is logged, never raised."""
        store = self.store

        def write() -> None:
            try:
                store.append_event(**event)
            except Exception as exc:
                log.error(
                    "journal_event_lost strategy=%s kind=%s error=%s",
                    event.get("strategy"),
                    event["kind"],
                    exc,
                )

        self.writer.later(write)

    async def journal(self, work: Callable[[], T]) -> T:
        """A journal call awaited off the loop, at most ``settings.journal_wait``; any failure
        but a ``ValueError`` (a caller's mistake, such as a key used twice) is a
        :class:`JournalFailure`."""
        try:
            return await self.writer.call(work, wait=self.settings.journal_wait)
        except (JournalFailure, ValueError):
            raise
        except Exception as exc:
            raise JournalFailure(str(exc) or type(exc).__name__) from exc

    def alert(self, key: str, severity: str, title: str, body: str) -> None:
        """Raise an alert; a failing sink is logged, never allowed to stop the order path."""
        try:
            self.alert_sink.raise_(key, severity, title, body)
        except Exception:
            log.exception("strategy_alert_failed key=%s", key)

    def resolve(self, key: str) -> None:
        try:
            self.alert_sink.resolve(key)
        except Exception:
            log.exception("strategy_alert_resolve_failed key=%s", key)

    # -- IB's pacing, per gateway ----------------------------------------------------------

    def pacer(self, gateway: str) -> Pacer:
        found = self.pacers.get(gateway)
        if found is None:
            found = self.pacers[gateway] = Pacer(self.settings.pacing)
        return found

    async def paced(self, gateway: str, request: HistoryRequest | None = None) -> float:
        """Wait until IB's pacing lets ``request`` (None: any other request) go on
        ``gateway``, and take its slot; returns the seconds waited. The caller tells
        ``pacer(gateway).answered`` when a historical request's answer came."""
        pacer = self.pacer(gateway)
        started = self.clock.monotonic()
        while True:
            # A historical request is pending until the caller tells the pacer its answer came.
            wait = pacer.reserve(self.clock.monotonic(), request, pending=request is not None)
            if wait <= 0:
                break
            # A queue, not a failure: requests wait their turn however long IB's rules say.
            await asyncio.sleep(min(wait, self.settings.pacing_recheck))
        return self.clock.monotonic() - started
