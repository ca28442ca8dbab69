"""One strategy's order path: state gate, risk checks, optional what-if margin, the token
bucket, then the intent written to the journal durably and only then sent with its key as
``orderRef``. Nothing is ever re-sent blind."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Callable
from typing import Any, NoReturn

from ib_async import Contract, Order

from gateway.outage import OutageKind
from plugins import api
from plugins.config import StrategyConfig
from plugins.host import ordermap
from plugins.host.broker import Session, ask
from plugins.host.dayloss import DayLoss
from plugins.host.marketdata import MarketData
from plugins.host.orderbook import BookedOrder, OrderBook
from plugins.host.runstate import RunState
from plugins.host.services import HostServices
from plugins.host.sessions import Sessions
from plugins.intents import IntentState, leg_key, new_intent_key, parent_of
from plugins.ratelimit import TokenBucket
from plugins.risk import (
    OrderCheck,
    RiskDecision,
    RiskReason,
    check_collar,
    check_daily_loss,
    check_order,
    position_limit,
)

__all__ = ["OrderPath", "take_token"]

log = logging.getLogger("plugins.host")

#: Risk refusals with a reason of their own in the API (the others are RISK).
_REFUSALS = {
    RiskReason.DAILY_LOSS: api.RefusalReason.DAILY_LOSS,
    RiskReason.PRICE_COLLAR: api.RefusalReason.PRICE_COLLAR,
}


async def take_token(bucket: TokenBucket, services: HostServices) -> None:
    """Wait for one token; the bucket says how long, so one sleep is normally enough."""
    clock = services.clock
    for _ in range(1000):
        if bucket.try_take(clock.monotonic()):
            return
        await asyncio.sleep(bucket.wait_time(clock.monotonic()))
    raise TimeoutError("rate limiter gave no token")


def _contract_record(contract: Contract) -> dict[str, Any]:
    return {
        "conId": contract.conId,
        "symbol": contract.symbol,
        "secType": contract.secType,
        "exchange": contract.exchange,
        "currency": contract.currency,
    }


class OrderPath:
    """place / modify / cancel for the strategy, and the journalled send safe state uses."""

    def __init__(
        self,
        cfg: StrategyConfig,
        services: HostServices,
        run: RunState,
        sessions: Sessions,
        book: OrderBook,
        data: MarketData,
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self._services = services
        self._run = run
        self._sessions = sessions
        self._book = book
        self._data = data
        self.bucket = TokenBucket(rate=cfg.limits.max_orders_per_sec)
        self.sent = 0
        self.refused = 0
        #: The daily loss limit's P&L (the runner sets it; None: no daily loss check).
        self.loss: DayLoss | None = None

    # -- checks ------------------------------------------------------------------------------

    def _refuse(self, outcome: str, reason: api.RefusalReason, message: str, **kw: Any) -> NoReturn:
        self.refused += 1
        self._run.count(outcome)
        log.info("order_refused strategy=%s outcome=%s reason=%s", self.name, outcome, message)
        raise api.OrderRefused(reason, f"strategy {self.name}: {message}", **kw)

    def _check(
        self,
        spec: api.OrderSpec,
        contract: Contract,
        replaces: BookedOrder | None,
        *,
        new_orders: int = 1,
    ) -> None:
        active = self._sessions.active or ""
        feed = self._services.feed(active)
        endpoint = self._services.endpoints.get(active)
        decision = check_order(
            OrderCheck(
                con_id=contract.conId,
                quantity=spec.side.sign * spec.quantity,
                price=spec.price,
                last_price=self._data.last.get(contract.conId),
                multiplier=spec.instrument.multiplier,
                replaces_quantity=(
                    replaces.side.sign * (replaces.quantity - replaces.filled) if replaces else 0.0
                ),
                new_orders=new_orders,
            ),
            book=self._book.risk_book(contract.conId),
            limits=self.cfg.limits,
            read_only=self.cfg.read_only or (endpoint is not None and endpoint.read_only),
            in_reset_window=feed.kind is OutageKind.RESET_WINDOW,
            gateway_ready=feed.ready is not False,
            max_position=position_limit(self.cfg.limits, spec.instrument.symbol),
        )
        if decision.accepted:
            decision = self._check_beyond(spec, contract, replaces)
        if not decision.accepted:
            assert decision.reason is not None
            self._refuse(
                f"rejected_{decision.reason.value}",
                _REFUSALS.get(decision.reason, api.RefusalReason.RISK),
                decision.message,
                risk=decision.reason,
            )

    def _check_beyond(
        self, spec: api.OrderSpec, contract: Contract, replaces: BookedOrder | None
    ) -> RiskDecision:
        """The price collar and the daily loss (pure checks in :mod:`plugins.risk`)."""
        limits = self.cfg.limits
        # Stop orders carry ``stop_price``; an OrderSpec without one has only a limit.
        prices = {"limit": spec.limit_price, "stop": getattr(spec, "stop_price", None)}
        decision = check_collar(prices, market=self._data.last.get(contract.conId), limits=limits)
        if not decision.accepted or self.loss is None:
            return decision
        change = spec.side.sign * spec.quantity - (
            replaces.side.sign * (replaces.quantity - replaces.filled) if replaces else 0.0
        )
        return check_daily_loss(
            self.loss.total(),
            position=self._book.positions.get(contract.conId, 0.0),
            quantity=change,
            limits=limits,
        )

    async def _rate(self) -> None:
        wait = self.bucket.wait_time(self._services.clock.monotonic())
        if wait > self._services.settings.rate_wait_max:
            self._refuse(
                "rate_limited",
                api.RefusalReason.RATE_LIMITED,
                f"over max_orders_per_sec {self.cfg.limits.max_orders_per_sec} "
                f"(next slot in {wait:.2f}s)",
            )
        await take_token(self.bucket, self._services)

    async def _whatif(self, session: Session, contract: Contract, order: Order) -> None:
        margin_of = await ask(
            session,
            lambda b: b.what_if(contract, order),
            timeout=self._services.settings.request_timeout,
        )
        try:
            margin = float(margin_of.init_margin_after)
            equity = float(margin_of.equity_with_loan_after)
        except (TypeError, ValueError):
            self._refuse("rejected_margin", api.RefusalReason.MARGIN, "what-if gave no margin")
        if math.isfinite(margin) and math.isfinite(equity) and margin > equity:
            self._refuse(
                "rejected_margin",
                api.RefusalReason.MARGIN,
                f"initial margin after {margin:.2f} would exceed equity with loan {equity:.2f}",
            )

    # -- the send ----------------------------------------------------------------------------

    async def send(
        self,
        session: Session,
        contract: Contract,
        order: Order,
        *,
        purpose: str,
        recheck: Callable[[], object] | None = None,
    ) -> BookedOrder:
        """Journal the intent durably (off the loop, bounded), then send it with the key as
        orderRef. ``recheck`` repeats the caller's checks after the journal's answer, when a
        loss or a failover may have happened: what fails them is journalled as never sent."""
        services = self._services
        key = new_intent_key(
            self.name, now=services.clock.now(), random_bits=services.rng.getrandbits
        )
        order.orderRef = key
        order.account = order.account or session.account
        order.orderId = session.broker.next_order_id()
        await self._journal_intents(session, contract, (order,), purpose=purpose)
        self._still_sendable(session, (order,), recheck)
        mine = self._booked(session, contract, order)
        self._book.orders[key] = mine
        mine.trade = session.broker.place_order(contract, order)
        self._sent(session, (order,), (mine,))
        return mine

    async def _journal_intents(
        self, session: Session, contract: Contract, orders: tuple[Order, ...], *, purpose: str
    ) -> None:
        """Every intent of ``orders`` on disk, in one call on the journal's thread, or a
        refusal: no durable intent, no order (IB never sees what the journal did not record)."""
        services = self._services
        store, now = services.store, services.clock.now()
        writes = [
            functools.partial(
                store.record_intent,
                key=order.orderRef,
                strategy=self.name,
                gateway=session.gateway,
                account=session.account,
                client_id=session.client_id,
                contract=_contract_record(contract),
                order=ordermap.order_record(order, purpose=purpose),
                now=now,
                order_id=order.orderId,
            )
            for order in orders
        ]

        def write() -> None:
            for record in writes:
                record()

        try:
            await services.journal(write)
        except ValueError:
            raise
        except Exception as exc:
            # What part of it was written (or will be, late) is journalled as never sent.
            self._abandon(orders)
            what = "the order was not" if len(orders) == 1 else "no leg of the bracket was"
            self._refuse(
                "refused_journal",
                api.RefusalReason.NOT_TRADING,
                f"the order journal cannot be written ({exc}); {what} sent",
            )

    def _still_sendable(
        self,
        session: Session,
        orders: tuple[Order, ...],
        recheck: Callable[[], object] | None,
    ) -> None:
        """After the journal's await: the same live session, and the caller's checks again."""
        try:
            if session.closed:
                self._refuse(
                    "refused_session",
                    api.RefusalReason.NOT_TRADING,
                    f"the session on {session.gateway} closed while the intent was written; "
                    "the order was not sent",
                )
            if recheck is not None:
                recheck()
        except BaseException:
            self._abandon(orders)
            raise

    def _same_session(self, session: Session) -> None:
        if self._sessions.live() is not session:  # a failover happened during the write
            self._refuse(
                "refused_session",
                api.RefusalReason.NOT_TRADING,
                f"strategy {self.name} moved off {session.gateway} while the intent was "
                "written; the order was not sent",
            )

    def _abandon(self, orders: tuple[Order, ...]) -> None:
        """Intents journalled (or still being written) for orders that will never be sent:
        recorded cancelled after the write, in the writer's order, so none looks live."""
        services = self._services
        store, now = services.store, services.clock.now()
        for order in orders:
            services.writer.later(
                functools.partial(
                    store.update_from_broker,
                    order.orderRef,
                    perm_id=None,
                    status=IntentState.CANCELLED,
                    filled=0.0,
                    now=now,
                )
            )

    def _sent(
        self, session: Session, orders: tuple[Order, ...], booked: tuple[BookedOrder, ...]
    ) -> None:
        services = self._services
        store, sent_at = services.store, services.clock.now()
        for order in orders:
            services.writer.later(
                functools.partial(
                    store.mark_sent, order.orderRef, now=sent_at, order_id=order.orderId
                )
            )
        for mine in booked:
            if mine.status is IntentState.PENDING_SEND:
                mine.status = IntentState.SENT
            self.sent += 1
            self._run.count("sent")

    # -- what the strategy calls -------------------------------------------------------------

    async def place(self, spec: api.OrderSpec) -> api.OrderView:
        session = self._sessions.live()
        if not (spec.quantity > 0 and math.isfinite(spec.quantity)):
            self._refuse(
                "rejected_quantity",
                api.RefusalReason.RISK,
                f"quantity {spec.quantity} must be positive (use side for direction)",
            )
        contract = await self._data.qualify(spec.instrument)
        order = ordermap.order_for(spec, session.account)
        if self.cfg.limits.whatif_margin_check:
            self._check(spec, contract, None)
            await self._whatif(session, contract, order)
        await self._rate()
        # Checked after the last await (a loss or failover may have happened meanwhile), and
        # again after the journal's answer, with no await between that and the send.
        session = self._sessions.live()
        self._check(spec, contract, None)

        def recheck() -> None:
            self._same_session(session)
            self._check(spec, contract, None)

        booked = await self.send(session, contract, order, purpose="strategy", recheck=recheck)
        return booked.view()

    async def modify(
        self,
        key: str,
        *,
        quantity: float | None,
        limit_price: float | None,
        stop_price: float | None = None,
    ) -> api.OrderView:
        session = self._sessions.live()
        order = self._book.mine(key)
        trade = order.trade
        if trade is None or trade.order.clientId != session.client_id:
            raise api.OrderRefused(
                api.RefusalReason.UNKNOWN_ORDER,
                f"strategy {self.name}: order {key} was placed by another session "
                "(before a failover); cancel it and place a new one",
            )
        spec = self._modified_spec(order, quantity, limit_price, stop_price)
        contract = self._book.contracts.get(order.con_id) or await self._data.qualify(
            order.instrument
        )
        self._check(spec, contract, order)
        await self._rate()
        session = self._sessions.live()
        # Same orderId and orderRef: IB modifies the order in place, nothing new is created.
        trade.order.totalQuantity = spec.quantity
        if spec.limit_price is not None:
            trade.order.lmtPrice = spec.limit_price
        if spec.stop_price is not None:
            trade.order.auxPrice = spec.stop_price
        trade.order.transmit = True  # a bracket's entry was sent held; a change goes through
        session.broker.place_order(trade.contract, trade.order)
        order.quantity = spec.quantity
        order.limit_price = spec.limit_price
        order.stop_price = spec.stop_price
        self._run.count("modified")
        services = self._services
        at, gateway = services.clock.now(), session.gateway
        fields = {
            "key": key,
            "quantity": spec.quantity,
            "limit_price": spec.limit_price,
            "stop_price": spec.stop_price,
        }
        store = services.store
        services.writer.later(
            lambda: store.append_event(
                at=at,
                kind="strategy.order_modified",
                gateway=gateway,
                strategy=self.name,
                message=f"order {key} modified",
                fields=fields,
            )
        )
        return order.view()

    async def cancel(self, key: str) -> None:
        self._sessions.live()
        order = self._book.mine(key)
        await self._rate()
        session = self._sessions.live()
        if order.trade is not None:
            session.broker.cancel_order(order.trade.order)
        self._run.count("cancel_requested")

    # -- order types, brackets, cancel by criteria --------------------------------------------

    def _booked(self, session: Session, contract: Contract, order: Order) -> BookedOrder:
        kind = api.OrderType(order.orderType)
        has_limit = kind in (api.OrderType.LIMIT, api.OrderType.STOP_LIMIT)
        has_stop = kind in (api.OrderType.STOP, api.OrderType.STOP_LIMIT)
        return BookedOrder(
            key=order.orderRef,
            instrument=self._book.instrument_of(contract),
            side=api.Side(order.action),
            quantity=float(order.totalQuantity),
            limit_price=float(order.lmtPrice or 0.0) if has_limit else None,
            con_id=contract.conId,
            gateway=session.gateway,
            order_type=kind,
            stop_price=float(order.auxPrice or 0.0) if has_stop else None,
            parent=parent_of(order.orderRef),
        )

    def _modified_spec(
        self,
        order: BookedOrder,
        quantity: float | None,
        limit_price: float | None,
        stop_price: float | None,
    ) -> api.OrderSpec:
        """The order as it will be, checked like a new one; a price its type has not is an
        error naming the order."""
        kind = order.order_type
        takes_limit = kind in (api.OrderType.LIMIT, api.OrderType.STOP_LIMIT)
        takes_stop = kind in (api.OrderType.STOP, api.OrderType.STOP_LIMIT)
        for given, takes, what in (
            (limit_price, takes_limit, "limit_price"),
            (stop_price, takes_stop, "stop_price"),
        ):
            if given is not None and not takes:
                raise ValueError(
                    f"strategy {self.name}: order {order.key} is a {kind.name} order; it has "
                    f"no {what} to modify"
                )
        return api.OrderSpec(
            instrument=order.instrument,
            side=order.side,
            quantity=quantity if quantity is not None else order.quantity,
            limit_price=(limit_price if limit_price is not None else order.limit_price)
            if takes_limit
            else None,
            stop_price=(stop_price if stop_price is not None else order.stop_price)
            if takes_stop
            else None,
        )

    async def send_bracket(
        self,
        session: Session,
        contract: Contract,
        orders: tuple[Order, Order, Order],
        *,
        recheck: Callable[[], object] | None = None,
    ) -> tuple[BookedOrder, BookedOrder, BookedOrder]:
        """Journal all three legs durably (one call, off the loop), then send them (the last
        releases the group at IB); a journal that cannot take a leg sends none of them."""
        services = self._services
        parent, tp, sl = orders
        key = new_intent_key(
            self.name, now=services.clock.now(), random_bits=services.rng.getrandbits
        )
        for order, ref in ((parent, key), (tp, leg_key(key, "tp")), (sl, leg_key(key, "sl"))):
            order.orderRef = ref
            order.account = order.account or session.account
            order.orderId = session.broker.next_order_id()
        ordermap.link_bracket(parent, (tp, sl))
        await self._journal_intents(session, contract, orders, purpose="bracket")
        self._still_sendable(session, orders, recheck)
        legs = tuple(self._booked(session, contract, order) for order in orders)
        for mine, order in zip(legs, orders, strict=True):
            self._book.orders[mine.key] = mine
            mine.trade = session.broker.place_order(contract, order)
        self._sent(session, orders, legs)
        return legs[0], legs[1], legs[2]

    async def place_bracket(
        self, entry: api.OrderSpec, *, take_profit: float, stop_loss: float
    ) -> api.Bracket:
        api.check_bracket(entry, take_profit=take_profit, stop_loss=stop_loss)
        session = self._sessions.live()
        if not (entry.quantity > 0 and math.isfinite(entry.quantity)):
            self._refuse(
                "rejected_quantity",
                api.RefusalReason.RISK,
                f"quantity {entry.quantity} must be positive (use side for direction)",
            )
        contract = await self._data.qualify(entry.instrument)
        orders = ordermap.bracket_orders(
            entry, take_profit=take_profit, stop_loss=stop_loss, account=session.account
        )
        if self.cfg.limits.whatif_margin_check:
            self._check(entry, contract, None, new_orders=len(orders))
            await self._whatif(session, contract, ordermap.order_for(entry, session.account))
        for _ in orders:
            await self._rate()  # three messages to IB
        session = self._sessions.live()
        # As for one order: checked again after the journal's answer, then sent at once.
        self._check(entry, contract, None, new_orders=len(orders))

        def recheck() -> None:
            self._same_session(session)
            self._check(entry, contract, None, new_orders=len(orders))

        legs = await self.send_bracket(session, contract, orders, recheck=recheck)
        return api.Bracket(*(leg.view() for leg in legs))

    async def cancel_all(self, instrument: api.Instrument | None) -> list[str]:
        """Cancel the strategy's working orders (of one instrument); a bracket's exits go
        first, so no exit outlives its entry's cancel by a message."""
        self._sessions.live()
        con_id = None
        if instrument is not None:
            qualified = self._data.qualified.get(instrument)
            con_id = qualified.conId if qualified is not None else None
        chosen = [
            o
            for o in self._book.working()
            if instrument is None
            or (o.con_id == con_id if con_id is not None else o.instrument == instrument)
        ]
        chosen.sort(key=lambda o: o.parent is None)
        keys: list[str] = []
        for order in chosen:
            await self._rate()
            session = self._sessions.live()
            if order.trade is not None and not order.status.terminal:
                session.broker.cancel_order(order.trade.order)
                keys.append(order.key)
        self._run.count("cancel_requested")
        return keys
