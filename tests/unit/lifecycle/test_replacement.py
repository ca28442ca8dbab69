"""A rollout replacing the container with a new spec: planned, no page, the rollout decides."""

from __future__ import annotations

from datetime import timedelta

from supervisor import lifecycle as lc
from tests.unit.lifecycle.driver import POLICY, Driver, alerts, of_type


def test_replace_of_a_ready_gateway_is_a_planned_outage_without_effects(ready: Driver) -> None:
    effects = ready.send(lc.ReplaceStarted())
    assert ready.state is lc.State.RESTARTING
    assert ready.status.restart_kind is lc.RestartKind.REPLACE
    # The orchestrator replaces the container itself: nothing to execute, nobody paged.
    assert not of_type(effects, lc.StartContainer)
    assert not of_type(effects, lc.HardRestart)
    assert not alerts(effects)
    (gate,) = of_type(effects, lc.GateOrders)
    assert isinstance(gate, lc.GateOrders)
    assert gate.gate.kind is lc.OutageKind.PLANNED_RESTART


def test_old_container_stop_and_removal_during_replace_page_nobody(ready: Driver) -> None:
    ready.send(lc.ReplaceStarted())
    effects = ready.send(lc.ContainerDied(exit_code=0), lc.ContainerDestroyed())
    assert effects == []
    assert ready.state is lc.State.RESTARTING


def test_new_container_start_keeps_the_replace_until_it_finishes(ready: Driver) -> None:
    ready.send(lc.ReplaceStarted(), lc.ContainerDied(exit_code=0), lc.ContainerDestroyed())
    effects = ready.send(lc.ContainerStarted())
    assert ready.state is lc.State.STARTING
    assert ready.status.restart_kind is lc.RestartKind.REPLACE
    assert not of_type(effects, lc.TriggerSafeState)
    # The new container dying (a broken image) is the rollout's to roll back: no restart here.
    assert ready.send(lc.ContainerDied(exit_code=3)) == []
    assert ready.state is lc.State.STARTING


def test_replace_finished_returns_deaths_to_the_lifecycle(ready: Driver) -> None:
    ready.send(lc.ReplaceStarted(), lc.ContainerStarted())
    ready.send(lc.ReplaceFinished(ok=True))
    assert ready.status.restart_kind is None
    effects = ready.send(lc.ContainerDied(exit_code=1))
    assert alerts(effects)
    assert ready.state is lc.State.RESTARTING


def test_replace_is_not_escalated_by_the_restart_deadline(ready: Driver) -> None:
    ready.send(lc.ReplaceStarted())
    ready.advance(seconds=POLICY.restart_deadline.total_seconds() + 1)
    effects = ready.send(lc.Tick())
    assert not of_type(effects, lc.HardRestart)
    assert ready.status.restart_kind is lc.RestartKind.REPLACE


def test_replace_of_a_stopped_gateway_is_ignored(ready: Driver) -> None:
    ready.send(lc.OperatorStop())
    assert ready.send(lc.ReplaceStarted()) == []
    assert ready.state is lc.State.STOPPED


def test_replaced_gateway_becomes_ready_after_its_login(ready: Driver) -> None:
    ready.send(lc.ReplaceStarted(), lc.ContainerStarted(), lc.LoggedIn())
    ready.send(lc.ApiConnected(), lc.HeartbeatOk(rtt=timedelta(milliseconds=5)))
    assert ready.state is lc.State.API_READY
