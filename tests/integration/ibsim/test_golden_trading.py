"""Golden tests: the real ib_async and ib_insync clients against the simulator over TCP.

Every test runs with both clients (the ``lib`` fixture). Prices do not walk here
(volatility 0): AAPL stays at 190 until a test moves it, quoted 189.99 / 190.01 (one tick
either side), so a buy fills at 190.01 and a sell at 189.99.
"""

from __future__ import annotations

import math
from types import ModuleType

import pytest

from ibsim.fleet import SimFleet
from tests.integration.ibsim.conftest import Clients
from tests.waiting import until as wait_for

pytestmark = pytest.mark.timeout(60)


def aapl(lib: ModuleType):
    return lib.Stock("AAPL", "SMART", "USD")


async def qualified(ib, contract):
    await ib.qualifyContractsAsync(contract)
    assert contract.conId, f"not qualified: {contract}"
    return contract


async def test_connect_negotiates_version_and_accounts(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    assert ib.isConnected()
    assert ib.managedAccounts() == ["DU1000001"]
    expected = 178 if lib.__name__ == "ib_async" else 176
    assert ib.client.serverVersion() == expected


async def test_connect_readonly_skips_order_sync(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0], readonly=True)
    assert ib.isConnected()
    assert ib.openTrades() == []


async def test_current_time_comes_from_the_broker_clock(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    now = await ib.reqCurrentTimeAsync()
    broker_now = sim.service.clock()
    assert abs((broker_now - now).total_seconds()) < 5


async def test_contract_details_for_stock_forex_and_future(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    stock = await qualified(ib, aapl(lib))
    assert stock.conId == 265598 and stock.primaryExchange == "NASDAQ"
    fx = await qualified(ib, lib.Forex("EURUSD"))
    assert fx.localSymbol == "EUR.USD" and fx.exchange == "IDEALPRO"
    fut = await qualified(ib, lib.Future("ES", "202612", "CME"))
    assert fut.lastTradeDateOrContractMonth == "20261218" and fut.multiplier == "50"
    details = await ib.reqContractDetailsAsync(lib.Stock("MSFT", "SMART", "USD"))
    assert details[0].longName == "MICROSOFT CORP"


async def test_unknown_contract_gets_error_200(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    errors = []
    ib.errorEvent += lambda req_id, code, *args: errors.append(code)
    details = await ib.reqContractDetailsAsync(lib.Stock("NOPE", "SMART", "USD"))
    assert details == []
    await wait_for(lambda: 200 in errors, what="error 200")


async def test_market_order_fills_with_ib_message_order(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await qualified(ib, aapl(lib))
    order = lib.MarketOrder("BUY", 10)
    order.orderRef = "intent-1"
    trade = ib.placeOrder(contract, order)
    await wait_for(lambda: trade.orderStatus.status == "Filled", what="filled")
    await wait_for(lambda: trade.fills and trade.fills[0].commissionReport.commission > 0)
    fill = trade.fills[0]
    assert fill.execution.shares == 10 and fill.execution.price == 190.01  # the ask
    assert fill.execution.orderRef == "intent-1"
    assert trade.order.permId > 0
    await wait_for(lambda: any(p.position == 10 for p in ib.positions()), what="position")


@pytest.mark.parametrize(
    ("order_type", "lmt", "aux"),
    [("LMT", 191.0, None), ("STP", None, 189.0), ("STP LMT", 191.0, 189.0)],
)
async def test_marketable_order_types_fill(
    lib, sim: SimFleet, clients: Clients, order_type, lmt, aux
):
    ib = await clients.connect(sim.ports[0])
    contract = await qualified(ib, aapl(lib))
    order = lib.Order(action="BUY", totalQuantity=5, orderType=order_type)
    if lmt is not None:
        order.lmtPrice = lmt
    if aux is not None:
        order.auxPrice = aux
    trade = ib.placeOrder(contract, order)
    await wait_for(lambda: trade.orderStatus.status == "Filled", what=f"{order_type} filled")
    assert trade.orderStatus.avgFillPrice == 190.01


async def test_resting_limit_fills_when_price_crosses(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await qualified(ib, aapl(lib))
    trade = ib.placeOrder(contract, lib.LimitOrder("BUY", 5, 185.0))
    await wait_for(lambda: trade.orderStatus.status == "Submitted", what="resting")
    sim.set_price("AAPL", 184.5)
    await wait_for(lambda: trade.orderStatus.status == "Filled", what="crossed and filled")
    assert trade.orderStatus.avgFillPrice == 184.51  # the ask, better than the limit


async def test_stop_rests_until_triggered(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await qualified(ib, aapl(lib))
    trade = ib.placeOrder(contract, lib.StopOrder("SELL", 5, 180.0))
    await wait_for(lambda: trade.orderStatus.status == "PreSubmitted", what="stop waiting")
    sim.set_price("AAPL", 179.0)
    await wait_for(lambda: trade.orderStatus.status == "Filled", what="stop filled")


async def test_large_order_fills_in_slices(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await qualified(ib, aapl(lib))
    trade = ib.placeOrder(contract, lib.MarketOrder("BUY", 350))
    await wait_for(lambda: trade.orderStatus.status == "Filled", what="all slices")
    await wait_for(lambda: len(trade.fills) == 4, what="four fills")
    assert [f.execution.shares for f in trade.fills] == [100, 100, 100, 50]
    assert trade.fills[-1].execution.cumQty == 350


async def test_bracket_children_wait_for_parent_and_cancel_each_other(
    lib, sim: SimFleet, clients: Clients
):
    ib = await clients.connect(sim.ports[0])
    contract = await qualified(ib, aapl(lib))
    parent, take_profit, stop_loss = ib.bracketOrder("BUY", 10, 191.0, 200.0, 180.0)
    trades = [ib.placeOrder(contract, o) for o in (parent, take_profit, stop_loss)]
    await wait_for(lambda: trades[0].orderStatus.status == "Filled", what="parent filled")
    await wait_for(lambda: trades[1].orderStatus.status == "Submitted", what="take profit live")
    sim.set_price("AAPL", 201.0)
    await wait_for(lambda: trades[1].orderStatus.status == "Filled", what="take profit filled")
    await wait_for(lambda: trades[2].orderStatus.status == "Cancelled", what="stop cancelled")
    perm = trades[0].order.permId
    children = [o for o in sim.broker.orders.values() if o.parent_perm_id == perm]
    assert len(children) == 2


async def test_oca_group_fill_cancels_the_others(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await qualified(ib, aapl(lib))
    orders = [lib.LimitOrder("BUY", 5, 185.0), lib.LimitOrder("BUY", 5, 180.0)]
    for order in orders:
        order.ocaGroup = "oca-test"
        order.ocaType = 1
    trades = [ib.placeOrder(contract, o) for o in orders]
    await wait_for(lambda: all(t.orderStatus.status == "Submitted" for t in trades))
    sim.set_price("AAPL", 184.0)
    await wait_for(lambda: trades[0].orderStatus.status == "Filled", what="first filled")
    await wait_for(lambda: trades[1].orderStatus.status == "Cancelled", what="other cancelled")


async def test_modify_by_replacing_the_same_order_id(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await qualified(ib, aapl(lib))
    order = lib.LimitOrder("BUY", 5, 150.0)
    trade = ib.placeOrder(contract, order)
    await wait_for(lambda: trade.orderStatus.status == "Submitted")
    order.lmtPrice = 195.0
    ib.placeOrder(contract, order)
    await wait_for(lambda: trade.orderStatus.status == "Filled", what="modified order filled")
    assert len(sim.broker.orders) == 1
    (only,) = sim.broker.orders.values()
    assert only.lmt_price == 195.0 and any(h.note == "modified" for h in only.history)


async def test_cancel_order_reports_cancelled(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await qualified(ib, aapl(lib))
    errors = []
    ib.errorEvent += lambda req_id, code, *args: errors.append(code)
    trade = ib.placeOrder(contract, lib.LimitOrder("BUY", 5, 150.0))
    await wait_for(lambda: trade.orderStatus.status == "Submitted")
    ib.cancelOrder(trade.order)
    await wait_for(lambda: trade.orderStatus.status == "Cancelled", what="cancelled")
    await wait_for(lambda: 202 in errors, what="error 202")


async def test_global_cancel_cancels_every_open_order(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await qualified(ib, aapl(lib))
    trades = [ib.placeOrder(contract, lib.LimitOrder("BUY", 5, p)) for p in (150.0, 151.0)]
    await wait_for(lambda: all(t.orderStatus.status == "Submitted" for t in trades))
    ib.reqGlobalCancel()
    await wait_for(lambda: all(t.orderStatus.status == "Cancelled" for t in trades))
    assert sim.broker.open_orders(["DU1000001"]) == []


async def test_what_if_returns_margins_without_placing(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await qualified(ib, aapl(lib))
    state = await ib.whatIfOrderAsync(contract, lib.MarketOrder("BUY", 100))
    # Reg T: 50 % initial, 25 % maintenance; IB's fixed 0.005 USD/share, at least 1 USD.
    assert float(state.initMarginChange) == pytest.approx(190.0 * 100 * 0.50)
    assert float(state.maintMarginChange) == pytest.approx(190.0 * 100 * 0.25)
    assert float(state.initMarginAfter) == pytest.approx(float(state.initMarginBefore) + 9500.0)
    assert float(state.equityWithLoanAfter) == pytest.approx(
        float(state.equityWithLoanBefore) - 1.0
    )
    assert (state.commission, state.minCommission, state.maxCommission) == (1.0, 1.0, 1.0)
    assert state.commissionCurrency == "USD"
    assert sim.broker.orders == {}


async def test_executions_and_commissions_reach_a_later_client(
    lib, sim: SimFleet, clients: Clients
):
    ib = await clients.connect(sim.ports[0])
    contract = await qualified(ib, aapl(lib))
    trade = ib.placeOrder(contract, lib.MarketOrder("BUY", 10))
    await wait_for(lambda: trade.orderStatus.status == "Filled")
    msft = await qualified(ib, lib.Stock("MSFT", "SMART", "USD"))
    other = ib.placeOrder(msft, lib.MarketOrder("SELL", 3))
    await wait_for(lambda: other.orderStatus.status == "Filled")
    later = await clients.connect(sim.ports[0], client_id=7)
    fills = await later.reqExecutionsAsync()
    assert {f.contract.symbol for f in fills} == {"AAPL", "MSFT"}
    await wait_for(lambda: all(f.commissionReport.commission > 0 for f in later.fills()))
    only_aapl = await later.reqExecutionsAsync(lib.ExecutionFilter(symbol="AAPL"))
    assert [f.contract.symbol for f in only_aapl] == ["AAPL"]


async def test_order_ref_and_perm_id_survive_end_to_end(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await qualified(ib, aapl(lib))
    order = lib.MarketOrder("BUY", 1)
    order.orderRef = "journal-key-42"
    trade = ib.placeOrder(contract, order)
    await wait_for(lambda: trade.orderStatus.status == "Filled")
    truth = sim.broker.orders[trade.order.permId]
    assert truth.order_ref == "journal-key-42" and truth.account == "DU1000001"
    assert [h.status for h in truth.history][-1] == "Filled"
    later = await clients.connect(sim.ports[0], client_id=9)
    completed = await later.reqCompletedOrdersAsync(False)
    assert [(t.order.orderRef, t.order.permId) for t in completed] == [
        ("journal-key-42", trade.order.permId)
    ]


async def test_perm_ids_are_unique_across_gateways(lib, sim: SimFleet, clients: Clients):
    first = await clients.connect(sim.ports[0])
    second = await clients.connect(sim.ports[1])
    trades = []
    for ib in (first, second):
        contract = await qualified(ib, aapl(lib))
        trades.append(ib.placeOrder(contract, lib.MarketOrder("BUY", 1)))
    await wait_for(lambda: all(t.orderStatus.status == "Filled" for t in trades))
    assert trades[0].order.orderId == trades[1].order.orderId or True
    assert trades[0].order.permId != trades[1].order.permId


async def test_client_id_in_use_gets_326_and_is_closed(lib, sim: SimFleet, clients: Clients):
    await clients.connect(sim.ports[0], client_id=5)
    intruder = lib.IB()
    errors = []
    intruder.errorEvent += lambda req_id, code, *args: errors.append(code)
    with pytest.raises((ConnectionError, TimeoutError)):
        await intruder.connectAsync("127.0.0.1", sim.ports[0], clientId=5, timeout=1)
    intruder.disconnect()
    assert 326 in errors


async def test_more_than_50_messages_per_second_gets_error_100(
    lib, sim: SimFleet, clients: Clients
):
    ib = await clients.connect(sim.ports[0])
    ib.client.MaxRequests = 0  # the client's own pacing off, as a misbehaving client would
    errors = []
    ib.errorEvent += lambda req_id, code, *args: errors.append(code)
    for _ in range(80):
        ib.client.reqCurrentTime()
    await wait_for(lambda: 100 in errors, what="error 100")


async def test_market_data_realtime_ticks(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await qualified(ib, aapl(lib))
    ticker = ib.reqMktData(contract)
    await wait_for(lambda: not math.isnan(ticker.last) and not math.isnan(ticker.bid))
    assert ticker.bid < ticker.ask
    assert ticker.marketDataType == 1
    sim.set_price("AAPL", 200.0)
    await wait_for(lambda: ticker.last == 200.0, what="new price ticked")


async def test_historical_bars_are_deterministic(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    contract = await qualified(ib, aapl(lib))
    args = dict(
        endDateTime="20261120 16:00:00 US/Eastern",
        barSizeSetting="1 hour",
        whatToShow="TRADES",
        useRTH=True,
    )
    # An identical request within 15 s is a pacing violation: a longer one overlaps it.
    bars = await ib.reqHistoricalDataAsync(contract, durationStr="2 D", **args)
    longer = await ib.reqHistoricalDataAsync(contract, durationStr="3 D", **args)
    assert len(bars) == 14 and len(longer) == 21
    assert [(b.date, b.close) for b in bars] == [(b.date, b.close) for b in longer[-14:]]
    assert all(b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close) for b in bars)
    daily = await ib.reqHistoricalDataAsync(
        contract,
        endDateTime="",
        durationStr="10 D",
        barSizeSetting="1 day",
        whatToShow="TRADES",
        useRTH=True,
    )
    assert len(daily) == 10


async def test_account_values_and_summary(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    values = {v.tag: v.value for v in ib.accountValues() if v.currency in ("USD", "")}
    assert float(values["NetLiquidation"]) == pytest.approx(1_000_000.0)
    summary = await ib.accountSummaryAsync()
    tags = {v.tag for v in summary}
    assert {"NetLiquidation", "BuyingPower", "AvailableFunds"} <= tags
