"""What a strategy author reads when an order is refused (each refusal's sentence in full), and
the edges of the open-order count, the price collar and the daily loss that the mutation check
(benchmarks/mutation.sh plugins/risk.py) found untested."""

from __future__ import annotations

import pytest

from plugins.config import LimitsConfig
from plugins.risk import (
    RiskBook,
    RiskDecision,
    RiskReason,
    check_collar,
    check_daily_loss,
    check_order,
)
from tests.unit.plugins.test_risk import EMPTY, LIMITS, order

TEN_PCT = LimitsConfig(price_collar_pct=10)
LOSS_500 = LimitsConfig(max_daily_loss=500)


# -- the sentences -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        ({"read_only": True}, "the strategy or its gateway is read-only"),
        ({"gateway_ready": False}, "the strategy's gateway is not API-ready"),
        ({"in_reset_window": True}, "the gateway is inside an IB server reset window"),
    ],
    ids=["read_only", "gateway_down", "reset_window"],
)
def test_a_refusal_for_the_gateways_state_says_which_state(
    flags: dict[str, bool], says: str
) -> None:
    assert check_order(order(1), book=EMPTY, limits=LIMITS, **flags).message == says


def test_a_refusal_for_want_of_a_price_says_how_to_give_one() -> None:
    decision = check_order(order(1, None), book=EMPTY, limits=LIMITS)
    assert decision.message == (
        "no price to check notional against: give a limit price or subscribe market data"
    )


def test_a_refusal_past_the_daily_loss_gives_the_pnl_the_limit_and_what_still_passes() -> None:
    decision = check_daily_loss(-612.5, position=0, quantity=5, limits=LOSS_500)
    assert decision == RiskDecision(
        accepted=False,
        reason=RiskReason.DAILY_LOSS,
        message="the day's P&L -612.50 is past max_daily_loss 500: only orders that reduce a "
        "position are allowed until the next trading day",
    )


# -- the open-order count ------------------------------------------------------------------


def test_the_order_that_reaches_max_open_orders_exactly_is_accepted() -> None:
    book = RiskBook(position=0, open_buy_quantity=0, open_sell_quantity=0, open_orders=2)
    assert check_order(order(1), book=book, limits=LIMITS).accepted  # 2 + 1 = max 3


def test_a_bracket_counts_its_three_orders_against_max_open_orders() -> None:
    assert check_order(order(1, new_orders=3), book=EMPTY, limits=LIMITS).accepted  # 0 + 3
    one_open = RiskBook(position=0, open_buy_quantity=0, open_sell_quantity=0, open_orders=1)
    refused = check_order(order(1, new_orders=3), book=one_open, limits=LIMITS)
    assert refused.reason is RiskReason.MAX_OPEN_ORDERS
    assert refused.message == "1 orders already open, this adds 3; max_open_orders is 3"


# -- the price collar ----------------------------------------------------------------------


@pytest.mark.parametrize("market", [0.0, -1.0, float("nan"), float("inf")])
def test_a_zero_negative_or_non_finite_market_price_is_no_market_and_the_order_passes(
    market: float,
) -> None:
    assert check_collar({"limit": 100.0}, market=market, limits=TEN_PCT).accepted is True


def test_a_market_price_below_one_is_collared_like_any_other() -> None:
    assert check_collar({"limit": 0.52}, market=0.50, limits=TEN_PCT).accepted
    refused = check_collar({"limit": 5.0}, market=0.50, limits=TEN_PCT)  # 0.50 typed as 5.0
    assert refused.reason is RiskReason.PRICE_COLLAR
    assert refused.message == (
        "limit price 5 is 900.0 % from the market 0.5, beyond price_collar_pct 10 (a typo?)"
    )


def test_a_stop_is_collared_when_the_order_has_no_limit_price() -> None:
    refused = check_collar({"limit": None, "stop": 150.0}, market=100.0, limits=TEN_PCT)
    assert refused.reason is RiskReason.PRICE_COLLAR
    assert refused.message.startswith("stop price 150 ")


# -- the daily loss ------------------------------------------------------------------------


def test_past_the_daily_loss_a_single_share_that_opens_a_position_is_refused() -> None:
    refused = check_daily_loss(-500.0, position=0, quantity=1, limits=LOSS_500)
    assert refused.reason is RiskReason.DAILY_LOSS


def test_past_the_daily_loss_a_modify_that_adds_nothing_passes() -> None:
    assert check_daily_loss(-500.0, position=0, quantity=0, limits=LOSS_500).accepted is True
    assert check_daily_loss(-500.0, position=10, quantity=0, limits=LOSS_500).accepted is True


@pytest.mark.parametrize(("position", "quantity"), [(0.5, 0.5), (-0.5, -0.25), (0.0, 0.5)])
def test_past_the_daily_loss_a_fractional_order_that_adds_to_the_position_is_refused(
    position: float, quantity: float
) -> None:
    refused = check_daily_loss(-500.0, position=position, quantity=quantity, limits=LOSS_500)
    assert refused.reason is RiskReason.DAILY_LOSS


def test_past_the_daily_loss_a_fractional_order_that_reduces_the_position_passes() -> None:
    assert check_daily_loss(-500.0, position=0.5, quantity=-0.25, limits=LOSS_500).accepted
    assert check_daily_loss(-500.0, position=-0.5, quantity=0.5, limits=LOSS_500).accepted
