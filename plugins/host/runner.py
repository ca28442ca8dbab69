"""One strategy: its instance and task, and the collaborators that each hold a part of it.

Hooks run one at a time in the strategy's own task (:meth:`Runner.post` queues them); the
runner wires the session's events to the order book, market data and hooks, and owns start,
resume and stop. Everything else is a collaborator's: :class:`Sessions`, :class:`OrderBook`,
:class:`MarketData`, :class:`OrderPath`, :class:`Reconciler`, :class:`SafeState`,
:class:`Failover` and :class:`Outages`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any

from ib_async import Fill as IbFill
from ib_async import Ticker, Trade

from gateway.aio import within
from gateway.outage import OutageKind
from plugins import api, outage
from plugins.config import SafeStateAction, StrategyConfig
from plugins.host.broker import GatewayTimeout, Session
from plugins.host.brokerdata import DataRequests
from plugins.host.context import StrategyContext
from plugins.host.dayloss import DayLoss
from plugins.host.failover import Failover
from plugins.host.kvcache import StrategyKv
from plugins.host.marketdata import MarketData
from plugins.host.orderbook import OrderBook
from plugins.host.orders import OrderPath
from plugins.host.outages import Outages
from plugins.host.reconciling import Reconciler
from plugins.host.runstate import RunState
from plugins.host.safestate import SafeState
from plugins.host.services import HostServices, JournalFailure
from plugins.host.sessions import Sessions
from plugins.host.status import SafeStateRun, SafeStateTrigger, StrategyState, StrategyStatus
from plugins.intents import IntentState, belongs_to
from plugins.registry import load_strategy_class

__all__ = ["Runner"]

log = logging.getLogger("plugins.host")

#: Hooks that only a RUNNING strategy gets; the others (start, order, fill, gateway, stop) are
#: delivered in any state but CRASHED and STOPPED.
_RUNNING_ONLY = frozenset({"tick", "bar", "timer"})


class Runner:
    """One strategy of the host."""

    def __init__(self, cfg: StrategyConfig, services: HostServices) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.services = services
        self.run = RunState(cfg.name, services)
        self.strategy: api.Strategy | None = None
        self.ctx = StrategyContext(self)
        self.inbox: asyncio.Queue[tuple[str, Callable[[], Awaitable[Any]]]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.timers: list[asyncio.Task[None]] = []
        self.fills = 0
        self.sessions = Sessions(cfg, services, self.run, self)
        self.kv = StrategyKv(cfg.name, services)
        self.book = OrderBook(cfg.name, self.kv)
        self.data = MarketData(services, self.sessions, self.book, self.post, self._hook)
        self.orders = OrderPath(cfg, services, self.run, self.sessions, self.book, self.data)
        self.reconciler = Reconciler(cfg.name, services, self.book)
        self.failover = Failover(
            cfg, services, self.run, self.sessions, self.resume_on, self.post, self._hook
        )
        self.safe = SafeState(
            cfg,
            services,
            self.run,
            self.sessions,
            self.book,
            self.orders,
            self.reconciler,
            self.failover,
        )
        self.outages = Outages(
            cfg,
            services,
            self.run,
            self.sessions,
            self.safe,
            self.failover,
            self.resume_on,
            self.post,
            self._hook,
        )
        self.requests = DataRequests(cfg, services, self.sessions, self.book, self.data)
        self.loss = DayLoss(
            cfg,
            services,
            self.data.last,
            lambda: self.kill(SafeStateAction.CANCEL),
            lambda: self.run.state is StrategyState.RUNNING,
            self.kv,
        )
        self.orders.loss = self.loss

    # -- what tests, the CLI and the API read ----------------------------------------------

    @property
    def state(self) -> StrategyState:
        return self.run.state

    @property
    def trading(self) -> bool:
        return self.run.trading

    @property
    def last_error(self) -> str | None:
        return self.run.last_error

    @property
    def session(self) -> Session | None:
        return self.sessions.current

    @property
    def active(self) -> str | None:
        return self.sessions.active

    def status(self) -> StrategyStatus:
        session = self.sessions.current
        return StrategyStatus(
            name=self.name,
            plugin=self.cfg.plugin,
            state=self.run.state,
            gateway=self.sessions.active,
            client_id=session.client_id if session and not session.closed else None,
            open_orders=len(self.book.working()),
            orders_sent=self.orders.sent,
            orders_refused=self.orders.refused,
            fills=self.fills,
            safe_state_runs=len(self.safe.runs),
            failovers=self.failover.count,
            unknown_intents=len(self.book.unknown),
            last_error=self.run.last_error,
        )

    def position_of(self, instrument: api.Instrument) -> float:
        return self.book.position_of(instrument, self.data.qualified.get(instrument))

    async def place(self, spec: api.OrderSpec) -> api.OrderView:
        return await self.orders.place(spec)

    async def cancel(self, key: str) -> None:
        await self.orders.cancel(key)

    # -- the session's events (SessionEvents) ------------------------------------------------

    def order_status(self, session: Session, trade: Trade) -> None:
        key = trade.order.orderRef
        if not belongs_to(key, self.name):
            return
        status = IntentState.from_ib(trade.orderStatus.status)
        if trade.orderStatus.status == "PendingCancel":
            status = IntentState.ACKED
        filled = float(trade.orderStatus.filled or 0.0)
        order = self.book.orders.get(key)
        if order is not None and order.status.terminal and not status.terminal:
            # A late or replayed report never revives a finished order (as in the journal).
            status = order.status
        perm_id = trade.order.permId or None
        store, now = self.services.store, self.services.clock.now()
        # After the send, journal writes leave the loop: the intent itself is already durable.
        self.services.writer.later(
            lambda: store.update_from_broker(
                key, perm_id=perm_id, status=status, filled=filled, now=now
            )
        )
        self.book.unknown.discard(key)
        if order is not None:
            if status.terminal:
                del self.book.orders[key]  # working orders only: risk checks walk this dict
            order.status = status
            order.filled = max(order.filled, filled)
            if order.trade is None or order.trade.order.clientId == session.client_id:
                order.trade = trade
        if status is IntentState.FILLED:
            self.run.count("filled")
        update = api.OrderUpdate(
            key=key,
            status=status,
            filled=filled,
            remaining=float(trade.orderStatus.remaining or 0.0),
        )
        self.post("order", lambda: self._hook().on_order_status(update))

    def execution(self, session: Session, trade: Trade, fill: IbFill) -> None:
        key = fill.execution.orderRef or trade.order.orderRef
        if not belongs_to(key, self.name):
            return
        ex = fill.execution
        if not self.book.book_execution(ex.execId, fill.contract, ex.side, ex.shares):
            return
        self.book.save(now=self.services.clock.now())
        self.loss.fill(
            fill.contract.conId,
            float(ex.shares) if ex.side == "BOT" else -float(ex.shares),
            float(ex.price),
            multiplier=self.book.instrument_of(fill.contract).multiplier,
        )
        self.fills += 1
        self.run.changed.set()  # a flatten waiting for the position wakes at once
        report = api.Fill(
            key=key,
            exec_id=ex.execId,
            instrument=self.book.instrument_of(fill.contract),
            side=api.Side.BUY if ex.side == "BOT" else api.Side.SELL,
            quantity=float(ex.shares),
            price=float(ex.price),
            time=fill.time or self.services.clock.now(),
        )
        self.post("fill", lambda: self._hook().on_fill(report))

    def tickers(self, session: Session, tickers: Iterable[Ticker]) -> None:
        self.data.on_tickers(tickers)
        self.loss.check()

    def lost(self, session: Session) -> None:
        self.outages.began(f"API session to {session.gateway} closed")

    # -- the strategy's task -----------------------------------------------------------------

    def _hook(self) -> api.Strategy:
        assert self.strategy is not None
        return self.strategy

    def post(self, kind: str, call: Callable[[], Awaitable[Any]]) -> None:
        """Queue a hook call for the strategy's task (hooks never run concurrently).

        Nothing but on_start reaches a strategy whose on_start is not queued yet: its state is
        set up there, and it reads the reconciled book when it starts.
        """
        if kind != "start" and not self.run.started:
            log.debug("strategy_hook_before_start strategy=%s kind=%s", self.name, kind)
            return
        self.inbox.put_nowait((kind, call))

    async def _loop(self) -> None:
        while True:
            kind, call = await self.inbox.get()
            try:
                await self._deliver(kind, call)
            finally:
                # Counted done even when skipped, so inbox.join() means "every hook has run".
                self.inbox.task_done()

    async def _deliver(self, kind: str, call: Callable[[], Awaitable[Any]]) -> None:
        state = self.run.state
        if state is not StrategyState.RUNNING and kind in _RUNNING_ONLY:
            return
        if state in (StrategyState.CRASHED, StrategyState.STOPPED):
            return
        try:
            await call()
        except asyncio.CancelledError:
            raise
        except (ConnectionError, GatewayTimeout) as exc:
            lost = self._session_lost()
            if isinstance(exc, ConnectionError) and not lost:
                await self._crashed(exc)
                return
            # The gateway went away or stalled under a host call (ctx.subscribe's contract
            # lookup, say): its outage, which the gate and the safe state handle, not the
            # strategy's bug. An interrupted on_start runs again when the strategy resumes on
            # a session, or, on a session still up (a slow gateway), after a pause.
            log.warning(
                "strategy_hook_interrupted strategy=%s kind=%s error=%s", self.name, kind, exc
            )
            if kind == "start":
                self.run.started = False
                if not lost:
                    self._start_again_later(self.sessions.current)
        except Exception as exc:
            await self._crashed(exc)

    def _start_again_later(self, session: Session | None) -> None:
        """on_start again on ``session`` after a pause, unless something else ran it (a
        resume on a new session) or the strategy stopped trading there meanwhile."""

        async def again() -> None:
            await asyncio.sleep(self.services.settings.request_timeout)
            if (
                self.run.state is StrategyState.RUNNING
                and not self.run.started
                and session is self.sessions.current
                and not self._session_lost()
            ):
                self.run.started = True
                self.post("start", lambda: self._hook().on_start())

        self.timers.append(asyncio.create_task(again(), name=f"ibfleet-start-{self.name}"))

    def _session_lost(self) -> bool:
        current = self.sessions.current
        return current is None or current.closed or not current.broker.is_connected()

    def ensure_task(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._loop(), name=f"ibfleet-strategy-{self.name}")

    async def _crashed(self, exc: BaseException) -> None:
        self.run.last_error = f"{type(exc).__name__}: {exc}"
        log.exception(
            "strategy_crashed strategy=%s error=%s", self.name, type(exc).__name__, exc_info=exc
        )
        self.run.trading = False
        self.services.alert(
            f"strategy:{self.name}:crashed",
            "critical",
            f"strategy {self.name} crashed",
            f"{self.run.last_error}; safe state {self.cfg.safe_state.on_disconnect.value} runs; "
            f"resume with `ibfleet strategies resume {self.name}`",
        )
        await self.safe.run(SafeStateTrigger.CRASH, self.cfg.safe_state.on_disconnect)
        self.set_state(StrategyState.CRASHED)

    def call_every(self, interval: timedelta, timer: str) -> None:
        seconds = interval.total_seconds()
        if seconds <= 0:
            raise ValueError(f"strategy {self.name}: timer {timer!r} interval must be positive")

        async def tick() -> None:
            while True:
                await asyncio.sleep(seconds)
                if self.run.state is StrategyState.RUNNING:
                    self.post("timer", lambda: self._hook().on_timer(timer))

        self.timers.append(asyncio.create_task(tick(), name=f"ibfleet-timer-{self.name}"))

    def set_state(self, state: StrategyState) -> None:
        self.run.set(state, gateway=self.sessions.active)

    # -- start, resume, stop ---------------------------------------------------------------

    def new_instance(self) -> None:
        cls = load_strategy_class(self.cfg.plugin, strategy=self.name)
        self.strategy = cls()
        self.strategy.ctx = self.ctx
        self.run.started = False
        for task in self.timers:
            task.cancel()
        self.timers.clear()

    async def start(self) -> None:
        # The strategy's records (its kv store, positions, the day's P&L) are read once, off
        # the loop; a journal that cannot be read stops this start with JournalFailure.
        await self.kv.load()
        self.book.load()
        self.loss.load()
        self.new_instance()
        self.ensure_task()
        try:
            session = await self.sessions.open(self.cfg.gateways[0])
        except ConnectionError as exc:
            log.warning("strategy_start_deferred strategy=%s reason=%s", self.name, exc)
            store = self.services.store
            try:
                maybe_live = bool(
                    await self.services.journal(lambda: store.intents_maybe_live(self.name))
                )
            except JournalFailure:
                maybe_live = True  # unknown is treated as live: never assume nothing works
            if maybe_live:
                # Orders from an earlier run may be working at IB: an outage of the primary,
                # ridden like any other (a planned one holds them, a lost one safe-states).
                self.outages.began(str(exc))
                return
            self.outages.wait_for_first()
            return
        self.sessions.current = session
        await self.resume_on(session, False)

    async def resume_on(self, session: Session, failover: bool) -> None:
        """Reconcile on ``session``, then let the strategy act (first time: ``on_start``)."""
        self.sessions.current = session
        self.sessions.active = session.gateway
        result = await self.reconciler.reconcile(session)
        if not result.unknown:
            # IB was reached and every intent matched: "orders may be live" is answered.
            self.services.resolve(f"strategy:{self.name}:maybe-live")
        self.data.resubscribe(session)
        self.run.trading = True
        self.set_state(StrategyState.RUNNING)
        # Running again (an operator's resume, or a supervisor started afresh): the crash is
        # over; left open, its incident would stay open and be re-paged until someone noticed.
        self.services.resolve(f"strategy:{self.name}:crashed")
        if not self.run.started:
            self.run.started = True
            self.post("start", lambda: self._hook().on_start())
        else:
            change = api.GatewayChange(
                gateway=session.gateway, ready=True, reason="reconciled", failover=failover
            )
            self.post("gateway", lambda: self._hook().on_gateway_state(change))
        for key in result.unknown:
            # Told after on_start / the gateway change, so the strategy has its state.
            update = api.OrderUpdate(
                key=key,
                status=IntentState.UNKNOWN,
                filled=0.0,
                remaining=0.0,
                message="not found at IB after reconnect; not re-sent",
            )
            self.post("order", functools.partial(self._hook().on_order_status, update))

    async def resume(self, gateway: str) -> None:
        """An operator's resume (after halt, kill, crash or safe state) on ``gateway``."""
        async with self.run.lock:
            if self.run.state is StrategyState.CRASHED:
                self.new_instance()
            session = await self.failover.move_to(gateway)
            self.ensure_task()
            await self.resume_on(session, False)

    def halt(self) -> None:
        self.run.trading = False
        self.set_state(StrategyState.HALTED)
        self._tell_stopped(api.StopReason.HALTED)

    async def kill(self, action: Any) -> SafeStateRun:
        run = await self.safe.run(SafeStateTrigger.KILL, action)
        self.set_state(StrategyState.HALTED)
        self._tell_stopped(api.StopReason.KILLED)
        return run

    def _tell_stopped(self, reason: api.StopReason) -> None:
        if self.strategy is not None and self.run.started:
            self.post("stop", lambda: self._hook().on_stop(reason))

    async def stop(self, *, hand_over: bool = False) -> None:
        """Shutdown: ``safe_state.on_shutdown`` (as :func:`plugins.outage.react` says for a
        SHUTDOWN), ``on_stop``, then close everything.

        ``hand_over``: another supervisor now owns this strategy's orders (a standby took the
        lease), so neither the safe state nor ``on_stop`` runs: the sessions just close."""
        run = self.run
        run.stopping = True
        run.changed.set()
        await self.outages.stop()
        if not hand_over and run.state not in (StrategyState.STOPPED, StrategyState.CRASHED):
            if run.state is not StrategyState.HALTED and not run.shutdown_done:
                reaction = outage.react(
                    OutageKind.SHUTDOWN, self.cfg.safe_state, timedelta(0), None
                )
                assert reaction.action is not None
                await self.safe.run(SafeStateTrigger.SHUTDOWN, reaction.action)
                run.shutdown_done = True
            if self.strategy is not None and run.started:
                with contextlib.suppress(Exception):
                    await within(
                        self._hook().on_stop(api.StopReason.SHUTDOWN),
                        self.services.settings.request_timeout,
                    )
        run.trading = False
        me = asyncio.current_task()
        for task in [*self.timers, self.task]:
            if task is not None and task is not me:
                task.cancel()
        self.outages.cancel()
        self.sessions.close(self.sessions.current)
        self.set_state(StrategyState.STOPPED)
