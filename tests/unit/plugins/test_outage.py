"""The host's reaction to a closed order gate, and where a strategy starts: the whole table."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from gateway.outage import Gate, OutageKind
from plugins.config import SafeStateAction, SafeStateConfig
from plugins.outage import (
    GatewayReadiness,
    Reaction,
    Step,
    describe,
    gate_of_ready,
    react,
    start_choice,
)

GRACE = timedelta(seconds=5)
BOUND = timedelta(minutes=2)
SHORT_BOUND = timedelta(seconds=2)  # a planned outage expected to be shorter than the grace
S = timedelta(seconds=1)
MS = timedelta(milliseconds=1)

PLANNED = (OutageKind.PLANNED_RESTART, OutageKind.RESET_WINDOW)
UNPLANNED = (OutageKind.LOST, OutageKind.STALLED)

# One row per (kinds, bound, elapsed): the step, whose action runs ("disconnect" for
# on_disconnect, "shutdown" for on_shutdown), whether it fails over, and when to look again.
ROWS: list[
    tuple[
        tuple[OutageKind, ...],
        timedelta | None,
        timedelta,
        Step,
        str | None,
        bool,
        timedelta | None,
    ]
] = [
    # Planned, with the lifecycle's bound: hold until the bound, whatever the grace.
    (PLANNED, BOUND, 0 * S, Step.HOLD, None, False, BOUND),
    (PLANNED, BOUND, GRACE - MS, Step.HOLD, None, False, BOUND - GRACE + MS),
    (PLANNED, BOUND, GRACE, Step.HOLD, None, False, BOUND - GRACE),
    (PLANNED, BOUND, 60 * S, Step.HOLD, None, False, BOUND - 60 * S),
    (PLANNED, BOUND, BOUND - MS, Step.HOLD, None, False, MS),
    # Outlasted its bound: a lost gateway, already past its grace.
    (PLANNED, BOUND, BOUND, Step.SAFE_STATE, "disconnect", True, None),
    (PLANNED, BOUND, 3600 * S, Step.SAFE_STATE, "disconnect", True, None),
    # Planned with no bound: only a new gate (open, or another kind) ends the hold.
    (PLANNED, None, 0 * S, Step.HOLD, None, False, None),
    (PLANNED, None, GRACE, Step.HOLD, None, False, None),
    (PLANNED, None, 3600 * S, Step.HOLD, None, False, None),
    # A bound shorter than the grace: past the bound it is lost, and the grace still applies.
    (PLANNED, SHORT_BOUND, 0 * S, Step.HOLD, None, False, SHORT_BOUND),
    (PLANNED, SHORT_BOUND, SHORT_BOUND, Step.WAIT, None, False, GRACE - SHORT_BOUND),
    (PLANNED, SHORT_BOUND, GRACE - MS, Step.WAIT, None, False, MS),
    (PLANNED, SHORT_BOUND, GRACE, Step.SAFE_STATE, "disconnect", True, None),
    # Unplanned: wait out the grace, then safe state and failover; a bound changes nothing.
    *[
        (UNPLANNED, bound, elapsed, step, action, fail_over, recheck)
        for bound in (None, BOUND)
        for elapsed, step, action, fail_over, recheck in [
            (0 * S, Step.WAIT, None, False, GRACE),
            (GRACE - MS, Step.WAIT, None, False, MS),
            (GRACE, Step.SAFE_STATE, "disconnect", True, None),
            (BOUND, Step.SAFE_STATE, "disconnect", True, None),
            (3600 * S, Step.SAFE_STATE, "disconnect", True, None),
        ]
    ],
    # Shutdown: the shutdown policy at once, nowhere to fail over to.
    *[
        ((OutageKind.SHUTDOWN,), bound, elapsed, Step.SAFE_STATE, "shutdown", False, None)
        for bound in (None, BOUND)
        for elapsed in (0 * S, GRACE - MS, GRACE, BOUND, 3600 * S)
    ],
]

POLICIES = [
    SafeStateConfig(on_disconnect=on_disconnect, on_shutdown=on_shutdown, grace=GRACE)
    for on_disconnect, on_shutdown in itertools.product(SafeStateAction, SafeStateAction)
]


def _cases() -> list[tuple[OutageKind, SafeStateConfig, timedelta, timedelta | None, Reaction]]:
    cases = []
    for kinds, bound, elapsed, step, source, fail_over, recheck in ROWS:
        for kind, policy in itertools.product(kinds, POLICIES):
            action = {
                None: None,
                "disconnect": policy.on_disconnect,
                "shutdown": policy.on_shutdown,
            }[source]
            expected = Reaction(step=step, action=action, fail_over=fail_over, recheck_in=recheck)
            cases.append((kind, policy, elapsed, bound, expected))
    return cases


@pytest.mark.parametrize(("kind", "policy", "elapsed", "bound", "expected"), _cases())
def test_reaction_table(
    kind: OutageKind,
    policy: SafeStateConfig,
    elapsed: timedelta,
    bound: timedelta | None,
    expected: Reaction,
) -> None:
    assert react(kind, policy, elapsed, bound) == expected


def test_the_table_covers_every_kind_with_and_without_a_bound() -> None:
    covered = {(kind, bound is None) for kinds, bound, *_ in ROWS for kind in kinds}
    assert covered == {(kind, no_bound) for kind in OutageKind for no_bound in (True, False)}


def test_a_planned_outage_never_runs_safe_state_or_fails_over_within_its_bound() -> None:
    policy = SafeStateConfig(grace=timedelta(0))  # even with no grace at all
    for kind in PLANNED:
        for ms in range(0, 120_000, 997):
            reaction = react(kind, policy, timedelta(milliseconds=ms), BOUND)
            assert (reaction.step, reaction.action, reaction.fail_over) == (Step.HOLD, None, False)


def test_waiting_out_the_recheck_gives_the_next_reaction() -> None:
    # The host's timer sleeps recheck_in and asks again: that lands on the next row.
    policy = SafeStateConfig(grace=GRACE)
    elapsed = timedelta(0)
    steps = []
    for _ in range(5):
        reaction = react(OutageKind.PLANNED_RESTART, policy, elapsed, SHORT_BOUND)
        steps.append(reaction.step)
        if reaction.recheck_in is None:
            break
        elapsed += reaction.recheck_in
    assert steps == [Step.HOLD, Step.WAIT, Step.SAFE_STATE]
    assert elapsed == GRACE


def test_a_grace_of_zero_safe_states_a_lost_gateway_at_once() -> None:
    reaction = react(OutageKind.LOST, SafeStateConfig(grace=timedelta(0)), timedelta(0), None)
    assert reaction.step is Step.SAFE_STATE and reaction.fail_over


def test_safe_state_defaults_are_cancel_on_disconnect_and_on_shutdown() -> None:
    policy = SafeStateConfig()
    assert react(OutageKind.SHUTDOWN, policy, timedelta(0), None).action is SafeStateAction.CANCEL
    assert react(OutageKind.LOST, policy, policy.grace, None).action is SafeStateAction.CANCEL


@pytest.mark.parametrize(
    ("elapsed", "bound", "message"),
    [
        (timedelta(seconds=-1), None, "elapsed time must not be negative"),
        (timedelta(0), timedelta(seconds=-1), "bound must not be negative"),
    ],
)
def test_a_negative_time_is_refused_with_a_clear_error(
    elapsed: timedelta, bound: timedelta | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        react(OutageKind.PLANNED_RESTART, SafeStateConfig(), elapsed, bound)


def test_every_kind_has_a_phrase() -> None:
    assert describe(OutageKind.RESET_WINDOW) == "IB reset window"
    assert all(describe(kind) for kind in OutageKind)


def test_a_bare_ready_flag_is_open_or_lost_never_planned() -> None:
    assert gate_of_ready(True) == Gate(open=True)
    assert gate_of_ready(False, "api disconnected") == Gate(
        open=False, kind=OutageKind.LOST, reason="api disconnected"
    )


# -- where a strategy starts -----------------------------------------------------------------

PATIENCE = timedelta(seconds=10)


def _gw(name: str, open_: bool | None, seconds: float) -> GatewayReadiness:
    return GatewayReadiness(name=name, open=open_, for_=timedelta(seconds=seconds))


@pytest.mark.parametrize(
    ("gateways", "try_now", "recheck"),
    [
        # The primary is up: only the primary, however long the others have been up.
        ([_gw("a", True, 0), _gw("b", True, 3600)], ("a",), None),
        # Both came up in the same second, the failover one first: wait for the primary.
        ([_gw("a", False, 30), _gw("b", True, 0.4)], (), PATIENCE - timedelta(seconds=0.4)),
        ([_gw("a", True, 0), _gw("b", True, 0.4)], ("a",), None),
        # The primary stays down: the failover gateway once it has been up for the patience.
        ([_gw("a", False, 30), _gw("b", True, 10)], ("b",), None),
        ([_gw("a", False, 30), _gw("b", False, 30)], (), None),
        # Nobody gates them (no supervisor): the primary, the others after the patience.
        ([_gw("a", None, 0), _gw("b", None, 0)], ("a",), PATIENCE),
        ([_gw("a", None, 10), _gw("b", None, 10)], ("a", "b"), None),
        # Several failover gateways: in their order, each after its own patience.
        (
            [_gw("a", False, 0), _gw("b", True, 3), _gw("c", True, 12), _gw("d", True, 11)],
            ("c", "d"),
            timedelta(seconds=7),
        ),
        ([_gw("a", True, 1)], ("a",), None),
        ([_gw("a", False, 1)], (), None),
    ],
)
def test_start_choice_table(
    gateways: list[GatewayReadiness], try_now: tuple[str, ...], recheck: timedelta | None
) -> None:
    choice = start_choice(gateways, patience=PATIENCE)
    assert (choice.try_now, choice.recheck_in) == (try_now, recheck)


def test_start_choice_needs_a_gateway() -> None:
    with pytest.raises(ValueError, match="at least one gateway"):
        start_choice([], patience=PATIENCE)
