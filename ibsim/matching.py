"""How an order meets the market: quotes, stop triggers, trailing stops, fill prices, odd lots.

Pure functions over :class:`~ibsim.records.BrokerOrder` values; :mod:`ibsim.broker` calls them
each step and applies what they decide.

- The market of a contract is its last price with a quote of ``spread_ticks`` minimum ticks
  either side (never crossed).
- Market orders fill at the far side of the quote (a buy at the ask, a sell at the bid);
  limits fill at the far side when it is at their price or better, so at the limit or better.
- Stops trigger by IB's ``triggerMethod``. Its default (0) is the last price for stocks and
  futures; forex has no last trade on IDEALPRO, so its default is bid/ask (a buy stop triggers
  on the ask, a sell stop on the bid). Double-bid/ask (1), last (2), double-last (3), bid/ask
  (4), last-or-bid/ask (7) and midpoint (8) are followed as their single-price forms; IB's
  "double" forms need two consecutive prices, which the simulator does not distinguish.
- A trailing stop (TRAIL) keeps its stop ``auxPrice`` (or ``trailingPercent`` of the market)
  behind the trigger price and only moves it in the order's favour; once hit it is a market
  order (a STP LMT becomes a limit at its ``lmtPrice``).
- IDEALPRO odd lots: a forex order below 25,000 base units is an odd lot, which IB routes away
  from the interbank quote; the simulator fills it ``odd_lot_ticks`` worse than the quote.
"""

from __future__ import annotations

from dataclasses import dataclass

from ibsim.contracts import ContractSpec
from ibsim.records import BrokerOrder

__all__ = [
    "DEFAULT_SPREAD_TICKS",
    "FX_ODD_LOT",
    "STOP_TYPES",
    "SUPPORTED_ORDER_TYPES",
    "Quote",
    "fill_price",
    "is_odd_lot",
    "quote_of",
    "round_to_tick",
    "stop_triggered",
    "trail_stop",
]

SUPPORTED_ORDER_TYPES = frozenset({"MKT", "LMT", "STP", "STP LMT", "TRAIL"})
STOP_TYPES = frozenset({"STP", "STP LMT", "TRAIL"})
FX_ODD_LOT = 25_000.0  # base units: IDEALPRO's smallest round lot


@dataclass(frozen=True, slots=True)
class Quote:
    """Best bid, best ask and last trade of one contract."""

    bid: float
    ask: float
    last: float

    @property
    def mid(self) -> float:
        """The midpoint of bid and ask."""
        return (self.bid + self.ask) / 2


#: The quote is the last price -/+ this many ticks unless the broker is configured otherwise.
DEFAULT_SPREAD_TICKS = 1


def round_to_tick(price: float, tick: float) -> float:
    """``price`` on the contract's price grid."""
    return round(round(price / tick) * tick, 10)


def quote_of(spec: ContractSpec, last: float, *, spread_ticks: int) -> Quote:
    """The quote around a last price: ``spread_ticks`` ticks either side, bid kept positive."""
    tick = spec.min_tick
    bid = max(round_to_tick(last - spread_ticks * tick, tick), tick)
    ask = round_to_tick(last + spread_ticks * tick, tick)
    return Quote(bid=bid, ask=max(ask, bid + tick) if spread_ticks else ask, last=last)


def is_odd_lot(order: BrokerOrder) -> bool:
    """An IDEALPRO order smaller than a round lot."""
    return order.contract.sec_type == "CASH" and order.total_quantity < FX_ODD_LOT


def _trigger_reference(order: BrokerOrder, quote: Quote) -> float:
    """The price IB watches for this stop, by its trigger method and the order's side."""
    method = order.trigger_method
    if method == 0:
        method = 4 if order.contract.sec_type == "CASH" else 2
    if method == 8:
        return quote.mid
    if method in (1, 4, 7):
        return quote.ask if order.action == "BUY" else quote.bid
    return quote.last


def trail_stop(order: BrokerOrder, quote: Quote) -> float | None:
    """The trailing stop after this quote: only ever tightened, never loosened."""
    reference = _trigger_reference(order, quote)
    if order.trailing_percent is not None:
        distance = reference * order.trailing_percent / 100.0
    elif order.aux_price is not None:
        distance = order.aux_price
    else:
        return order.trail_stop_price
    tick = order.contract.min_tick
    if order.action == "SELL":
        candidate = round_to_tick(reference - distance, tick)
        current = order.trail_stop_price
        return candidate if current is None or candidate > current else current
    candidate = round_to_tick(reference + distance, tick)
    current = order.trail_stop_price
    return candidate if current is None or candidate < current else current


def stop_triggered(order: BrokerOrder, quote: Quote) -> bool:
    """Whether the market has reached the order's stop (the trail stop for TRAIL)."""
    stop = order.trail_stop_price if order.order_type == "TRAIL" else order.aux_price
    if stop is None:
        return False
    reference = _trigger_reference(order, quote)
    return reference >= stop if order.action == "BUY" else reference <= stop


def fill_price(order: BrokerOrder, quote: Quote, *, odd_lot_ticks: int) -> float | None:
    """The price this order fills at against the quote now, None when it is not marketable.

    A stop must have triggered already (the caller checks); STP and TRAIL then trade as market
    orders, STP LMT as a limit.
    """
    buy = order.action == "BUY"
    tick = order.contract.min_tick
    worse = odd_lot_ticks * tick if is_odd_lot(order) else 0.0
    price = round_to_tick(quote.ask + worse if buy else max(quote.bid - worse, tick), tick)
    if order.order_type in ("MKT", "STP", "TRAIL"):
        return price
    limit = order.lmt_price
    if limit is None:
        return None
    if buy:
        return price if price <= limit + 1e-12 else None
    return price if price >= limit - 1e-12 else None
