"""Every call a client commonly makes gets an answer: data, or IB's error for it, never
silence. Table-driven, with the real ib_async and ib_insync over TCP; each call has a
deadline well below the clients' own timeouts, so a hang fails the test."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ibsim.fleet import SimFleet
from ibsim.pacing import PacingConfig
from tests.integration.ibsim.conftest import Clients
from tests.waiting import until

pytestmark = pytest.mark.timeout(120)

DEADLINE = 5.0  # seconds: any answer comes within this, or the call counts as hanging
NEW_YORK = ZoneInfo("America/New_York")


@dataclass(frozen=True)
class Call:
    """One client call and what it must come back with."""

    name: str
    run: Callable[[Any, ModuleType, Any], Awaitable[Any]]
    check: Callable[[Any], bool] = bool  # the result is data
    error: int | None = None  # or: this IB error code arrives (and the call returns)


async def _mkt_data(ib: Any, lib: ModuleType, c: Any) -> Any:
    ticker = ib.reqMktData(c)
    fields = ("bid", "ask", "last", "high", "low", "close", "bidSize", "askSize")
    await until(lambda: all(not math.isnan(getattr(ticker, f)) for f in fields), DEADLINE)
    return ticker


async def _pnl(ib: Any, lib: ModuleType, c: Any) -> Any:
    pnl = ib.reqPnL(ib.managedAccounts()[0])
    await until(lambda: not math.isnan(pnl.dailyPnL), DEADLINE, what="a PnL update")
    return pnl


async def _market_data_type(ib: Any, lib: ModuleType, c: Any) -> Any:
    ib.reqMarketDataType(3)  # no reply at IB either: the next line proves the link is alive
    return await ib.reqCurrentTimeAsync()


async def _real_time_bars(ib: Any, lib: ModuleType, c: Any) -> Any:
    return ib.reqRealTimeBars(c, 5, "TRADES", False)


async def _tick_by_tick(ib: Any, lib: ModuleType, c: Any) -> Any:
    return ib.reqTickByTickData(c, "Last")


async def _mkt_depth(ib: Any, lib: ModuleType, c: Any) -> Any:
    return ib.reqMktDepth(c)


def _quote_ok(t: Any) -> bool:
    return t.bid < t.ask and t.bidSize > 0 and t.askSize > 0 and t.low <= t.last <= t.high


CALLS = [
    Call("reqContractDetails", lambda ib, lib, c: ib.reqContractDetailsAsync(c)),
    Call("reqMktData", _mkt_data, _quote_ok),
    Call("reqTickers", lambda ib, lib, c: ib.reqTickersAsync(c), lambda r: _quote_ok(r[0])),
    Call(
        "reqHistoricalData",
        lambda ib, lib, c: ib.reqHistoricalDataAsync(c, "", "1 D", "5 mins", "TRADES", True),
    ),
    Call(
        "reqHeadTimeStamp",
        lambda ib, lib, c: ib.reqHeadTimeStampAsync(c, "TRADES", True, 1),
        lambda r: r.year == 1980,
    ),
    Call(
        "reqMatchingSymbols",
        lambda ib, lib, c: ib.reqMatchingSymbolsAsync("AAP"),
        lambda r: r[0].contract.symbol == "AAPL",
    ),
    Call(
        "reqHistoricalTicks",
        lambda ib, lib, c: ib.reqHistoricalTicksAsync(
            c, "", datetime.now(UTC), 10, "BID_ASK", False
        ),
        lambda r: len(r) == 10 and all(t.priceBid < t.priceAsk for t in r),
    ),
    Call("reqAccountSummary", lambda ib, lib, c: ib.accountSummaryAsync()),
    Call("reqPositions", lambda ib, lib, c: ib.reqPositionsAsync(), lambda r: r == []),
    Call("reqOpenOrders", lambda ib, lib, c: ib.reqOpenOrdersAsync(), lambda r: r == []),
    Call("reqExecutions", lambda ib, lib, c: ib.reqExecutionsAsync(), lambda r: r == []),
    Call("reqCurrentTime", lambda ib, lib, c: ib.reqCurrentTimeAsync()),
    Call("reqMarketDataType", _market_data_type),
    Call("reqPnL", _pnl, lambda r: r.unrealizedPnL == 0),
    Call("reqMarketRule", lambda ib, lib, c: ib.reqMarketRuleAsync(26)),
    Call("reqNewsProviders", lambda ib, lib, c: ib.reqNewsProvidersAsync(), lambda r: r == []),
    Call(
        "reqMktDepthExchanges",
        lambda ib, lib, c: ib.reqMktDepthExchangesAsync(),
        lambda r: r == [],
    ),
    Call(
        "reqSecDefOptParams",
        lambda ib, lib, c: ib.reqSecDefOptParamsAsync("AAPL", "", "STK", c.conId),
        lambda r: r == [],
    ),
    Call(
        "reqScannerParameters",
        lambda ib, lib, c: ib.reqScannerParametersAsync(),
        lambda r: "ScanParameterResponse" in r,
    ),
    Call(
        "reqScannerSubscription",
        lambda ib, lib, c: ib.reqScannerDataAsync(
            lib.ScannerSubscription(
                instrument="STK", locationCode="STK.US.MAJOR", scanCode="TOP_PERC_GAIN"
            )
        ),
        lambda r: len(r) == 0,
        error=162,
    ),
    Call(
        "reqFundamentalData",
        lambda ib, lib, c: ib.reqFundamentalDataAsync(c, "ReportSnapshot"),
        lambda r: not r,
        error=430,
    ),
    Call("reqRealTimeBars", _real_time_bars, lambda r: True, error=420),
    Call("reqTickByTickData", _tick_by_tick, lambda r: True, error=10089),
    Call("reqMktDepth", _mkt_depth, lambda r: True, error=10092),
    Call(
        "reqSmartComponents",
        lambda ib, lib, c: ib.reqSmartComponentsAsync("a6"),
        lambda r: not r,
        error=200,
    ),
    Call(
        "reqHistoricalNews",
        lambda ib, lib, c: ib.reqHistoricalNewsAsync(c.conId, "BRFG", "", "", 10),
        lambda r: not r,
    ),
    Call("reqUserInfo", lambda ib, lib, c: ib.reqUserInfoAsync(), lambda r: not r),
]


@pytest.mark.parametrize("call", CALLS, ids=[c.name for c in CALLS])
async def test_common_call_answers(lib: ModuleType, sim: SimFleet, clients: Clients, call: Call):
    ib = await clients.connect(sim.ports[0])
    errors: list[int] = []
    ib.errorEvent += lambda req_id, code, *rest: errors.append(code)
    contract = lib.Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(contract)
    result = await asyncio.wait_for(call.run(ib, lib, contract), DEADLINE)
    if call.error is not None:
        await until(lambda: call.error in errors, DEADLINE, what=f"error {call.error}")
    assert call.check(result), f"{call.name} returned {result!r}"
    assert ib.isConnected(), "the simulator kept the connection"


async def test_account_values_carry_base_and_currency_rows(
    lib: ModuleType, sim: SimFleet, clients: Clients
):
    ib = await clients.connect(sim.ports[0])
    fx = lib.Forex("EURUSD")
    await ib.qualifyContractsAsync(fx)
    trade = ib.placeOrder(fx, lib.MarketOrder("BUY", 20_000))
    await until(lambda: trade.isDone(), DEADLINE, what="the FX fill")
    await until(
        lambda: any(v.currency == "EUR" for v in ib.accountValues()), DEADLINE, what="EUR rows"
    )
    values = {(v.tag, v.currency): v.value for v in ib.accountValues()}
    assert float(values[("CashBalance", "EUR")]) == 20_000
    assert values[("ExchangeRate", "BASE")] == "1.00"
    assert float(values[("ExchangeRate", "EUR")]) == pytest.approx(1.08, abs=0.01)
    for tag in ("CashBalance", "TotalCashBalance", "NetLiquidationByCurrency"):
        assert (tag, "BASE") in values and (tag, "USD") in values
    base = float(values[("CashBalance", "BASE")])
    usd, eur = float(values[("CashBalance", "USD")]), float(values[("CashBalance", "EUR")])
    assert base == pytest.approx(usd + eur * float(values[("ExchangeRate", "EUR")]), abs=0.05)
    summary = await ib.accountSummaryAsync()
    assert {"BASE", "USD", "EUR"} <= {v.currency for v in summary if v.tag == "CashBalance"}


async def test_bars_keep_regular_hours_skip_weekends_and_end_at_the_price(
    lib: ModuleType, sim: SimFleet, clients: Clients
):
    ib = await clients.connect(sim.ports[0])
    stock = lib.Stock("AAPL", "SMART", "USD")
    fx = lib.Forex("EURUSD")
    await ib.qualifyContractsAsync(stock, fx)
    bars = await ib.reqHistoricalDataAsync(stock, "", "2 W", "1 hour", "TRADES", True)
    assert bars and bars[-1].close == 190.0
    for bar in bars:
        local = bar.date.astimezone(NEW_YORK)
        assert local.weekday() < 5 and (9, 30) <= (local.hour, local.minute) < (16, 0), bar
    fx_bars = await ib.reqHistoricalDataAsync(fx, "", "2 W", "4 hours", "MIDPOINT", False)
    assert fx_bars and fx_bars[-1].close == 1.08
    for bar in fx_bars:
        local = bar.date.astimezone(NEW_YORK)
        saturday = local.weekday() == 5
        friday_late = local.weekday() == 4 and local.hour >= 17
        sunday_early = local.weekday() == 6 and local.hour < 17
        assert not (saturday or friday_late or sunday_early), bar
    daily = await ib.reqHistoricalDataAsync(stock, "", "1 M", "1 day", "TRADES", True)
    assert all(d.date.weekday() < 5 for d in daily) and 18 <= len(daily) <= 23


async def test_bad_bar_size_gets_321_and_fx_trades_162(
    lib: ModuleType, sim: SimFleet, clients: Clients
):
    ib = await clients.connect(sim.ports[0])
    errors: list[tuple[int, str]] = []
    ib.errorEvent += lambda req_id, code, text, *rest: errors.append((code, text))
    stock, fx = lib.Stock("AAPL", "SMART", "USD"), lib.Forex("EURUSD")
    await ib.qualifyContractsAsync(stock, fx)
    # ib_async and ib_insync treat 321 as a warning: the call waits for its own timeout.
    await ib.reqHistoricalDataAsync(stock, "", "1 D", "7 mins", "TRADES", True, timeout=1)
    assert any(code == 321 and "bar size setting is invalid" in t for code, t in errors)
    bars = await asyncio.wait_for(
        ib.reqHistoricalDataAsync(fx, "", "1 D", "1 hour", "TRADES", True), DEADLINE
    )
    assert len(bars) == 0 and any(code == 162 and "No data of type" in t for code, t in errors)


async def test_identical_request_within_15s_is_a_pacing_violation(
    lib: ModuleType, sim: SimFleet, clients: Clients
):
    ib = await clients.connect(sim.ports[0])
    errors: list[tuple[int, str]] = []
    ib.errorEvent += lambda req_id, code, text, *rest: errors.append((code, text))
    stock = lib.Stock("MSFT", "SMART", "USD")
    await ib.qualifyContractsAsync(stock)
    args = ("", "1 D", "1 hour", "TRADES", True)
    assert await ib.reqHistoricalDataAsync(stock, *args)
    again = await asyncio.wait_for(ib.reqHistoricalDataAsync(stock, *args), DEADLINE)
    assert len(again) == 0
    assert (
        162,
        "Historical Market Data Service error message:Historical data request pacing violation",
    ) in errors


async def test_window_limit_and_the_moved_clock(lib: ModuleType, clients: Clients):
    """A shrunk window: the fourth request in it is refused; moving the simulator's clock
    past the window admits it again, without waiting."""
    async with SimFleet.start(
        gateways=1, control_port=None, pacing=PacingConfig(hist_max=3, hist_window=600)
    ) as sim:
        ib = await clients.connect(sim.ports[0])
        errors: list[int] = []
        ib.errorEvent += lambda req_id, code, *rest: errors.append(code)
        stock = lib.Stock("IBM", "SMART", "USD")
        await ib.qualifyContractsAsync(stock)
        for days in (1, 2, 3):
            assert await ib.reqHistoricalDataAsync(stock, "", f"{days} D", "1 hour", "TRADES", True)
        refused = await ib.reqHistoricalDataAsync(stock, "", "4 D", "1 hour", "TRADES", True)
        assert len(refused) == 0 and errors.count(162) == 1
        sim.service.set_clock_offset(601)
        assert await ib.reqHistoricalDataAsync(stock, "", "4 D", "1 hour", "TRADES", True)
