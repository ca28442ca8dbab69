"""The strategy host: one task and one API session per strategy, the order path, safe state
and failover.

Each strategy runs its hooks in its own task with its own ``ib_async.IB`` session. Every
order goes through :meth:`_Runner.place`: state gate, risk checks, optional what-if margin,
the token bucket, then the intent is written to the journal durably and only then sent with
its key as ``orderRef``. After every (re)connect and failover the host reconciles the journal
with what the new session sees at IB before the strategy may act again; nothing is ever
re-sent blind.

The supervisor's order gate (:meth:`StrategyHost.on_gate`) says what kind of outage a gateway
is in; whether a strategy holds, waits out its grace, runs safe state or fails over is
:func:`plugins.outage.react`'s decision, re-evaluated by the strategy's outage task.

Safe state (cancel / flatten / hold) takes the best path still open: the same session, else a
session on a failover gateway of the same account (which cancels the lost gateway's orders one
by one: ``reqGlobalCancel`` would also cancel other strategies' orders on that account), else
a critical alert listing the intents that may still be live at IB.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import functools
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ib_async import IB, Contract, Order, Ticker, Trade
from ib_async import Fill as IbFill

from gateway.aio import within
from gateway.leases import ClientIdLeases
from gateway.outage import Gate, OutageKind
from plugins import api, outage
from plugins.bars import BarBuilder
from plugins.config import MAX_MESSAGES_PER_SECOND, SafeStateAction, StrategyConfig
from plugins.intents import IntentState, belongs_to, new_intent_key
from plugins.ports import AlertSink, IntentStore, StrategyMetrics, native_status, state_of
from plugins.ratelimit import TokenBucket
from plugins.reconcile import (
    BrokerExecution,
    BrokerOrderSeen,
    DecisionKind,
    IntentSeen,
    Reconciliation,
    reconcile,
)
from plugins.registry import load_strategy_class
from plugins.risk import OrderCheck, RiskBook, check_order

__all__ = [
    "GatewayEndpoint",
    "HostSettings",
    "SafeStatePath",
    "SafeStateRun",
    "SafeStateTrigger",
    "StrategyHost",
    "StrategyState",
    "StrategyStatus",
]

log = logging.getLogger(__name__)

_DONE_WORDS = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})
_HOST_KV = "_host"  # the host's own record in the strategy's kv store (positions, exec ids)


class StrategyState(enum.Enum):
    """Where a strategy is (the metrics one-hot over these names)."""

    LOADED = "loaded"  # created, not yet connected and reconciled
    RUNNING = "running"  # reconciled, hooks run, orders allowed
    HALTED = "halted"  # an operator paused it (kill also ends here); resume restarts it
    SAFE_STATE = "safe_state"  # safe state running, or done and waiting for a gateway
    FAILING_OVER = "failing_over"  # moving to the next gateway, reconciling there
    STOPPED = "stopped"  # host shut down
    CRASHED = "crashed"  # a hook raised; safe state ran; resume restarts a fresh instance


class SafeStateTrigger(enum.Enum):
    """Why safe state ran."""

    GATEWAY_LOST = "gateway_lost"
    CRASH = "crash"
    KILL = "kill"
    SHUTDOWN = "shutdown"


class SafeStatePath(enum.Enum):
    """Which path safe state took."""

    SAME_GATEWAY = "same_gateway"
    FAILOVER_GATEWAY = "failover_gateway"
    ALERT_ONLY = "alert_only"  # no session could act: humans were told what may be live
    NOTHING = "nothing"  # hold policy, or nothing was open


@dataclass(frozen=True, slots=True)
class SafeStateRun:
    """The record of one safe-state run (also written to the journal as an event)."""

    strategy: str
    trigger: SafeStateTrigger
    action: SafeStateAction
    path: SafeStatePath
    gateway: str | None
    started_at: datetime
    duration_seconds: float
    cancelled: tuple[str, ...]
    closing_orders: tuple[str, ...]
    still_live: tuple[str, ...]
    ok: bool


@dataclass(frozen=True, slots=True)
class GatewayEndpoint:
    """Where a gateway's API answers, and what the host must know about it."""

    name: str
    host: str
    port: int
    account: str | None = None
    read_only: bool = False
    #: Client ids for strategies that fail over to this gateway (None: use the configured id).
    leases: ClientIdLeases | None = None


@dataclass(frozen=True, slots=True)
class HostSettings:
    """Timeouts of the host, in seconds."""

    connect_timeout: float = 2.0
    request_timeout: float = 3.0
    cancel_deadline: float = 2.0
    flatten_deadline: float = 5.0
    retry_interval: float = 0.1
    rate_wait_max: float = 1.0
    #: How long a failover gateway must have been up, with the primary not, before a strategy
    #: that has not started yet starts there (at least the strategy's grace).
    primary_patience: float = 10.0


@dataclass(frozen=True, slots=True)
class StrategyStatus:
    """What ``ibfleet strategies`` and ``GET /api/v1/strategies`` show."""

    name: str
    plugin: str
    state: StrategyState
    gateway: str | None
    client_id: int | None
    open_orders: int
    orders_sent: int
    orders_refused: int
    fills: int
    safe_state_runs: int
    failovers: int
    unknown_intents: int
    last_error: str | None

    def to_json(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return {
            "name": self.name,
            "plugin": self.plugin,
            "state": self.state.name,
            "gateway": self.gateway,
            "client_id": self.client_id,
            "open_orders": self.open_orders,
            "orders_sent": self.orders_sent,
            "orders_refused": self.orders_refused,
            "fills": self.fills,
            "safe_state_runs": self.safe_state_runs,
            "failovers": self.failovers,
            "unknown_intents": self.unknown_intents,
            "last_error": self.last_error,
        }


@dataclass
class _Feed:
    """The last order gate the supervisor gave for one gateway."""

    gate: Gate | None = None  # None: the supervisor has not said yet
    changed_at: float = field(default_factory=time.monotonic)  # when it last opened or closed

    @property
    def ready(self) -> bool | None:
        return None if self.gate is None else self.gate.open

    @property
    def kind(self) -> OutageKind | None:
        return None if self.gate is None else self.gate.kind


@dataclass
class _Session:
    ib: IB
    gateway: str
    client_id: int
    account: str
    closed: bool = False


@dataclass
class _Order:
    key: str
    instrument: api.Instrument
    side: api.Side
    quantity: float
    limit_price: float | None
    con_id: int
    gateway: str
    status: IntentState = IntentState.PENDING_SEND
    filled: float = 0.0
    trade: Trade | None = None

    def view(self) -> api.OrderView:
        return api.OrderView(
            key=self.key,
            instrument=self.instrument,
            side=self.side,
            quantity=self.quantity,
            limit_price=self.limit_price,
            status=self.status,
            filled=self.filled,
            gateway=self.gateway,
        )


def _num(value: float | None) -> float | None:
    if value is None or not math.isfinite(value) or value <= 0 or value >= 1e300:
        return None
    return float(value)


async def _take(bucket: TokenBucket) -> None:
    """Wait for one token; the bucket says how long, so one sleep is normally enough."""
    for _ in range(1000):
        if bucket.try_take(time.monotonic()):
            return
        await asyncio.sleep(bucket.wait_time(time.monotonic()))
    raise TimeoutError("rate limiter gave no token")


def _contract_record(contract: Contract) -> dict[str, Any]:
    return {
        "conId": contract.conId,
        "symbol": contract.symbol,
        "secType": contract.secType,
        "exchange": contract.exchange,
        "currency": contract.currency,
    }


class _Store(api.KeyValueStore):
    """The strategy's kv store: names starting with ``_host`` are the host's own."""

    def __init__(self, runner: _Runner) -> None:
        self._r = runner

    def _check(self, name: str) -> None:
        if name.startswith(_HOST_KV):
            raise ValueError(f"strategy {self._r.name}: kv name {name!r} is reserved for the host")

    def get(self, name: str, default: Any = None) -> Any:
        self._check(name)
        value = self._r.host.store.kv_get(self._r.name, name)
        return default if value is None else value

    def set(self, name: str, value: Any) -> None:
        self._check(name)
        self._r.host.store.kv_set(self._r.name, name, value, now=self._r.host.clock())

    def delete(self, name: str) -> bool:
        self._check(name)
        return self._r.host.store.kv_delete(self._r.name, name)


class _Context:
    """The :class:`plugins.api.Context` a strategy gets: a narrow view of its runner."""

    def __init__(self, runner: _Runner) -> None:
        self._r = runner
        self._store = _Store(runner)
        self._log = logging.LoggerAdapter(
            logging.getLogger(f"ibfleet.strategy.{runner.name}"), {"strategy": runner.name}
        )

    @property
    def name(self) -> str:
        return self._r.name

    @property
    def params(self) -> Mapping[str, Any]:
        return self._r.cfg.params

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        return self._log

    @property
    def store(self) -> api.KeyValueStore:
        return self._store

    @property
    def gateway(self) -> str | None:
        return self._r.active

    def now(self) -> datetime:
        return self._r.host.clock()

    async def subscribe(self, instrument: api.Instrument, *, bar: timedelta | None = None) -> None:
        await self._r.subscribe(instrument, bar=bar)

    def last_price(self, instrument: api.Instrument) -> float | None:
        return self._r.last_price(instrument)

    def position(self, instrument: api.Instrument) -> float:
        return self._r.position_of(instrument)

    def open_orders(self) -> list[api.OrderView]:
        return [o.view() for o in self._r.orders.values() if not o.status.terminal]

    async def place(self, spec: api.OrderSpec) -> api.OrderView:
        return await self._r.place(spec)

    async def modify(
        self, key: str, *, quantity: float | None = None, limit_price: float | None = None
    ) -> api.OrderView:
        return await self._r.modify(key, quantity=quantity, limit_price=limit_price)

    async def cancel(self, key: str) -> None:
        await self._r.cancel(key)

    def call_every(self, interval: timedelta, timer: str) -> None:
        self._r.call_every(interval, timer)


class _Runner:
    """One strategy: its instance, task, session, working orders and positions."""

    def __init__(self, host: StrategyHost, cfg: StrategyConfig) -> None:
        self.host = host
        self.cfg = cfg
        self.name = cfg.name
        self.state = StrategyState.LOADED
        self.active: str | None = cfg.gateways[0]
        self.session: _Session | None = None
        self.strategy: api.Strategy | None = None
        self.ctx = _Context(self)
        self.orders: dict[str, _Order] = {}
        self.positions: dict[int, float] = {}
        self.contracts: dict[int, Contract] = {}
        self.instruments: dict[int, api.Instrument] = {}
        self.qualified: dict[api.Instrument, Contract] = {}
        self.subscriptions: dict[int, timedelta | None] = {}
        self.bars: dict[int, BarBuilder] = {}
        self.last: dict[int, float] = {}
        self.tickers_pending: dict[int, Ticker] = {}
        self.seen_execs: list[str] = []
        self.bucket = TokenBucket(rate=cfg.limits.max_orders_per_sec)
        self.safe_bucket = TokenBucket(rate=MAX_MESSAGES_PER_SECOND)
        self.inbox: asyncio.Queue[tuple[str, Callable[[], Any]]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        #: The task that rides out an outage of the active gateway.
        self.loss_task: asyncio.Task[None] | None = None
        self.first_task: asyncio.Task[None] | None = None  # waiting for a first gateway
        self.outage_since: float | None = None  # monotonic: the outage's first sign
        self.shutdown_done = False  # on_shutdown already ran (a SHUTDOWN gate came before stop)
        self.stopping = False  # stop() began: no outage reaction starts anything new
        self.timers: list[asyncio.Task[None]] = []
        self.lock = asyncio.Lock()
        self.changed = asyncio.Event()
        self.trading = False
        self.started = False
        self.sample: Any = None  # a journal record, to speak the journal's status enum
        self.counts = {"sent": 0, "refused": 0, "fills": 0, "safe": 0, "failovers": 0}
        self.unknown: set[str] = set()
        self.last_error: str | None = None
        self.safe_runs: list[SafeStateRun] = []
        self._load_host_record()

    # -- bookkeeping -----------------------------------------------------------------------

    def _load_host_record(self) -> None:
        record = self.host.store.kv_get(self.name, _HOST_KV) or {}
        self.positions = {int(k): float(v) for k, v in record.get("positions", {}).items()}
        self.seen_execs = list(record.get("execs", []))

    def _save_host_record(self) -> None:
        record = {
            "positions": {str(k): v for k, v in self.positions.items() if v != 0},
            "execs": self.seen_execs[-2000:],
        }
        self.host.store.kv_set(self.name, _HOST_KV, record, now=self.host.clock())

    def set_state(self, state: StrategyState) -> None:
        if state is self.state:
            return
        log.info(
            "strategy_state strategy=%s from=%s to=%s gateway=%s",
            self.name,
            self.state.name,
            state.name,
            self.active,
        )
        self.state = state
        if self.host.metrics is not None:
            try:
                self.host.metrics.set_strategy_state(self.name, state.name)
            except ValueError as exc:
                # Metrics built without this state (see StrategyState): say so, keep going.
                log.error("strategy_metrics_state_unknown strategy=%s error=%s", self.name, exc)
        self.changed.set()

    def count(self, outcome: str) -> None:
        if self.host.metrics is not None:
            self.host.metrics.order_counted(self.name, outcome)

    def status(self) -> StrategyStatus:
        session = self.session
        return StrategyStatus(
            name=self.name,
            plugin=self.cfg.plugin,
            state=self.state,
            gateway=self.active,
            client_id=session.client_id if session and not session.closed else None,
            open_orders=sum(1 for o in self.orders.values() if not o.status.terminal),
            orders_sent=self.counts["sent"],
            orders_refused=self.counts["refused"],
            fills=self.counts["fills"],
            safe_state_runs=self.counts["safe"],
            failovers=self.counts["failovers"],
            unknown_intents=len(self.unknown),
            last_error=self.last_error,
        )

    def feed(self, gateway: str) -> _Feed:
        return self.host.feeds.setdefault(gateway, _Feed())

    # -- sessions --------------------------------------------------------------------------

    def _client_id_for(self, gateway: str) -> int:
        if gateway == self.cfg.gateways[0]:
            return self.cfg.client_id
        endpoint = self.host.endpoints[gateway]
        if endpoint.leases is None:
            return self.cfg.client_id
        return endpoint.leases.lease(f"strategy:{self.name}", now=self.host.clock())

    async def connect(self, gateway: str) -> _Session:
        """A new session on ``gateway`` (a 326 refusal rotates a leased id once)."""
        endpoint = self.host.endpoints[gateway]
        client_id = self._client_id_for(gateway)
        settings = self.host.settings
        for attempt in range(2):
            ib = IB()
            ib.RequestTimeout = settings.request_timeout
            refused: list[int] = []

            def on_error(
                req_id: int, code: int, msg: str, contract: Any, _r: list[int] = refused
            ) -> None:
                if code == 326:
                    _r.append(code)

            ib.errorEvent += on_error
            try:
                await ib.connectAsync(
                    endpoint.host,
                    endpoint.port,
                    clientId=client_id,
                    timeout=settings.connect_timeout,
                    account=endpoint.account or "",
                )
            except (OSError, TimeoutError, ConnectionError) as exc:
                ib.disconnect()
                if refused and attempt == 0 and endpoint.leases is not None:
                    client_id = endpoint.leases.rotate(
                        f"strategy:{self.name}", now=self.host.clock()
                    )
                    continue
                raise ConnectionError(
                    f"strategy {self.name}: cannot connect to gateway {gateway} "
                    f"({endpoint.host}:{endpoint.port}, client id {client_id}): "
                    f"{type(exc).__name__} {exc}"
                ) from None
            ib.errorEvent -= on_error
            accounts = ib.managedAccounts()
            account = endpoint.account or (accounts[0] if accounts else "")
            session = _Session(ib=ib, gateway=gateway, client_id=client_id, account=account)
            self._attach(session)
            log.info(
                "strategy_session_open strategy=%s gateway=%s client_id=%s account=%s",
                self.name,
                gateway,
                client_id,
                account,
            )
            return session
        raise AssertionError("unreachable")

    def close_session(self, session: _Session | None) -> None:
        """Fence: disconnect a session before anything else may act for this strategy."""
        if session is None or session.closed:
            return
        session.closed = True
        session.ib.disconnect()
        log.info(
            "strategy_session_closed strategy=%s gateway=%s client_id=%s",
            self.name,
            session.gateway,
            session.client_id,
        )

    def _attach(self, session: _Session) -> None:
        ib = session.ib
        ib.orderStatusEvent += lambda trade: self._on_status(session, trade)
        ib.execDetailsEvent += lambda trade, fill: self._on_exec(session, trade, fill)
        ib.pendingTickersEvent += lambda tickers: self._on_tickers(session, tickers)
        ib.disconnectedEvent += lambda: self._on_disconnected(session)

    def _on_disconnected(self, session: _Session) -> None:
        if session.closed:
            return
        session.closed = True
        if session is self.session:
            log.warning("strategy_session_lost strategy=%s gateway=%s", self.name, session.gateway)
            self.outage_began(f"API session to {session.gateway} closed")

    # -- broker events ---------------------------------------------------------------------

    def _on_status(self, session: _Session, trade: Trade) -> None:
        key = trade.order.orderRef
        if session.closed or not belongs_to(key, self.name):
            return
        status = IntentState.from_ib(trade.orderStatus.status)
        if trade.orderStatus.status == "PendingCancel":
            status = IntentState.ACKED
        filled = float(trade.orderStatus.filled or 0.0)
        order = self.orders.get(key)
        if order is not None and order.status.terminal and not status.terminal:
            # A late or replayed report never revives a finished order (as in the journal).
            status = order.status
        perm_id = trade.order.permId or None
        native = native_status(self.sample, status)
        now = self.host.clock()
        # After the send, journal writes leave the loop: the intent itself is already durable.
        self.host.later(
            lambda: self.host.store.update_from_broker(
                key, perm_id=perm_id, status=native, filled=filled, now=now
            )
        )
        self.unknown.discard(key)
        if order is not None:
            if status.terminal:
                del self.orders[key]  # working orders only: risk checks walk this dict
            order.status = status
            order.filled = max(order.filled, filled)
            if order.trade is None or order.trade.order.clientId == session.client_id:
                order.trade = trade
        if status is IntentState.FILLED:
            self.count("filled")
        update = api.OrderUpdate(
            key=key,
            status=status,
            filled=filled,
            remaining=float(trade.orderStatus.remaining or 0.0),
        )
        self.post("order", lambda: self._hook().on_order_status(update))

    def _on_exec(self, session: _Session, trade: Trade, fill: IbFill) -> None:
        key = fill.execution.orderRef or trade.order.orderRef
        if session.closed or not belongs_to(key, self.name):
            return
        if not self._book_execution(
            fill.execution.execId, fill.contract, fill.execution.side, fill.execution.shares
        ):
            return
        self._save_host_record()
        self.counts["fills"] += 1
        instrument = self.instruments.get(fill.contract.conId) or api.Instrument(
            fill.contract.symbol
        )
        report = api.Fill(
            key=key,
            exec_id=fill.execution.execId,
            instrument=instrument,
            side=api.Side.BUY if fill.execution.side == "BOT" else api.Side.SELL,
            quantity=float(fill.execution.shares),
            price=float(fill.execution.price),
            time=fill.time or self.host.clock(),
        )
        self.post("fill", lambda: self._hook().on_fill(report))

    def _book_execution(self, exec_id: str, contract: Contract, side: str, shares: float) -> bool:
        if exec_id in self.seen_execs:
            return False
        self.seen_execs.append(exec_id)
        signed = float(shares) if side == "BOT" else -float(shares)
        con_id = contract.conId
        self.positions[con_id] = self.positions.get(con_id, 0.0) + signed
        self.contracts.setdefault(con_id, contract)
        return True

    def _on_tickers(self, session: _Session, tickers: Iterable[Ticker]) -> None:
        if session.closed:
            return
        for ticker in tickers:
            con_id = ticker.contract.conId if ticker.contract else 0
            if con_id not in self.subscriptions:
                continue
            price = _num(ticker.last) or _num(ticker.midpoint()) or _num(ticker.close)
            if price is not None:
                self.last[con_id] = price
                builder = self.bars.get(con_id)
                if builder is not None:
                    done = builder.add(price, self.host.clock())
                    if done is not None:
                        self.post("bar", functools.partial(self._hook().on_bar, done))
            first = con_id not in self.tickers_pending
            self.tickers_pending[con_id] = ticker
            if first:
                self.post("tick", functools.partial(self._deliver_tick, con_id))

    async def _deliver_tick(self, con_id: int) -> None:
        ticker = self.tickers_pending.pop(con_id, None)
        instrument = self.instruments.get(con_id)
        if ticker is None or instrument is None:
            return
        tick = api.Tick(
            instrument=instrument,
            time=ticker.time or self.host.clock(),
            bid=_num(ticker.bid),
            ask=_num(ticker.ask),
            last=_num(ticker.last),
        )
        await self._hook().on_tick(tick)

    # -- the strategy's task -----------------------------------------------------------------

    def _hook(self) -> api.Strategy:
        assert self.strategy is not None
        return self.strategy

    def post(self, kind: str, call: Callable[[], Any]) -> None:
        """Queue a hook call for the strategy's task (hooks never run concurrently)."""
        self.inbox.put_nowait((kind, call))

    async def _loop(self) -> None:
        while True:
            kind, call = await self.inbox.get()
            if self.state is not StrategyState.RUNNING and kind in ("tick", "bar", "timer"):
                continue
            if self.state in (StrategyState.CRASHED, StrategyState.STOPPED):
                continue
            try:
                await call()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._crashed(exc)

    async def _crashed(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.exception(
            "strategy_crashed strategy=%s error=%s", self.name, type(exc).__name__, exc_info=exc
        )
        self.trading = False
        self.host.alert(
            f"strategy:{self.name}:crashed",
            "critical",
            f"strategy {self.name} crashed",
            f"{self.last_error}; safe state {self.cfg.safe_state.on_disconnect.value} runs; "
            f"resume with `ibfleet strategies resume {self.name}`",
        )
        await self.safe_state(SafeStateTrigger.CRASH, self.cfg.safe_state.on_disconnect)
        self.set_state(StrategyState.CRASHED)

    def call_every(self, interval: timedelta, timer: str) -> None:
        seconds = interval.total_seconds()
        if seconds <= 0:
            raise ValueError(f"strategy {self.name}: timer {timer!r} interval must be positive")

        async def tick() -> None:
            while True:
                await asyncio.sleep(seconds)
                if self.state is StrategyState.RUNNING:
                    self.post("timer", lambda: self._hook().on_timer(timer))

        self.timers.append(asyncio.create_task(tick(), name=f"ibfleet-timer-{self.name}"))

    # -- start, resume, stop ---------------------------------------------------------------

    def _new_instance(self) -> None:
        cls = load_strategy_class(self.cfg.plugin, strategy=self.name)
        self.strategy = cls()
        self.strategy.ctx = self.ctx
        self.started = False
        for task in self.timers:
            task.cancel()
        self.timers.clear()

    async def start(self) -> None:
        self._new_instance()
        self.task = asyncio.create_task(self._loop(), name=f"ibfleet-strategy-{self.name}")
        gateway = self.cfg.gateways[0]
        try:
            self.session = await self.connect(gateway)
        except ConnectionError as exc:
            log.warning("strategy_start_deferred strategy=%s reason=%s", self.name, exc)
            if self.host.store.intents_maybe_live(self.name):
                # Orders from an earlier run may be working at IB: an outage of the primary,
                # ridden like any other (a planned one holds them, a lost one safe-states).
                self.outage_began(str(exc))
                return
            # Nothing of ours can be live: wait quietly for a gateway to come up (no safe
            # state, no page: a fleet that is still starting is not a lost gateway).
            self.first_task = asyncio.create_task(
                self._await_first_gateway(), name=f"ibfleet-first-{self.name}"
            )
            return
        await self.resume_on(self.session, failover=False)

    def _readiness(self, waiting_since: float) -> list[outage.GatewayReadiness]:
        now = time.monotonic()
        out = []
        for name in self.cfg.gateways:
            feed = self.feed(name)
            since = waiting_since if feed.gate is None else feed.changed_at
            out.append(
                outage.GatewayReadiness(
                    name=name, open=feed.ready, for_=timedelta(seconds=max(now - since, 0.0))
                )
            )
        return out

    async def _await_first_gateway(self) -> None:
        waiting_since = time.monotonic()
        patience = timedelta(
            seconds=max(
                self.host.settings.primary_patience, self.cfg.safe_state.grace.total_seconds()
            )
        )
        while self.state is StrategyState.LOADED:
            self.changed.clear()
            choice = outage.start_choice(self._readiness(waiting_since), patience=patience)
            for name in choice.try_now:
                try:
                    # connect() bounds itself; the outer deadline only guards against a hang,
                    # so a slow handshake is closed by the client, never abandoned half-open.
                    session = await within(
                        self.connect(name), self.host.settings.connect_timeout + 5.0
                    )
                except (ConnectionError, TimeoutError) as exc:
                    log.info("strategy_first_connect_failed strategy=%s error=%s", self.name, exc)
                    continue
                if name != self.cfg.gateways[0] and self.feed(self.cfg.gateways[0]).ready:
                    # The primary came up while we were connecting elsewhere: start there.
                    self.close_session(session)
                    break
                try:
                    await self.resume_on(session, failover=name != self.cfg.gateways[0])
                except Exception as exc:  # keep waiting rather than die silently
                    log.warning("strategy_first_resume_failed strategy=%s error=%r", self.name, exc)
                    self.close_session(session)
                    continue
                return
            wait = 1.0
            if choice.recheck_in is not None:
                wait = min(wait, choice.recheck_in.total_seconds())
            with contextlib.suppress(TimeoutError):
                await within(self.changed.wait(), max(wait, 0.001))

    async def resume_on(self, session: _Session, *, failover: bool) -> None:
        """Reconcile on ``session``, then let the strategy act (first time: ``on_start``)."""
        self.session = session
        self.active = session.gateway
        result = await self.reconcile(session)
        await self._resubscribe(session)
        self.trading = True
        self.set_state(StrategyState.RUNNING)
        if not self.started:
            self.started = True
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

    async def _resubscribe(self, session: _Session) -> None:
        for con_id in list(self.subscriptions):
            contract = self.contracts.get(con_id)
            if contract is not None:
                session.ib.reqMktData(contract, "", False, False)

    async def stop(self) -> None:
        """Shutdown: ``safe_state.on_shutdown`` (as :func:`plugins.outage.react` says for a
        SHUTDOWN), ``on_stop``, then close everything."""
        settings = self.host.settings
        self.stopping = True
        self.changed.set()
        ride = self.loss_task
        if ride is not None and ride is not asyncio.current_task() and not ride.done():
            # A safe state or failover under way finishes (never half a cancel, never a
            # session left open); a ride that is only waiting ends at once on ``stopping``.
            await asyncio.wait(
                {ride},
                timeout=settings.connect_timeout
                + settings.cancel_deadline
                + settings.flatten_deadline
                + 4 * settings.request_timeout,
            )
        for task in (ride, self.first_task):
            if task is not None and task is not asyncio.current_task() and not task.done():
                task.cancel()
                # Bounded: a cancel that lands on a connect in flight ends with that connect.
                await asyncio.wait({task}, timeout=settings.connect_timeout + 2.0)
        if self.state not in (StrategyState.STOPPED, StrategyState.CRASHED):
            if self.state is not StrategyState.HALTED and not self.shutdown_done:
                reaction = outage.react(
                    OutageKind.SHUTDOWN, self.cfg.safe_state, timedelta(0), None
                )
                assert reaction.action is not None
                await self.safe_state(SafeStateTrigger.SHUTDOWN, reaction.action)
                self.shutdown_done = True
            if self.strategy is not None and self.started:
                with contextlib.suppress(Exception):
                    await within(
                        self._hook().on_stop(api.StopReason.SHUTDOWN),
                        self.host.settings.request_timeout,
                    )
        self.trading = False
        for task in [*self.timers, self.task, self.loss_task, self.first_task]:
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self.close_session(self.session)
        self.set_state(StrategyState.STOPPED)

    # -- loss, grace, safe state, failover -------------------------------------------------

    def gate_changed(self, gateway: str, gate: Gate, was: bool | None) -> None:
        """The supervisor's order gate of ``gateway`` opened or closed (or changed its kind)."""
        self.changed.set()
        if not gate.open and gateway == self.active:
            # Only a gateway that was open (or that a running strategy trades on, or whose
            # outage is already being ridden) can be lost: one still coming up is not.
            riding = self.loss_task is not None and not self.loss_task.done()
            in_use = was is True or (was is None and self.state is StrategyState.RUNNING)
            if in_use or riding:
                self.outage_began(f"gateway {gateway}: {gate.reason or 'order gate closed'}")
        elif gate.open and self.state is StrategyState.SAFE_STATE and self.session is None:
            task = asyncio.get_running_loop().create_task(self.recover_if_waiting(gateway))
            self.host.keep(task)

    def outage_began(self, reason: str) -> None:
        """The active gateway's gate closed or its session dropped: ride the outage out.

        What happens next is :func:`plugins.outage.react`'s, re-evaluated by the outage task.
        """
        self.trading = False
        self.changed.set()
        if self.stopping or self.state not in (StrategyState.RUNNING, StrategyState.LOADED):
            return
        if self.loss_task is None or self.loss_task.done():
            self.outage_since = time.monotonic()
            self.loss_task = asyncio.create_task(
                self._ride_outage(reason), name=f"ibfleet-outage-{self.name}"
            )
        kind = self.feed(self.active or "").kind
        change = api.GatewayChange(gateway=self.active or "", ready=False, reason=reason, kind=kind)
        if self.started:
            self.post("gateway", lambda: self._hook().on_gateway_state(change))

    def _outage_now(self, gateway: str, since: float) -> tuple[OutageKind, timedelta | None, float]:
        """The outage's kind, bound and elapsed seconds as the lifecycle and our session say.

        A closed gate gives its kind and bound, timed from the outage's first sign. An open
        (or ungated) gateway whose session we cannot get back is lost as far as we know,
        timed from the gate's opening: a planned hold's time is never counted as lost time.
        """
        feed = self.feed(gateway)
        gate = feed.gate
        now = time.monotonic()
        if gate is not None and not gate.open and gate.kind is not None:
            return gate.kind, gate.bound, now - since
        opened = feed.changed_at if gate is not None else since
        return OutageKind.LOST, None, now - max(since, opened)

    async def _ride_outage(self, reason: str) -> None:
        try:
            await self._ride(reason)
        finally:
            if self.loss_task is asyncio.current_task():
                self.outage_since = None

    async def _ride(self, reason: str) -> None:
        gateway = self.active or self.cfg.gateways[0]
        since = self.outage_since if self.outage_since is not None else time.monotonic()
        settings = self.host.settings
        log.warning(
            "strategy_gateway_out strategy=%s gateway=%s grace=%.1f reason=%s",
            self.name,
            gateway,
            self.cfg.safe_state.grace.total_seconds(),
            reason,
        )
        reported: tuple[OutageKind, outage.Step] | None = None
        while self.state in (StrategyState.RUNNING, StrategyState.LOADED) and not self.stopping:
            self.changed.clear()  # before looking: a change from here on wakes the wait below
            kind, bound, elapsed = self._outage_now(gateway, since)
            reaction = outage.react(kind, self.cfg.safe_state, timedelta(seconds=elapsed), bound)
            left = math.inf if reaction.recheck_in is None else reaction.recheck_in.total_seconds()
            if self.feed(gateway).ready is not False:
                # Its gate allows it: back on the same gateway before anything else, with a
                # connect attempt that never runs far past the moment the reaction changes.
                if await self._back_on(gateway, budget=max(left, 0.01)):
                    return
                kind, bound, elapsed = self._outage_now(gateway, since)
                reaction = outage.react(
                    kind, self.cfg.safe_state, timedelta(seconds=elapsed), bound
                )
                left = (
                    math.inf if reaction.recheck_in is None else reaction.recheck_in.total_seconds()
                )
            if (kind, reaction.step) != reported:
                log.info(
                    "strategy_outage strategy=%s gateway=%s kind=%s step=%s",
                    self.name,
                    gateway,
                    kind.value,
                    reaction.step.value,
                )
                reported = (kind, reaction.step)
            if reaction.step is outage.Step.SAFE_STATE:
                assert reaction.action is not None
                trigger = (
                    SafeStateTrigger.SHUTDOWN
                    if kind is OutageKind.SHUTDOWN
                    else SafeStateTrigger.GATEWAY_LOST
                )
                run = await self.safe_state(trigger, reaction.action, failover=reaction.fail_over)
                if trigger is SafeStateTrigger.SHUTDOWN:
                    self.shutdown_done = True
                if reaction.fail_over and not self.stopping:
                    await self.failover(run)
                return
            # HOLD or WAIT: look again when the gate changes or the reaction is due to.
            with contextlib.suppress(TimeoutError):
                pause = min(left, settings.retry_interval * 5)
                await within(self.changed.wait(), max(pause, 0.001))

    async def _back_on(self, gateway: str, *, budget: float) -> bool:
        """Resume on ``gateway`` if its gate is not closed: the same session, else a new one."""
        feed = self.feed(gateway)
        if feed.ready is False:
            return False
        session = self.session
        if session is not None and not session.closed:
            if not feed.ready:
                return False  # ungated and our session still up: nothing says it is back
            await self.resume_on(session, failover=False)
            return True
        try:
            # Never the same instant as the client's own connect timeout: a cancel landing on
            # ib_async's wait_for can be lost (3.11).
            new = await within(
                self.connect(gateway), min(budget, self.host.settings.connect_timeout + 1.0)
            )
        except (ConnectionError, TimeoutError):
            return False
        await self.resume_on(new, failover=False)
        return True

    def _usable(self, gateway: str, *, shutting_down: bool = False) -> bool:
        """May a session on ``gateway`` act? Not while its gate is closed, except for the
        shutdown's own safe state: the gateways keep running while the supervisor stops."""
        feed = self.feed(gateway)
        return feed.ready is not False or (shutting_down and feed.kind is OutageKind.SHUTDOWN)

    def _candidates(self, exclude: str | None, *, shutting_down: bool = False) -> list[str]:
        account = self.session.account if self.session else None
        out = []
        for name in self.cfg.gateways:
            if name == exclude or name not in self.host.endpoints:
                continue
            endpoint = self.host.endpoints[name]
            if account and endpoint.account and endpoint.account != account:
                continue
            if not self._usable(name, shutting_down=shutting_down):
                continue
            out.append(name)
        return out

    async def safe_state(
        self, trigger: SafeStateTrigger, action: SafeStateAction, *, failover: bool = False
    ) -> SafeStateRun:
        """Cancel / flatten / hold through the best path still open; record the run."""
        async with self.lock:
            return await self._safe_state(trigger, action, failover=failover)

    async def _safe_state(
        self, trigger: SafeStateTrigger, action: SafeStateAction, *, failover: bool
    ) -> SafeStateRun:
        started_at = self.host.clock()
        t0 = time.perf_counter()
        self.trading = False
        self.set_state(StrategyState.SAFE_STATE)
        path = SafeStatePath.NOTHING
        gateway: str | None = None
        cancelled: tuple[str, ...] = ()
        closing: tuple[str, ...] = ()
        ok = True
        shutting_down = trigger is SafeStateTrigger.SHUTDOWN
        if action is not SafeStateAction.HOLD:
            ok = False
            session = self.session
            active_ok = (
                session is not None
                and not session.closed
                and (trigger is not SafeStateTrigger.GATEWAY_LOST)
                and self._usable(session.gateway, shutting_down=shutting_down)
            )
            if active_ok and session is not None:
                done = await self._act_via(session, action)
                if done is not None:
                    path, gateway, ok = SafeStatePath.SAME_GATEWAY, session.gateway, True
                    cancelled, closing = done
            if not ok:
                for name in self._candidates(exclude=self.active, shutting_down=shutting_down):
                    # Fence: the old session is closed before the new one does anything.
                    self.close_session(self.session)
                    try:
                        other = await self.connect(name)
                    except ConnectionError as exc:
                        log.warning(
                            "safe_state_path_failed strategy=%s gateway=%s reason=%s",
                            self.name,
                            name,
                            exc,
                        )
                        continue
                    try:
                        done = await self._act_via(other, action)
                    except BaseException:
                        self.close_session(other)  # cancelled midway: never leave it open
                        raise
                    if done is None:
                        self.close_session(other)
                        continue
                    path, gateway, ok = SafeStatePath.FAILOVER_GATEWAY, name, True
                    cancelled, closing = done
                    if failover:
                        self.session = other
                    else:
                        self.close_session(other)
                    break
        await self.host.settle()
        journal_error: str | None = None
        try:
            still_live = tuple(i.key for i in self.host.store.intents_maybe_live(self.name))
        except Exception as exc:
            # The cancels went to IB regardless; what the journal cannot confirm may be live.
            journal_error = str(exc) or type(exc).__name__
            still_live = tuple(k for k, o in self.orders.items() if not o.status.terminal)
        if journal_error is not None:
            self.host.alert(
                f"strategy:{self.name}:maybe-live",
                "critical",
                f"strategy {self.name}: orders may be live (journal unavailable)",
                f"trigger {trigger.value}; {action.value} was sent to IB "
                f"{'and done' if ok else 'but no gateway could do it'}, yet the journal cannot "
                f"be read ({journal_error}). Orders that may still be live at IB (orderRef): "
                f"{', '.join(still_live) or 'none known'}",
            )
        elif not ok:
            path = SafeStatePath.ALERT_ONLY
            self.host.alert(
                f"strategy:{self.name}:maybe-live",
                "critical",
                f"strategy {self.name}: safe state could not reach IB",
                f"trigger {trigger.value}; no gateway could {action.value}. Orders that may "
                f"still be live at IB (orderRef): {', '.join(still_live) or 'none'}",
            )
        elif not still_live:
            self.host.resolve(f"strategy:{self.name}:maybe-live")
        duration = time.perf_counter() - t0
        run = SafeStateRun(
            strategy=self.name,
            trigger=trigger,
            action=action,
            path=path,
            gateway=gateway,
            started_at=started_at,
            duration_seconds=duration,
            cancelled=cancelled,
            closing_orders=closing,
            still_live=still_live,
            ok=ok,
        )
        self.safe_runs.append(run)
        self.counts["safe"] += 1
        if self.host.metrics is not None:
            self.host.metrics.safe_state_ran(self.name, trigger.value, duration)
        self._journal_event(
            at=self.host.clock(),
            kind="strategy.safe_state",
            gateway=gateway,
            strategy=self.name,
            severity="info" if ok else "critical",
            message=f"safe state {action.value} after {trigger.value} via {path.value}",
            fields={
                "trigger": trigger.value,
                "action": action.value,
                "path": path.value,
                "duration_seconds": round(duration, 4),
                "cancelled": list(cancelled),
                "closing_orders": list(closing),
                "still_live": list(still_live),
                "ok": ok,
            },
        )
        log.info(
            "safe_state strategy=%s trigger=%s action=%s path=%s ok=%s duration=%.3f "
            "cancelled=%d still_live=%d",
            self.name,
            trigger.value,
            action.value,
            path.value,
            ok,
            duration,
            len(cancelled),
            len(still_live),
        )
        return run

    async def _act_via(
        self, session: _Session, action: SafeStateAction
    ) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """Cancel (and flatten) through ``session``; None when it could not be confirmed."""
        try:
            cancelled = await self._cancel_all(session)
            closing: tuple[str, ...] = ()
            if action is SafeStateAction.FLATTEN:
                await self.reconcile(session)
                closing = await self._flatten(session)
            await self.reconcile(session)
        except (ConnectionError, TimeoutError, OSError) as exc:
            log.warning(
                "safe_state_path_failed strategy=%s gateway=%s reason=%s",
                self.name,
                session.gateway,
                exc,
            )
            return None
        return cancelled, closing

    async def _open_ours(self, session: _Session) -> list[Trade]:
        trades = await self._request(session, session.ib.reqAllOpenOrdersAsync())
        return [
            t
            for t in trades
            if belongs_to(t.order.orderRef, self.name) and t.orderStatus.status not in _DONE_WORDS
        ]

    async def _request(self, session: _Session, awaitable: Any) -> Any:
        if session.closed or not session.ib.isConnected():
            raise ConnectionError(f"session to {session.gateway} is closed")
        try:
            return await within(awaitable, self.host.settings.request_timeout)
        except TimeoutError:
            raise TimeoutError(f"gateway {session.gateway} did not answer in time") from None

    async def _cancel_all(self, session: _Session) -> tuple[str, ...]:
        """Cancel every open order carrying this strategy's key, one by one; wait until gone."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.host.settings.cancel_deadline
        ours = await self._open_ours(session)
        keys = tuple(t.order.orderRef for t in ours)
        sent: set[int] = set()
        while ours:
            for trade in ours:
                if trade.order.permId in sent:
                    continue
                await _take(self.safe_bucket)
                session.ib.cancelOrder(trade.order)
                sent.add(trade.order.permId)
            if loop.time() > deadline:
                raise TimeoutError(
                    f"{len(ours)} orders still open at {session.gateway} after cancelling"
                )
            await asyncio.sleep(self.host.settings.retry_interval / 2)
            ours = await self._open_ours(session)
        return keys

    async def _flatten(self, session: _Session) -> tuple[str, ...]:
        """Close the strategy's own positions with market orders (journalled, rate-limited)."""
        keys: list[str] = []
        for con_id, qty in list(self.positions.items()):
            if abs(qty) < 1e-9:
                continue
            contract = self.contracts.get(con_id)
            if contract is None:
                contract = Contract(conId=con_id, exchange="SMART")
            side = api.Side.SELL if qty > 0 else api.Side.BUY
            order = Order(action=side.value, totalQuantity=abs(qty), orderType="MKT")
            await _take(self.safe_bucket)
            keys.append(self._send(session, contract, order, purpose="flatten").key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.host.settings.flatten_deadline
        while any(abs(q) > 1e-9 for q in self.positions.values()):
            if loop.time() > deadline or session.closed:
                raise TimeoutError(f"positions not flat at {session.gateway} in time")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await within(self.changed.wait(), self.host.settings.retry_interval)
        return tuple(keys)

    async def failover(self, run: SafeStateRun) -> None:
        """After a lost gateway's safe state: move to the next gateway, or wait for one."""
        async with self.lock:
            old = self.active
            session = self.session
            if session is None or session.closed or session.gateway == old:
                self.close_session(session)
                session = None
                for name in self._candidates(exclude=old):
                    try:
                        session = await self.connect(name)
                        break
                    except ConnectionError as exc:
                        log.warning(
                            "failover_connect_failed strategy=%s gateway=%s reason=%s",
                            self.name,
                            name,
                            exc,
                        )
            if session is None:
                log.warning("failover_waiting strategy=%s gateway=%s", self.name, old)
                self.session = None
                self.post(
                    "gateway",
                    lambda: self._hook().on_gateway_state(
                        api.GatewayChange(gateway=old or "", ready=False, reason="no gateway")
                    ),
                )
                return
            self.set_state(StrategyState.FAILING_OVER)
            self.counts["failovers"] += 1
            if self.host.metrics is not None:
                self.host.metrics.failed_over(self.name)
            self.host.store.append_event(
                at=self.host.clock(),
                kind="strategy.failover",
                gateway=session.gateway,
                strategy=self.name,
                severity="warning",
                message=f"failover from {old} to {session.gateway}",
                fields={"from": old, "to": session.gateway, "client_id": session.client_id},
            )
            await self.resume_on(session, failover=True)

    async def recover_if_waiting(self, gateway: str) -> None:
        """A gateway came back while the strategy had none: resume there after reconciling."""
        if self.state is not StrategyState.SAFE_STATE or self.session is not None:
            return
        if gateway not in self.cfg.gateways or self.lock.locked():
            return
        async with self.lock:
            try:
                session = await self.connect(gateway)
            except ConnectionError:
                return
            await self.resume_on(session, failover=gateway != self.active)

    # -- reconciliation --------------------------------------------------------------------

    async def reconcile(self, session: _Session) -> Reconciliation:
        """Match the journal's maybe-live intents to IB's view from ``session``."""
        ib = session.ib
        await self.host.settle()  # the journal must hold every report before it is compared
        open_trades = await self._request(session, ib.reqAllOpenOrdersAsync())
        completed = await self._request(session, ib.reqCompletedOrdersAsync(False))
        fills = await self._request(session, ib.reqExecutionsAsync())
        records = self.host.store.intents_maybe_live(self.name)
        if records and self.sample is None:
            self.sample = records[0]
        intents = [
            IntentSeen(
                key=r.key,
                status=state_of(r),
                quantity=float(r.order.get("totalQuantity", 0.0)),
                order_id=r.order_id,
                perm_id=r.perm_id,
                filled=r.filled,
            )
            for r in records
        ]
        seen = [
            BrokerOrderSeen(
                order_ref=t.order.orderRef,
                perm_id=t.order.permId,
                order_id=t.order.orderId,
                client_id=t.order.clientId,
                status=t.orderStatus.status,
                filled=float(t.orderStatus.filled or 0.0),
                is_open=is_open,
            )
            for trades, is_open in ((open_trades, True), (completed, False))
            for t in trades
            if t.order.orderRef
        ]
        executions = [
            BrokerExecution(
                exec_id=f.execution.execId,
                order_ref=f.execution.orderRef,
                perm_id=f.execution.permId,
                shares=float(f.execution.shares),
                cum_qty=float(f.execution.cumQty),
            )
            for f in fills
            if belongs_to(f.execution.orderRef, self.name)
        ]
        booked = False
        for f in fills:
            if belongs_to(f.execution.orderRef, self.name):
                booked |= self._book_execution(
                    f.execution.execId, f.contract, f.execution.side, f.execution.shares
                )
        if booked:
            self._save_host_record()
        result = reconcile(self.name, intents, seen, executions)
        now = self.host.clock()
        by_ref = {t.order.orderRef: t for t in open_trades}
        for decision in result.decisions:
            if decision.kind is not DecisionKind.UNCHANGED:
                self.host.store.update_from_broker(
                    decision.key,
                    perm_id=decision.perm_id,
                    status=native_status(self.sample, decision.status),
                    filled=decision.filled,
                    now=now,
                )
            order = self.orders.get(decision.key)
            record = next((r for r in records if r.key == decision.key), None)
            if order is None and record is not None:
                order = self._order_from_record(record)
                self.orders[decision.key] = order
            if order is not None:
                order.status = decision.status
                order.filled = decision.filled
                if decision.key in by_ref:
                    order.trade = by_ref[decision.key]
            if decision.kind is DecisionKind.UNKNOWN:
                self.unknown.add(decision.key)
            else:
                self.unknown.discard(decision.key)
        for key in [k for k, o in self.orders.items() if o.status.terminal]:
            del self.orders[key]
        log.info(
            "strategy_reconciled strategy=%s gateway=%s intents=%d open=%d unknown=%d orphans=%d "
            "duplicates=%d",
            self.name,
            session.gateway,
            len(intents),
            len(result.open_keys),
            len(result.unknown),
            len(result.orphans),
            len(result.duplicates),
        )
        if result.unknown:
            self.host.alert(
                f"strategy:{self.name}:unknown-intents",
                "warning",
                f"strategy {self.name}: {len(result.unknown)} orders not found at IB",
                "These intents may have reached IB and are not re-sent; check them in TWS: "
                + ", ".join(result.unknown),
            )
        if result.duplicates:
            self.host.alert(
                f"strategy:{self.name}:duplicates",
                "critical",
                f"strategy {self.name}: an orderRef is at IB more than once",
                ", ".join(result.duplicates),
            )
        return result

    def _order_from_record(self, record: Any) -> _Order:
        contract = record.contract
        order = record.order
        con_id = int(contract.get("conId") or 0)
        instrument = self.instruments.get(con_id) or api.Instrument(
            symbol=str(contract.get("symbol", "")),
            sec_type=str(contract.get("secType", "STK")),
            exchange=str(contract.get("exchange", "SMART")),
            currency=str(contract.get("currency", "USD")),
        )
        limit = order.get("lmtPrice")
        return _Order(
            key=record.key,
            instrument=instrument,
            side=api.Side(order.get("action", "BUY")),
            quantity=float(order.get("totalQuantity", 0.0)),
            limit_price=float(limit) if limit is not None else None,
            con_id=con_id,
            gateway=record.gateway,
            status=state_of(record),
            filled=record.filled,
        )

    # -- market data -----------------------------------------------------------------------

    async def _qualify(self, instrument: api.Instrument) -> Contract:
        found = self.qualified.get(instrument)
        if found is not None:
            return found
        session = self._live_session()
        contract = Contract(
            symbol=instrument.symbol,
            secType=instrument.sec_type,
            exchange=instrument.exchange,
            currency=instrument.currency,
        )
        details = await self._request(session, session.ib.reqContractDetailsAsync(contract))
        if len(details) != 1:
            raise api.OrderRefused(
                api.RefusalReason.RISK,
                f"instrument {instrument} matches {len(details)} contracts at IB; be more precise",
            )
        qualified: Contract = details[0].contract
        self.qualified[instrument] = qualified
        self.contracts[qualified.conId] = qualified
        self.instruments[qualified.conId] = instrument
        return qualified

    def _live_session(self) -> _Session:
        session = self.session
        if session is None or session.closed or not self.trading:
            kind = self.feed(self.active or "").kind
            why = f": {outage.describe(kind)}" if kind is not None else ""
            raise api.OrderRefused(
                api.RefusalReason.NOT_TRADING,
                f"strategy {self.name} is {self.state.name} "
                f"(gateway {self.active}{why}): no orders or requests now",
            )
        return session

    async def subscribe(self, instrument: api.Instrument, *, bar: timedelta | None) -> None:
        contract = await self._qualify(instrument)
        con_id = contract.conId
        if bar is not None:
            self.bars[con_id] = BarBuilder(instrument.symbol, bar)
        if con_id not in self.subscriptions:
            self.subscriptions[con_id] = bar
            self._live_session().ib.reqMktData(contract, "", False, False)

    def last_price(self, instrument: api.Instrument) -> float | None:
        contract = self.qualified.get(instrument)
        return self.last.get(contract.conId) if contract is not None else None

    def position_of(self, instrument: api.Instrument) -> float:
        contract = self.qualified.get(instrument)
        if contract is not None:
            return self.positions.get(contract.conId, 0.0)
        for con_id, known in self.instruments.items():
            if known == instrument:
                return self.positions.get(con_id, 0.0)
        return 0.0

    # -- the order path --------------------------------------------------------------------

    def _refuse(self, outcome: str, reason: api.RefusalReason, message: str, **kw: Any) -> None:
        self.counts["refused"] += 1
        self.count(outcome)
        log.info("order_refused strategy=%s outcome=%s reason=%s", self.name, outcome, message)
        raise api.OrderRefused(reason, f"strategy {self.name}: {message}", **kw)

    def _book(self, con_id: int) -> RiskBook:
        working = [o for o in self.orders.values() if not o.status.terminal]
        same = [o for o in working if o.con_id == con_id]
        return RiskBook(
            position=self.positions.get(con_id, 0.0),
            open_buy_quantity=sum(o.quantity - o.filled for o in same if o.side is api.Side.BUY),
            open_sell_quantity=sum(o.quantity - o.filled for o in same if o.side is api.Side.SELL),
            open_orders=len(working),
        )

    def _check(self, spec: api.OrderSpec, contract: Contract, replaces: _Order | None) -> None:
        feed = self.feed(self.active or "")
        endpoint = self.host.endpoints.get(self.active or "")
        decision = check_order(
            OrderCheck(
                con_id=contract.conId,
                quantity=spec.side.sign * spec.quantity,
                price=spec.limit_price,
                last_price=self.last.get(contract.conId),
                multiplier=spec.instrument.multiplier,
                replaces_quantity=(
                    replaces.side.sign * (replaces.quantity - replaces.filled) if replaces else 0.0
                ),
            ),
            book=self._book(contract.conId),
            limits=self.cfg.limits,
            read_only=self.cfg.read_only or (endpoint is not None and endpoint.read_only),
            in_reset_window=feed.kind is OutageKind.RESET_WINDOW,
            gateway_ready=feed.ready is not False,
        )
        if not decision.accepted:
            assert decision.reason is not None
            self._refuse(
                f"rejected_{decision.reason.value}",
                api.RefusalReason.RISK,
                decision.message,
                risk=decision.reason,
            )

    async def _rate(self) -> None:
        wait = self.bucket.wait_time(time.monotonic())
        if wait > self.host.settings.rate_wait_max:
            self._refuse(
                "rate_limited",
                api.RefusalReason.RATE_LIMITED,
                f"over max_orders_per_sec {self.cfg.limits.max_orders_per_sec} "
                f"(next slot in {wait:.2f}s)",
            )
        await _take(self.bucket)

    async def _whatif(self, session: _Session, contract: Contract, order: Order) -> None:
        state = await self._request(session, session.ib.whatIfOrderAsync(contract, order))
        try:
            margin = float(state.initMarginAfter)
            equity = float(state.equityWithLoanAfter)
        except (TypeError, ValueError):
            self._refuse("rejected_margin", api.RefusalReason.MARGIN, "what-if gave no margin")
        if math.isfinite(margin) and math.isfinite(equity) and margin > equity:
            self._refuse(
                "rejected_margin",
                api.RefusalReason.MARGIN,
                f"initial margin after {margin:.2f} would exceed equity with loan {equity:.2f}",
            )

    def _order_for(self, spec: api.OrderSpec, account: str) -> Order:
        if spec.limit_price is not None:
            return Order(
                action=spec.side.value,
                totalQuantity=spec.quantity,
                orderType="LMT",
                lmtPrice=spec.limit_price,
                tif=spec.tif,
                account=account,
            )
        return Order(
            action=spec.side.value,
            totalQuantity=spec.quantity,
            orderType="MKT",
            tif=spec.tif,
            account=account,
        )

    def _journal_event(self, **event: Any) -> None:
        """An event for the journal; a journal that cannot take it is logged, never raised."""
        try:
            self.host.store.append_event(**event)
        except Exception as exc:
            log.error(
                "journal_event_lost strategy=%s kind=%s error=%s", self.name, event["kind"], exc
            )

    def _send(self, session: _Session, contract: Contract, order: Order, *, purpose: str) -> _Order:
        """Journal the intent durably, then send it with the key as orderRef. No awaits."""
        now = self.host.clock()
        key = new_intent_key(self.name, now=now, random_bits=self.host.rng.getrandbits)
        order.orderRef = key
        order.account = order.account or session.account
        order.orderId = session.ib.client.getReqId()
        order_record: dict[str, Any] = {
            "action": order.action,
            "totalQuantity": order.totalQuantity,
            "orderType": order.orderType,
            "tif": order.tif,
            "purpose": purpose,
        }
        if order.orderType == "LMT":
            order_record["lmtPrice"] = order.lmtPrice
        try:
            record = self.host.store.record_intent(
                key=key,
                strategy=self.name,
                gateway=session.gateway,
                account=session.account,
                client_id=session.client_id,
                contract=_contract_record(contract),
                order=order_record,
                now=now,
                order_id=order.orderId,
            )
        except ValueError:
            raise
        except Exception as exc:
            # No durable intent, no order: IB never sees what the journal could not record.
            self._refuse(
                "refused_journal",
                api.RefusalReason.NOT_TRADING,
                f"the order journal cannot be written ({exc}); the order was not sent",
            )
        self.sample = record
        instrument = self.instruments.get(contract.conId) or api.Instrument(contract.symbol)
        mine = _Order(
            key=key,
            instrument=instrument,
            side=api.Side(order.action),
            quantity=float(order.totalQuantity),
            limit_price=float(order.lmtPrice or 0.0) if order.orderType == "LMT" else None,
            con_id=contract.conId,
            gateway=session.gateway,
        )
        self.orders[key] = mine
        mine.trade = session.ib.placeOrder(contract, order)
        sent_at, order_id = self.host.clock(), order.orderId
        self.host.later(lambda: self.host.store.mark_sent(key, now=sent_at, order_id=order_id))
        if mine.status is IntentState.PENDING_SEND:
            mine.status = IntentState.SENT
        self.counts["sent"] += 1
        self.count("sent")
        return mine

    async def place(self, spec: api.OrderSpec) -> api.OrderView:
        session = self._live_session()
        if not (spec.quantity > 0 and math.isfinite(spec.quantity)):
            self._refuse(
                "rejected_quantity",
                api.RefusalReason.RISK,
                f"quantity {spec.quantity} must be positive (use side for direction)",
            )
        contract = await self._qualify(spec.instrument)
        order = self._order_for(spec, session.account)
        if self.cfg.limits.whatif_margin_check:
            self._check(spec, contract, None)
            await self._whatif(session, contract, order)
        await self._rate()
        # Checked after the last await (a loss or failover may have happened meanwhile), and
        # no await between the checks, the journal write and placeOrder.
        session = self._live_session()
        self._check(spec, contract, None)
        return self._send(session, contract, order, purpose="strategy").view()

    def _mine(self, key: str) -> _Order:
        order = self.orders.get(key)
        if order is None or order.status.terminal:
            raise api.OrderRefused(
                api.RefusalReason.UNKNOWN_ORDER,
                f"strategy {self.name}: no open order {key!r}",
            )
        return order

    async def modify(
        self, key: str, *, quantity: float | None, limit_price: float | None
    ) -> api.OrderView:
        session = self._live_session()
        order = self._mine(key)
        trade = order.trade
        if trade is None or trade.order.clientId != session.client_id:
            raise api.OrderRefused(
                api.RefusalReason.UNKNOWN_ORDER,
                f"strategy {self.name}: order {key} was placed by another session "
                "(before a failover); cancel it and place a new one",
            )
        spec = api.OrderSpec(
            instrument=order.instrument,
            side=order.side,
            quantity=quantity if quantity is not None else order.quantity,
            limit_price=limit_price if limit_price is not None else order.limit_price,
        )
        contract = self.contracts.get(order.con_id) or await self._qualify(order.instrument)
        self._check(spec, contract, order)
        await self._rate()
        session = self._live_session()
        # Same orderId and orderRef: IB modifies the order in place, nothing new is created.
        trade.order.totalQuantity = spec.quantity
        if spec.limit_price is not None:
            trade.order.lmtPrice = spec.limit_price
        session.ib.placeOrder(trade.contract, trade.order)
        order.quantity = spec.quantity
        order.limit_price = spec.limit_price
        self.count("modified")
        at, gateway = self.host.clock(), session.gateway
        fields = {"key": key, "quantity": spec.quantity, "limit_price": spec.limit_price}
        self.host.later(
            lambda: self.host.store.append_event(
                at=at,
                kind="strategy.order_modified",
                gateway=gateway,
                strategy=self.name,
                message=f"order {key} modified",
                fields=fields,
            )
        )
        return order.view()

    async def cancel(self, key: str) -> None:
        session = self._live_session()
        order = self._mine(key)
        await self._rate()
        session = self._live_session()
        if order.trade is not None:
            session.ib.cancelOrder(order.trade.order)
        self.count("cancel_requested")


class StrategyHost:
    """Runs the configured strategies; the supervisor feeds it gateway states.

    Methods for the CLI and HTTP API: :meth:`strategies`, :meth:`halt`, :meth:`resume`,
    :meth:`kill`. The supervisor calls :meth:`on_gate` whenever a gateway's order gate changes.
    """

    def __init__(
        self,
        *,
        strategies: Sequence[StrategyConfig],
        endpoints: Mapping[str, GatewayEndpoint],
        store: IntentStore,
        alerts: AlertSink,
        metrics: StrategyMetrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        settings: HostSettings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        names = [s.name for s in strategies]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"strategies: names must be unique, repeated: {', '.join(dupes)}")
        for cfg in strategies:
            missing = [g for g in cfg.gateways if g not in endpoints]
            if missing:
                raise ValueError(
                    f"strategies[{cfg.name}].gateways: unknown gateway {', '.join(missing)}"
                )
        self.store = store
        self.alerts = alerts
        self.metrics = metrics
        self.clock = clock
        self.settings = settings or HostSettings()
        self.rng = rng or random.SystemRandom()
        self.endpoints = dict(endpoints)
        self.feeds: dict[str, _Feed] = {}
        self._background: set[asyncio.Task[None]] = set()
        # One thread, in order: journal writes that follow a send (mark_sent, broker reports).
        self._writer = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="ibfleet-intents"
        )
        self.runners = {cfg.name: _Runner(self, cfg) for cfg in strategies}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every enabled strategy (each reconciles before its ``on_start``)."""
        await asyncio.gather(*(r.start() for r in self.runners.values() if r.cfg.enabled))

    async def stop(self) -> None:
        """Shutdown: each strategy's safe state, ``on_stop``, sessions closed."""
        await asyncio.gather(*(r.stop() for r in self.runners.values()))
        await self.settle()
        self._writer.shutdown(wait=True)

    def later(self, write: Callable[[], object]) -> None:
        """Run a journal write on the writer thread, after every write queued before it."""

        def done(future: concurrent.futures.Future[object]) -> None:
            exc = future.exception()
            if exc is not None:
                log.error("journal_write_failed error=%s", exc)

        self._writer.submit(write).add_done_callback(done)

    async def settle(self) -> None:
        """Wait until every queued journal write is on disk."""
        await asyncio.get_running_loop().run_in_executor(self._writer, lambda: None)

    # -- the supervisor's feed -------------------------------------------------------------

    def on_gate(self, name: str, gate: Gate) -> None:
        """The supervisor's order gate of gateway ``name``: open, or closed for an outage of
        ``gate.kind``. The one entry point for gate changes; each strategy trading there
        reacts as :func:`plugins.outage.react` says."""
        feed = self.feeds.setdefault(name, _Feed())
        was = feed.ready
        if was is not gate.open:
            feed.changed_at = time.monotonic()
        feed.gate = gate
        log.info(
            "strategy_host_gate gateway=%s open=%s kind=%s reason=%r",
            name,
            gate.open,
            gate.kind.value if gate.kind is not None else "-",
            gate.reason,
        )
        for runner in self.runners.values():
            runner.gate_changed(name, gate, was)

    def on_gateway_state(self, name: str, ready: bool, reason: str = "") -> None:
        """Ready or lost, for callers that know no outage kind (benchmarks): see on_gate."""
        self.on_gate(name, outage.gate_of_ready(ready, reason))

    def keep(self, task: asyncio.Task[None]) -> None:
        """Hold a reference to a background task until it ends."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- alerts ----------------------------------------------------------------------------

    def alert(self, key: str, severity: str, title: str, body: str) -> None:
        try:
            self.alerts.raise_(key, severity, title, body)
        except Exception:
            log.exception("strategy_alert_failed key=%s", key)

    def resolve(self, key: str) -> None:
        try:
            self.alerts.resolve(key)
        except Exception:
            log.exception("strategy_alert_resolve_failed key=%s", key)

    # -- operations (CLI / HTTP) -----------------------------------------------------------

    def _runner(self, name: str) -> _Runner:
        runner = self.runners.get(name)
        if runner is None:
            known = ", ".join(sorted(self.runners)) or "none"
            raise KeyError(f"no strategy named {name!r} (known: {known})")
        return runner

    def strategies(self) -> list[StrategyStatus]:
        """Every strategy with its state and counts, by name."""
        return [self.runners[n].status() for n in sorted(self.runners)]

    def safe_state_runs(self, name: str) -> list[SafeStateRun]:
        """The safe-state runs of one strategy since the host started."""
        return list(self._runner(name).safe_runs)

    async def halt(self, name: str) -> StrategyStatus:
        """Pause a strategy: no hooks, no orders; its orders at IB stay (kill cancels)."""
        runner = self._runner(name)
        runner.trading = False
        runner.set_state(StrategyState.HALTED)
        if runner.strategy is not None and runner.started:
            runner.post("stop", lambda: runner._hook().on_stop(api.StopReason.HALTED))
        return runner.status()

    async def resume(self, name: str, *, gateway: str | None = None) -> StrategyStatus:
        """Resume after halt, kill, crash or safe state, on ``gateway`` (default: current)."""
        runner = self._runner(name)
        target = gateway or runner.active or runner.cfg.gateways[0]
        if target not in runner.cfg.gateways:
            raise ValueError(
                f"strategy {name}: gateway {target!r} is not one of {runner.cfg.gateways}"
            )
        async with runner.lock:
            if runner.state is StrategyState.CRASHED:
                runner._new_instance()
            session = runner.session
            if session is None or session.closed or session.gateway != target:
                runner.close_session(session)
                runner.session = None
                session = await runner.connect(target)
            if runner.task is None or runner.task.done():
                runner.task = asyncio.create_task(runner._loop())
            await runner.resume_on(session, failover=False)
        return runner.status()

    async def kill(self, name: str | None = None, *, flatten: bool = False) -> list[SafeStateRun]:
        """Kill switch: cancel (and flatten) now, then HALTED; ``name`` None means all."""
        runners = [self._runner(name)] if name is not None else list(self.runners.values())
        action = SafeStateAction.FLATTEN if flatten else SafeStateAction.CANCEL

        async def one(runner: _Runner) -> SafeStateRun:
            run = await runner.safe_state(SafeStateTrigger.KILL, action)
            runner.set_state(StrategyState.HALTED)
            if runner.strategy is not None and runner.started:
                runner.post("stop", lambda: runner._hook().on_stop(api.StopReason.KILLED))
            return run

        return list(await asyncio.gather(*(one(r) for r in runners)))
