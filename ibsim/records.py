"""The broker's records: orders (requests, states, status history, events, refusals, what-if
margins), executions, positions, accounts and bars. Plain values, no behaviour beyond their
own fields; :mod:`ibsim.broker` changes them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime

from ibsim.contracts import ContractSpec


class OrderState(enum.Enum):
    """IB's order status words; the value is what orderStatus carries."""

    HELD = "PendingSubmit"  # transmit=False: kept until the group is transmitted
    PRE_SUBMITTED = "PreSubmitted"
    SUBMITTED = "Submitted"
    FILLED = "Filled"
    CANCELLED = "Cancelled"


DONE_STATES = frozenset({OrderState.FILLED, OrderState.CANCELLED})


class OrderEventKind(enum.Enum):
    """What a front end must tell API clients about an order."""

    OPEN_ORDER = "open_order"
    STATUS = "status"
    EXECUTION = "execution"
    COMMISSION = "commission"
    CANCELLED_NOTICE = "cancelled_notice"  # error 202 after the Cancelled status


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order as a client sent it (placeOrder), already parsed from the wire."""

    order_id: int
    con_id: int
    symbol: str
    sec_type: str
    exchange: str
    currency: str
    action: str
    total_quantity: float
    order_type: str
    lmt_price: float | None = None
    aux_price: float | None = None
    tif: str = "DAY"
    oca_group: str = ""
    oca_type: int = 0
    account: str = ""
    order_ref: str = ""
    transmit: bool = True
    parent_id: int = 0
    what_if: bool = False
    local_symbol: str = ""
    last_trade_date: str = ""
    trail_stop_price: float | None = None  # TRAIL: the initial stop, else set from the market
    trailing_percent: float | None = None  # TRAIL: the trail as a percent instead of auxPrice
    outside_rth: bool = False
    trigger_method: int = 0  # IB's codes: 0 default, 2 last, 4 bid/ask, 8 midpoint, ...


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One entry in an order's status history."""

    at: datetime
    status: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Execution:
    """One fill, as execDetails reports it."""

    exec_id: str
    perm_id: int
    order_id: int
    client_id: int
    gateway: str
    account: str
    con_id: int
    side: str  # BOT / SLD
    shares: float
    price: float
    cum_qty: float
    avg_price: float
    time: datetime
    order_ref: str
    commission: float
    currency: str


@dataclass(slots=True)
class BrokerOrder:
    """An order the broker holds; its history is the truth tests read."""

    perm_id: int
    gateway: str
    client_id: int
    order_id: int
    account: str
    contract: ContractSpec
    action: str
    total_quantity: float
    order_type: str
    lmt_price: float | None
    aux_price: float | None
    tif: str
    oca_group: str
    order_ref: str
    parent_id: int
    parent_perm_id: int
    transmit: bool
    status: OrderState
    created_at: datetime
    filled: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    triggered: bool = False
    history: list[StatusChange] = field(default_factory=list)
    completed_at: datetime | None = None
    oca_type: int = 0
    trail_stop_price: float | None = None
    trailing_percent: float | None = None
    outside_rth: bool = False
    trigger_method: int = 0
    expires_at: datetime | None = None  # DAY orders: the session end they are cancelled at
    commission_paid: float = 0.0  # so far, over the order's fills (IB's minimum is per order)

    @property
    def remaining(self) -> float:
        """Quantity still to fill."""
        return max(self.total_quantity - self.filled, 0.0)

    @property
    def is_done(self) -> bool:
        """Filled or cancelled: no longer open."""
        return self.status in DONE_STATES

    def snapshot(self) -> BrokerOrder:
        """A copy safe to hand to listeners that outlive this step."""
        return replace(self, history=list(self.history))


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """A change a front end relays to the API clients that own or watch the order."""

    kind: OrderEventKind
    order: BrokerOrder
    execution: Execution | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """Why the broker refused a request: an IB error code and text for the client."""

    code: int
    message: str


@dataclass(frozen=True, slots=True)
class WhatIf:
    """Margin and commission effects of an order that is not placed."""

    init_margin_before: float
    maint_margin_before: float
    equity_with_loan_before: float
    init_margin_change: float
    maint_margin_change: float
    equity_with_loan_change: float
    init_margin_after: float
    maint_margin_after: float
    equity_with_loan_after: float
    commission: float
    currency: str = "USD"
    min_commission: float = 0.0
    max_commission: float = 0.0


@dataclass(slots=True)
class Position:
    """Quantity and average cost per contract in one account."""

    quantity: float = 0.0
    avg_cost: float = 0.0
    realized_pnl: float = 0.0


@dataclass(slots=True)
class Account:
    """A paper (DU...) or live (U...) account."""

    account_id: str
    cash: float
    positions: dict[int, Position] = field(default_factory=dict)

    @property
    def is_paper(self) -> bool:
        """IB's convention: paper ids start with D."""
        return self.account_id.startswith("D")


@dataclass(frozen=True, slots=True)
class Bar:
    """One historical bar."""

    date: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float
    count: int
