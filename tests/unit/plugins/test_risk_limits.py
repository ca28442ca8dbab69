"""The limits beyond one order: per-instrument positions, the price collar, the daily loss and
the P&L of the trading day it is checked against."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from plugins.config import LimitsConfig
from plugins.daypnl import DayPnL, trading_day
from plugins.risk import (
    OrderCheck,
    RiskBook,
    RiskReason,
    check_collar,
    check_daily_loss,
    check_order,
    loss_breached,
    position_limit,
)

UTC = dt.UTC
MONDAY_OPEN = dt.datetime(2026, 3, 2, 14, 30, tzinfo=UTC)  # 09:30 New York
LIMITS = LimitsConfig(max_position=100, position_limits={"AAPL": 20}, max_daily_loss=500)
TEN_PCT = LimitsConfig(price_collar_pct=10)


# -- per-instrument position limits -------------------------------------------------------


def test_a_symbols_position_limit_replaces_max_position_for_it_only() -> None:
    assert position_limit(LIMITS, "AAPL") == 20
    assert position_limit(LIMITS, "SPY") == 100


def test_the_projected_position_counts_working_orders_against_the_symbols_limit() -> None:
    book = RiskBook(position=10, open_buy_quantity=5, open_sell_quantity=0, open_orders=1)
    check = OrderCheck(con_id=1, quantity=5, price=10.0, last_price=None)
    assert check_order(check, book=book, limits=LIMITS, max_position=20).accepted  # 10+5+5
    bigger = OrderCheck(con_id=1, quantity=6, price=10.0, last_price=None)
    refused = check_order(bigger, book=book, limits=LIMITS, max_position=20)
    assert refused.reason is RiskReason.MAX_POSITION
    assert "max_position 20" in refused.message
    assert check_order(bigger, book=book, limits=LIMITS).accepted  # the general 100


def test_position_limits_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="position_limits"):
        LimitsConfig(position_limits={"AAPL": 0})


# -- the price collar ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "accepted"), [(110.0, True), (90.0, True), (110.01, False), (18.5, False)]
)
def test_a_limit_more_than_the_collar_from_the_market_is_refused(
    limit: float, accepted: bool
) -> None:
    decision = check_collar({"limit": limit}, market=100.0, limits=TEN_PCT)
    assert decision.accepted is accepted
    if not accepted:
        assert decision.reason is RiskReason.PRICE_COLLAR
        assert "price_collar_pct 10" in decision.message and f"{limit:g}" in decision.message


def test_a_stop_price_is_collared_too() -> None:
    decision = check_collar({"limit": 100.0, "stop": 150.0}, market=100.0, limits=TEN_PCT)
    assert decision.reason is RiskReason.PRICE_COLLAR
    assert decision.message.startswith("stop price 150")


def test_no_market_price_or_no_collar_lets_the_order_pass() -> None:
    assert check_collar({"limit": 1e6}, market=None, limits=LimitsConfig()).accepted
    off = LimitsConfig(price_collar_pct=None)
    assert check_collar({"limit": 1e6}, market=100.0, limits=off).accepted


# -- the daily loss -----------------------------------------------------------------------


def test_past_the_daily_loss_only_reducing_orders_pass() -> None:
    assert not loss_breached(-499.0, LIMITS)
    assert loss_breached(-500.0, LIMITS)
    assert check_daily_loss(-499.0, position=0, quantity=10, limits=LIMITS).accepted
    refused = check_daily_loss(-500.0, position=10, quantity=5, limits=LIMITS)
    assert refused.reason is RiskReason.DAILY_LOSS and "max_daily_loss 500" in refused.message
    assert check_daily_loss(-500.0, position=10, quantity=-10, limits=LIMITS).accepted
    assert not check_daily_loss(-500.0, position=10, quantity=-11, limits=LIMITS).accepted


def test_no_daily_loss_limit_never_refuses() -> None:
    off = LimitsConfig(max_daily_loss=None)
    assert not loss_breached(-1e9, off)
    assert check_daily_loss(-1e9, position=0, quantity=1, limits=off).accepted


def test_a_calendar_exchange_calendars_does_not_know_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="daily_loss_calendar 'NYSE!'"):
        LimitsConfig(daily_loss_calendar="NYSE!")


# -- the trading day ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "day"),
    [
        (MONDAY_OPEN - dt.timedelta(minutes=1), dt.date(2026, 2, 27)),  # before Monday's open
        (MONDAY_OPEN, dt.date(2026, 3, 2)),
        (dt.datetime(2026, 3, 3, 2, 0, tzinfo=UTC), dt.date(2026, 3, 2)),  # the night after
        (dt.datetime(2026, 3, 7, 12, 0, tzinfo=UTC), dt.date(2026, 3, 6)),  # Saturday
        (dt.datetime(2026, 3, 9, 13, 30, tzinfo=UTC), dt.date(2026, 3, 9)),  # New York DST
    ],
)
def test_the_trading_day_runs_from_one_sessions_open_to_the_next(
    at: dt.datetime, day: dt.date
) -> None:
    assert trading_day(at, calendar="XNYS") == day


def test_a_reset_time_starts_the_day_at_that_local_time() -> None:
    five_pm = dt.time(17, 0)
    before = dt.datetime(2026, 3, 2, 21, 59, tzinfo=UTC)  # 16:59 New York
    after = dt.datetime(2026, 3, 2, 22, 0, tzinfo=UTC)
    assert trading_day(before, calendar="XNYS", reset=five_pm) != trading_day(
        after, calendar="XNYS", reset=five_pm
    )
    with pytest.raises(ValueError, match="naive"):
        trading_day(dt.datetime(2026, 3, 2, 12, 0), calendar="XNYS")


# -- the day's P&L ------------------------------------------------------------------------


def test_realised_and_marked_pnl_from_the_strategys_fills() -> None:
    pnl = DayPnL(calendar="XNYS")
    at = MONDAY_OPEN + dt.timedelta(hours=1)
    pnl.fill(1, 10, 100.0, now=at)
    pnl.fill(1, 10, 110.0, now=at)  # average cost 105
    assert pnl.total({1: 104.0}, now=at) == pytest.approx(-20.0)
    pnl.fill(1, -5, 95.0, now=at)  # realise 5 x -10
    assert pnl.realised == pytest.approx(-50.0)
    assert pnl.total({1: 105.0}, now=at) == pytest.approx(-50.0)
    pnl.fill(1, -25, 100.0, now=at)  # closes 15 (-75), opens 10 short at 100
    assert pnl.realised == pytest.approx(-125.0)
    assert pnl.total({1: 90.0}, now=at) == pytest.approx(-125.0 + 100.0)


def test_a_multiplier_scales_the_pnl() -> None:
    pnl = DayPnL(calendar="XNYS")
    at = MONDAY_OPEN + dt.timedelta(hours=1)
    pnl.fill(7, -2, 5000.0, now=at, multiplier=50.0)
    assert pnl.total({7: 5010.0}, now=at) == pytest.approx(-2 * 10 * 50)


def test_a_new_trading_day_starts_from_zero_and_from_the_carried_positions_mark() -> None:
    pnl = DayPnL(calendar="XNYS")
    monday = MONDAY_OPEN + dt.timedelta(hours=1)
    pnl.fill(1, 10, 100.0, now=monday)
    pnl.fill(1, -5, 90.0, now=monday)
    assert pnl.total({1: 90.0}, now=monday) == pytest.approx(-100.0)
    tuesday = monday + dt.timedelta(days=1)
    assert pnl.total({1: 90.0}, now=tuesday) == 0.0  # the carried 5 re-marked at 90
    assert pnl.total({1: 80.0}, now=tuesday) == pytest.approx(-50.0)


def test_the_days_pnl_survives_a_restart_through_its_record() -> None:
    pnl = DayPnL(calendar="XNYS")
    at = MONDAY_OPEN + dt.timedelta(hours=1)
    pnl.fill(1, 10, 100.0, now=at)
    pnl.fill(1, -4, 90.0, now=at)
    again = DayPnL(calendar="XNYS")
    again.load(pnl.to_record())
    assert again.total({1: 95.0}, now=at) == pytest.approx(pnl.total({1: 95.0}, now=at))
