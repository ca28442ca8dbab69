"""What IB refuses in a placeOrder before it reaches a market, with IB's codes. Pure.

Codes and texts from IB's API message-code table (104, 110, 135, 201, 321, 387, 434, 10147,
10148) and from what users report (10243) the Gateway answers. IB's 321 texts carry a fragment code
(``'bN'``...) that identifies the validating check; the fragments here are the simulator's,
since IB's vary by version and are not documented.
"""

from __future__ import annotations

import math

from ibsim.contracts import ContractSpec
from ibsim.matching import SUPPORTED_ORDER_TYPES
from ibsim.records import OrderRequest, Reject

__all__ = ["NO_EXCHANGE", "check_order", "check_size"]

NO_EXCHANGE = Reject(321, "Error validating request.-'bN' : cause - Please enter exchange")

_VALID_TIFS = frozenset({"DAY", "GTC", "IOC"})


def _invalid(cause: str) -> Reject:
    return Reject(321, f"Error validating request.-'bO' : cause - {cause}")


def _on_grid(price: float, tick: float) -> bool:
    steps = price / tick
    return abs(steps - round(steps)) < 1e-6


def check_size(spec: ContractSpec, quantity: float) -> Reject | None:
    """IB's size rules: positive, whole shares/units/contracts through the API."""
    if not (math.isfinite(quantity) and quantity > 0):
        return Reject(434, "The order size cannot be zero.")
    if quantity != int(quantity):
        # IB accepts fractional shares only from its own apps, not through the TWS API.
        return Reject(
            10243,
            "Fractional-sized order cannot be placed via API. "
            "Please use desktop version to place this order.",
        )
    return None


def check_order(request: OrderRequest, spec: ContractSpec) -> Reject | None:
    """Everything about one order IB checks on its own (the account is the broker's)."""
    if not request.exchange:
        return NO_EXCHANGE
    if request.order_type not in SUPPORTED_ORDER_TYPES:
        return Reject(
            387, f"Unsupported order type for this exchange and security type: {request.order_type}"
        )
    if request.action not in ("BUY", "SELL"):
        return _invalid(f"Invalid action {request.action!r}")
    if (request.tif or "DAY") not in _VALID_TIFS:
        return Reject(111, "The TIF (Tif type) and the order type are incompatible.")
    size = check_size(spec, request.total_quantity)
    if size is not None:
        return size
    kind = request.order_type
    if kind in ("LMT", "STP LMT") and request.lmt_price is None:
        return _invalid("Missing limit price")
    if kind in ("STP", "STP LMT") and request.aux_price is None:
        return _invalid("Missing stop price (auxPrice)")
    if kind == "TRAIL" and request.aux_price is None and request.trailing_percent is None:
        return _invalid("Missing trailing amount or trailing percent")
    if (
        kind == "TRAIL"
        and request.trailing_percent is not None
        and not (0 < request.trailing_percent < 100)
    ):
        return _invalid(f"Invalid trailing percent {request.trailing_percent}")
    prices = [request.lmt_price] if kind in ("LMT", "STP LMT") else []
    if kind in ("STP", "STP LMT"):
        prices.append(request.aux_price)
    for price in prices:
        if price is None or price <= 0 or not math.isfinite(price):
            return _invalid(f"Invalid price {price}")
        if not _on_grid(price, spec.min_tick):
            return Reject(
                110, "The price does not conform to the minimum price variation for this contract."
            )
    return None
