"""What the transition function accepts: every state answers every event; bad input is refused."""

from __future__ import annotations

import typing
from datetime import datetime, timedelta

import pytest

from supervisor import lifecycle as lc
from tests.unit.lifecycle.driver import (
    ONE_OF_EACH,
    POLICY,
    T0,
    Driver,
    status_in,
)


def test_one_of_each_covers_every_event_type() -> None:
    assert {type(e) for e in ONE_OF_EACH} == set(typing.get_args(lc.Event))


@pytest.mark.parametrize("state", list(lc.State), ids=lambda s: s.name)
def test_every_state_answers_every_event(state: lc.State) -> None:
    status = status_in(state)
    for event in ONE_OF_EACH:
        for later in (timedelta(seconds=1), timedelta(hours=2)):
            new, effects = lc.transition(status, event, now=T0 + later, policy=POLICY)
            assert isinstance(new, lc.GatewayStatus)
            if new == status and not isinstance(event, lc.SupervisorStopping):
                assert effects == []


def test_naive_now_is_rejected_with_a_clear_error(d: Driver) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        lc.transition(d.status, lc.Tick(), now=datetime(2026, 1, 1), policy=POLICY)


def test_a_non_event_is_rejected(d: Driver) -> None:
    with pytest.raises(TypeError, match="not a lifecycle event"):
        lc.transition(d.status, "boom", now=T0, policy=POLICY)  # type: ignore[arg-type]


def test_policy_rejects_a_non_positive_deadline() -> None:
    with pytest.raises(ValueError, match="twofa_timeout"):
        lc.LifecyclePolicy(twofa_timeout=timedelta(0))
