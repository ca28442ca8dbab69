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
    "Context",
    "Fill",
    "GatewayChange",
    "Instrument",
    "IntentState",
    "KeyValueStore",
    "OrderRefused",
    "OrderSpec",
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


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """A new order: limit when ``limit_price`` is given, market otherwise."""

    instrument: Instrument
    side: Side
    quantity: float
    limit_price: float | None = None
    tif: str = "DAY"


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

    @property
    def is_open(self) -> bool:
        """Still working (or may be) at IB."""
        return not self.status.terminal


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
        self, key: str, *, quantity: float | None = None, limit_price: float | None = None
    ) -> OrderView: ...

    async def cancel(self, key: str) -> None: ...

    def call_every(self, interval: timedelta, timer: str) -> None:
        """Call ``on_timer(timer)`` every ``interval`` while the strategy runs."""


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
