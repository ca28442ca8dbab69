"""Pre-trade risk checks: each limit refuses with its reason, and only past its bound."""

from __future__ import annotations

import pytest

from plugins.config import LimitsConfig
from plugins.risk import OrderCheck, RiskBook, RiskReason, check_order

LIMITS = LimitsConfig(max_order_qty=10, max_position=20, max_notional=1000, max_open_orders=3)
EMPTY = RiskBook(position=0, open_buy_quantity=0, open_sell_quantity=0, open_orders=0)


def order(
    qty: float, price: float | None = 50.0, last: float | None = None, **kw: float
) -> OrderCheck:
    return OrderCheck(con_id=1, quantity=qty, price=price, last_price=last, **kw)


def test_an_order_within_every_limit_is_accepted() -> None:
    assert check_order(order(10, 100.0), book=EMPTY, limits=LIMITS).accepted


@pytest.mark.parametrize("qty", [11, -11])
def test_order_quantity_above_max_order_qty_is_refused(qty: float) -> None:
    decision = check_order(order(qty, 1.0), book=EMPTY, limits=LIMITS)
    assert decision.reason is RiskReason.MAX_ORDER_QTY
    assert "11" in decision.message and "max_order_qty 10" in decision.message


@pytest.mark.parametrize("qty", [0.0, float("nan"), float("inf")])
def test_zero_or_non_finite_quantity_is_refused(qty: float) -> None:
    assert check_order(order(qty), book=EMPTY, limits=LIMITS).reason is RiskReason.QUANTITY


def test_position_counts_current_plus_working_plus_this_order() -> None:
    book = RiskBook(position=8, open_buy_quantity=5, open_sell_quantity=0, open_orders=1)
    assert check_order(order(7, 1.0), book=book, limits=LIMITS).accepted  # 8 + 5 + 7 = 20
    refused = check_order(order(8, 1.0), book=book, limits=LIMITS)
    assert refused.reason is RiskReason.MAX_POSITION


def test_sells_reducing_a_long_position_are_not_refused_for_position() -> None:
    book = RiskBook(position=20, open_buy_quantity=0, open_sell_quantity=0, open_orders=0)
    assert check_order(order(-10, 1.0), book=book, limits=LIMITS).accepted


def test_a_modify_frees_the_quantity_of_the_order_it_replaces() -> None:
    book = RiskBook(position=10, open_buy_quantity=10, open_sell_quantity=0, open_orders=3)
    decision = check_order(order(10, 1.0, replaces_quantity=10), book=book, limits=LIMITS)
    assert decision.accepted  # also not refused for max_open_orders: it is not a new order


def test_notional_uses_the_limit_price_else_the_last_price() -> None:
    assert check_order(order(10, 100.0), book=EMPTY, limits=LIMITS).accepted
    assert (
        check_order(order(10, 100.01), book=EMPTY, limits=LIMITS).reason is RiskReason.MAX_NOTIONAL
    )
    market = order(10, None, last=101.0)
    assert check_order(market, book=EMPTY, limits=LIMITS).reason is RiskReason.MAX_NOTIONAL
    futures = order(1, 100.0, multiplier=50.0)
    assert check_order(futures, book=EMPTY, limits=LIMITS).reason is RiskReason.MAX_NOTIONAL


def test_a_market_order_without_any_price_is_refused() -> None:
    assert check_order(order(1, None), book=EMPTY, limits=LIMITS).reason is RiskReason.NO_PRICE


def test_max_open_orders_refuses_the_next_new_order() -> None:
    book = RiskBook(position=0, open_buy_quantity=0, open_sell_quantity=0, open_orders=3)
    assert check_order(order(1), book=book, limits=LIMITS).reason is RiskReason.MAX_OPEN_ORDERS


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        ({"read_only": True}, RiskReason.READ_ONLY),
        ({"gateway_ready": False}, RiskReason.GATEWAY_DOWN),
        ({"in_reset_window": True}, RiskReason.RESET_WINDOW),
    ],
)
def test_read_only_lost_gateway_and_reset_window_refuse_everything(
    flags: dict[str, bool], reason: RiskReason
) -> None:
    assert check_order(order(1), book=EMPTY, limits=LIMITS, **flags).reason is reason
