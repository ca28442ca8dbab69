"""Order types, time in force and outside-RTH: the spec's checks and the IB order they map to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plugins import api
from plugins.host import StrategyState
from plugins.host.ordermap import bracket_orders, order_for, order_record, unset
from plugins.risk import OrderCheck, RiskBook, RiskReason, check_order
from tests.unit.plugins.host_harness import rig, strategy
from tests.waiting import until

SPY = api.Instrument("SPY")
AAPL = api.Instrument("AAPL")


def spec(side: api.Side = api.Side.BUY, quantity: float = 10, **kw: Any) -> api.OrderSpec:
    return api.OrderSpec(SPY, side, quantity, **kw)


# -- the spec --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "kind"),
    [
        ({}, api.OrderType.MARKET),
        ({"limit_price": 10.0}, api.OrderType.LIMIT),
        ({"stop_price": 9.0}, api.OrderType.STOP),
        ({"limit_price": 8.9, "stop_price": 9.0}, api.OrderType.STOP_LIMIT),
        ({"trail_amount": 0.5}, api.OrderType.TRAILING_STOP),
        ({"trail_percent": 1.5, "stop_price": 9.0}, api.OrderType.TRAILING_STOP),
        ({"order_type": api.OrderType.STOP, "stop_price": 9.0}, api.OrderType.STOP),
    ],
)
def test_the_type_follows_from_the_prices_given(kw: dict[str, Any], kind: api.OrderType) -> None:
    assert spec(**kw).type is kind


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"order_type": api.OrderType.STOP}, "a STOP order needs stop_price"),
        ({"order_type": api.OrderType.LIMIT}, "a LIMIT order needs limit_price"),
        ({"order_type": api.OrderType.MARKET, "limit_price": 1.0}, "MARKET order takes no limit"),
        ({"order_type": api.OrderType.STOP_LIMIT, "stop_price": 1.0}, "needs limit_price"),
        ({"order_type": api.OrderType.TRAILING_STOP}, "TRAILING_STOP order needs trail"),
        ({"trail_amount": 1.0, "trail_percent": 1.0}, "not both"),
        ({"trail_amount": 1.0, "limit_price": 2.0}, "takes no limit_price"),
        ({"trail_percent": 120.0}, "trail_percent must be between 0 and 100"),
        ({"stop_price": -1.0}, "stop_price must be a positive price"),
        ({"limit_price": float("nan")}, "limit_price must be a positive price"),
        ({"tif": "FOK"}, "tif 'FOK' is not one of DAY, GTC, IOC"),
    ],
)
def test_a_spec_that_cannot_be_sent_is_refused_when_made(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec(**kw)


def test_time_in_force_is_an_enum_and_a_word_still_works() -> None:
    assert spec(tif="gtc").tif is api.TimeInForce.GTC
    assert spec(tif=api.TimeInForce.IOC).tif is api.TimeInForce.IOC
    assert spec().tif is api.TimeInForce.DAY


# -- the IB order ----------------------------------------------------------------------------


def fields(order: Any) -> dict[str, Any]:
    names = ("orderType", "lmtPrice", "auxPrice", "trailingPercent", "trailStopPrice")
    return {n: getattr(order, n) for n in names if not unset(getattr(order, n))}


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, {"orderType": "MKT"}),
        ({"limit_price": 10.0}, {"orderType": "LMT", "lmtPrice": 10.0}),
        ({"stop_price": 9.0}, {"orderType": "STP", "auxPrice": 9.0}),
        (
            {"limit_price": 8.9, "stop_price": 9.0},
            {"orderType": "STP LMT", "lmtPrice": 8.9, "auxPrice": 9.0},
        ),
        ({"trail_amount": 0.5}, {"orderType": "TRAIL", "auxPrice": 0.5}),
        (
            {"trail_percent": 1.5, "stop_price": 9.0},
            {"orderType": "TRAIL", "trailingPercent": 1.5, "trailStopPrice": 9.0},
        ),
    ],
)
def test_each_type_maps_to_ibs_order_fields(kw: dict[str, Any], expected: dict[str, Any]) -> None:
    order = order_for(spec(side=api.Side.SELL, **kw), "DU1")
    assert fields(order) == expected
    assert (order.action, order.totalQuantity, order.account) == ("SELL", 10, "DU1")


def test_tif_and_outside_rth_reach_the_order_and_the_journal_record() -> None:
    order = order_for(spec(stop_price=9.0, tif="GTC", outside_rth=True), "DU1")
    assert (order.tif, order.outsideRth) == ("GTC", True)
    assert order_record(order, purpose="strategy") == {
        "action": "BUY",
        "totalQuantity": 10,
        "orderType": "STP",
        "tif": "GTC",
        "purpose": "strategy",
        "auxPrice": 9.0,
        "outsideRth": True,
    }
    assert order_for(spec(tif="IOC"), "DU1").tif == "IOC"


def test_a_brackets_orders_are_held_but_the_last_and_exit_on_the_other_side() -> None:
    entry, tp, sl = bracket_orders(
        spec(limit_price=100.0, tif="GTC"), take_profit=110.0, stop_loss=95.0, account="DU1"
    )
    assert [o.transmit for o in (entry, tp, sl)] == [False, False, True]
    assert fields(tp) == {"orderType": "LMT", "lmtPrice": 110.0}
    assert fields(sl) == {"orderType": "STP", "auxPrice": 95.0}
    assert {tp.action, sl.action} == {"SELL"} and {tp.tif, sl.tif} == {"GTC"}


@pytest.mark.parametrize(
    ("entry", "tp", "sl", "message"),
    [
        (spec(limit_price=100.0), 110.0, 112.0, "stop_loss 112 must be below take_profit 110"),
        (spec(api.Side.SELL), 110.0, 100.0, "stop_loss 100 must be above take_profit 110"),
        (spec(limit_price=100.0), 99.0, 95.0, "entry at 100 must lie between"),
        (spec(trail_amount=1.0), 110.0, 90.0, "cannot be a trailing stop"),
        (spec(), float("inf"), 90.0, "take_profit must be a positive price"),
    ],
)
def test_bracket_prices_on_the_wrong_side_are_refused(
    entry: api.OrderSpec, tp: float, sl: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        api.check_bracket(entry, take_profit=tp, stop_loss=sl)


def test_a_brackets_three_orders_count_against_max_open_orders() -> None:
    limits = strategy(max_open_orders=4).limits
    order = OrderCheck(con_id=1, quantity=1, price=10.0, last_price=None, new_orders=3)
    book = RiskBook(position=0, open_buy_quantity=0, open_sell_quantity=0, open_orders=1)
    assert check_order(order, book=book, limits=limits).accepted
    book = RiskBook(position=0, open_buy_quantity=0, open_sell_quantity=0, open_orders=2)
    refused = check_order(order, book=book, limits=limits)
    assert refused.reason is RiskReason.MAX_OPEN_ORDERS and "this adds 3" in refused.message


# -- through the host ------------------------------------------------------------------------


async def test_each_type_is_sent_through_the_host_and_journalled(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.host.start()
        runner = r.runner()
        await until(lambda: runner.state is StrategyState.RUNNING, what="running")
        r.ib.tick(100.0)
        kinds = [
            {"stop_price": 95.0},
            {"limit_price": 94.5, "stop_price": 95.0},
            {"trail_percent": 2.0},
            {"limit_price": 90.0, "tif": "IOC", "outside_rth": True},
        ]
        views = [
            await runner.ctx.place(api.OrderSpec(AAPL, api.Side.SELL, 1, **kw)) for kw in kinds
        ]
        assert [v.order_type for v in views] == [
            api.OrderType.STOP,
            api.OrderType.STOP_LIMIT,
            api.OrderType.TRAILING_STOP,
            api.OrderType.LIMIT,
        ]
        sent = {t.order.orderRef: t.order for t in r.ib.trades.values()}
        assert sent[views[0].key].auxPrice == 95.0 and views[0].stop_price == 95.0
        assert sent[views[2].key].trailingPercent == 2.0
        assert (sent[views[3].key].tif, sent[views[3].key].outsideRth) == ("IOC", True)
        record = r.journal.intent(views[1].key)
        assert record is not None
        assert (record.order["orderType"], record.order["auxPrice"]) == ("STP LMT", 95.0)


async def test_a_stop_is_modified_in_place_and_a_price_it_has_not_is_an_error(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await r.host.start()
        runner = r.runner()
        await until(lambda: runner.state is StrategyState.RUNNING, what="running")
        placed = await runner.ctx.place(api.OrderSpec(AAPL, api.Side.SELL, 2, stop_price=95.0))
        moved = await runner.ctx.modify(placed.key, stop_price=97.0, quantity=3)
        [trade] = r.ib.trades.values()
        assert (trade.order.auxPrice, trade.order.totalQuantity) == (97.0, 3)
        assert (moved.stop_price, moved.quantity, moved.key) == (97.0, 3, placed.key)
        assert r.ib.modifies == [placed.key]
        with pytest.raises(ValueError, match=f"order {placed.key} is a STOP order; it has no"):
            await runner.ctx.modify(placed.key, limit_price=96.0)
