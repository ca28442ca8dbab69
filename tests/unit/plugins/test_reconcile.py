"""Reconciliation matching: intents against IB's open and completed orders and executions."""

from __future__ import annotations

from plugins.intents import IntentState
from plugins.reconcile import (
    BrokerExecution,
    BrokerOrderSeen,
    DecisionKind,
    IntentSeen,
    reconcile,
)

K1 = "mr-0000000000000001"
K2 = "mr-0000000000000002"


def seen(
    ref: str, perm: int, status: str = "Submitted", *, is_open: bool = True, filled: float = 0
) -> BrokerOrderSeen:
    return BrokerOrderSeen(
        order_ref=ref,
        perm_id=perm,
        order_id=perm,
        client_id=1,
        status=status,
        filled=filled,
        is_open=is_open,
    )


def test_a_sent_intent_found_open_is_acked_with_its_perm_id() -> None:
    result = reconcile("mr", [IntentSeen(K1, IntentState.SENT, 1)], [seen(K1, 77)], [])
    (d,) = result.decisions
    assert (d.kind, d.status, d.perm_id, d.open_at_broker) == (
        DecisionKind.UPDATE,
        IntentState.ACKED,
        77,
        True,
    )
    assert result.open_keys == (K1,)


def test_a_completed_order_resolves_its_intent_terminally() -> None:
    result = reconcile(
        "mr",
        [IntentSeen(K1, IntentState.ACKED, 2, perm_id=5)],
        [seen(K1, 5, "Filled", is_open=False, filled=2)],
        [],
    )
    (d,) = result.decisions
    assert (d.status, d.filled, d.open_at_broker) == (IntentState.FILLED, 2, False)


def test_matching_falls_back_to_perm_id_when_the_order_ref_is_missing() -> None:
    result = reconcile(
        "mr",
        [IntentSeen(K1, IntentState.ACKED, 1, perm_id=9)],
        [seen("", 9, "Cancelled", is_open=False)],
        [],
    )
    assert result.decisions[0].status is IntentState.CANCELLED


def test_an_intent_ib_never_saw_is_unknown_and_never_resent() -> None:
    for status in (
        IntentState.PENDING_SEND,
        IntentState.SENT,
        IntentState.ACKED,
        IntentState.UNKNOWN,
    ):
        result = reconcile("mr", [IntentSeen(K1, status, 1)], [], [])
        assert result.decisions[0].kind is DecisionKind.UNKNOWN
        assert result.unknown == (K1,)


def test_executions_prove_a_fill_that_left_the_completed_list() -> None:
    ex = BrokerExecution(exec_id="e1", order_ref=K1, perm_id=4, shares=3, cum_qty=3)
    result = reconcile("mr", [IntentSeen(K1, IntentState.SENT, 3)], [], [ex])
    assert (result.decisions[0].status, result.decisions[0].filled) == (IntentState.FILLED, 3)


def test_a_partial_execution_alone_leaves_the_intent_unknown_with_its_fill() -> None:
    ex = BrokerExecution(exec_id="e1", order_ref=K1, perm_id=4, shares=1, cum_qty=1)
    d = reconcile("mr", [IntentSeen(K1, IntentState.SENT, 3)], [], [ex]).decisions[0]
    assert (d.kind, d.filled) == (DecisionKind.UNKNOWN, 1)


def test_an_order_reported_open_and_completed_takes_the_completed_report() -> None:
    result = reconcile(
        "mr",
        [IntentSeen(K1, IntentState.ACKED, 1, perm_id=5)],
        [seen(K1, 5), seen(K1, 5, "Cancelled", is_open=False)],
        [],
    )
    assert result.decisions[0].status is IntentState.CANCELLED
    assert result.duplicates == ()


def test_orders_with_our_prefix_but_no_intent_are_orphans_and_two_perm_ids_are_duplicates() -> None:
    orders = [seen(K1, 5), seen(K1, 6), seen(K2, 7), seen("other-0000000000000001", 8)]
    result = reconcile("mr", [IntentSeen(K1, IntentState.SENT, 1)], orders, [])
    assert [o.order_ref for o in result.orphans] == [K2]
    assert result.duplicates == (K1,)


def test_nothing_changes_when_the_journal_already_agrees() -> None:
    d = reconcile(
        "mr", [IntentSeen(K1, IntentState.ACKED, 1, perm_id=5)], [seen(K1, 5)], []
    ).decisions[0]
    assert d.kind is DecisionKind.UNCHANGED
