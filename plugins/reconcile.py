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

from plugins.intents import IntentState, belongs_to, leg_key, parent_of

__all__ = [
    "BracketPlan",
    "BrokerExecution",
    "BrokerOrderSeen",
    "Decision",
    "DecisionKind",
    "IntentSeen",
    "LegSeen",
    "Reconciliation",
    "plan_brackets",
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
    #: What was decided for each bracket judged as a group (:func:`plan_brackets`).
    brackets: tuple[BracketPlan, ...] = ()

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


# -- brackets ----------------------------------------------------------------------------------
#
# A bracket is three intents: the entry ``P`` and its exits ``P.tp`` and ``P.sl`` (one cancels
# the other at IB). After a reconnect or failover each group is judged as a whole. The rule
# behind every case: an exit leg is only safe while the position it closes exists, because an
# exit without its position is an entry the other way (a stop-loss SELL with nothing bought
# opens a short). So exits are cancelled when the entry never filled and cannot fill any more,
# an entry is cancelled when it would fill without both exits, and an exit is kept when it
# protects a position, even alone. Nothing here re-sends a leg.


@dataclass(frozen=True, slots=True)
class LegSeen:
    """One leg after reconciliation: ``working`` when it is open at IB now."""

    key: str
    status: IntentState
    working: bool
    filled: float = 0.0


@dataclass(frozen=True, slots=True)
class BracketPlan:
    """What to do with one bracket: cancel ``cancel`` (working legs); tell a human ``alert``."""

    parent: str
    cancel: tuple[str, ...]
    alert: str = ""
    severity: str = "warning"


def _group_of(legs: Iterable[LegSeen]) -> dict[str, dict[str, LegSeen]]:
    groups: dict[str, dict[str, LegSeen]] = {}
    for leg in legs:
        parent = parent_of(leg.key)
        groups.setdefault(parent or leg.key, {})[leg.key] = leg
    # Only groups with an exit are brackets; a plain order is its own group of one.
    return {p: g for p, g in groups.items() if any(parent_of(k) for k in g)}


def _plan_one(parent: str, group: dict[str, LegSeen]) -> BracketPlan | None:
    missing = LegSeen(key="", status=IntentState.UNKNOWN, working=False)
    entry = group.get(parent, missing)
    tp = group.get(leg_key(parent, "tp"), missing)
    sl = group.get(leg_key(parent, "sl"), missing)
    exits = [x for x in (tp, sl) if x is not missing]
    working_exits = tuple(x.key for x in exits if x.working)
    if not entry.working and not working_exits:
        return None  # nothing of it works at IB: nothing to cancel
    position = entry.filled > 0 or entry.status is IntentState.FILLED
    exit_filled = [x for x in exits if x.status is IntentState.FILLED or x.filled > 0]
    if exit_filled and working_exits:
        # One exit filled: the position is closed, the other would open it again.
        return BracketPlan(
            parent,
            cancel=(*((parent,) if entry.working else ()), *working_exits),
            alert=f"bracket {parent}: {exit_filled[0].key} filled; its sibling was still "
            "working and is cancelled",
        )
    both_exits = tp.working and sl.working
    if entry.working and not both_exits:
        # The entry would fill without both exits: stop it; exits stay only for a position.
        cancel = (parent,) if position else (parent, *working_exits)
        return BracketPlan(
            parent,
            cancel=cancel,
            alert=f"bracket {parent}: an exit is missing at IB while the entry works; "
            + (
                "the entry is cancelled and the working exit kept for the filled part"
                if position
                else "the whole bracket is cancelled"
            ),
            severity="critical" if position else "warning",
        )
    if entry.working:
        return None  # entry and both exits work: the bracket is whole
    if not position:
        # The entry is gone unfilled: its exits are orphans that would open a position.
        return BracketPlan(
            parent,
            cancel=working_exits,
            alert=f"bracket {parent}: the entry is gone at IB ({entry.status.value}) with no "
            f"fill known; its exits {', '.join(working_exits)} are cancelled. If the entry did "
            "fill outside what ibfleet saw, that position is now unprotected: check TWS",
            severity="critical",
        )
    if not both_exits:
        lost = [leg_key(parent, leg) for x, leg in ((tp, "tp"), (sl, "sl")) if not x.working]
        return BracketPlan(
            parent,
            cancel=(),
            alert=f"bracket {parent}: the position is protected by "
            f"{', '.join(working_exits)} only; {', '.join(lost)} is not at IB",
            severity="critical",
        )
    return None


def plan_brackets(legs: Iterable[LegSeen]) -> tuple[BracketPlan, ...]:
    """Judge every bracket among ``legs`` as a group; plain orders are ignored.

    ``legs`` holds every leg the journal knows of each bracket (a leg absent counts as not at
    IB). Cases: whole (entry and both exits work, or the entry filled and both exits work):
    nothing. An exit filled while its sibling works: cancel the sibling (and the entry if it
    still works). The entry works but an exit is missing: cancel the entry, and the working
    exit too unless part of the entry filled. The entry is gone unfilled: cancel its exits. The
    entry filled and one exit is missing: keep the other, alert.
    """
    plans = (_plan_one(parent, group) for parent, group in _group_of(legs).items())
    return tuple(p for p in plans if p is not None)
