"""The lifecycle's state x event table: every cell is handled or explicitly ignored."""

from __future__ import annotations

import typing
from datetime import timedelta

import pytest

from supervisor import lifecycle as lc
from tests.unit.lifecycle.driver import ONE_OF_EACH, POLICY, T0, status_in


def test_every_event_type_has_a_row() -> None:
    assert set(lc.TABLE) == set(typing.get_args(lc.Event))
    assert set(lc.EVENT_TYPES) == set(lc.TABLE)


@pytest.mark.parametrize("kind", list(lc.TABLE), ids=lambda k: k.__name__)
def test_every_cell_is_handled_or_ignored_with_a_reason(kind: type) -> None:
    row = lc.TABLE[kind]
    assert row.ignored.strip(), f"{kind.__name__}: the ignored cells need a reason"
    assert row.states <= lc.ALL_STATES
    if row.handler is None:
        assert row.states == frozenset()
    else:
        assert row.states, f"{kind.__name__}: a handler that acts nowhere"


@pytest.mark.parametrize("state", list(lc.State), ids=lambda s: s.name)
def test_ignored_cells_change_nothing_and_emit_nothing(state: lc.State) -> None:
    status = status_in(state)
    for event in ONE_OF_EACH:
        if lc.TABLE[type(event)].handles(state):
            continue
        for later in (timedelta(seconds=1), timedelta(hours=2)):
            assert lc.transition(status, event, now=T0 + later, policy=POLICY) == (status, [])


def test_only_operators_window_logins_and_shutdown_act_in_stopped_and_fatal() -> None:
    acting = {
        kind
        for kind, row in lc.TABLE.items()
        if row.handles(lc.State.STOPPED) or row.handles(lc.State.FATAL)
    }
    assert acting == {
        lc.OperatorStart,  # STOPPED only: FATAL needs a reset first
        lc.OperatorStop,
        lc.OperatorReset,
        lc.ResetWindowEntered,
        lc.ResetWindowLeft,
        lc.LoginAttempt,
        lc.SupervisorStopping,
    }


def test_the_rendered_matrix_has_a_line_per_event_and_a_column_per_state() -> None:
    lines = lc.render().splitlines()
    assert len(lines) == 1 + len(lc.TABLE)
    assert all(line.count(" x ") + line.count(" . ") == len(lc.State) for line in lines[1:])
    ticks = next(line for line in lines if line.startswith("Tick "))
    assert ticks.split()[-2:] == [".", "."]  # STOPPED and FATAL hold their deadlines
