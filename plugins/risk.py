"""Pre-trade risk checks: pure functions over the order, the book and the limits.

Every refusal names the limit and the numbers, so a strategy author sees why at once.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from plugins.config import LimitsConfig

__all__ = ["OrderCheck", "RiskBook", "RiskDecision", "RiskReason", "check_order"]


class RiskReason(enum.Enum):
    """Which check refused an order (the metrics outcome is ``rejected_<value>``)."""

    QUANTITY = "quantity"
    MAX_ORDER_QTY = "max_order_qty"
    MAX_POSITION = "max_position"
    NO_PRICE = "no_price"
    MAX_NOTIONAL = "max_notional"
    MAX_OPEN_ORDERS = "max_open_orders"
    READ_ONLY = "read_only"
    RESET_WINDOW = "reset_window"
    GATEWAY_DOWN = "gateway_down"


@dataclass(frozen=True, slots=True)
class OrderCheck:
    """What the risk checks need to know about one order.

    ``quantity`` is signed: positive buys, negative sells. ``price`` is the order's limit
    (or stop) price, None for market orders; ``multiplier`` scales notional (futures).
    ``replaces_quantity`` is the signed quantity of the order a modify replaces (0 for new).
    ``new_orders`` is how many orders it opens at IB (3 for a bracket, whose exits add no
    exposure beyond closing the entry: one cancels the other).
    """

    con_id: int
    quantity: float
    price: float | None
    last_price: float | None
    multiplier: float = 1.0
    replaces_quantity: float = 0.0
    new_orders: int = 1


@dataclass(frozen=True, slots=True)
class RiskBook:
    """The strategy's exposure now: its position in the contract and its working orders."""

    position: float
    open_buy_quantity: float
    open_sell_quantity: float
    open_orders: int


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """Accepted, or refused with the reason and a sentence for humans."""

    accepted: bool
    reason: RiskReason | None = None
    message: str = ""


_OK = RiskDecision(accepted=True)


def _refuse(reason: RiskReason, message: str) -> RiskDecision:
    return RiskDecision(accepted=False, reason=reason, message=message)


def check_order(
    order: OrderCheck,
    *,
    book: RiskBook,
    limits: LimitsConfig,
    read_only: bool = False,
    in_reset_window: bool = False,
    gateway_ready: bool = True,
) -> RiskDecision:
    """Run every check in a fixed order; the first refusal wins."""
    if read_only:
        return _refuse(RiskReason.READ_ONLY, "the strategy or its gateway is read-only")
    if not gateway_ready:
        return _refuse(RiskReason.GATEWAY_DOWN, "the strategy's gateway is not API-ready")
    if in_reset_window:
        return _refuse(RiskReason.RESET_WINDOW, "the gateway is inside an IB server reset window")
    qty = order.quantity
    if not math.isfinite(qty) or qty == 0:
        return _refuse(RiskReason.QUANTITY, f"order quantity {qty} must be a non-zero number")
    size = abs(qty)
    if size > limits.max_order_qty:
        return _refuse(
            RiskReason.MAX_ORDER_QTY,
            f"order quantity {size:g} exceeds max_order_qty {limits.max_order_qty:g}",
        )
    # Worst case on each side: every working order fills, plus this one; a modify frees
    # the quantity of the order it replaces.
    buys = book.open_buy_quantity + max(qty, 0.0) - max(order.replaces_quantity, 0.0)
    sells = book.open_sell_quantity + max(-qty, 0.0) - max(-order.replaces_quantity, 0.0)
    worst = max(abs(book.position + buys), abs(book.position - sells))
    if worst > limits.max_position:
        return _refuse(
            RiskReason.MAX_POSITION,
            f"position could reach {worst:g} (now {book.position:g}, working buys "
            f"{book.open_buy_quantity:g}, sells {book.open_sell_quantity:g}, this order "
            f"{qty:g}) above max_position {limits.max_position:g}",
        )
    price = order.price if order.price is not None else order.last_price
    if price is None or not math.isfinite(price) or price <= 0:
        return _refuse(
            RiskReason.NO_PRICE,
            "no price to check notional against: give a limit price or subscribe market data",
        )
    notional = size * price * order.multiplier
    if notional > limits.max_notional:
        return _refuse(
            RiskReason.MAX_NOTIONAL,
            f"notional {notional:.2f} ({size:g} x {price:g} x {order.multiplier:g}) exceeds "
            f"max_notional {limits.max_notional:g}",
        )
    if order.replaces_quantity == 0 and book.open_orders + order.new_orders > (
        limits.max_open_orders
    ):
        return _refuse(
            RiskReason.MAX_OPEN_ORDERS,
            f"{book.open_orders} orders already open, this adds {order.new_orders}; "
            f"max_open_orders is {limits.max_open_orders}",
        )
    return _OK
