"""What every strategy of one host shares: the journal and its writer thread, alerts, metrics,
the clock, the gateways and their gates, and where new broker sessions come from."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from plugins.host.broker import BrokerFactory
from plugins.host.clock import Clock
from plugins.host.gates import GateBoard, GateFeed
from plugins.host.settings import GatewayEndpoint, HostSettings
from plugins.pacing import HistoryRequest, Pacer
from plugins.ports import AlertSink, IntentStore, StrategyMetrics

__all__ = ["HostServices", "JournalWriter"]

log = logging.getLogger("plugins.host")


class JournalWriter:
    """One thread, in order: the journal writes that follow a send (mark_sent, broker reports).

    The intent itself is written on the loop before the send; these may lag a little but keep
    the loop free of fsyncs while reports stream in.
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

    async def settle(self) -> None:
        """Wait until every queued journal write is on disk."""
        await asyncio.get_running_loop().run_in_executor(self._pool, lambda: None)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


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
        """An event for the journal; a journal that cannot take it is logged, never raised."""
        try:
            self.store.append_event(**event)
        except Exception as exc:
            log.error(
                "journal_event_lost strategy=%s kind=%s error=%s",
                event.get("strategy"),
                event["kind"],
                exc,
            )

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
