"""A hand-written fake of the host's BrokerSession port, and the IB side it talks to.

:class:`FakeIb` is one account's view at IB shared by the gateways (orders, fills, contracts);
each :class:`FakeBroker` is one session on one gateway, with fault switches: refuse connects,
answer 326 for given client ids, stop answering requests, drop the socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ib_async import (
    AccountValue,
    BarData,
    Contract,
    Execution,
    Order,
    OrderState,
    OrderStatus,
    PortfolioItem,
    Ticker,
    Trade,
)
from ib_async import Fill as IbFill

from gateway.apiconnect import ClientIdInUse
from plugins.host.broker import BrokerError, BrokerListener, Margin

ACCOUNT = "DU1"
AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
AAPL = Contract(conId=265598, symbol="AAPL", secType="STK", exchange="SMART", currency="USD")
#: Working at IB: Submitted, or PreSubmitted (a bracket's exits wait for their entry's fill).
OPEN = frozenset({"Submitted", "PreSubmitted"})
DONE = frozenset({"Filled", "Cancelled", "Inactive"})


@dataclass
class FakeGateway:
    """Fault switches of one gateway."""

    name: str
    up: bool = True
    ids_in_use: set[int] = field(default_factory=set)
    hang_requests: bool = False
    #: Requests that hang_requests holds right now.
    hung: int = 0
    #: When set, connects wait for it (a handshake in flight while something else happens).
    hold_connects: asyncio.Event | None = None
    margin: Margin = field(
        default_factory=lambda: Margin(init_margin_after="100", equity_with_loan_after="10000")
    )


class FakeIb:
    """IB as the fake sessions see it: every order by permId, executions, known contracts."""

    def __init__(self, *gateways: str) -> None:
        self.gateways = {name: FakeGateway(name) for name in gateways}
        self.port_of = {name: 4000 + i for i, name in enumerate(gateways)}
        self.trades: dict[int, Trade] = {}  # by permId, the broker's record of every order
        self.fills: list[IbFill] = []
        self.contracts = [AAPL]
        self.sessions: list[FakeBroker] = []
        self.connects: list[tuple[str, int]] = []
        self._perm = 1000
        self._exec = 0
        self.placed: list[str] = []  # every orderRef in the order placeOrder got it
        self.modifies: list[str] = []
        self.global_cancels = 0

    def gateway_at(self, port: int) -> FakeGateway:
        for name, p in self.port_of.items():
            if p == port:
                return self.gateways[name]
        raise AssertionError(f"no fake gateway on port {port}")

    def broker(self) -> FakeBroker:
        session = FakeBroker(self)
        self.sessions.append(session)
        return session

    def live(self, gateway: str | None = None) -> list[FakeBroker]:
        return [
            s
            for s in self.sessions
            if s.connected
            and (gateway is None or (s.gateway is not None and s.gateway.name == gateway))
        ]

    def open_refs(self) -> list[str]:
        return [t.order.orderRef for t in self.trades.values() if t.orderStatus.status in OPEN]

    def refs_sent(self) -> list[str]:
        return [t.order.orderRef for t in self.trades.values()]

    def place(self, session: FakeBroker, contract: Contract, order: Order) -> Trade:
        for trade in self.trades.values():
            if trade.order.orderRef == order.orderRef and trade.order.orderId == order.orderId:
                trade.order.totalQuantity = order.totalQuantity  # a modify, in place
                trade.order.lmtPrice = order.lmtPrice
                trade.order.auxPrice = order.auxPrice
                self.modifies.append(order.orderRef)
                return trade
        self._perm += 1
        order.permId = self._perm
        order.clientId = session.client_id
        status = OrderStatus(
            orderId=order.orderId, status="Submitted", remaining=order.totalQuantity
        )
        trade = Trade(contract=contract, order=order, orderStatus=status)
        self.trades[order.permId] = trade
        self.placed.append(order.orderRef)
        if not order.transmit:
            status.status = "Held"  # not at IB yet: the group's last order releases it
            return trade
        parent = self._release(session, trade) if order.parentId else None
        self._report(trade)
        if order.orderType == "MKT":
            self.fill(order.orderRef, price=185.0)
        if (
            parent is not None
            and parent.order.orderType == "MKT"
            and parent.orderStatus.status in OPEN
        ):
            self.fill(parent.order.orderRef, price=185.0)
        return trade

    def cancel(self, order: Order) -> None:
        trade = self.trades.get(order.permId)
        if trade is not None and trade.orderStatus.status in OPEN:
            trade.orderStatus.status = "Cancelled"
            self._report(trade)
            for child in self._children(trade):
                self.cancel(child.order)  # IB cancels a cancelled entry's exits

    def fill(self, ref: str, *, price: float) -> None:
        """Fill the open order ``ref`` completely and tell every live session."""
        trade = next(t for t in self.trades.values() if t.order.orderRef == ref)
        self._exec += 1
        shares = float(trade.order.totalQuantity)
        execution = Execution(
            execId=f"exec-{self._exec}",
            orderRef=ref,
            permId=trade.order.permId,
            side="BOT" if trade.order.action == "BUY" else "SLD",
            shares=shares,
            cumQty=shares,
            price=price,
        )
        fill = IbFill(contract=trade.contract, execution=execution, commissionReport=None, time=AT)
        self.fills.append(fill)
        trade.orderStatus.status = "Filled"
        trade.orderStatus.filled = shares
        trade.orderStatus.remaining = 0.0
        self._report(trade)
        for s in self.live():
            if s.listener is not None:
                s.listener.execution(trade, fill)
        self._after_fill(trade)

    def _report(self, trade: Trade) -> None:
        for s in self.live():
            if s.listener is not None:
                s.listener.order_status(trade)

    def tick(self, price: float) -> None:
        """A last price for AAPL on every live session."""
        for s in self.live():
            if s.listener is not None and AAPL.conId in s.subscribed:
                ticker = Ticker(contract=AAPL)
                ticker.last, ticker.time = price, AT  # Ticker's init leaves prices unset
                s.listener.tickers([ticker])

    def drop(self, gateway: str) -> None:
        """The gateway's sockets close (its sessions see a disconnect)."""
        for s in self.live(gateway):
            s.drop()

    # -- brackets: held until the last leg, exits wait for the entry, one cancels the other --

    def _children(self, parent: Trade) -> list[Trade]:
        return [
            t
            for t in self.trades.values()
            if t.order.parentId
            and t.order.parentId == parent.order.orderId
            and t.order.clientId == parent.order.clientId
        ]

    def _release(self, session: FakeBroker, child: Trade) -> Trade:
        """The transmitted child releases its held parent and siblings."""
        parent = next(
            (
                t
                for t in self.trades.values()
                if t.order.orderId == child.order.parentId and t.order.clientId == session.client_id
            ),
            None,
        )
        assert parent is not None, f"no parent {child.order.parentId} for {child.order.orderRef}"
        if parent.orderStatus.status == "Held":
            parent.orderStatus.status = "Submitted"
            self._report(parent)
        waiting = parent.orderStatus.status != "Filled"
        for leg in self._children(parent):
            if leg.orderStatus.status == "Held" or leg is child:
                leg.orderStatus.status = "PreSubmitted" if waiting else "Submitted"
                if leg is not child:
                    self._report(leg)
        return parent

    def _after_fill(self, trade: Trade) -> None:
        for child in self._children(trade):
            if child.orderStatus.status == "PreSubmitted":
                child.orderStatus.status = "Submitted"
                self._report(child)
        group = trade.order.ocaGroup
        if group:
            for other in self.trades.values():
                if other is not trade and other.order.ocaGroup == group:
                    self.cancel(other.order)

    def global_cancel(self) -> None:
        """reqGlobalCancel: every open order of the account, whoever placed it."""
        self.global_cancels += 1
        for trade in list(self.trades.values()):
            self.cancel(trade.order)

    # -- data: history, account, what-if, market data permissions --------------------------

    @property
    def data(self) -> FakeData:
        """The data side, made on first use (a test sets its answers and faults there)."""
        found: FakeData | None = getattr(self, "_data", None)
        if found is None:
            found = self._data = FakeData()
        return found


class FakeBroker:
    """One session of the fake."""

    def __init__(self, ib: FakeIb) -> None:
        self.ib = ib
        self.gateway: FakeGateway | None = None
        self.client_id = -1
        self.connected = False
        self.listener: BrokerListener | None = None
        self.subscribed: set[int] = set()
        self._next_id = 1
        self._dropped = asyncio.Event()

    async def connect(
        self, *, host: str, port: int, client_id: int, timeout: float, account: str
    ) -> list[str]:
        gateway = self.ib.gateway_at(port)
        self.ib.connects.append((gateway.name, client_id))
        if gateway.hold_connects is not None:
            await gateway.hold_connects.wait()
        if not gateway.up:
            raise ConnectionError(f"fake {gateway.name} is down")
        if client_id in gateway.ids_in_use:
            raise ClientIdInUse(f"client id {client_id} is in use")
        self.gateway, self.client_id, self.connected = gateway, client_id, True
        return [ACCOUNT]

    def listen(self, listener: BrokerListener) -> None:
        self.listener = listener

    def disconnect(self) -> None:
        self.connected = False

    def drop(self) -> None:
        self.connected = False
        self._dropped.set()
        if self.listener is not None:
            self.listener.disconnected()

    def is_connected(self) -> bool:
        return self.connected

    def next_order_id(self) -> int:
        self._next_id += 1
        return self.client_id * 100_000 + self._next_id

    def place_order(self, contract: Contract, order: Order) -> Trade:
        assert self.connected, "placed on a closed session"
        return self.ib.place(self, contract, order)

    def cancel_order(self, order: Order) -> None:
        assert self.connected, "cancelled on a closed session"
        self.ib.cancel(order)

    def request_market_data(self, contract: Contract) -> None:
        self.subscribed.add(contract.conId)

    async def _answer(self) -> None:
        assert self.gateway is not None
        if self.gateway.hang_requests:
            self.gateway.hung += 1
            try:
                await self._dropped.wait()
            finally:
                self.gateway.hung -= 1
        if self._dropped.is_set():
            # ib_async fails what was waiting when its socket closes.
            raise ConnectionError("Socket disconnect")

    async def open_orders(self) -> list[Trade]:
        await self._answer()
        return [t for t in self.ib.trades.values() if t.orderStatus.status in OPEN]

    async def completed_orders(self) -> list[Trade]:
        await self._answer()
        return [t for t in self.ib.trades.values() if t.orderStatus.status in DONE]

    async def executions(self) -> list[IbFill]:
        await self._answer()
        return list(self.ib.fills)

    async def contracts_matching(self, contract: Contract) -> list[Contract]:
        await self._answer()
        return [c for c in self.ib.contracts if c.symbol == contract.symbol]

    async def what_if(self, contract: Contract, order: Order) -> Margin:
        await self._answer()
        assert self.gateway is not None
        return self.gateway.margin

    # -- cancel by criteria ----------------------------------------------------------------

    def global_cancel(self) -> None:
        assert self.connected, "global cancel on a closed session"
        self.ib.global_cancel()

    # -- data: history, account, what-if, market data permissions --------------------------

    async def historical_bars(
        self,
        contract: Contract,
        *,
        end: str,
        duration: str,
        bar_size: str,
        what_to_show: str,
        use_rth: bool,
        timeout: float,
    ) -> list[BarData]:
        await self._answer()
        data = self.ib.data
        call = HistoryCall(
            data.clock(), contract.conId, end, duration, bar_size, what_to_show, use_rth
        )
        data.history.append(call)
        if data.history_errors:
            raise BrokerError(*data.history_errors.pop(0))
        return data.bars(3)

    async def account_values(self, account: str) -> list[AccountValue]:
        await self._answer()
        return list(self.ib.data.account_rows)

    async def portfolio(self, account: str) -> list[PortfolioItem]:
        await self._answer()
        return [PortfolioItem(AAPL, 10.0, 190.0, 1900.0, 185.0, 50.0, 0.0, ACCOUNT)]

    async def what_if_state(self, contract: Contract, order: Order) -> OrderState:
        await self._answer()
        data = self.ib.data
        data.what_ifs.append(order)
        if data.what_if_error is not None:
            raise BrokerError(*data.what_if_error)
        notional = float(order.totalQuantity) * 185.0
        return OrderState(
            initMarginChange=f"{notional * 0.25:.2f}",
            maintMarginChange=f"{notional * 0.2:.2f}",
            initMarginAfter="5000.00",
            maintMarginAfter="4000.00",
            equityWithLoanAfter="99999.00",
            commission=1.0,
            commissionCurrency="USD",
        )

    async def subscribe_market_data(self, contract: Contract, *, wait: float) -> BrokerError | None:
        await self._answer()
        refusal = self.ib.data.md_refusals.get(contract.conId)
        if refusal is not None:
            return BrokerError(*refusal)
        self.subscribed.add(contract.conId)
        return None


@dataclass
class HistoryCall:
    """One historical data request as the fake IB saw it (``at``: the data clock's time)."""

    at: float
    con_id: int
    end: str
    duration: str
    bar_size: str
    what_to_show: str
    use_rth: bool


@dataclass
class FakeData:
    """The fake IB's data side: bars, account rows, what-if answers, refusals to inject."""

    #: The time requests are recorded at (a test points it at its clock).
    clock: Callable[[], float] = lambda: 0.0
    history: list[HistoryCall] = field(default_factory=list)
    #: Errors the next history requests get, first one first (code, message).
    history_errors: list[tuple[int, str]] = field(default_factory=list)
    #: Market data refusals by conId (code, message).
    md_refusals: dict[int, tuple[int, str]] = field(default_factory=dict)
    account_rows: list[AccountValue] = field(
        default_factory=lambda: [
            AccountValue(ACCOUNT, "NetLiquidation", "100000.00", "USD", ""),
            AccountValue(ACCOUNT, "BuyingPower", "400000.00", "USD", ""),
            AccountValue(ACCOUNT, "AvailableFunds", "90000.00", "USD", ""),
            AccountValue(ACCOUNT, "CashBalance", "80000.00", "USD", ""),
            AccountValue(ACCOUNT, "CashBalance", "1000.00", "EUR", ""),
            AccountValue(ACCOUNT, "CashBalance", "81100.00", "BASE", ""),
        ]
    )
    what_ifs: list[Order] = field(default_factory=list)
    what_if_error: tuple[int, str] | None = None

    def bars(self, count: int) -> list[BarData]:
        return [
            BarData(
                date=AT + timedelta(minutes=i),
                open=100.0 + i,
                high=101.0 + i,
                low=99.0 + i,
                close=100.5 + i,
                volume=1000.0,
                average=100.2 + i,
                barCount=10,
            )
            for i in range(count)
        ]
