"""Reconciliation: match the journal's intents to what a new session sees at IB.

Pure: the caller fetches open orders, completed orders and executions (reqAllOpenOrders,
reqCompletedOrders, reqExecutions) and the intents that may be live, and gets decisions back.
Nothing here ever decides to send an order: an intent that may have reached IB and is not
found is marked UNKNOWN and reported, never re-sent.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from plugins.intents import IntentState, belongs_to

__all__ = [
    "BrokerExecution",
    "BrokerOrderSeen",
    "Decision",
    "DecisionKind",
    "IntentSeen",
    "Reconciliation",
    "reconcile",
]


@dataclass(frozen=True, slots=True)
class IntentSeen:
    """An intent as the journal holds it (only the fields matching needs)."""

    key: str
    status: IntentState
    quantity: float
    order_id: int | None = None
    perm_id: int | None = None
    filled: float = 0.0


@dataclass(frozen=True, slots=True)
class BrokerOrderSeen:
    """An order a session saw at IB: open (reqAllOpenOrders) or completed (reqCompletedOrders)."""

    order_ref: str
    perm_id: int
    order_id: int
    client_id: int
    status: str
    filled: float
    is_open: bool


@dataclass(frozen=True, slots=True)
class BrokerExecution:
    """One execution (reqExecutions): ``cum_qty`` is the order's cumulative fill after it."""

    exec_id: str
    order_ref: str
    perm_id: int
    shares: float
    cum_qty: float


class DecisionKind(enum.Enum):
    """What to do with one intent."""

    UNCHANGED = "unchanged"  # the journal already says what IB says
    UPDATE = "update"  # IB knows the order: take its status, permId and fill
    UNKNOWN = "unknown"  # may have reached IB, not found: report, never re-send


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one intent."""

    key: str
    kind: DecisionKind
    status: IntentState
    perm_id: int | None
    filled: float
    open_at_broker: bool
    order_id: int | None = None
    client_id: int | None = None


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """Every decision, plus what IB holds that the journal does not explain."""

    decisions: tuple[Decision, ...]
    #: Orders at IB carrying this strategy's key prefix but no known intent (report them).
    orphans: tuple[BrokerOrderSeen, ...] = ()
    #: orderRefs IB holds more than once: a duplicate order (must never happen; alert).
    duplicates: tuple[str, ...] = ()
    unknown: tuple[str, ...] = field(default=())

    @property
    def open_keys(self) -> tuple[str, ...]:
        """Intents still working at IB after reconciliation."""
        return tuple(d.key for d in self.decisions if d.open_at_broker)


def _index(
    orders: Iterable[BrokerOrderSeen],
) -> tuple[dict[str, list[BrokerOrderSeen]], dict[int, BrokerOrderSeen]]:
    by_ref: dict[str, list[BrokerOrderSeen]] = {}
    by_perm: dict[int, BrokerOrderSeen] = {}
    for order in orders:
        if order.perm_id and order.perm_id in by_perm:
            # The same order reported open and completed (a race at the broker): the
            # completed report is the later truth.
            if not order.is_open:
                by_perm[order.perm_id] = order
            continue
        if order.perm_id:
            by_perm[order.perm_id] = order
    for order in by_perm.values():
        if order.order_ref:
            by_ref.setdefault(order.order_ref, []).append(order)
    for order in orders:
        if not order.perm_id and order.order_ref:
            by_ref.setdefault(order.order_ref, []).append(order)
    return by_ref, by_perm


def reconcile(
    strategy: str,
    intents: Sequence[IntentSeen],
    orders: Sequence[BrokerOrderSeen],
    executions: Sequence[BrokerExecution],
) -> Reconciliation:
    """Decide, for every intent that may be live, what IB's view says about it."""
    by_ref, by_perm = _index(orders)
    fills_by_ref: dict[str, float] = {}
    fills_by_perm: dict[int, float] = {}
    for ex in executions:
        if ex.order_ref:
            fills_by_ref[ex.order_ref] = max(fills_by_ref.get(ex.order_ref, 0.0), ex.cum_qty)
        if ex.perm_id:
            fills_by_perm[ex.perm_id] = max(fills_by_perm.get(ex.perm_id, 0.0), ex.cum_qty)
    known = {i.key for i in intents}
    decisions: list[Decision] = []
    for intent in intents:
        matches = by_ref.get(intent.key, [])
        seen = matches[0] if matches else None
        if seen is None and intent.perm_id is not None:
            seen = by_perm.get(intent.perm_id)
        executed = max(
            fills_by_ref.get(intent.key, 0.0),
            fills_by_perm.get(intent.perm_id, 0.0) if intent.perm_id is not None else 0.0,
        )
        if seen is not None:
            status = IntentState.from_ib(seen.status)
            if seen.is_open and status.terminal:
                status = IntentState.ACKED
            if not seen.is_open and not status.terminal:
                # Completed orders are done by definition; an odd word means cancelled.
                status = IntentState.CANCELLED
            filled = max(seen.filled, executed, intent.filled)
            decision = Decision(
                key=intent.key,
                kind=DecisionKind.UPDATE,
                status=status,
                perm_id=seen.perm_id or intent.perm_id,
                filled=filled,
                open_at_broker=seen.is_open,
                order_id=seen.order_id,
                client_id=seen.client_id,
            )
            if (status, decision.perm_id, filled) == (intent.status, intent.perm_id, intent.filled):
                decision = Decision(
                    key=intent.key,
                    kind=DecisionKind.UNCHANGED,
                    status=status,
                    perm_id=decision.perm_id,
                    filled=filled,
                    open_at_broker=seen.is_open,
                    order_id=seen.order_id,
                    client_id=seen.client_id,
                )
        elif executed > 0 and executed >= abs(intent.quantity):
            # Filled and already gone from today's completed list: the executions prove it.
            decision = Decision(
                key=intent.key,
                kind=DecisionKind.UPDATE,
                status=IntentState.FILLED,
                perm_id=intent.perm_id,
                filled=executed,
                open_at_broker=False,
            )
        else:
            decision = Decision(
                key=intent.key,
                kind=DecisionKind.UNKNOWN,
                status=IntentState.UNKNOWN,
                perm_id=intent.perm_id,
                filled=max(executed, intent.filled),
                open_at_broker=False,
            )
        decisions.append(decision)
    orphans = tuple(
        o
        for o in by_perm.values()
        if o.order_ref and o.order_ref not in known and belongs_to(o.order_ref, strategy)
    )
    duplicates = tuple(
        sorted(ref for ref, found in by_ref.items() if len(found) > 1 and belongs_to(ref, strategy))
    )
    unknown = tuple(d.key for d in decisions if d.kind is DecisionKind.UNKNOWN)
    return Reconciliation(
        decisions=tuple(decisions), orphans=orphans, duplicates=duplicates, unknown=unknown
    )
