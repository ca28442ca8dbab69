"""The pure matching rules: quotes, trigger methods, trailing stops, fill prices, odd lots."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ibsim.contracts import SymbolTable
from ibsim.matching import fill_price, is_odd_lot, quote_of, stop_triggered, trail_stop
from ibsim.records import BrokerOrder, OrderState

SYMBOLS = SymbolTable()
AAPL = SYMBOLS.by_con_id(265598)
EURUSD = SYMBOLS.by_con_id(12087792)
assert AAPL is not None and EURUSD is not None


def order(**kw) -> BrokerOrder:
    base = dict(
        perm_id=1,
        gateway="gw",
        client_id=1,
        order_id=1,
        account="DU1",
        contract=AAPL,
        action="BUY",
        total_quantity=10.0,
        order_type="MKT",
        lmt_price=None,
        aux_price=None,
        tif="DAY",
        oca_group="",
        order_ref="",
        parent_id=0,
        parent_perm_id=0,
        transmit=True,
        status=OrderState.SUBMITTED,
        created_at=datetime(2026, 11, 23, 15, tzinfo=UTC),
    )
    base.update(kw)
    return BrokerOrder(**base)


def test_quote_is_never_crossed_and_sits_on_the_tick_grid():
    q = quote_of(AAPL, 190.0, spread_ticks=1)
    assert (q.bid, q.ask, q.last) == (189.99, 190.01, 190.0)
    tiny = quote_of(AAPL, 0.01, spread_ticks=1)
    assert 0 < tiny.bid < tiny.ask


def test_market_orders_fill_at_the_far_side():
    q = quote_of(AAPL, 190.0, spread_ticks=1)
    assert fill_price(order(action="BUY"), q, odd_lot_ticks=0) == 190.01
    assert fill_price(order(action="SELL"), q, odd_lot_ticks=0) == 189.99


@pytest.mark.parametrize(
    ("action", "limit", "expected"),
    [
        ("BUY", 190.01, 190.01),
        ("BUY", 195.0, 190.01),
        ("BUY", 190.0, None),
        ("SELL", 189.99, 189.99),
        ("SELL", 185.0, 189.99),
        ("SELL", 190.0, None),
    ],
)
def test_limits_fill_at_their_price_or_better(action, limit, expected):
    q = quote_of(AAPL, 190.0, spread_ticks=1)
    got = fill_price(order(action=action, order_type="LMT", lmt_price=limit), q, odd_lot_ticks=0)
    assert got == expected


def test_stock_stop_triggers_on_the_last_price_by_default():
    q = quote_of(AAPL, 190.0, spread_ticks=5)  # ask 190.05
    buy_stop = order(order_type="STP", aux_price=190.03)
    assert not stop_triggered(buy_stop, q)  # the ask crossed, the last did not
    assert stop_triggered(order(order_type="STP", aux_price=190.0), q)
    assert stop_triggered(order(order_type="STP", aux_price=190.03, trigger_method=4), q)


def test_forex_stop_triggers_on_bid_ask_by_default():
    q = quote_of(EURUSD, 1.08, spread_ticks=1)  # bid 1.07995, ask 1.08005
    sell_stop = order(contract=EURUSD, action="SELL", order_type="STP", aux_price=1.07995)
    assert stop_triggered(sell_stop, q)
    assert not stop_triggered(order(**{**_fx_sell(), "trigger_method": 2}), q)


def _fx_sell() -> dict:
    return dict(contract=EURUSD, action="SELL", order_type="STP", aux_price=1.07995)


def test_sell_trail_follows_the_market_up_never_down():
    trail = order(action="SELL", order_type="TRAIL", aux_price=2.0)
    trail.trail_stop_price = trail_stop(trail, quote_of(AAPL, 190.0, spread_ticks=1))
    assert trail.trail_stop_price == 188.0
    trail.trail_stop_price = trail_stop(trail, quote_of(AAPL, 195.0, spread_ticks=1))
    assert trail.trail_stop_price == 193.0
    trail.trail_stop_price = trail_stop(trail, quote_of(AAPL, 194.0, spread_ticks=1))
    assert trail.trail_stop_price == 193.0
    assert stop_triggered(trail, quote_of(AAPL, 193.0, spread_ticks=1))


def test_buy_trail_by_percent_follows_the_market_down():
    trail = order(action="BUY", order_type="TRAIL", trailing_percent=1.0)
    trail.trail_stop_price = trail_stop(trail, quote_of(AAPL, 200.0, spread_ticks=1))
    assert trail.trail_stop_price == 202.0
    trail.trail_stop_price = trail_stop(trail, quote_of(AAPL, 150.0, spread_ticks=1))
    assert trail.trail_stop_price == 151.5
    assert not stop_triggered(trail, quote_of(AAPL, 151.0, spread_ticks=1))


def test_idealpro_odd_lot_fills_wider_than_a_round_lot():
    q = quote_of(EURUSD, 1.08, spread_ticks=1)
    small = order(contract=EURUSD, total_quantity=10_000.0)
    round_lot = order(contract=EURUSD, total_quantity=25_000.0)
    assert is_odd_lot(small) and not is_odd_lot(round_lot)
    assert fill_price(round_lot, q, odd_lot_ticks=2) == 1.08005
    assert fill_price(small, q, odd_lot_ticks=2) == 1.08015
