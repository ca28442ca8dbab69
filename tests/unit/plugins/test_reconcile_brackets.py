"""A bracket judged as a group after a reconnect: the pure decisions of plugins.reconcile."""

from __future__ import annotations

import pytest

from plugins.intents import IntentState, leg_key, leg_of, parent_of, strategy_of
from plugins.reconcile import LegSeen, plan_brackets

P = "s1-01KJ0000000000AB"
TP, SL = leg_key(P, "tp"), leg_key(P, "sl")
ACK, FILLED, GONE, UNK = (
    IntentState.ACKED,
    IntentState.FILLED,
    IntentState.CANCELLED,
    IntentState.UNKNOWN,
)


def working(key: str, filled: float = 0.0) -> LegSeen:
    return LegSeen(key, ACK, True, filled)


def done(key: str, status: IntentState, filled: float = 0.0) -> LegSeen:
    return LegSeen(key, status, False, filled)


def test_leg_keys_derive_from_the_entry_and_belong_to_its_strategy() -> None:
    assert (f"{P}.tp", f"{P}.sl") == (TP, SL)
    assert parent_of(TP) == parent_of(SL) == P and parent_of(P) is None
    assert (leg_of(TP), leg_of(SL), leg_of(P)) == ("tp", "sl", None)
    assert strategy_of(TP) == strategy_of(P) == "s1"
    assert strategy_of("s1-01KJ0000000000AB.xx") is None
    with pytest.raises(ValueError, match="leg 'xx'"):
        leg_key(P, "xx")


@pytest.mark.parametrize(
    "legs",
    [
        pytest.param([working(P), working(TP), working(SL)], id="all-working"),
        pytest.param([done(P, FILLED, 10), working(TP), working(SL)], id="entry-filled"),
        pytest.param([done(P, GONE), done(TP, GONE), done(SL, GONE)], id="all-cancelled"),
        pytest.param([done(P, FILLED, 10), done(TP, FILLED), done(SL, GONE)], id="tp-took-it"),
        pytest.param([done(P, UNK), done(TP, UNK), done(SL, UNK)], id="none-reached-ib"),
    ],
)
def test_a_whole_or_finished_bracket_needs_nothing(legs: list[LegSeen]) -> None:
    assert plan_brackets(legs) == ()


def test_exits_working_without_an_unfilled_entry_are_cancelled_with_a_page() -> None:
    [plan] = plan_brackets([done(P, GONE), working(TP), working(SL)])
    assert plan.cancel == (TP, SL) and plan.severity == "critical"
    assert "unprotected" in plan.alert  # in case the entry filled where ibfleet did not see


def test_an_entry_unknown_at_ib_leaves_no_exit_working() -> None:
    [plan] = plan_brackets([done(P, UNK), working(TP), working(SL)])
    assert plan.cancel == (TP, SL)


def test_a_working_entry_missing_an_exit_is_cancelled_with_its_other_exit() -> None:
    [plan] = plan_brackets([working(P), working(TP), done(SL, UNK)])
    assert plan.cancel == (P, TP) and plan.severity == "warning"


def test_a_working_entry_whose_exits_never_reached_ib_is_cancelled() -> None:
    [plan] = plan_brackets([working(P), done(TP, UNK), done(SL, UNK)])
    assert plan.cancel == (P,)


def test_a_partly_filled_entry_missing_an_exit_stops_but_keeps_the_exit() -> None:
    [plan] = plan_brackets([working(P, filled=3), done(TP, UNK), working(SL)])
    assert plan.cancel == (P,) and plan.severity == "critical"


def test_a_filled_entry_keeps_its_one_working_exit_and_pages() -> None:
    [plan] = plan_brackets([done(P, FILLED, 10), done(TP, UNK), working(SL)])
    assert plan.cancel == () and plan.severity == "critical"
    assert TP in plan.alert and SL in plan.alert


def test_an_exit_filled_with_its_sibling_still_working_cancels_the_sibling() -> None:
    [plan] = plan_brackets([done(P, FILLED, 10), done(SL, FILLED, 10), working(TP)])
    assert plan.cancel == (TP,)


def test_a_missing_entry_record_counts_as_not_at_ib() -> None:
    [plan] = plan_brackets([working(TP), working(SL)])
    assert plan.cancel == (TP, SL)


def test_plain_orders_are_not_brackets_and_groups_are_judged_apart() -> None:
    other = "s1-01KJ0000000000CD"
    legs = [working(other), done(P, GONE), working(TP), working(SL)]
    [plan] = plan_brackets(legs)
    assert plan.parent == P
