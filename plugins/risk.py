"""Pre-trade risk checks: pure functions over the order, the book and the limits.

Every refusal names the limit and the numbers, so a strategy author sees why at once.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

from plugins.config import LimitsConfig

__all__ = [
    "OrderCheck",
    "RiskBook",
    "RiskDecision",
    "RiskReason",
    "check_collar",
    "check_daily_loss",
    "check_order",
    "loss_breached",
    "position_limit",
]


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
    DAILY_LOSS = "daily_loss"
    PRICE_COLLAR = "price_collar"


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
    max_position: float | None = None,
) -> RiskDecision:
    """Run every check in a fixed order; the first refusal wins. ``max_position`` overrides
    the limit of the same name for this contract (see :func:`position_limit`)."""
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
    most = limits.max_position if max_position is None else max_position
    if worst > most:
        return _refuse(
            RiskReason.MAX_POSITION,
            f"position could reach {worst:g} (now {book.position:g}, working buys "
            f"{book.open_buy_quantity:g}, sells {book.open_sell_quantity:g}, this order "
            f"{qty:g}) above max_position {most:g}",
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


# -- limits that need more than the order and the book: per-instrument position, the price
# collar and the daily loss (the host passes the market price and the day's P&L) ----------


def position_limit(limits: LimitsConfig, symbol: str) -> float:
    """The position limit of ``symbol``: its entry in ``position_limits``, else
    ``max_position``."""
    return limits.position_limits.get(symbol, limits.max_position)


def check_collar(
    prices: Mapping[str, float | None], *, market: float | None, limits: LimitsConfig
) -> RiskDecision:
    """Refuse a limit or stop price more than ``price_collar_pct`` from the market (a likely
    typo: 1850 for 185.0). ``prices`` names each price (``limit``, ``stop``); with no market
    price known there is nothing to compare, and the order passes."""
    pct = limits.price_collar_pct
    if pct is None or market is None or not math.isfinite(market) or market <= 0:
        return _OK
    for name, price in prices.items():
        if price is None:
            continue
        away = abs(price - market) / market * 100
        if not math.isfinite(away) or away > pct:
            return _refuse(
                RiskReason.PRICE_COLLAR,
                f"{name} price {price:g} is {away:.1f} % from the market {market:g}, beyond "
                f"price_collar_pct {pct:g} (a typo?)",
            )
    return _OK


def loss_breached(day_pnl: float, limits: LimitsConfig) -> bool:
    """True once the day's P&L (realised plus marked) is at or below ``-max_daily_loss``."""
    limit = limits.max_daily_loss
    return limit is not None and day_pnl <= -limit


def check_daily_loss(
    day_pnl: float, *, position: float, quantity: float, limits: LimitsConfig
) -> RiskDecision:
    """Past the daily loss limit only orders that reduce the position pass (``quantity``
    signed, against the strategy's ``position`` in that contract; a modify passes its change,
    and one that adds nothing passes)."""
    if not loss_breached(day_pnl, limits) or quantity == 0:
        return _OK
    reduces = position * quantity < 0 and abs(quantity) <= abs(position)
    if reduces:
        return _OK
    return _refuse(
        RiskReason.DAILY_LOSS,
        f"the day's P&L {day_pnl:.2f} is past max_daily_loss {limits.max_daily_loss:g}: "
        "only orders that reduce a position are allowed until the next trading day",
    )
