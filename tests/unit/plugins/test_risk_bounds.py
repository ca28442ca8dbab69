"""Risk checks at their edges: the cases the mutation check (benchmarks/mutation.sh) found
untested: a refusal is never accepted, the short side and its modifies, a zero or non-finite
price, and every refusal says what and which limit."""

from __future__ import annotations

import pytest

from plugins.risk import OrderCheck, RiskBook, RiskReason, check_order
from tests.unit.plugins.test_risk import EMPTY, LIMITS, order

_REFUSED: list[tuple[OrderCheck, RiskBook, dict[str, bool], RiskReason, str]] = [
    (order(1), EMPTY, {"read_only": True}, RiskReason.READ_ONLY, "read-only"),
    (order(1), EMPTY, {"gateway_ready": False}, RiskReason.GATEWAY_DOWN, "API-ready"),
    (order(1), EMPTY, {"in_reset_window": True}, RiskReason.RESET_WINDOW, "reset window"),
    (order(0), EMPTY, {}, RiskReason.QUANTITY, "non-zero"),
    (order(11), EMPTY, {}, RiskReason.MAX_ORDER_QTY, "max_order_qty 10"),
    (
        order(-10, 1.0),
        RiskBook(position=-15, open_buy_quantity=0, open_sell_quantity=0, open_orders=0),
        {},
        RiskReason.MAX_POSITION,
        "max_position 20",
    ),
    (order(1, None), EMPTY, {}, RiskReason.NO_PRICE, "limit price"),
    (order(10, 200.0), EMPTY, {}, RiskReason.MAX_NOTIONAL, "max_notional 1000"),
    (
        order(1),
        RiskBook(position=0, open_buy_quantity=0, open_sell_quantity=0, open_orders=3),
        {},
        RiskReason.MAX_OPEN_ORDERS,
        "max_open_orders is 3",
    ),
]


@pytest.mark.parametrize(
    ("check", "book", "flags", "reason", "says"), _REFUSED, ids=[r[3].name for r in _REFUSED]
)
def test_every_refusal_is_not_accepted_and_names_its_limit(
    check: OrderCheck, book: RiskBook, flags: dict[str, bool], reason: RiskReason, says: str
) -> None:
    decision = check_order(check, book=book, limits=LIMITS, **flags)
    assert decision.accepted is False
    assert decision.reason is reason
    assert says in decision.message


def test_an_accepted_order_is_accepted_exactly() -> None:
    assert check_order(order(1), book=EMPTY, limits=LIMITS).accepted is True


def test_working_sells_count_toward_the_short_side() -> None:
    book = RiskBook(position=-5, open_buy_quantity=0, open_sell_quantity=10, open_orders=1)
    assert check_order(order(-5, 1.0), book=book, limits=LIMITS).accepted  # -5 - 10 - 5 = -20
    refused = check_order(order(-6, 1.0), book=book, limits=LIMITS)
    assert refused.reason is RiskReason.MAX_POSITION


def test_a_buy_does_not_count_toward_the_short_side() -> None:
    book = RiskBook(position=-20, open_buy_quantity=0, open_sell_quantity=0, open_orders=0)
    assert check_order(order(5, 1.0), book=book, limits=LIMITS).accepted


def test_a_sell_modify_frees_the_quantity_of_the_sell_it_replaces() -> None:
    book = RiskBook(position=-10, open_buy_quantity=0, open_sell_quantity=10, open_orders=3)
    modify = order(-10, 1.0, replaces_quantity=-10)
    assert check_order(modify, book=book, limits=LIMITS).accepted  # -10 - 10 + 10 - 10 = -20
    bigger = order(-10, 1.0, replaces_quantity=-9)  # -10 - 10 + 9 - 10 = -21
    assert check_order(bigger, book=book, limits=LIMITS).reason is RiskReason.MAX_POSITION


@pytest.mark.parametrize("price", [0.0, -1.0, float("nan"), float("inf")])
def test_a_zero_negative_or_non_finite_price_is_no_price(price: float) -> None:
    decision = check_order(order(1, price), book=EMPTY, limits=LIMITS)
    assert decision.reason is RiskReason.NO_PRICE
