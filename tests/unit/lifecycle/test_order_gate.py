"""The order gate strategies hear: the outage kind and its bound."""

from __future__ import annotations

from datetime import timedelta

from supervisor import lifecycle as lc
from tests.unit.lifecycle.driver import (
    POLICY,
    Driver,
    gate_kind,
)


def test_gate_kind_is_stalled_for_a_stall_and_lost_for_a_dead_container(ready: Driver) -> None:
    assert gate_kind(ready.send(lc.HeartbeatMissed())) is lc.OutageKind.STALLED
    assert gate_kind(ready.send(lc.ContainerDied(exit_code=137))) is lc.OutageKind.LOST


def test_gate_kind_is_lost_for_an_ib_link_loss_outside_a_window(ready: Driver) -> None:
    assert gate_kind(ready.send(lc.IbLinkLost())) is lc.OutageKind.LOST


def test_gate_in_a_reset_window_is_bounded_by_the_window_and_its_grace(ready: Driver) -> None:
    until = ready.now + timedelta(minutes=30)
    ready.send(lc.ResetWindowEntered(name="na-daily", until=until))
    effects = ready.send(lc.IbLinkLost())
    (gate,) = [e.gate for e in effects if isinstance(e, lc.GateOrders)]
    assert gate.kind is lc.OutageKind.RESET_WINDOW
    assert gate.bound == timedelta(minutes=30) + POLICY.ready_grace_after_window


def test_operator_restart_of_a_session_is_a_planned_restart_with_a_bound(ready: Driver) -> None:
    effects = ready.send(lc.OperatorRestart())
    (gate,) = [e.gate for e in effects if isinstance(e, lc.GateOrders)]
    assert gate.kind is lc.OutageKind.PLANNED_RESTART
    assert gate.bound == POLICY.restart_command_delay + POLICY.token_relaunch_bound


def test_supervisor_stopping_closes_the_gate_as_shutdown_and_keeps_the_status(
    ready: Driver,
) -> None:
    before = ready.status
    effects = ready.send(lc.SupervisorStopping())
    assert gate_kind(effects) is lc.OutageKind.SHUTDOWN
    assert ready.status == before
