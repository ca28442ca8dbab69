"""The simulated broker: accounts, positions, orders, fills and prices. Pure domain core.

No sockets and no event loop: time comes from an injected clock and the owner calls
:meth:`Broker.step` at the tick rate. Orders live at the broker, not at a gateway, as at IB:
every gateway and client id logged in to an account sees the same orders. Everything the
broker does to an order is told to listeners as :class:`OrderEvent` values, in IB's order
(openOrder, execDetails, orderStatus, commissionReport).

The orders' life (placing, modifying, cancelling, triggers, fills, OCA, TIF) is the
:class:`~ibsim.orderdesk.OrderDesk` the broker holds; the broker keeps the accounts, the
prices and the books the desk's fills go into.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ibsim import drift
from ibsim.commission import CommissionSchedule, margin_rates, order_commission, trade_value_usd
from ibsim.contracts import ContractSpec, SymbolTable
from ibsim.matching import (
    DEFAULT_SPREAD_TICKS,
    SUPPORTED_ORDER_TYPES,
    Quote,
    quote_of,
    round_to_tick,
)
from ibsim.orderdesk import OrderDesk
from ibsim.records import (
    Account,
    Bar,
    BrokerOrder,
    Execution,
    OrderEvent,
    OrderEventKind,
    OrderRequest,
    OrderState,
    Position,
    Reject,
    StatusChange,
    WhatIf,
)

__all__ = [  # the records are re-exported: callers name them as the broker's
    "SUPPORTED_ORDER_TYPES",
    "Account",
    "Bar",
    "Broker",
    "BrokerConfig",
    "BrokerOrder",
    "CommissionSchedule",
    "Execution",
    "OrderEvent",
    "OrderEventKind",
    "OrderRequest",
    "OrderState",
    "Position",
    "Quote",
    "Reject",
    "StatusChange",
    "WhatIf",
]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass(slots=True)
class BrokerConfig:
    """Knobs tests turn: liquidity, spread, commissions, sessions, start cash, seed."""

    seed: int = 7
    lot_size: float = 1000.0  # shares at the quote per step: bigger orders fill in slices
    fx_lot_size: float = 1_000_000.0  # base units of a forex pair at the quote per step
    start_cash: float = 1_000_000.0
    # None: each instrument's daily volatility scaled to the clock time a step covers
    # (ibsim.drift); a number: that log-return deviation per step for every instrument.
    volatility: float | None = None
    speed: float = 1.0  # market days per real day for the realistic walk (demos speed it up)
    first_perm_id: int = 1_000_001
    spread_ticks: int = (
        DEFAULT_SPREAD_TICKS  # the quote is last -/+ this many ticks (the ticks clients see)
    )
    odd_lot_ticks: int = 2  # how much worse an IDEALPRO odd lot (< 25,000) fills
    # Sessions: on, nothing fills outside a contract's hours (stocks: regular hours unless
    # outsideRth). Off by default because the broker's clock is the wall clock and tests run
    # at any hour; DAY orders expire at their session's end either way.
    market_hours: bool = False
    commissions: CommissionSchedule = field(default_factory=CommissionSchedule)


_round_to_tick = round_to_tick


class Broker:
    """All accounts, orders and prices of one simulated IB; every method takes effect now."""

    def __init__(
        self,
        *,
        clock: Clock,
        config: BrokerConfig | None = None,
        symbols: SymbolTable | None = None,
    ) -> None:
        self._clock = clock
        self.config = config or BrokerConfig()
        self.symbols = symbols or SymbolTable()
        self.accounts: dict[str, Account] = {}
        self._prices: dict[int, float] = {}
        self._walks: dict[int, random.Random] = {}
        for spec in self.symbols:
            self._prices[spec.con_id] = spec.start_price
            self._walks[spec.con_id] = random.Random(self.config.seed * 1_000_003 + spec.con_id)
        self._listeners: list[Callable[[OrderEvent], None]] = []
        self._last_step: datetime | None = None
        self.desk = OrderDesk(
            clock=clock,
            config=self.config,
            symbols=self.symbols,
            quote=self._quote_spec,
            book=self._book,
            emit=self._emit,
        )

    # -- wiring ----------------------------------------------------------------------------

    def add_listener(self, listener: Callable[[OrderEvent], None]) -> None:
        """Receive every order event (front ends route them to their clients)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[OrderEvent], None]) -> None:
        """Stop receiving order events."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(
        self, kind: OrderEventKind, order: BrokerOrder, execution: Execution | None = None
    ) -> None:
        event = OrderEvent(kind=kind, order=order.snapshot(), execution=execution)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken front end must not break the broker
                log.exception(
                    "broker_listener_failed kind=%s perm_id=%s", kind.value, order.perm_id
                )

    # -- accounts and prices ---------------------------------------------------------------

    def open_account(self, account_id: str, *, cash: float | None = None) -> Account:
        """Create an account (idempotent)."""
        if not account_id or not account_id[0].isalpha():
            raise ValueError(f"account id {account_id!r}: must start with a letter (DU.../U...)")
        if account_id not in self.accounts:
            self.accounts[account_id] = Account(
                account_id=account_id,
                cash=self.config.start_cash if cash is None else cash,
            )
        return self.accounts[account_id]

    def price(self, con_id: int) -> float:
        """Current price of a contract."""
        return self._prices[con_id]

    def set_price(self, con_id: int, price: float) -> list[OrderEvent]:
        """Set a price (control API); resting orders that now cross fill at once."""
        if con_id not in self._prices:
            raise KeyError(f"unknown conId {con_id}")
        if not math.isfinite(price) or price <= 0:
            raise ValueError(f"price for conId {con_id} must be a positive number, got {price}")
        self._prices[con_id] = price
        return self._match_all()

    def step(self) -> None:
        """One tick: walk every price one step, then fill what crosses (one slice per order)."""
        now = self._clock()
        elapsed = (now - self._last_step).total_seconds() if self._last_step else 0.0
        self._last_step = now
        for con_id, rng in self._walks.items():
            spec = self.symbols.by_con_id(con_id)
            assert spec is not None
            sigma = drift.step_sigma(
                spec, elapsed=elapsed, volatility=self.config.volatility, speed=self.config.speed
            )
            self._prices[con_id] = drift.walk(self._prices[con_id], sigma, rng, spec.min_tick)
        self._match_all()

    def historical_bars(
        self, con_id: int, *, count: int, bar_seconds: int, end: datetime
    ) -> list[Bar]:
        """Deterministic synthetic bars ending at ``end``: same inputs, same bars."""
        spec = self.symbols.by_con_id(con_id)
        if spec is None:
            raise KeyError(f"unknown conId {con_id}")
        rng = random.Random(f"{self.config.seed}:{con_id}:{bar_seconds}:{count}")
        price = spec.start_price
        bars: list[Bar] = []
        end_ts = int(end.timestamp()) // bar_seconds * bar_seconds
        for index in range(count):
            start = end_ts - (count - index) * bar_seconds
            opening = price
            closing = max(
                _round_to_tick(opening * (1 + rng.gauss(0, 0.002)), spec.min_tick), spec.min_tick
            )
            high = max(opening, closing) + spec.min_tick * rng.randint(0, 5)
            low = max(min(opening, closing) - spec.min_tick * rng.randint(0, 5), spec.min_tick)
            volume = float(rng.randint(100, 10_000))
            stamp = datetime.fromtimestamp(start, tz=end.tzinfo)
            date = stamp.strftime("%Y%m%d") if bar_seconds >= 86_400 else str(start)
            bars.append(
                Bar(
                    date=date,
                    open=opening,
                    high=round(high, 10),
                    low=round(low, 10),
                    close=closing,
                    volume=volume,
                    wap=round((opening + closing + high + low) / 4, 6),
                    count=rng.randint(10, 500),
                )
            )
            price = closing
        return bars

    # -- orders (the desk's) ----------------------------------------------------------------

    @property
    def orders(self) -> dict[int, BrokerOrder]:
        """Every order ever received, by permId: the truth tests read."""
        return self.desk.orders

    @property
    def executions(self) -> list[Execution]:
        """Every fill, in order."""
        return self.desk.executions

    def quote(self, con_id: int) -> Quote:
        """Bid, ask and last of a contract now (what market orders fill against)."""
        spec = self.symbols.by_con_id(con_id)
        if spec is None:
            raise KeyError(f"unknown conId {con_id}")
        return quote_of(spec, self._prices[con_id], spread_ticks=self.config.spread_ticks)

    def _quote_spec(self, spec: ContractSpec) -> Quote:
        return quote_of(spec, self._prices[spec.con_id], spread_ticks=self.config.spread_ticks)

    def find_order(self, *, gateway: str, client_id: int, order_id: int) -> BrokerOrder | None:
        """An order by the key its client knows it by."""
        return self.desk.find_order(gateway=gateway, client_id=client_id, order_id=order_id)

    def open_orders(self, accounts: list[str]) -> list[BrokerOrder]:
        """Working orders in these accounts, from every gateway and client."""
        return self.desk.open_orders(accounts)

    def completed_orders(self, accounts: list[str]) -> list[BrokerOrder]:
        """Filled or cancelled orders in these accounts."""
        return self.desk.completed_orders(accounts)

    def place_order(
        self, *, gateway: str, client_id: int, request: OrderRequest, accounts: list[str]
    ) -> BrokerOrder | Reject:
        """Accept a new order or a modification (same gateway, client and order id)."""
        return self.desk.place(
            gateway=gateway, client_id=client_id, request=request, accounts=accounts
        )

    def cancel_order(
        self, *, gateway: str, client_id: int, order_id: int, accounts: list[str]
    ) -> BrokerOrder | Reject:
        """Cancel by the client's order id (or a unique open order id in its accounts)."""
        return self.desk.cancel(
            gateway=gateway, client_id=client_id, order_id=order_id, accounts=accounts
        )

    def global_cancel(self, *, accounts: list[str]) -> list[BrokerOrder]:
        """Cancel every open order in these accounts (reqGlobalCancel)."""
        return self.desk.global_cancel(accounts=accounts)

    def _match_all(self) -> list[OrderEvent]:
        self.desk.match_all()
        return []

    def what_if(self, request: OrderRequest, *, accounts: list[str]) -> WhatIf | Reject:
        """Margin and commission of an order without placing it (IB's rates by security type).

        The margin change is the requirement of the position after the order less before it,
        so an order that reduces a position frees margin.
        """
        checked = self.desk.check(request, accounts)
        if isinstance(checked, Reject):
            return checked
        spec, account_id = checked
        account = self.accounts[account_id]
        quote = self._quote_spec(spec)
        price = quote.ask if request.action == "BUY" else quote.bid
        if request.order_type == "LMT" and request.lmt_price is not None:
            price = request.lmt_price
        held = account.positions.get(spec.con_id)
        before_qty = held.quantity if held else 0.0
        signed = request.total_quantity if request.action == "BUY" else -request.total_quantity
        rates = margin_rates(spec)
        mark = self._prices[spec.con_id]
        delta = trade_value_usd(spec, before_qty + signed, mark) - trade_value_usd(
            spec, before_qty, mark
        )
        init_change = delta * rates.initial
        maint_change = delta * rates.maintenance
        init_before, maint_before = self._margins(account)
        equity = self._net_liquidation(account)
        commission = order_commission(spec, request.total_quantity, price, self.config.commissions)
        return WhatIf(
            init_margin_before=init_before,
            maint_margin_before=maint_before,
            equity_with_loan_before=equity,
            init_margin_change=round(init_change, 2),
            maint_margin_change=round(maint_change, 2),
            equity_with_loan_change=-commission,
            init_margin_after=round(init_before + init_change, 2),
            maint_margin_after=round(maint_before + maint_change, 2),
            equity_with_loan_after=round(equity - commission, 2),
            commission=commission,
            min_commission=commission,
            max_commission=commission,
            currency="USD",
        )

    def _book(self, order: BrokerOrder, execution: Execution) -> None:
        account = self.accounts[order.account]
        multiplier = float(order.contract.multiplier or 1)
        signed = execution.shares if order.action == "BUY" else -execution.shares
        position = account.positions.setdefault(order.contract.con_id, Position())
        cost = execution.price * multiplier
        new_qty = position.quantity + signed
        if position.quantity == 0 or (position.quantity > 0) == (signed > 0):
            total = position.avg_cost * abs(position.quantity) + cost * abs(signed)
            position.avg_cost = total / abs(new_qty) if new_qty else 0.0
        else:
            closed = min(abs(signed), abs(position.quantity))
            direction = 1 if position.quantity > 0 else -1
            position.realized_pnl += (cost - position.avg_cost) * closed * direction
            if abs(signed) > abs(position.quantity):
                position.avg_cost = cost
            elif new_qty == 0:
                position.avg_cost = 0.0
        position.quantity = new_qty
        account.cash -= signed * cost + execution.commission

    # -- account views ---------------------------------------------------------------------

    def _market_value(self, account: Account) -> float:
        total = 0.0
        for con_id, position in account.positions.items():
            spec = self.symbols.by_con_id(con_id)
            multiplier = float(spec.multiplier or 1) if spec else 1.0
            total += position.quantity * self._prices[con_id] * multiplier
        return total

    def _net_liquidation(self, account: Account) -> float:
        return round(account.cash + self._market_value(account), 2)

    def _margins(self, account: Account) -> tuple[float, float]:
        """Initial and maintenance margin of the account's positions at IB's rates by type."""
        initial = maintenance = 0.0
        for con_id, position in account.positions.items():
            spec = self.symbols.by_con_id(con_id)
            if spec is None:
                continue
            value = trade_value_usd(spec, position.quantity, self._prices[con_id])
            rates = margin_rates(spec)
            initial += value * rates.initial
            maintenance += value * rates.maintenance
        return round(initial, 2), round(maintenance, 2)

    def account_values(self, account_id: str) -> list[tuple[str, str, str]]:
        """(tag, value, currency) rows as updateAccountValue / accountSummary carry them."""
        account = self.accounts[account_id]
        net = self._net_liquidation(account)
        init, maint = self._margins(account)
        gross = sum(
            abs(
                p.quantity
                * self._prices[c]
                * float((self.symbols.by_con_id(c) or _NO_SPEC).multiplier or 1)
            )
            for c, p in account.positions.items()
        )
        rows = [
            ("AccountType", "INDIVIDUAL", ""),
            ("NetLiquidation", f"{net:.2f}", "USD"),
            ("TotalCashValue", f"{account.cash:.2f}", "USD"),
            ("CashBalance", f"{account.cash:.2f}", "USD"),
            ("EquityWithLoanValue", f"{net:.2f}", "USD"),
            ("GrossPositionValue", f"{gross:.2f}", "USD"),
            ("InitMarginReq", f"{init:.2f}", "USD"),
            ("MaintMarginReq", f"{maint:.2f}", "USD"),
            ("AvailableFunds", f"{net - init:.2f}", "USD"),
            ("ExcessLiquidity", f"{net - maint:.2f}", "USD"),
            ("BuyingPower", f"{(net - init) * 4:.2f}", "USD"),
            ("Cushion", f"{(net - maint) / net if net else 0:.4f}", ""),
        ]
        return rows

    def portfolio(self, account_id: str) -> list[tuple[ContractSpec, Position, float]]:
        """(contract, position, market price) for every non-flat position."""
        account = self.accounts[account_id]
        rows = []
        for con_id, position in account.positions.items():
            spec = self.symbols.by_con_id(con_id)
            if spec is not None and position.quantity != 0:
                rows.append((spec, position, self._prices[con_id]))
        return rows


_NO_SPEC = ContractSpec(
    con_id=0,
    symbol="",
    sec_type="",
    exchange="",
    primary_exchange="",
    currency="",
    local_symbol="",
    trading_class="",
    long_name="",
    start_price=1.0,
)
