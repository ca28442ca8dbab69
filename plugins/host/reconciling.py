"""Matching the journal's maybe-live intents to what a session sees at IB, before the strategy
may act again (after every connect, reconnect and failover) and inside safe state."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ib_async import Trade

from plugins.config import MAX_MESSAGES_PER_SECOND
from plugins.host.broker import Session, ask
from plugins.host.orderbook import OrderBook
from plugins.host.orders import take_token
from plugins.host.services import HostServices, JournalFailure
from plugins.intents import LEGS, belongs_to, leg_key, parent_of
from plugins.ratelimit import TokenBucket
from plugins.reconcile import (
    BracketPlan,
    BrokerExecution,
    BrokerOrderSeen,
    Decision,
    DecisionKind,
    IntentSeen,
    LegSeen,
    Reconciliation,
    plan_brackets,
    reconcile,
)

__all__ = ["Reconciler"]

log = logging.getLogger("plugins.host")


class Reconciler:
    def __init__(self, name: str, services: HostServices, book: OrderBook) -> None:
        self.name = name
        self._services = services
        self._book = book
        #: The cancels a bracket's group decision sends share IB's budget, not the strategy's.
        self.bucket = TokenBucket(rate=MAX_MESSAGES_PER_SECOND)

    async def reconcile(self, session: Session) -> Reconciliation:
        """Match the journal's maybe-live intents to IB's view from ``session``; update the
        journal and the book; alert on intents not found and orderRefs seen twice."""
        services, book = self._services, self._book
        store = services.store
        timeout = services.settings.request_timeout
        # The journal must hold every report before comparing.
        if not await services.writer.settle(wait=services.settings.journal_wait):
            raise JournalFailure("the journal did not take the order reports in time")
        open_trades = await ask(session, lambda b: b.open_orders(), timeout=timeout)
        completed = await ask(session, lambda b: b.completed_orders(), timeout=timeout)
        fills = await ask(session, lambda b: b.executions(), timeout=timeout)
        records = await services.journal(lambda: store.intents_maybe_live(self.name))
        intents = [
            IntentSeen(
                key=r.key,
                status=r.status,
                quantity=float(r.order.get("totalQuantity", 0.0)),
                order_id=r.order_id,
                perm_id=r.perm_id,
                filled=r.filled,
            )
            for r in records
        ]
        seen = [
            BrokerOrderSeen(
                order_ref=t.order.orderRef,
                perm_id=t.order.permId,
                order_id=t.order.orderId,
                client_id=t.order.clientId,
                status=t.orderStatus.status,
                filled=float(t.orderStatus.filled or 0.0),
                is_open=is_open,
            )
            for trades, is_open in ((open_trades, True), (completed, False))
            for t in trades
            if t.order.orderRef
        ]
        ours = [f for f in fills if belongs_to(f.execution.orderRef, self.name)]
        executions = [
            BrokerExecution(
                exec_id=f.execution.execId,
                order_ref=f.execution.orderRef,
                perm_id=f.execution.permId,
                shares=float(f.execution.shares),
                cum_qty=float(f.execution.cumQty),
            )
            for f in ours
        ]
        booked = False
        for f in ours:
            booked |= book.book_execution(
                f.execution.execId, f.contract, f.execution.side, f.execution.shares
            )
        if booked:
            book.save(now=services.clock.now())
        result = reconcile(self.name, intents, seen, executions)
        now = services.clock.now()
        by_ref = {t.order.orderRef: t for t in open_trades}
        updates: list[functools.partial[Any]] = []
        for decision in result.decisions:
            if decision.kind is not DecisionKind.UNCHANGED:
                updates.append(
                    functools.partial(
                        store.update_from_broker,
                        decision.key,
                        perm_id=decision.perm_id,
                        status=decision.status,
                        filled=decision.filled,
                        now=now,
                    )
                )
            order = book.orders.get(decision.key)
            record = next((r for r in records if r.key == decision.key), None)
            if order is None and record is not None:
                order = book.from_record(record)
                book.orders[decision.key] = order
            if order is not None:
                order.status = decision.status
                order.filled = decision.filled
                if decision.key in by_ref:
                    order.trade = by_ref[decision.key]
            if decision.kind is DecisionKind.UNKNOWN:
                book.unknown.add(decision.key)
            else:
                book.unknown.discard(decision.key)
        book.drop_finished()
        if updates:
            # What reconciliation decided is on disk before the strategy acts on it.
            await services.journal(lambda: [update() for update in updates])
        plans = await self._brackets(session, records, result.decisions, by_ref)
        result = dataclasses.replace(result, brackets=plans)
        log.info(
            "strategy_reconciled strategy=%s gateway=%s intents=%d open=%d unknown=%d orphans=%d "
            "duplicates=%d",
            self.name,
            session.gateway,
            len(intents),
            len(result.open_keys),
            len(result.unknown),
            len(result.orphans),
            len(result.duplicates),
        )
        if result.unknown:
            services.alert(
                f"strategy:{self.name}:unknown-intents",
                "warning",
                f"strategy {self.name}: {len(result.unknown)} orders not found at IB",
                "These intents may have reached IB and are not re-sent; check them in TWS: "
                + ", ".join(result.unknown),
            )
        if result.duplicates:
            services.alert(
                f"strategy:{self.name}:duplicates",
                "critical",
                f"strategy {self.name}: an orderRef is at IB more than once",
                ", ".join(result.duplicates),
            )
        return result

    # -- brackets, judged as groups --------------------------------------------------------

    async def _brackets(
        self,
        session: Session,
        records: Sequence[Any],
        decisions: Sequence[Decision],
        open_by_ref: Mapping[str, Trade],
    ) -> tuple[BracketPlan, ...]:
        """Cancel the legs :func:`plan_brackets` says must not stay working; alert on the rest."""
        parents = {
            parent_of(r.key) or r.key for r in records if r.order.get("purpose") == "bracket"
        }
        if not parents:
            return ()
        services = self._services
        legs = {d.key: LegSeen(d.key, d.status, d.open_at_broker, d.filled) for d in decisions}
        for parent in parents:
            for key in (parent, *(leg_key(parent, leg) for leg in LEGS)):
                if key not in legs:
                    # Finished in the journal (not maybe-live): never working at IB.
                    known = await services.journal(functools.partial(services.store.intent, key))
                    if known is not None:
                        legs[key] = LegSeen(key, known.status, False, known.filled)
        plans = plan_brackets(legs[k] for k in legs if (parent_of(k) or k) in parents)
        for plan in plans:
            for key in plan.cancel:
                trade = open_by_ref.get(key)
                if trade is not None:
                    await take_token(self.bucket, services)
                    session.broker.cancel_order(trade.order)
            log.warning(
                "bracket_reconciled strategy=%s parent=%s cancel=%s",
                self.name,
                plan.parent,
                ",".join(plan.cancel) or "-",
            )
            if plan.alert:
                services.alert(
                    f"strategy:{self.name}:bracket:{plan.parent}",
                    plan.severity,
                    f"strategy {self.name}: bracket {plan.parent} was not whole at IB",
                    plan.alert,
                )
        return plans
