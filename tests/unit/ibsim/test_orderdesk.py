"""The order desk under a fake clock: TIF, sessions, IOC, trailing, OCA types, brackets,
IB's refusals, what-if figures and commissions on fills."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ibsim.broker import Broker, BrokerConfig, OrderState, Reject
from tests.unit.ibsim.test_broker import req

ACCOUNT = "DU1000001"
AAPL = 265598
EURUSD = 12087792


class Clock:
    """A settable clock: 2026-11-23 (a Monday) 15:00 UTC = 10:00 New York."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(clock: Clock, **config) -> Broker:
    b = Broker(clock=clock, config=BrokerConfig(lot_size=100, volatility=0.0, **config))
    b.open_account(ACCOUNT)
    return b


@pytest.fixture
def broker(clock: Clock) -> Broker:
    return make(clock)


def send(broker: Broker, order_id: int, **kw):
    return broker.place_order(
        gateway="gw1", client_id=1, request=req(order_id, **kw), accounts=[ACCOUNT]
    )


def place(broker: Broker, order_id: int, **kw):
    result = send(broker, order_id, **kw)
    assert not isinstance(result, Reject), result
    return result


def test_day_order_expires_at_the_close_in_new_york(broker, clock):
    order = place(broker, 1, order_type="LMT", lmt_price=150.0)
    assert order.expires_at == datetime(2026, 11, 23, 21, 0, tzinfo=UTC)  # 16:00 EST
    clock.now = datetime(2026, 11, 23, 20, 59, tzinfo=UTC)
    broker.step()
    assert order.status is OrderState.SUBMITTED
    clock.now += timedelta(minutes=1)
    broker.step()
    assert order.status is OrderState.CANCELLED
    assert "expired" in order.history[-1].note


def test_day_order_with_outside_rth_lives_to_the_end_of_after_hours(broker):
    order = place(broker, 1, order_type="LMT", lmt_price=150.0, outside_rth=True)
    assert order.expires_at == datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 20:00 EST


def test_day_order_after_the_close_is_for_the_next_session(broker, clock):
    clock.now = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)  # Wednesday 17:00; Thursday a holiday
    order = place(broker, 1, order_type="LMT", lmt_price=150.0)
    # Thanksgiving is closed; Friday the 27th closes early at 13:00 New York time.
    assert order.expires_at == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)


def test_gtc_does_not_expire_and_forex_day_ends_at_five(broker, clock):
    gtc = place(broker, 1, order_type="LMT", lmt_price=150.0, tif="GTC")
    fx = place(
        broker,
        2,
        con_id=EURUSD,
        symbol="EUR",
        sec_type="CASH",
        exchange="IDEALPRO",
        order_type="LMT",
        lmt_price=1.0,
        total_quantity=25_000,
    )
    assert gtc.expires_at is None
    assert fx.expires_at == datetime(2026, 11, 23, 22, 0, tzinfo=UTC)  # 17:00 EST
    clock.now += timedelta(days=30)
    broker.step()
    assert gtc.status is OrderState.SUBMITTED and fx.status is OrderState.CANCELLED


def test_market_hours_hold_a_stock_order_without_outside_rth(clock):
    clock.now = datetime(2026, 11, 23, 23, 0, tzinfo=UTC)  # 18:00 New York: after hours
    broker = make(clock, market_hours=True)
    held = place(broker, 1)
    extended = place(broker, 2, outside_rth=True)
    assert held.status is OrderState.PRE_SUBMITTED and held.filled == 0
    assert extended.status is OrderState.FILLED
    clock.now = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)  # 09:30 next day
    broker.step()
    assert held.status is OrderState.FILLED


def test_market_hours_close_forex_at_the_weekend(clock):
    clock.now = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)  # Saturday
    broker = make(clock, market_hours=True)
    fx = place(
        broker,
        1,
        con_id=EURUSD,
        symbol="EUR",
        sec_type="CASH",
        exchange="IDEALPRO",
        total_quantity=25_000,
        tif="GTC",
    )
    assert fx.status is OrderState.PRE_SUBMITTED
    clock.now = datetime(2026, 11, 29, 22, 30, tzinfo=UTC)  # Sunday 17:30 New York
    broker.step()
    assert fx.status is OrderState.FILLED


def test_ioc_fills_what_the_quote_offers_and_cancels_the_rest(broker):
    order = place(broker, 1, total_quantity=250, tif="IOC")
    assert order.filled == 100 and order.status is OrderState.CANCELLED
    broker.step()
    assert order.filled == 100
    nothing = place(broker, 2, order_type="LMT", lmt_price=150.0, tif="IOC")
    assert nothing.filled == 0 and nothing.status is OrderState.CANCELLED


def test_trailing_stop_follows_then_triggers(broker):
    trail = place(broker, 1, action="SELL", order_type="TRAIL", aux_price=2.0)
    assert trail.status is OrderState.PRE_SUBMITTED and trail.trail_stop_price == 188.0
    broker.set_price(AAPL, 196.0)
    assert trail.trail_stop_price == 194.0
    broker.set_price(AAPL, 195.0)
    assert trail.trail_stop_price == 194.0 and trail.status is OrderState.PRE_SUBMITTED
    broker.set_price(AAPL, 193.9)
    assert trail.status is OrderState.FILLED and trail.avg_fill_price == 193.89


def test_stop_limit_becomes_a_limit_at_trigger(broker):
    order = place(broker, 1, action="SELL", order_type="STP LMT", aux_price=185.0, lmt_price=184.5)
    broker.set_price(AAPL, 180.0)  # triggered, but the bid is below the limit
    assert order.triggered and order.status is OrderState.SUBMITTED and order.filled == 0
    broker.set_price(AAPL, 184.6)
    assert order.status is OrderState.FILLED and order.avg_fill_price == 184.59


def test_oca_type_three_reduces_the_others(broker):
    resting = place(
        broker, 1, order_type="LMT", lmt_price=150.0, total_quantity=250, oca_group="g", oca_type=3
    )
    market = place(broker, 2, total_quantity=250, oca_group="g", oca_type=3)
    assert market.filled == 100 and resting.total_quantity == 150
    assert resting.status is OrderState.SUBMITTED
    broker.step()
    assert resting.total_quantity == 50
    broker.step()
    assert market.status is OrderState.FILLED and resting.status is OrderState.CANCELLED


def test_cancelling_a_held_bracket_parent_cancels_its_children(broker):
    parent = place(broker, 1, order_type="LMT", lmt_price=150.0)
    tp = place(broker, 2, action="SELL", order_type="LMT", lmt_price=200.0, parent_id=1)
    sl = place(broker, 3, action="SELL", order_type="STP", aux_price=140.0, parent_id=1)
    assert tp.status is OrderState.PRE_SUBMITTED and sl.status is OrderState.PRE_SUBMITTED
    broker.cancel_order(gateway="gw1", client_id=1, order_id=1, accounts=[ACCOUNT])
    assert {parent.status, tp.status, sl.status} == {OrderState.CANCELLED}


def test_ib_refusals(broker):
    assert send(broker, 1, exchange="").code == 321
    assert "Please enter exchange" in send(broker, 1, exchange="").message
    assert send(broker, 1, order_type="STP LMT", lmt_price=190.0).code == 321
    assert send(broker, 1, order_type="LMT", lmt_price=190.005).code == 110
    assert send(broker, 1, total_quantity=1.5).code == 10243
    assert send(broker, 1, total_quantity=0).code == 434
    assert send(broker, 1, tif="FOK").code == 111
    gone = broker.cancel_order(gateway="gw1", client_id=1, order_id=99, accounts=[ACCOUNT])
    assert isinstance(gone, Reject) and gone.code == 10147
    place(broker, 5)
    refused = send(broker, 5, order_type="LMT", lmt_price=100.0)
    assert refused.code == 104 and refused.message == "Can't modify a filled order."


def test_modify_changes_price_and_quantity(broker):
    order = place(broker, 1, order_type="LMT", lmt_price=150.0)
    place(broker, 1, order_type="LMT", lmt_price=151.0, total_quantity=20)
    assert (order.lmt_price, order.total_quantity) == (151.0, 20)


def test_commission_minimum_is_per_order_across_slices(broker):
    order = place(broker, 1, total_quantity=250)
    broker.step()
    broker.step()
    fills = [e.commission for e in broker.executions if e.perm_id == order.perm_id]
    assert fills == [1.0, 0.0, 0.25] and order.commission_paid == 1.25  # 250 x 0.005


def test_stock_what_if_figures(broker):
    result = broker.what_if(req(1, total_quantity=100), accounts=[ACCOUNT])
    assert not isinstance(result, Reject)
    assert result.init_margin_change == 9500.0  # 50 % of 100 x 190
    assert result.maint_margin_change == 4750.0  # 25 %
    assert result.commission == result.min_commission == result.max_commission == 1.0
    assert result.equity_with_loan_after == result.equity_with_loan_before - 1.0
    big = broker.what_if(req(2, total_quantity=1000), accounts=[ACCOUNT])
    assert big.commission == 5.0


def test_forex_what_if_figures(broker):
    request = req(
        1, con_id=EURUSD, symbol="EUR", sec_type="CASH", exchange="IDEALPRO", total_quantity=100_000
    )
    result = broker.what_if(request, accounts=[ACCOUNT])
    assert result.commission == 2.16  # 0.2 bp of 108,000 USD, above the 2 USD minimum
    assert result.init_margin_change == pytest.approx(3240.0)  # 3 %
    small = broker.what_if(
        req(
            2,
            con_id=EURUSD,
            symbol="EUR",
            sec_type="CASH",
            exchange="IDEALPRO",
            total_quantity=20_000,
        ),
        accounts=[ACCOUNT],
    )
    assert small.commission == 2.0


def test_what_if_that_closes_a_position_frees_margin(broker):
    place(broker, 1, total_quantity=100)
    result = broker.what_if(req(2, action="SELL", total_quantity=100), accounts=[ACCOUNT])
    assert result.init_margin_change == -9500.0 and result.init_margin_after == 0.0
