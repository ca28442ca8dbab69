"""The health probe: one API session per gateway on its reserved client id.

It connects, checks the account and the market data permissions, then keeps asking the Gateway
something it answers by itself, with a deadline measured from each send, so a gateway that keeps
its socket open but answers nothing is seen within about ``heartbeat_every + heartbeat_deadline``
(the clients' own disconnect detection only sees a closed socket). Gateway 10.16+ may leave a
``reqCurrentTime`` unanswered when it comes less than about a second after the previous one, so
the heartbeat never sends ``reqCurrentTime`` closer than ``current_time_spacing`` (1.2 s, at least
1 s) on a connection; the sends in between are ``reqOpenOrders`` on the probe's own client id,
which places no orders, so the answer is ``openOrderEnd`` alone. :class:`HeartbeatPacer` makes
that choice (pure, from the probe's injected clock). Everything the probe learns is emitted as
typed ``ProbeEvent`` values for the supervisor's lifecycle. The TWS client sits behind
``TwsSession``; ``IbAsyncSession`` is the ib_async adapter, and tests drive the probe with a fake
session and a fake clock, or against the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway import codes
from gateway.apiconnect import ClientIdInUse, connect_ib
from gateway.config import MarketDataEntitlement, ProbeContract, TradingMode

log = logging.getLogger("ibfleet.probe")


class DataKind(enum.StrEnum):
    REALTIME = "realtime"
    DELAYED = "delayed"
    NONE = "none"
    UNKNOWN = "unknown"  # no tick and no error within the deadline


# ------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class ProbeConnected:
    client_id: int
    accounts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProbeConnectFailed:
    client_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class ProbeClientIdInUse:
    """Error 326: the probe moves to ``next_client_id``."""

    client_id: int
    next_client_id: int


@dataclass(frozen=True, slots=True)
class ProbeHeartbeat:
    rtt: float  # seconds


@dataclass(frozen=True, slots=True)
class ProbeHeartbeatMissed:
    """No answer within the deadline while the socket stays open: a stalled gateway."""

    waited: float  # seconds
    consecutive: int


@dataclass(frozen=True, slots=True)
class ProbeDisconnected:
    reason: str


@dataclass(frozen=True, slots=True)
class ProbeApiCode:
    """A connectivity or farm notice (1100, 1101, 1102, 2103, ...)."""

    code: int
    message: str
    kind: codes.CodeKind


@dataclass(frozen=True, slots=True)
class ProbeAccountChecked:
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class ProbePermissionChecked:
    symbol: str
    expected: str
    got: str
    ok: bool


@dataclass(frozen=True, slots=True)
class ProbeLinkUp:
    """A new API session answered with no IB link loss reported since it connected.

    The gateway tells each client at connect that its link to IB is down (1100), so a session
    that reaches its first answer without one sees the link up. It is how a link loss heard by
    an earlier session ends when its 1101/1102 went to nobody: the probe had reconnected
    meanwhile (the gateway sends the restore only to the clients connected then).
    """


ProbeEvent = (
    ProbeConnected
    | ProbeLinkUp
    | ProbeConnectFailed
    | ProbeClientIdInUse
    | ProbeHeartbeat
    | ProbeHeartbeatMissed
    | ProbeDisconnected
    | ProbeApiCode
    | ProbeAccountChecked
    | ProbePermissionChecked
)


# ------------------------------------------------------------------------------- the seam


class TwsSession(Protocol):
    """The few TWS API calls the probe makes. Every call is bounded by the caller."""

    async def connect(self, *, host: str, port: int, client_id: int, timeout: float) -> list[str]:
        """Connect and return the managed accounts; raises ``ClientIdInUse`` on 326."""
        ...

    async def current_time(self) -> None:
        """``reqCurrentTime``; returns at its answer."""
        ...

    async def open_orders(self) -> None:
        """``reqOpenOrders`` for this client id; returns at ``openOrderEnd``."""
        ...

    async def market_data_kind(self, contract: ProbeContract, *, timeout: float) -> DataKind: ...

    def disconnect(self) -> None: ...

    def is_connected(self) -> bool: ...


#: Builds a session whose API codes and disconnects are reported to the two callbacks.
SessionFactory = Callable[
    [Callable[[int, str], None], Callable[[], None]],
    TwsSession,
]


#: The closest two ``reqCurrentTime`` may ever be on one connection, in seconds.
MIN_CURRENT_TIME_SPACING = 1.0


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    heartbeat_every: float = 0.5  # seconds between liveness requests (of either kind)
    heartbeat_deadline: float = 0.8  # seconds a liveness request may take, from its send
    # reqCurrentTime at most this often; the 0.2 s above the floor absorbs the network jitter
    # between the probe's clock and the Gateway's.
    current_time_spacing: float = 1.2
    report_every: float = 1.0  # seconds between reports of answered heartbeats
    connect_deadline: float = 10.0
    permission_deadline: float = 5.0
    recheck_permissions_every: float = 600.0
    reconnect_delay: float = 1.0

    def __post_init__(self) -> None:
        if self.current_time_spacing < MIN_CURRENT_TIME_SPACING:
            raise ValueError(
                f"current_time_spacing {self.current_time_spacing}s is below "
                f"{MIN_CURRENT_TIME_SPACING}s: Gateway 10.16+ may not answer reqCurrentTime sent "
                "that closely"
            )
        if self.heartbeat_every <= 0 or self.heartbeat_deadline <= 0:
            raise ValueError("heartbeat_every and heartbeat_deadline must be positive")


class Liveness(enum.Enum):
    """A request the Gateway answers by itself, used as the heartbeat."""

    CURRENT_TIME = "reqCurrentTime"
    OPEN_ORDERS = "reqOpenOrders"


class HeartbeatPacer:
    """When the next heartbeat goes out and which request it is. Pure: times come in.

    One request every ``every`` seconds, measured from the previous send; ``reqCurrentTime``
    whenever the last one was sent at least ``current_time_spacing`` before, else
    ``reqOpenOrders``. The spacing holds across reconnects too, since the probe keeps one pacer.
    """

    def __init__(self, *, every: float, current_time_spacing: float) -> None:
        if current_time_spacing < MIN_CURRENT_TIME_SPACING:
            raise ValueError(f"current_time_spacing must be >= {MIN_CURRENT_TIME_SPACING}s")
        self._every = every
        self._spacing = current_time_spacing
        self._last_send: float | None = None
        self._last_current_time: float | None = None

    def due(self, now: float) -> float:
        """The earliest time the next heartbeat may be sent (``now`` if it is late)."""
        if self._last_send is None:
            return now
        return max(now, self._last_send + self._every)

    def choose(self, now: float) -> Liveness:
        """The request to send at ``now``."""
        last = self._last_current_time
        if last is None or now - last >= self._spacing:
            return Liveness.CURRENT_TIME
        return Liveness.OPEN_ORDERS

    def sent(self, kind: Liveness, at: float) -> None:
        """Record that ``kind`` went out at ``at``."""
        self._last_send = at
        if kind is Liveness.CURRENT_TIME:
            self._last_current_time = at


class HealthProbe:
    """Watches one gateway until cancelled; every observation goes to ``emit``."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        account: str,
        mode: TradingMode,
        contracts: Sequence[ProbeContract],
        client_id: Callable[[], int],
        rotate_client_id: Callable[[], int],
        session_factory: SessionFactory,
        emit: Callable[[ProbeEvent], None],
        settings: ProbeSettings = ProbeSettings(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self._host, self._port = host, port
        self._account, self._mode = account, mode
        self._contracts = list(contracts)
        self._client_id = client_id
        self._rotate = rotate_client_id
        self._factory = session_factory
        self._emit = emit
        self._settings = settings
        self._sleep = sleep
        self._monotonic = monotonic or asyncio.get_running_loop().time
        # Done when the current session's socket closed; a plain future, so that waiting on it
        # next to a request costs no task.
        self._lost: asyncio.Future[None] | None = None
        self._link_down = False
        self._session: TwsSession | None = None
        self._pacer = HeartbeatPacer(
            every=settings.heartbeat_every, current_time_spacing=settings.current_time_spacing
        )

    async def run(self) -> None:
        """Connect, check, heartbeat; reconnect after a disconnect. Runs until cancelled."""
        try:
            while True:
                await self._one_session()
                await self._sleep(self._settings.reconnect_delay)
        finally:
            if self._session is not None:
                self._session.disconnect()

    def _on_code(self, code: int, message: str) -> None:
        if code in codes.CONNECTIVITY_LOST:
            self._link_down = True
        elif code in codes.CONNECTIVITY_RESTORED:
            self._link_down = False
        kind = codes.classify(code)
        if kind in _REPORTED_KINDS:
            self._emit(ProbeApiCode(code=code, message=message, kind=kind))

    def _is_lost(self) -> bool:
        return self._lost is None or self._lost.done()

    async def _one_session(self) -> None:
        s = self._settings
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lost = lost
        self._link_down = False  # what this session has heard; a new one starts knowing nothing

        def on_disconnect() -> None:
            # Bound to this session: a late callback of an old one cannot end the next.
            if not lost.done():
                lost.set_result(None)

        session = self._factory(self._on_code, on_disconnect)
        self._session = session
        client_id = self._client_id()
        try:
            # asyncio.timeout, not wait_for, throughout: 3.11's wait_for can swallow a
            # cancellation when the awaited call completes at the same moment.
            async with asyncio.timeout(s.connect_deadline + 1):
                accounts = await session.connect(
                    host=self._host,
                    port=self._port,
                    client_id=client_id,
                    timeout=s.connect_deadline,
                )
        except ClientIdInUse:
            session.disconnect()
            self._emit(ProbeClientIdInUse(client_id=client_id, next_client_id=self._rotate()))
            return
        except (OSError, TimeoutError, ConnectionError) as exc:
            session.disconnect()
            reason = str(exc) or type(exc).__name__
            self._emit(ProbeConnectFailed(client_id=client_id, reason=reason))
            return
        self._emit(ProbeConnected(client_id=client_id, accounts=tuple(accounts)))
        self._emit(self._check_account(accounts))
        try:
            await self._watch(session)
        finally:
            session.disconnect()

    def _check_account(self, accounts: Sequence[str]) -> ProbeAccountChecked:
        if self._account not in accounts:
            listed = ", ".join(accounts) or "none"
            return ProbeAccountChecked(
                ok=False, detail=f"account {self._account} is not managed (managed: {listed})"
            )
        paper = self._account.startswith("D")
        if paper != (self._mode is TradingMode.PAPER):
            return ProbeAccountChecked(
                ok=False, detail=f"account {self._account} does not fit mode {self._mode}"
            )
        return ProbeAccountChecked(ok=True, detail=f"account {self._account} is managed")

    async def _check_permissions(self, session: TwsSession) -> None:
        for contract in self._contracts:
            try:
                async with asyncio.timeout(self._settings.permission_deadline + 1):
                    got = await session.market_data_kind(
                        contract, timeout=self._settings.permission_deadline
                    )
            except (TimeoutError, ConnectionError, OSError):
                got = DataKind.UNKNOWN
            if got is DataKind.UNKNOWN and not session.is_connected():
                return
            expected = MarketDataEntitlement(contract.expect)
            self._emit(
                ProbePermissionChecked(
                    symbol=contract.symbol,
                    expected=expected.value,
                    got=got.value,
                    ok=got.value == expected.value,
                )
            )

    async def _race(self, call: Awaitable[None], timeout: float) -> bool:
        """Await ``call`` for ``timeout`` seconds of the injected clock, or until the socket is
        lost; True when it answered. Raises what the call raised."""
        assert self._lost is not None
        task = asyncio.ensure_future(call)
        timer = asyncio.ensure_future(self._sleep(timeout))
        try:
            await asyncio.wait({task, timer, self._lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled():
            task.result()
            return True
        return False

    async def _pause_until(self, at: float) -> None:
        """Sleep until the injected clock reads ``at`` (never less), or the socket is lost."""
        while not self._is_lost():
            remaining = at - self._monotonic()
            if remaining <= 0:
                return
            assert self._lost is not None
            timer = asyncio.ensure_future(self._sleep(remaining))
            try:
                await asyncio.wait({timer, self._lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                timer.cancel()

    async def _watch(self, session: TwsSession) -> None:
        s = self._settings
        pacer = self._pacer
        missed = 0
        next_permissions = self._monotonic()
        # Answered heartbeats are reported at most once per report_every (the slowest since the
        # last report), a miss and the first answer after one at once: the lifecycle learns
        # every change without handling each answer.
        reported_at: float | None = None
        slowest = 0.0
        while not self._is_lost():
            if self._contracts and self._monotonic() >= next_permissions:
                await self._check_permissions(session)
                next_permissions = self._monotonic() + s.recheck_permissions_every
            await self._pause_until(pacer.due(self._monotonic()))
            if self._is_lost():
                break
            started = self._monotonic()
            kind = pacer.choose(started)
            pacer.sent(kind, started)
            call = (
                session.current_time() if kind is Liveness.CURRENT_TIME else session.open_orders()
            )
            try:
                answered = await self._race(call, s.heartbeat_deadline)
            except (ConnectionError, OSError):
                break
            now = self._monotonic()
            if answered:
                if reported_at is None and not self._link_down:
                    self._emit(ProbeLinkUp())
                slowest = max(slowest, now - started)
                if missed or reported_at is None or now - reported_at >= s.report_every:
                    self._emit(ProbeHeartbeat(rtt=slowest))
                    reported_at, slowest = now, 0.0
                missed = 0
                continue
            if self._is_lost() or not session.is_connected():
                break
            missed += 1
            self._emit(ProbeHeartbeatMissed(waited=now - started, consecutive=missed))
        self._emit(ProbeDisconnected(reason="the API socket closed"))


_REPORTED_KINDS = frozenset(
    {
        codes.CodeKind.CONNECTIVITY_LOST,
        codes.CodeKind.CONNECTIVITY_RESTORED,
        codes.CodeKind.FARM_BROKEN,
        codes.CodeKind.FARM_OK,
        codes.CodeKind.RECONNECT_REQUIRED,
    }
)


# ------------------------------------------------------------------------------- ib_async


class IbAsyncSession:
    """``TwsSession`` on the real ib_async client."""

    def __init__(
        self, on_code: Callable[[int, str], None], on_disconnect: Callable[[], None]
    ) -> None:
        import ib_async  # the adapter is the only place the client library is touched

        self._ib_async = ib_async
        self._ib = ib_async.IB()
        self._on_code = on_code
        self._on_disconnect = on_disconnect
        self._ib.errorEvent += self._error
        self._ib.disconnectedEvent += self._disconnected
        self._waiters: dict[int, asyncio.Future[DataKind]] = {}

    def _error(self, req_id: int, code: int, message: str, contract: object = None) -> None:
        con_id = getattr(contract, "conId", None)
        if con_id in self._waiters and not self._waiters[con_id].done():
            if code == codes.ApiCode.DELAYED_DATA_SHOWN:
                self._waiters[con_id].set_result(DataKind.DELAYED)
            elif code in codes.MARKET_DATA_PERMISSION:
                self._waiters[con_id].set_result(DataKind.NONE)
        self._on_code(code, message)

    def _disconnected(self) -> None:
        self._on_disconnect()

    async def connect(self, *, host: str, port: int, client_id: int, timeout: float) -> list[str]:
        return await connect_ib(
            self._ib, host=host, port=port, client_id=client_id, timeout=timeout, readonly=True
        )

    async def current_time(self) -> None:
        await self._ib.reqCurrentTimeAsync()

    async def open_orders(self) -> None:
        await self._ib.reqOpenOrdersAsync()

    async def market_data_kind(self, contract: ProbeContract, *, timeout: float) -> DataKind:
        ib = self._ib
        query = self._ib_async.Contract(
            symbol=contract.symbol,
            secType=contract.sec_type,
            exchange=contract.exchange,
            currency=contract.currency,
        )
        qualified = await ib.qualifyContractsAsync(query)
        target = qualified[0] if qualified else None
        if not isinstance(target, self._ib_async.Contract):
            return DataKind.UNKNOWN
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[DataKind] = loop.create_future()
        self._waiters[target.conId] = waiter
        # Type 3 asks for delayed data where real-time is not permitted; IB still sends
        # real-time data (type 1) to an account that has the subscription.
        ib.reqMarketDataType(3)
        ticker = ib.reqMktData(target, "", False, False)

        def on_update(t: object) -> None:
            price = getattr(t, "last", math.nan)
            bid = getattr(t, "bid", math.nan)
            if waiter.done() or (math.isnan(price) and math.isnan(bid)):
                return
            kind = getattr(t, "marketDataType", 1)
            waiter.set_result(DataKind.REALTIME if kind in (1, 2) else DataKind.DELAYED)

        ticker.updateEvent += on_update
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            return DataKind.UNKNOWN
        finally:
            ticker.updateEvent -= on_update
            self._waiters.pop(target.conId, None)
            with contextlib.suppress(Exception):
                ib.cancelMktData(target)

    def disconnect(self) -> None:
        self._ib.errorEvent -= self._error
        self._ib.disconnectedEvent -= self._disconnected
        self._ib.disconnect()

    def is_connected(self) -> bool:
        return bool(self._ib.isConnected())
