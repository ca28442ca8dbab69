"""The plugin contract: the one module a strategy author imports.

A strategy subclasses :class:`Strategy` and overrides the async hooks it needs. Everything it
may do goes through the :class:`Context` it is given: market data, its own positions and
orders, place / modify / cancel (rate-limited, risk-checked and journalled by the host), a
clock, a logger, a small persistent key-value store and its params. A strategy never sees the
raw IB client, so it cannot place an order the host does not know about.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol

from gateway.outage import OutageKind
from plugins.bar_builder import BarData
from plugins.config import SafeStateAction, StrategyConfig
from plugins.intents import IntentState
from plugins.risk import RiskReason

__all__ = [
    "Bar",
    "Bracket",
    "Context",
    "Fill",
    "GatewayChange",
    "Instrument",
    "IntentState",
    "KeyValueStore",
    "OrderRefused",
    "OrderSpec",
    "OrderType",
    "OrderUpdate",
    "OrderView",
    "OutageKind",
    "RefusalReason",
    "SafeStateAction",
    "Side",
    "StopReason",
    "Strategy",
    "StrategyConfig",
    "Tick",
    "TimeInForce",
    "check_bracket",
]

Bar = BarData


class Side(enum.Enum):
    """Order side, as IB spells it."""

    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """+1 for buys, -1 for sells."""
        return 1 if self is Side.BUY else -1


@dataclass(frozen=True, slots=True)
class Instrument:
    """What to trade or watch; the host qualifies it with IB (conId) on first use."""

    symbol: str
    sec_type: str = "STK"
    exchange: str = "SMART"
    currency: str = "USD"
    multiplier: float = 1.0


class OrderType(enum.Enum):
    """The order types the host sends, by IB's ``orderType`` word."""

    MARKET = "MKT"
    LIMIT = "LMT"
    STOP = "STP"
    STOP_LIMIT = "STP LMT"
    TRAILING_STOP = "TRAIL"


class TimeInForce(enum.Enum):
    """How long an order works: the day, until cancelled, or immediately (else cancelled)."""

    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"


#: Which prices each order type needs (True), forbids (False) or takes optionally (None).
_PRICES: dict[OrderType, tuple[bool | None, bool | None, bool | None]] = {
    # (limit_price, stop_price, trail)
    OrderType.MARKET: (False, False, False),
    OrderType.LIMIT: (True, False, False),
    OrderType.STOP: (False, True, False),
    OrderType.STOP_LIMIT: (True, True, False),
    OrderType.TRAILING_STOP: (False, None, True),
}


def _positive_price(value: float | None, what: str) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"OrderSpec.{what} must be a positive price, got {value!r}")


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """A new order, checked when it is made (a ``ValueError`` names the field at fault).

    The type follows from the prices given, unless ``order_type`` says it: ``limit_price``
    alone is a limit order, ``stop_price`` alone a stop, both a stop-limit, ``trail_amount``
    or ``trail_percent`` a trailing stop (``stop_price`` then is its first stop, IB's
    ``trailStopPrice``), none a market order. ``outside_rth`` lets it work (or trigger)
    outside regular trading hours.
    """

    instrument: Instrument
    side: Side
    quantity: float
    limit_price: float | None = None
    tif: TimeInForce = TimeInForce.DAY
    order_type: OrderType | None = None
    stop_price: float | None = None
    trail_amount: float | None = None
    trail_percent: float | None = None
    outside_rth: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.tif, str):
            try:
                object.__setattr__(self, "tif", TimeInForce(self.tif.upper()))
            except ValueError:
                known = ", ".join(t.value for t in TimeInForce)
                raise ValueError(f"OrderSpec.tif {self.tif!r} is not one of {known}") from None
        if not isinstance(self.side, Side):
            raise ValueError(f"OrderSpec.side must be api.Side.BUY or SELL, got {self.side!r}")
        _positive_price(self.limit_price, "limit_price")
        _positive_price(self.stop_price, "stop_price")
        _positive_price(self.trail_amount, "trail_amount")
        if self.trail_percent is not None and not (
            math.isfinite(self.trail_percent) and 0 < self.trail_percent < 100
        ):
            raise ValueError(
                f"OrderSpec.trail_percent must be between 0 and 100, got {self.trail_percent!r}"
            )
        if self.trail_amount is not None and self.trail_percent is not None:
            raise ValueError("OrderSpec: give trail_amount or trail_percent, not both")
        kind = self.type
        given = (
            self.limit_price is not None,
            self.stop_price is not None,
            self.trail_amount is not None or self.trail_percent is not None,
        )
        names = ("limit_price", "stop_price", "trail")
        for name, need, has in zip(names, _PRICES[kind], given, strict=True):
            if need is True and not has:
                raise ValueError(f"OrderSpec: a {kind.name} order needs {name}")
            if need is False and has:
                raise ValueError(f"OrderSpec: a {kind.name} order takes no {name}")

    @property
    def type(self) -> OrderType:
        """The order type, given or inferred from the prices."""
        if self.order_type is not None:
            return self.order_type
        if self.trail_amount is not None or self.trail_percent is not None:
            return OrderType.TRAILING_STOP
        if self.stop_price is not None:
            return OrderType.STOP_LIMIT if self.limit_price is not None else OrderType.STOP
        return OrderType.LIMIT if self.limit_price is not None else OrderType.MARKET

    @property
    def price(self) -> float | None:
        """The price the order works at or triggers at (None for market and trailing)."""
        if self.type is OrderType.STOP:
            return self.stop_price
        return self.limit_price if self.type is not OrderType.TRAILING_STOP else None


def check_bracket(entry: OrderSpec, *, take_profit: float, stop_loss: float) -> None:
    """A bracket's exits must lie on the right sides: for a buy, stop < entry < take-profit.

    Raises ``ValueError`` naming the prices; the entry's own price is compared when it has one.
    """
    for name, value in (("take_profit", take_profit), ("stop_loss", stop_loss)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"bracket {name} must be a positive price, got {value!r}")
    if entry.type is OrderType.TRAILING_STOP:
        raise ValueError("bracket entry cannot be a trailing stop")
    buy = entry.side is Side.BUY
    low, high = (stop_loss, take_profit) if buy else (take_profit, stop_loss)
    side = "buy" if buy else "sell"
    if not low < high:
        raise ValueError(
            f"bracket for a {side}: stop_loss {stop_loss:g} must be "
            f"{'below' if buy else 'above'} take_profit {take_profit:g}"
        )
    at = entry.price
    if at is not None and not low < at < high:
        raise ValueError(
            f"bracket for a {side}: the entry at {at:g} must lie between stop_loss "
            f"{stop_loss:g} and take_profit {take_profit:g}"
        )


@dataclass(frozen=True, slots=True)
class OrderView:
    """One of the strategy's orders as the host knows it; ``key`` is its orderRef at IB."""

    key: str
    instrument: Instrument
    side: Side
    quantity: float
    limit_price: float | None
    status: IntentState
    filled: float
    gateway: str
    order_type: OrderType = OrderType.LIMIT
    stop_price: float | None = None
    #: For a bracket's exits: the entry's key (the legs' keys are ``<entry>.tp``/``.sl``).
    parent: str | None = None

    @property
    def is_open(self) -> bool:
        """Still working (or may be) at IB."""
        return not self.status.terminal


@dataclass(frozen=True, slots=True)
class Bracket:
    """The three legs of a bracket: the entry and its two exits, one cancels the other."""

    entry: OrderView
    take_profit: OrderView
    stop_loss: OrderView

    @property
    def legs(self) -> tuple[OrderView, OrderView, OrderView]:
        return (self.entry, self.take_profit, self.stop_loss)


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """An order's status changed (or reconciliation resolved it; UNKNOWN means: check IB)."""

    key: str
    status: IntentState
    filled: float
    remaining: float
    message: str = ""


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of one of the strategy's orders."""

    key: str
    exec_id: str
    instrument: Instrument
    side: Side
    quantity: float
    price: float
    time: datetime


@dataclass(frozen=True, slots=True)
class Tick:
    """Latest prices of a subscribed instrument (NaN-free: missing prices are None)."""

    instrument: Instrument
    time: datetime
    bid: float | None
    ask: float | None
    last: float | None

    @property
    def mid(self) -> float | None:
        """Mid price when both sides are there, else the last price."""
        if self.bid is not None and self.ask is not None:
            return (self.bid + self.ask) / 2
        return self.last


@dataclass(frozen=True, slots=True)
class GatewayChange:
    """The strategy's gateway changed: out, back, or moved to another (failover).

    ``kind`` says what the supervisor knows of an outage (a planned restart holds your orders
    at IB; a lost one runs safe state after the grace); None when only your session dropped.
    """

    gateway: str
    ready: bool
    reason: str
    failover: bool = False
    kind: OutageKind | None = None


class StopReason(enum.Enum):
    """Why ``on_stop`` is called."""

    SHUTDOWN = "shutdown"
    HALTED = "halted"
    KILLED = "killed"


class RefusalReason(enum.Enum):
    """Why the host refused an order (risk reasons plus the host's own)."""

    RISK = "risk"
    RATE_LIMITED = "rate_limited"
    NOT_TRADING = "not_trading"
    MARGIN = "margin"
    UNKNOWN_ORDER = "unknown_order"
    DAILY_LOSS = "daily_loss"  # the day's loss passed max_daily_loss: only reducing orders
    PRICE_COLLAR = "price_collar"  # a limit or stop too far from the market (a likely typo)


class OrderRefused(Exception):
    """The host did not send the order; ``message`` says which limit and why."""

    def __init__(
        self, reason: RefusalReason, message: str, *, risk: RiskReason | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.risk = risk
        self.message = message


class KeyValueStore(Protocol):
    """A small persistent store for the strategy's own state (JSON values)."""

    def get(self, name: str, default: Any = None) -> Any: ...

    def set(self, name: str, value: Any) -> None: ...

    def delete(self, name: str) -> bool: ...


# -- data: history, account, portfolio, what-if, contract lookup ---------------------------

__all__ += [
    "AccountSummary",
    "DataReason",
    "DataRefused",
    "HistoricalBar",
    "Listing",
    "PortfolioPosition",
    "WhatIf",
]


class DataReason(enum.Enum):
    """Why the host or IB did not give the data a strategy asked for."""

    NO_PERMISSION = "no_permission"  # the account lacks the market data (354, 10167, 10197)
    NO_CONTRACT = "no_contract"  # IB knows no such contract (200)
    NO_DATA = "no_data"  # IB answered with an error instead of data (162 and others)
    PACING = "pacing"  # IB's pacing refused it even after the host waited and retried
    NOT_TRADING = "not_trading"  # the strategy has no live session now
    TIMEOUT = "timeout"  # the gateway did not answer in time


class DataRefused(Exception):
    """No data: ``reason`` says why, ``code`` is IB's error code when IB said so, ``message``
    names the request and (for permissions) the permission the account lacks."""

    def __init__(self, reason: DataReason, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class HistoricalBar:
    """One historical bar; ``start`` is aware UTC (daily and longer bars: 00:00 UTC of the
    session's date); ``wap`` is None where IB gives no average price."""

    start: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float | None
    count: int


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """The account's values as IB reports them, in ``currency`` (the base currency); ``cash``
    is the cash balance per currency. A value IB did not send is None."""

    account: str
    currency: str
    net_liquidation: float | None
    buying_power: float | None
    available_funds: float | None
    cash: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class PortfolioPosition:
    """One position of the account (every strategy's and manual trades', as IB holds it)."""

    instrument: Instrument
    con_id: int
    quantity: float
    average_cost: float
    market_price: float | None
    market_value: float
    unrealised_pnl: float | None
    realised_pnl: float | None


@dataclass(frozen=True, slots=True)
class WhatIf:
    """IB's what-if answer for an order that was not placed; None where IB gave no number."""

    init_margin_change: float | None
    maint_margin_change: float | None
    commission: float | None
    currency: str
    init_margin_after: float | None
    maint_margin_after: float | None
    equity_with_loan_after: float | None


@dataclass(frozen=True, slots=True)
class Listing:
    """A contract IB knows, found with ``ctx.lookup``; ``instrument`` can be subscribed or
    traded as is."""

    instrument: Instrument
    con_id: int
    primary_exchange: str
    local_symbol: str


class Context(Protocol):
    """What a strategy can see and do; given to every hook through ``self.ctx``."""

    @property
    def name(self) -> str: ...
    @property
    def params(self) -> Mapping[str, Any]: ...
    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]: ...
    @property
    def store(self) -> KeyValueStore: ...
    @property
    def gateway(self) -> str | None: ...

    def now(self) -> datetime: ...

    async def subscribe(self, instrument: Instrument, *, bar: timedelta | None = None) -> None:
        """Ticks arrive in ``on_tick``; with ``bar`` also bars of that length in ``on_bar``."""

    def last_price(self, instrument: Instrument) -> float | None: ...

    def position(self, instrument: Instrument) -> float:
        """The strategy's own position (its fills), not the account's."""

    def open_orders(self) -> list[OrderView]: ...

    async def place(self, spec: OrderSpec) -> OrderView:
        """Send a new order; raises :class:`OrderRefused` when the host will not send it."""

    async def modify(
        self,
        key: str,
        *,
        quantity: float | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
    ) -> OrderView:
        """Change an open order in place (same key and order id at IB)."""

    async def cancel(self, key: str) -> None: ...

    async def place_bracket(
        self, entry: OrderSpec, *, take_profit: float, stop_loss: float
    ) -> Bracket:
        """The entry with a take-profit limit and a stop-loss stop, linked at IB (the exits
        work once the entry fills; one cancels the other). All three are journalled before
        any is sent; a refusal sends none. ``ValueError`` when the prices are on the wrong
        sides (:func:`check_bracket`)."""

    async def cancel_all(self, instrument: Instrument | None = None) -> list[str]:
        """Cancel every open order of the strategy (of ``instrument`` only, when given);
        returns the keys a cancel was sent for."""

    def call_every(self, interval: timedelta, timer: str) -> None:
        """Call ``on_timer(timer)`` every ``interval`` while the strategy runs."""

    # -- data (raise :class:`DataRefused`) ---------------------------------------------------

    async def history(
        self,
        instrument: Instrument,
        duration: str,
        bar_size: str,
        what_to_show: str = "TRADES",
        rth: bool = True,
        *,
        end: datetime | None = None,
    ) -> list[HistoricalBar]:
        """Bars in IB's terms (``"1 D"``, ``"5 mins"``, ``"TRADES"``) ending at ``end`` (now
        when None). Waits while IB's pacing for the gateway would refuse it."""

    async def account(self) -> AccountSummary: ...

    async def portfolio(self) -> list[PortfolioPosition]:
        """The account's positions (not only this strategy's): see ``position`` for yours."""

    async def what_if(self, spec: OrderSpec) -> WhatIf:
        """IB's margin and commission for ``spec``; nothing is placed or journalled."""

    async def lookup(
        self,
        symbol: str,
        *,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "",
    ) -> list[Listing]:
        """The contracts IB has for ``symbol`` (every currency when ``currency`` is empty)."""


class Strategy:
    """Base class of every strategy: override the hooks you need (all are optional).

    Hooks run one at a time in the strategy's own task; an exception halts this strategy
    only (its safe-state policy runs and an alert goes out).
    """

    #: One line for ``ibfleet strategies``; set it in subclasses.
    description: ClassVar[str] = ""
    version: ClassVar[str] = "0"

    ctx: Context

    async def on_start(self) -> None:
        """Called once the host reconciled the journal with IB and trading is allowed."""

    async def on_tick(self, tick: Tick) -> None:
        """New prices for a subscribed instrument (coalesced: the latest wins)."""

    async def on_bar(self, bar: Bar) -> None:
        """A bar closed for an instrument subscribed with ``bar=``."""

    async def on_order_status(self, update: OrderUpdate) -> None:
        """One of the strategy's orders changed status."""

    async def on_fill(self, fill: Fill) -> None:
        """One of the strategy's orders (partly) filled."""

    async def on_gateway_state(self, change: GatewayChange) -> None:
        """The gateway was lost, came back, or the strategy failed over."""

    async def on_timer(self, timer: str) -> None:
        """A timer set with ``ctx.call_every`` fired."""

    async def on_stop(self, reason: StopReason) -> None:
        """The strategy stops (shutdown, halt, kill); orders are handled by the host."""
