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


def _replacing_new_container(ready: Driver, *, seconds: float = 600.0) -> None:
    until = ready.now + timedelta(seconds=seconds)
    ready.send(lc.ReplaceStarted(until=until), lc.ContainerDied(exit_code=0))
    ready.send(lc.ContainerDestroyed(), lc.ContainerStarted(), lc.LoginAttempt(1))


def test_failed_login_during_replace_neither_stops_nor_holds(ready: Driver) -> None:
    _replacing_new_container(ready)
    effects = ready.send(lc.LoginFailed("bad password"))
    # No BACKOFF: it would stop the new container and hold the gateway the rollback restores.
    assert ready.state is not lc.State.BACKOFF
    assert not of_type(effects, lc.StopContainer)
    assert not of_type(effects, lc.ScheduleBackoff)
    assert not alerts(effects)  # the rollout raises the one alert
    assert of_type(effects, lc.CountLogin)  # IB counts it all the same


def test_rolled_back_gateway_is_supervised_normally(ready: Driver) -> None:
    _replacing_new_container(ready)
    ready.send(lc.LoginFailed("bad password"))
    # The rollback starts the previous container, then the rollout says it is over.
    ready.send(lc.ContainerDestroyed(), lc.ContainerStarted(), lc.ReplaceFinished(ok=False))
    assert ready.state is lc.State.STARTING
    assert ready.status.replacing_until is None
    assert ready.status.restart_kind is None
    ready.send(lc.LoginAttempt(1), lc.LoggedIn(), lc.ApiConnected())
    ready.send(lc.HeartbeatOk(rtt=timedelta(milliseconds=5)))
    assert ready.state is lc.State.API_READY
    # Its deaths and failed logins are the lifecycle's again.
    assert alerts(ready.send(lc.ContainerDied(exit_code=1)))
    assert ready.state is lc.State.RESTARTING


def test_rollout_deadline_wins_over_the_login_deadline_during_replace(ready: Driver) -> None:
    # The lifecycle's login deadline passes before the rollout's: the lifecycle waits.
    _replacing_new_container(ready, seconds=POLICY.login_timeout.total_seconds() * 3)
    ready.advance(seconds=POLICY.login_timeout.total_seconds() * 2)
    effects = ready.send(lc.Tick())
    assert ready.state is lc.State.LOGGING_IN
    assert not of_type(effects, lc.StopContainer)
    assert not of_type(effects, lc.HardRestart)
    assert not alerts(effects)
    # The rollout rolled back: the restored container's login deadline counts from its start.
    ready.send(lc.ContainerStarted(), lc.ReplaceFinished(ok=False))
    ready.advance(seconds=POLICY.login_timeout.total_seconds() - 1)
    assert not of_type(ready.send(lc.Tick()), lc.StopContainer)
    ready.advance(seconds=2)
    assert of_type(ready.send(lc.Tick()), lc.StopContainer)  # ours again: BACKOFF
    assert ready.state is lc.State.BACKOFF


def test_replace_bound_returns_the_decision_when_finished_is_lost(ready: Driver) -> None:
    _replacing_new_container(ready, seconds=60)
    ready.advance(seconds=59)
    ready.send(lc.Tick())
    assert ready.state is lc.State.LOGGING_IN
    ready.advance(seconds=POLICY.login_timeout.total_seconds())
    ready.send(lc.Tick())
    assert ready.state is lc.State.BACKOFF  # the bound passed: the login deadline applies


def test_operator_stop_during_replace_ends_it(ready: Driver) -> None:
    _replacing_new_container(ready)
    ready.send(lc.OperatorStop())
    assert ready.state is lc.State.STOPPED
    assert ready.status.replacing_until is None
