"""The simulated broker: accounts, positions, orders, fills and prices. Pure domain core.

No sockets and no event loop: time comes from an injected clock and the owner calls
:meth:`Broker.step` at the tick rate. Orders live at the broker, not at a gateway, as at IB:
every gateway and client id logged in to an account sees the same orders. Everything the
broker does to an order is told to listeners as :class:`OrderEvent` values, in IB's order
(openOrder, execDetails, orderStatus, commissionReport).

One module past 600 lines on purpose: :class:`Broker` is one aggregate whose methods all
change the same orders and positions; splitting it would spread one invariant over files.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ibsim import drift
from ibsim.contracts import ContractSpec, SymbolTable
from ibsim.records import (
    DONE_STATES,
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
    "Execution",
    "OrderEvent",
    "OrderEventKind",
    "OrderRequest",
    "OrderState",
    "Position",
    "Reject",
    "StatusChange",
    "WhatIf",
]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

SUPPORTED_ORDER_TYPES = frozenset({"MKT", "LMT", "STP", "STP LMT"})


@dataclass(slots=True)
class BrokerConfig:
    """Knobs tests turn: lot size for partial fills, commissions, start cash, seed."""

    seed: int = 7
    lot_size: float = 1000.0  # orders above this fill in slices, one slice per step
    commission_per_share: float = 0.005
    min_commission: float = 1.0
    start_cash: float = 1_000_000.0
    # None: each instrument's daily volatility scaled to the clock time a step covers
    # (ibsim.drift); a number: that log-return deviation per step for every instrument.
    volatility: float | None = None
    speed: float = 1.0  # market days per real day for the realistic walk (demos speed it up)
    first_perm_id: int = 1_000_001


def _round_to_tick(price: float, tick: float) -> float:
    return round(round(price / tick) * tick, 10)


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
        self.orders: dict[int, BrokerOrder] = {}  # by permId: every order ever received
        self._by_key: dict[tuple[str, int, int], int] = {}  # (gateway, client, orderId)
        self.executions: list[Execution] = []
        self._next_perm = self.config.first_perm_id
        self._exec_seq = 0
        self._prices: dict[int, float] = {}
        self._walks: dict[int, random.Random] = {}
        for spec in self.symbols:
            self._prices[spec.con_id] = spec.start_price
            self._walks[spec.con_id] = random.Random(self.config.seed * 1_000_003 + spec.con_id)
        self._listeners: list[Callable[[OrderEvent], None]] = []
        self._last_step: datetime | None = None

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

    # -- orders ----------------------------------------------------------------------------

    def find_order(self, *, gateway: str, client_id: int, order_id: int) -> BrokerOrder | None:
        """An order by the key its client knows it by."""
        perm = self._by_key.get((gateway, client_id, order_id))
        return self.orders.get(perm) if perm is not None else None

    def open_orders(self, accounts: list[str]) -> list[BrokerOrder]:
        """Working orders in these accounts, from every gateway and client."""
        return [
            o
            for o in self.orders.values()
            if o.account in accounts and not o.is_done and o.status is not OrderState.HELD
        ]

    def completed_orders(self, accounts: list[str]) -> list[BrokerOrder]:
        """Filled or cancelled orders in these accounts."""
        return [o for o in self.orders.values() if o.account in accounts and o.is_done]

    def _resolve_contract(self, request: OrderRequest) -> ContractSpec | None:
        if request.con_id:
            return self.symbols.by_con_id(request.con_id)
        matches = self.symbols.match(
            symbol=request.symbol,
            sec_type=request.sec_type,
            currency=request.currency,
            exchange=request.exchange,
            local_symbol=request.local_symbol,
            last_trade_date=request.last_trade_date,
        )
        return matches[0] if len(matches) == 1 else None

    def _validate(
        self, request: OrderRequest, accounts: list[str]
    ) -> tuple[ContractSpec, str] | Reject:
        spec = self._resolve_contract(request)
        if spec is None:
            return Reject(200, "No security definition has been found for the request")
        if request.order_type not in SUPPORTED_ORDER_TYPES:
            return Reject(387, f"Unsupported order type: {request.order_type}")
        if request.action not in ("BUY", "SELL"):
            return Reject(
                321, f"Error validating request.-'bO' : cause - invalid action {request.action!r}"
            )
        if not (request.total_quantity > 0 and math.isfinite(request.total_quantity)):
            return Reject(434, "The order size cannot be zero.")
        if request.order_type in ("LMT", "STP LMT") and request.lmt_price is None:
            return Reject(321, "Error validating request.-'bO' : cause - a limit price is required")
        if request.order_type in ("STP", "STP LMT") and request.aux_price is None:
            return Reject(321, "Error validating request.-'bO' : cause - a stop price is required")
        account = request.account or (accounts[0] if accounts else "")
        if account not in accounts:
            return Reject(
                321, f"Error validating request.-'bO' : cause - account {account!r} not allowed"
            )
        return spec, account

    def what_if(self, request: OrderRequest, *, accounts: list[str]) -> WhatIf | Reject:
        """Margin effect of an order without placing it (a fixed-rate model)."""
        checked = self._validate(request, accounts)
        if isinstance(checked, Reject):
            return checked
        spec, account_id = checked
        account = self.accounts[account_id]
        multiplier = float(spec.multiplier or 1)
        notional = request.total_quantity * self._prices[spec.con_id] * multiplier
        init_before, maint_before = self._margins(account)
        equity = self._net_liquidation(account)
        commission = self._commission(request.total_quantity)
        return WhatIf(
            init_margin_before=init_before,
            maint_margin_before=maint_before,
            equity_with_loan_before=equity,
            init_margin_change=round(notional * 0.25, 2),
            maint_margin_change=round(notional * 0.20, 2),
            equity_with_loan_change=-commission,
            init_margin_after=round(init_before + notional * 0.25, 2),
            maint_margin_after=round(maint_before + notional * 0.20, 2),
            equity_with_loan_after=round(equity - commission, 2),
            commission=commission,
        )

    def place_order(
        self, *, gateway: str, client_id: int, request: OrderRequest, accounts: list[str]
    ) -> BrokerOrder | Reject:
        """Accept a new order or a modification (same gateway, client and order id)."""
        existing = self.find_order(gateway=gateway, client_id=client_id, order_id=request.order_id)
        if existing is not None:
            return self._modify(existing, request)
        checked = self._validate(request, accounts)
        if isinstance(checked, Reject):
            return checked
        spec, account = checked
        now = self._clock()
        parent_perm = 0
        if request.parent_id:
            parent = self.find_order(
                gateway=gateway, client_id=client_id, order_id=request.parent_id
            )
            if parent is None:
                return Reject(135, f"Can't find order with id ={request.parent_id}")
            parent_perm = parent.perm_id
        order = BrokerOrder(
            perm_id=self._next_perm,
            gateway=gateway,
            client_id=client_id,
            order_id=request.order_id,
            account=account,
            contract=spec,
            action=request.action,
            total_quantity=request.total_quantity,
            order_type=request.order_type,
            lmt_price=request.lmt_price,
            aux_price=request.aux_price,
            tif=request.tif or "DAY",
            oca_group=request.oca_group,
            order_ref=request.order_ref,
            parent_id=request.parent_id,
            parent_perm_id=parent_perm,
            transmit=request.transmit,
            status=OrderState.HELD,
            created_at=now,
        )
        self._next_perm += 1
        self.orders[order.perm_id] = order
        self._by_key[(gateway, client_id, request.order_id)] = order.perm_id
        order.history.append(StatusChange(at=now, status=OrderState.HELD.value, note="received"))
        if request.transmit:
            for held in self._held_group(order):
                self._activate(held)
            self._activate(order)
            self._match_all()
        return order

    def _held_group(self, order: BrokerOrder) -> list[BrokerOrder]:
        """Untransmitted orders sent with this one: its held parent and the parent's children."""
        group: list[BrokerOrder] = []
        if order.parent_perm_id:
            parent = self.orders[order.parent_perm_id]
            if parent.status is OrderState.HELD:
                group.append(parent)
            group.extend(
                o
                for o in self.orders.values()
                if o.parent_perm_id == parent.perm_id
                and o.status is OrderState.HELD
                and o.perm_id != order.perm_id
            )
        return group

    def _set_status(self, order: BrokerOrder, status: OrderState, note: str = "") -> None:
        order.status = status
        now = self._clock()
        order.history.append(StatusChange(at=now, status=status.value, note=note))
        if status in DONE_STATES:
            order.completed_at = now

    def _waiting_on_parent(self, order: BrokerOrder) -> bool:
        if not order.parent_perm_id:
            return False
        return self.orders[order.parent_perm_id].status is not OrderState.FILLED

    def _activate(self, order: BrokerOrder) -> None:
        pending = self._waiting_on_parent(order) or (
            order.order_type in ("STP", "STP LMT") and not order.triggered
        )
        self._set_status(
            order, OrderState.PRE_SUBMITTED if pending else OrderState.SUBMITTED, "transmitted"
        )
        self._emit(OrderEventKind.OPEN_ORDER, order)
        self._emit(OrderEventKind.STATUS, order)

    def _modify(self, order: BrokerOrder, request: OrderRequest) -> BrokerOrder | Reject:
        if order.is_done:
            return Reject(
                104, f"Can't modify a filled order or cancelled order: orderId={order.order_id}"
            )
        if request.total_quantity < order.filled:
            return Reject(321, "Error validating request.-'bO' : cause - quantity below filled")
        order.total_quantity = request.total_quantity
        order.lmt_price = request.lmt_price
        order.aux_price = request.aux_price
        order.order_type = request.order_type
        order.tif = request.tif or order.tif
        if request.order_ref:
            order.order_ref = request.order_ref
        order.history.append(
            StatusChange(at=self._clock(), status=order.status.value, note="modified")
        )
        if order.status is OrderState.HELD:
            if request.transmit:
                self._activate(order)
        else:
            self._emit(OrderEventKind.OPEN_ORDER, order)
            self._emit(OrderEventKind.STATUS, order)
        self._match_all()
        return order

    def cancel_order(
        self, *, gateway: str, client_id: int, order_id: int, accounts: list[str]
    ) -> BrokerOrder | Reject:
        """Cancel by the client's order id; falls back to a unique open order id in its accounts.

        The fallback is what lets a second gateway on the same account cancel an order it
        learnt about through reqAllOpenOrders.
        """
        order = self.find_order(gateway=gateway, client_id=client_id, order_id=order_id)
        if order is None:
            candidates = [o for o in self.open_orders(accounts) if o.order_id == order_id]
            if len(candidates) == 1:
                order = candidates[0]
        if order is None or order.account not in accounts:
            return Reject(10147, f"OrderId {order_id} that needs to be cancelled is not found.")
        if order.is_done:
            return Reject(
                10148,
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                f"state: {order.status.value}.",
            )
        self._cancel(order, note=f"cancelled by {gateway}/{client_id}")
        return order

    def global_cancel(self, *, accounts: list[str]) -> list[BrokerOrder]:
        """Cancel every open order in these accounts (reqGlobalCancel)."""
        cancelled = []
        for order in list(self.orders.values()):
            if order.account in accounts and not order.is_done:
                self._cancel(order, note="global cancel")
                cancelled.append(order)
        return cancelled

    def _cancel(self, order: BrokerOrder, *, note: str) -> None:
        if order.is_done:
            return
        self._set_status(order, OrderState.CANCELLED, note)
        self._emit(OrderEventKind.STATUS, order)
        self._emit(OrderEventKind.CANCELLED_NOTICE, order)
        for child in self.orders.values():
            if child.parent_perm_id == order.perm_id and not child.is_done:
                self._cancel(child, note="parent cancelled")

    # -- matching --------------------------------------------------------------------------

    def _match_all(self) -> list[OrderEvent]:
        for order in list(self.orders.values()):
            if order.status in (OrderState.SUBMITTED, OrderState.PRE_SUBMITTED):
                self._try_fill(order)
        return []

    def _marketable(self, order: BrokerOrder, price: float) -> bool:
        buy = order.action == "BUY"
        if order.order_type in ("STP", "STP LMT") and not order.triggered:
            assert order.aux_price is not None
            if (buy and price >= order.aux_price) or (not buy and price <= order.aux_price):
                order.triggered = True
                self._set_status(order, OrderState.SUBMITTED, "stop triggered")
                self._emit(OrderEventKind.STATUS, order)
            else:
                return False
        if order.order_type in ("MKT", "STP"):
            return True
        assert order.lmt_price is not None
        return price <= order.lmt_price if buy else price >= order.lmt_price

    def _try_fill(self, order: BrokerOrder) -> None:
        if self._waiting_on_parent(order):
            return
        if order.status is OrderState.PRE_SUBMITTED and order.order_type in ("MKT", "LMT"):
            self._set_status(order, OrderState.SUBMITTED, "parent filled")
            self._emit(OrderEventKind.STATUS, order)
        price = self._prices[order.contract.con_id]
        if not self._marketable(order, price):
            return
        quantity = min(order.remaining, self.config.lot_size)
        self._fill(order, quantity, price)

    def _commission(self, quantity: float) -> float:
        return round(
            max(quantity * self.config.commission_per_share, self.config.min_commission), 4
        )

    def _fill(self, order: BrokerOrder, quantity: float, price: float) -> None:
        now = self._clock()
        self._exec_seq += 1
        previous = order.filled
        order.filled = previous + quantity
        order.avg_fill_price = round(
            (order.avg_fill_price * previous + price * quantity) / order.filled, 10
        )
        order.last_fill_price = price
        commission = self._commission(quantity)
        execution = Execution(
            exec_id=f"0000sim.{order.perm_id:08x}.{self._exec_seq:04d}.01",
            perm_id=order.perm_id,
            order_id=order.order_id,
            client_id=order.client_id,
            gateway=order.gateway,
            account=order.account,
            con_id=order.contract.con_id,
            side="BOT" if order.action == "BUY" else "SLD",
            shares=quantity,
            price=price,
            cum_qty=order.filled,
            avg_price=order.avg_fill_price,
            time=now,
            order_ref=order.order_ref,
            commission=commission,
            currency=order.contract.currency,
        )
        self.executions.append(execution)
        self._book(order, execution)
        done = order.remaining <= 0
        if done:
            self._set_status(
                order, OrderState.FILLED, f"filled {order.filled:g}@{order.avg_fill_price:g}"
            )
        else:
            order.history.append(
                StatusChange(at=now, status=order.status.value, note=f"partial {order.filled:g}")
            )
        # IB's order: openOrder (permId known) -> execDetails -> orderStatus -> commission.
        self._emit(OrderEventKind.OPEN_ORDER, order)
        self._emit(OrderEventKind.EXECUTION, order, execution)
        self._emit(OrderEventKind.STATUS, order)
        self._emit(OrderEventKind.COMMISSION, order, execution)
        if done:
            self._after_filled(order)

    def _after_filled(self, order: BrokerOrder) -> None:
        """OCA: one fills, the others are cancelled; bracket children become live."""
        if order.oca_group:
            for other in self.orders.values():
                if (
                    other.perm_id != order.perm_id
                    and other.oca_group == order.oca_group
                    and other.account == order.account
                    and not other.is_done
                ):
                    self._cancel(other, note=f"OCA group {order.oca_group} filled")
        if order.parent_perm_id:
            for sibling in self.orders.values():
                if (
                    sibling.parent_perm_id == order.parent_perm_id
                    and sibling.perm_id != order.perm_id
                    and not sibling.is_done
                ):
                    self._cancel(sibling, note="bracket sibling filled")

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
        gross = 0.0
        for con_id, position in account.positions.items():
            spec = self.symbols.by_con_id(con_id)
            multiplier = float(spec.multiplier or 1) if spec else 1.0
            gross += abs(position.quantity * self._prices[con_id] * multiplier)
        return round(gross * 0.25, 2), round(gross * 0.20, 2)

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
