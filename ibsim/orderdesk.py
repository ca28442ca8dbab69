"""The broker's order desk: every order's life from placeOrder to its last fill or cancel. Pure.

It keeps the orders and executions; the :class:`~ibsim.broker.Broker` it belongs to gives it
the clock, each contract's quote, the booking of fills into accounts and the relay of events
to the front ends. What the market does to an order (triggers, trailing, fill prices) is
:mod:`ibsim.matching`; what IB refuses is :mod:`ibsim.validation`; sessions are
:mod:`ibsim.hours`; commissions :mod:`ibsim.commission`.

As at IB:
- ``transmit=False`` keeps an order (PendingSubmit) until an order of its group arrives with
  ``transmit=True``: then the parent and all its children go live together;
- a child (``parentId``) waits as PreSubmitted until its parent has filled, then is Submitted
  (a stop child stays PreSubmitted until triggered: IB holds stops on SMART itself);
- an OCA group with ``ocaType`` 1 cancels the other members when one fills; 2 and 3 reduce
  their quantity by what filled; the children of one parent reduce each other the same way;
- cancelling a parent cancels its children;
- IOC fills what the quote offers at once and cancels the rest; DAY expires at the end of its
  session in the contract's time zone; GTC stays;
- with ``market_hours`` on, nothing triggers or fills outside a contract's session, and a stock
  order without ``outsideRth`` waits for regular hours.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from ibsim import matching, sessions, validation
from ibsim.commission import fill_commission
from ibsim.contracts import ContractSpec, SymbolTable
from ibsim.matching import STOP_TYPES, Quote
from ibsim.records import (
    DONE_STATES,
    BrokerOrder,
    Execution,
    OrderEventKind,
    OrderRequest,
    OrderState,
    Reject,
    StatusChange,
)

if TYPE_CHECKING:
    from ibsim.broker import BrokerConfig

__all__ = ["OrderDesk", "order_from_request"]

Emit = Callable[[OrderEventKind, BrokerOrder, Execution | None], None]
_LIVE = (OrderState.PRE_SUBMITTED, OrderState.SUBMITTED)


def order_from_request(
    request: OrderRequest,
    *,
    perm_id: int,
    gateway: str,
    client_id: int,
    account: str,
    contract: ContractSpec,
    parent_perm_id: int,
    status: OrderState,
    now: datetime,
) -> BrokerOrder:
    """The broker's record of an order as its client sent it."""
    return BrokerOrder(
        perm_id=perm_id,
        gateway=gateway,
        client_id=client_id,
        order_id=request.order_id,
        account=account,
        contract=contract,
        action=request.action,
        total_quantity=request.total_quantity,
        order_type=request.order_type,
        lmt_price=request.lmt_price,
        aux_price=request.aux_price,
        tif=request.tif or "DAY",
        oca_group=request.oca_group,
        order_ref=request.order_ref,
        parent_id=request.parent_id,
        parent_perm_id=parent_perm_id,
        transmit=request.transmit,
        status=status,
        created_at=now,
        oca_type=request.oca_type,
        trail_stop_price=request.trail_stop_price,
        trailing_percent=request.trailing_percent,
        outside_rth=request.outside_rth,
        trigger_method=request.trigger_method,
    )


class OrderDesk:
    """Orders by permId, their executions, and the rules that move them."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime],
        config: BrokerConfig,
        symbols: SymbolTable,
        quote: Callable[[ContractSpec], Quote],
        book: Callable[[BrokerOrder, Execution], None],
        emit: Emit,
    ) -> None:
        self._clock = clock
        self._config = config
        self._symbols = symbols
        self._quote = quote
        self._book = book
        self._emit_raw = emit
        self.orders: dict[int, BrokerOrder] = {}  # by permId: every order ever received
        self._by_key: dict[tuple[str, int, int], int] = {}  # (gateway, client, orderId)
        self.executions: list[Execution] = []
        self._next_perm = config.first_perm_id
        self._exec_seq = 0

    def _emit(
        self, kind: OrderEventKind, order: BrokerOrder, execution: Execution | None = None
    ) -> None:
        self._emit_raw(kind, order, execution)

    # -- lookups ---------------------------------------------------------------------------

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

    def resolve_contract(self, request: OrderRequest) -> ContractSpec | None:
        """The one contract an order's contract fields name."""
        if request.con_id:
            return self._symbols.by_con_id(request.con_id)
        matches = self._symbols.match(
            symbol=request.symbol,
            sec_type=request.sec_type,
            currency=request.currency,
            exchange=request.exchange,
            local_symbol=request.local_symbol,
            last_trade_date=request.last_trade_date,
        )
        return matches[0] if len(matches) == 1 else None

    def check(
        self, request: OrderRequest, accounts: list[str]
    ) -> tuple[ContractSpec, str] | Reject:
        """The contract and account of a valid order, else IB's refusal."""
        if not request.exchange:
            return validation.NO_EXCHANGE  # IB asks for the exchange before looking it up
        spec = self.resolve_contract(request)
        if spec is None:
            return Reject(200, "No security definition has been found for the request")
        refused = validation.check_order(request, spec)
        if refused is not None:
            return refused
        account = request.account or (accounts[0] if accounts else "")
        if account not in accounts:
            return Reject(
                321, f"Error validating request.-'bO' : cause - account {account!r} not allowed"
            )
        return spec, account

    # -- placing ---------------------------------------------------------------------------

    def place(
        self, *, gateway: str, client_id: int, request: OrderRequest, accounts: list[str]
    ) -> BrokerOrder | Reject:
        """Accept a new order or a modification (same gateway, client and order id)."""
        existing = self.find_order(gateway=gateway, client_id=client_id, order_id=request.order_id)
        if existing is not None:
            return self._modify(existing, request)
        checked = self.check(request, accounts)
        if isinstance(checked, Reject):
            return checked
        spec, account = checked
        parent_perm = 0
        if request.parent_id:
            parent = self.find_order(
                gateway=gateway, client_id=client_id, order_id=request.parent_id
            )
            if parent is None:
                return Reject(135, f"Can't find order with id ={request.parent_id}")
            parent_perm = parent.perm_id
        now = self._clock()
        order = order_from_request(
            request,
            perm_id=self._next_perm,
            gateway=gateway,
            client_id=client_id,
            account=account,
            contract=spec,
            parent_perm_id=parent_perm,
            status=OrderState.HELD,
            now=now,
        )
        self._next_perm += 1
        self.orders[order.perm_id] = order
        self._by_key[(gateway, client_id, request.order_id)] = order.perm_id
        order.history.append(StatusChange(at=now, status=OrderState.HELD.value, note="received"))
        if request.transmit:
            group = [*self._held_group(order), order]
            for member in group:
                self._activate(member)
            # Only the new orders meet the market now: the others had this step's quote.
            self.match_all(only=group)
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

    def _pending(self, order: BrokerOrder, now: datetime) -> bool:
        """PreSubmitted rather than Submitted: held by IB, not yet at the market."""
        return (
            self._waiting_on_parent(order)
            or (order.order_type in STOP_TYPES and not order.triggered)
            or not self._tradable(order, now)
        )

    def _tradable(self, order: BrokerOrder, now: datetime) -> bool:
        if not self._config.market_hours:
            return True
        spec = order.contract
        # outsideRth is a stock's switch; forex and futures trade their whole session.
        outside = order.outside_rth or spec.sec_type != "STK"
        return sessions.is_open(spec, now, outside_rth=outside)

    def _activate(self, order: BrokerOrder) -> None:
        now = self._clock()
        if order.tif == "DAY":
            order.expires_at = sessions.day_order_end(
                order.contract,
                now,
                outside_rth=order.outside_rth and order.contract.sec_type == "STK",
            )
        if order.order_type == "TRAIL":
            order.trail_stop_price = matching.trail_stop(order, self._quote(order.contract))
        pending = self._pending(order, now)
        self._set_status(
            order, OrderState.PRE_SUBMITTED if pending else OrderState.SUBMITTED, "transmitted"
        )
        self._emit(OrderEventKind.OPEN_ORDER, order)
        self._emit(OrderEventKind.STATUS, order)

    def _modify(self, order: BrokerOrder, request: OrderRequest) -> BrokerOrder | Reject:
        if order.status is OrderState.FILLED:
            return Reject(104, "Can't modify a filled order.")
        if order.is_done:
            return Reject(
                10148,
                f"OrderId {order.order_id} that needs to be cancelled cannot be cancelled, "
                f"state: {order.status.value}.",
            )
        refused = validation.check_order(request, order.contract)
        if refused is not None:
            return refused
        if request.total_quantity < order.filled:
            return Reject(321, "Error validating request.-'bO' : cause - quantity below filled")
        trail_changed = (request.aux_price, request.trailing_percent) != (
            order.aux_price,
            order.trailing_percent,
        )
        order.total_quantity = request.total_quantity
        order.lmt_price = request.lmt_price
        order.aux_price = request.aux_price
        order.order_type = request.order_type
        order.outside_rth = request.outside_rth
        order.trailing_percent = request.trailing_percent
        if request.trail_stop_price is not None:
            order.trail_stop_price = request.trail_stop_price
        elif trail_changed:
            order.trail_stop_price = None
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
            if order.order_type == "TRAIL" and order.trail_stop_price is None:
                order.trail_stop_price = matching.trail_stop(order, self._quote(order.contract))
            self._emit(OrderEventKind.OPEN_ORDER, order)
            self._emit(OrderEventKind.STATUS, order)
        self.match_all(only=[order])
        return order

    # -- cancelling ------------------------------------------------------------------------

    def cancel(
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

    def match_all(self, only: list[BrokerOrder] | None = None) -> None:
        """Expire what is due, then trigger and fill what the market now reaches."""
        now = self._clock()
        for order in list(self.orders.values()) if only is None else only:
            if order.status not in _LIVE:
                continue
            if order.expires_at is not None and now >= order.expires_at:
                self._cancel(order, note="DAY order expired at the session end")
                continue
            self._try_fill(order, now)

    def _try_fill(self, order: BrokerOrder, now: datetime) -> None:
        if self._waiting_on_parent(order) or not self._tradable(order, now):
            return
        quote = self._quote(order.contract)
        if order.order_type in STOP_TYPES and not order.triggered:
            if order.order_type == "TRAIL":
                moved = matching.trail_stop(order, quote)
                if moved != order.trail_stop_price:
                    order.trail_stop_price = moved
                    self._emit(OrderEventKind.OPEN_ORDER, order)  # clients see trailStopPrice
            if not matching.stop_triggered(order, quote):
                return
            order.triggered = True
            self._set_status(order, OrderState.SUBMITTED, "stop triggered")
            self._emit(OrderEventKind.STATUS, order)
        elif order.status is OrderState.PRE_SUBMITTED:
            self._set_status(order, OrderState.SUBMITTED, "at the market")
            self._emit(OrderEventKind.STATUS, order)
        price = matching.fill_price(order, quote, odd_lot_ticks=self._config.odd_lot_ticks)
        if price is not None:
            self._fill(order, min(order.remaining, self._liquidity(order)), price)
        if order.tif == "IOC" and not order.is_done:
            self._cancel(order, note=f"IOC: unfilled {order.remaining:g} cancelled")

    def _liquidity(self, order: BrokerOrder) -> float:
        """What the quote offers one order per step (IDEALPRO's depth is in millions)."""
        if order.contract.sec_type == "CASH":
            return self._config.fx_lot_size
        return self._config.lot_size

    def _fill(self, order: BrokerOrder, quantity: float, price: float) -> None:
        now = self._clock()
        self._exec_seq += 1
        previous = order.filled
        order.filled = previous + quantity
        order.avg_fill_price = round(
            (order.avg_fill_price * previous + price * quantity) / order.filled, 10
        )
        order.last_fill_price = price
        commission = fill_commission(
            order.contract,
            filled_before=previous,
            fill_quantity=quantity,
            avg_price=order.avg_fill_price,
            paid_so_far=order.commission_paid,
            schedule=self._config.commissions,
        )
        order.commission_paid = round(order.commission_paid + commission, 2)
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
            currency="USD",  # IB charges in the account's base currency
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
        self._after_fill(order, quantity)

    def _after_fill(self, order: BrokerOrder, quantity: float) -> None:
        """OCA and bracket siblings: cancelled (ocaType 1) or reduced by what filled."""
        for other in list(self.orders.values()):
            if other.perm_id == order.perm_id or other.is_done or other.account != order.account:
                continue
            if order.oca_group and other.oca_group == order.oca_group:
                if order.oca_type in (2, 3):
                    self._reduce(other, quantity, f"OCA group {order.oca_group} reduced")
                else:
                    self._cancel(other, note=f"OCA group {order.oca_group} filled")
            elif order.parent_perm_id and other.parent_perm_id == order.parent_perm_id:
                self._reduce(other, quantity, "bracket sibling filled")

    def _reduce(self, order: BrokerOrder, quantity: float, note: str) -> None:
        if quantity >= order.remaining:
            self._cancel(order, note=note)  # keeps its quantity, as IB reports a cancel
            return
        order.total_quantity -= quantity
        order.history.append(StatusChange(at=self._clock(), status=order.status.value, note=note))
        self._emit(OrderEventKind.OPEN_ORDER, order)
        self._emit(OrderEventKind.STATUS, order)
