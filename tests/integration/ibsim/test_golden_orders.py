"""Golden tests of the order side: each order type, TIF, brackets, OCA, IB's refusals and the
what-if figures, through the real ib_async and ib_insync clients over TCP.

Prices do not walk (volatility 0); AAPL is quoted 189.99 / 190.01 around its 190 last, and 100
shares trade at the quote per broker step.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import ModuleType

import pytest

from ibsim.broker import BrokerConfig
from ibsim.fleet import SimFleet
from tests.integration.ibsim.conftest import Clients
from tests.waiting import until as wait_for

pytestmark = pytest.mark.timeout(60)


class MovableClock:
    """Wall time from ``start`` on, running at real speed; ``move`` jumps it forward."""

    def __init__(self, start: datetime) -> None:
        self._start = start
        self._t0 = time.monotonic()
        self._offset = timedelta()

    def __call__(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._t0) + self._offset

    def move(self, delta: timedelta) -> None:
        self._offset += delta


@contextlib.asynccontextmanager
async def fleet(clock: MovableClock | None = None, **config: object) -> AsyncIterator[SimFleet]:
    options: dict[str, object] = {"lot_size": 100, "volatility": 0.0, **config}
    async with SimFleet.start(
        gateways=1,
        tick_rate=50.0,
        step_interval=0.02,
        control_port=None,
        broker_config=BrokerConfig(**options),  # type: ignore[arg-type]
        **({"clock": clock} if clock is not None else {}),
    ) as sim:
        yield sim


@pytest.fixture
async def sim() -> AsyncIterator[SimFleet]:
    async with fleet() as running:
        yield running


def errors_of(ib) -> list[tuple[int, int, str]]:
    seen: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, text, *rest: seen.append((req_id, code, text))
    return seen


async def aapl(ib, lib: ModuleType):
    contract = lib.Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(contract)
    assert contract.conId
    return contract


async def eurusd(ib, lib: ModuleType):
    contract = lib.Forex("EURUSD")
    await ib.qualifyContractsAsync(contract)
    assert contract.conId
    return contract


def status(trade) -> str:
    return trade.orderStatus.status


async def trail_stop_seen(lib: ModuleType, port: int, client_id: int) -> float:
    """The trail stop as openOrder carries it, read by a fresh client.

    A client keeps the Order object it first built and copies only prices and quantity from
    later openOrders, so each reading connects anew and builds the order from the wire.
    """
    viewer = lib.IB()
    await viewer.connectAsync("127.0.0.1", port, clientId=client_id, timeout=5)
    try:
        trades = await viewer.reqAllOpenOrdersAsync()
        (stop,) = {float(t.order.trailStopPrice) for t in trades if t.order.orderType == "TRAIL"}
        return stop
    finally:
        viewer.disconnect()


async def until_trail_stop(lib: ModuleType, port: int, expected: float, what: str) -> None:
    seen: list[float] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        seen.append(await trail_stop_seen(lib, port, 10 + len(seen)))
        if seen[-1] == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: trail stop {expected} never seen, last {seen[-3:]}")


async def test_trailing_stop_follows_the_market_and_reports_its_stop(lib, sim, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await aapl(ib, lib)
    order = lib.Order(action="SELL", totalQuantity=5, orderType="TRAIL", auxPrice=2.0)
    trade = ib.placeOrder(contract, order)
    await wait_for(lambda: status(trade) == "PreSubmitted", what="trail working")
    await until_trail_stop(lib, sim.ports[0], 188.0, "initial trail stop")
    sim.set_price("AAPL", 196.0)
    await until_trail_stop(lib, sim.ports[0], 194.0, "trail stop moved up")
    sim.set_price("AAPL", 195.0)
    sim.set_price("AAPL", 193.9)
    await wait_for(lambda: status(trade) == "Filled", what="trail triggered")
    assert trade.orderStatus.avgFillPrice == 193.89  # a market sell at the bid


async def test_trailing_percent(lib, sim, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await aapl(ib, lib)
    order = lib.Order(action="BUY", totalQuantity=5, orderType="TRAIL", trailingPercent=1.0)
    trade = ib.placeOrder(contract, order)
    await until_trail_stop(lib, sim.ports[0], 191.9, "1 % above the last")
    sim.set_price("AAPL", 192.0)
    await wait_for(lambda: status(trade) == "Filled", what="buy trail triggered")


async def test_stop_limit_becomes_a_limit_at_trigger(lib, sim, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await aapl(ib, lib)
    trade = ib.placeOrder(contract, lib.StopLimitOrder("SELL", 5, 184.5, 185.0))
    await wait_for(lambda: status(trade) == "PreSubmitted", what="stop waiting")
    sim.set_price("AAPL", 180.0)  # triggers, but the bid is under the limit
    await wait_for(lambda: status(trade) == "Submitted", what="triggered into a limit")
    assert trade.orderStatus.filled == 0
    sim.set_price("AAPL", 184.6)
    await wait_for(lambda: status(trade) == "Filled", what="limit filled")
    assert trade.orderStatus.avgFillPrice == 184.59


async def test_bracket_stop_fills_and_take_profit_is_cancelled(lib, sim, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await aapl(ib, lib)
    legs = ib.bracketOrder("BUY", 10, 185.0, 200.0, 180.0)
    parent, take_profit, stop_loss = (ib.placeOrder(contract, o) for o in legs)
    await wait_for(lambda: status(parent) == "Submitted", what="parent resting")
    await wait_for(lambda: status(take_profit) == status(stop_loss) == "PreSubmitted")
    sim.set_price("AAPL", 184.0)
    await wait_for(lambda: status(parent) == "Filled", what="parent filled")
    await wait_for(lambda: status(take_profit) == "Submitted", what="take profit at the market")
    sim.set_price("AAPL", 179.0)
    await wait_for(lambda: status(stop_loss) == "Filled", what="stop filled")
    await wait_for(lambda: status(take_profit) == "Cancelled", what="take profit cancelled")
    await wait_for(lambda: not [p for p in ib.positions() if p.position], what="flat")


async def test_cancelling_the_parent_cancels_its_children(lib, sim, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await aapl(ib, lib)
    legs = ib.bracketOrder("BUY", 10, 150.0, 200.0, 140.0)
    trades = [ib.placeOrder(contract, o) for o in legs]
    await wait_for(lambda: status(trades[2]) == "PreSubmitted", what="bracket working")
    ib.cancelOrder(trades[0].order)
    await wait_for(lambda: all(status(t) == "Cancelled" for t in trades), what="all cancelled")
    assert all(o.status.value == "Cancelled" for o in sim.broker.orders.values())


async def test_untransmitted_parent_sends_nothing_until_the_last_child(lib, sim, clients):
    ib = await clients.connect(sim.ports[0])
    contract = await aapl(ib, lib)
    parent, take_profit, stop_loss = ib.bracketOrder("BUY", 10, 150.0, 200.0, 140.0)
    first = [ib.placeOrder(contract, o) for o in (parent, take_profit)]
    await wait_for(lambda: len(sim.broker.orders) == 2, what="both received")
    assert sim.broker.open_orders(["DU1000001"]) == []  # held, not working
    assert all(o.status.value == "PendingSubmit" for o in sim.broker.orders.values())
    last = ib.placeOrder(contract, stop_loss)
    await wait_for(lambda: status(first[0]) == "Submitted" and status(last) == "PreSubmitted")


async def test_oca_type_one_cancels_the_other(lib, sim, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await aapl(ib, lib)
    orders = [lib.LimitOrder("SELL", 5, 200.0), lib.StopOrder("SELL", 5, 180.0)]
    trades = ib.oneCancelsAll(orders, "exit-1", 1) and [ib.placeOrder(contract, o) for o in orders]
    await wait_for(lambda: [status(t) for t in trades] == ["Submitted", "PreSubmitted"])
    assert trades[0].order.ocaType == 1
    sim.set_price("AAPL", 201.0)
    await wait_for(lambda: status(trades[0]) == "Filled" and status(trades[1]) == "Cancelled")


async def test_ioc_fills_what_it_can_and_cancels_the_rest(lib, sim, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await aapl(ib, lib)
    order = lib.MarketOrder("BUY", 250)
    order.tif = "IOC"
    trade = ib.placeOrder(contract, order)
    await wait_for(lambda: status(trade) == "Cancelled", what="rest cancelled")
    await wait_for(lambda: trade.fills, what="the part that filled")
    assert trade.orderStatus.filled == 100 and trade.orderStatus.remaining == 150
    assert [f.execution.shares for f in trade.fills] == [100]


async def test_modify_price_and_quantity_then_refused_once_filled(lib, sim, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    errors = errors_of(ib)
    contract = await aapl(ib, lib)
    order = lib.LimitOrder("BUY", 5, 150.0)
    trade = ib.placeOrder(contract, order)
    await wait_for(lambda: status(trade) == "Submitted")
    order.lmtPrice, order.totalQuantity = 191.0, 8
    ib.placeOrder(contract, order)
    await wait_for(lambda: status(trade) == "Filled", what="modified order filled")
    assert trade.orderStatus.filled == 8
    # ib.placeOrder refuses a done trade on the client side; the wire call reaches IB.
    order.lmtPrice = 150.0
    ib.client.placeOrder(order.orderId, contract, order)
    await wait_for(lambda: any(code == 104 for _, code, _ in errors), what="104")


async def test_ib_refusals_of_orders(lib, sim, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    errors = errors_of(ib)
    contract = await aapl(ib, lib)
    no_exchange = lib.Stock("AAPL", "", "USD")
    bad = ib.placeOrder(no_exchange, lib.MarketOrder("BUY", 1))
    no_stop = ib.placeOrder(
        contract, lib.Order(action="BUY", totalQuantity=1, orderType="STP LMT", lmtPrice=191.0)
    )
    off_grid = ib.placeOrder(contract, lib.LimitOrder("BUY", 1, 150.005))
    ib.cancelOrder(lib.Order(orderId=9999))
    await wait_for(lambda: len(errors) >= 4, what="four refusals")
    by_id = {req_id: (code, text) for req_id, code, text in errors}
    assert by_id[bad.order.orderId] == (
        321,
        "Error validating request.-'bN' : cause - Please enter exchange",
    )
    assert by_id[no_stop.order.orderId][0] == 321
    assert by_id[off_grid.order.orderId][0] == 110
    assert by_id[9999][0] == 10147
    assert sim.broker.orders == {}


async def test_what_if_without_exchange_gets_321(lib, sim, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    errors = errors_of(ib)
    contract = lib.Stock("AAPL", "", "USD", conId=265598)
    # The clients take 321 for a warning and keep waiting for the what-if: bound the wait.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ib.whatIfOrderAsync(contract, lib.MarketOrder("BUY", 1)), 1.0)
    await wait_for(lambda: errors, what="the refusal")
    assert [code for _, code, _ in errors] == [321]
    assert "Please enter exchange" in errors[0][2]


async def test_forex_what_if_and_odd_lot_fill(lib, sim, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await eurusd(ib, lib)
    state = await ib.whatIfOrderAsync(contract, lib.MarketOrder("BUY", 100_000))
    assert state.commission == 2.16  # 0.2 bp of 108,000 USD
    assert float(state.initMarginChange) == pytest.approx(108_000 * 0.03)
    small = await ib.whatIfOrderAsync(contract, lib.MarketOrder("BUY", 20_000))
    assert small.commission == 2.0  # IB's 2 USD minimum
    round_lot = ib.placeOrder(contract, lib.MarketOrder("BUY", 25_000))
    odd_lot = ib.placeOrder(contract, lib.MarketOrder("BUY", 10_000))
    await wait_for(lambda: status(round_lot) == status(odd_lot) == "Filled")
    assert round_lot.orderStatus.avgFillPrice == 1.08005  # the ask
    assert odd_lot.orderStatus.avgFillPrice == pytest.approx(1.08015)  # two ticks worse
    await wait_for(lambda: odd_lot.fills and odd_lot.fills[0].commissionReport.commission)
    assert odd_lot.fills[0].commissionReport.commission == 2.0


async def test_day_order_expires_at_the_close_when_the_clock_moves(lib, clients: Clients):
    clock = MovableClock(datetime(2026, 11, 23, 20, 0, tzinfo=UTC))  # Monday 15:00 New York
    async with fleet(clock) as sim:
        ib = await clients.connect(sim.ports[0])
        contract = await aapl(ib, lib)
        day = ib.placeOrder(contract, lib.LimitOrder("BUY", 5, 150.0))
        gtc_order = lib.LimitOrder("BUY", 5, 150.0)
        gtc_order.tif = "GTC"
        gtc = ib.placeOrder(contract, gtc_order)
        await wait_for(lambda: status(day) == status(gtc) == "Submitted")
        clock.move(timedelta(hours=1))  # past 16:00 New York
        await wait_for(lambda: status(day) == "Cancelled", what="DAY order expired")
        assert status(gtc) == "Submitted"


async def test_outside_rth_decides_whether_a_stock_order_fills_before_the_open(
    lib, clients: Clients
):
    clock = MovableClock(datetime(2026, 11, 23, 13, 0, tzinfo=UTC))  # 08:00 New York
    async with fleet(clock, market_hours=True) as sim:
        ib = await clients.connect(sim.ports[0])
        contract = await aapl(ib, lib)
        regular = ib.placeOrder(contract, lib.MarketOrder("BUY", 5))
        extended_order = lib.LimitOrder("BUY", 5, 191.0)
        extended_order.outsideRth = True
        extended = ib.placeOrder(contract, extended_order)
        await wait_for(lambda: status(extended) == "Filled", what="pre-market fill")
        assert status(regular) == "PreSubmitted"
        clock.move(timedelta(minutes=90))  # 09:30 New York: the open
        await wait_for(lambda: status(regular) == "Filled", what="filled at the open")
