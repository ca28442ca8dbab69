"""Operator commands: start, stop, restart and reset in each state."""

from __future__ import annotations

from datetime import timedelta

from supervisor import lifecycle as lc
from tests.unit.lifecycle.driver import (
    Driver,
    gate_kind,
    key,
    of_type,
    resolved,
)


def test_operator_start_from_absent_requests_container_and_enters_creating(d: Driver) -> None:
    effects = d.send(lc.OperatorStart())
    assert d.state is lc.State.CREATING
    assert effects == [lc.StartContainer()]


def test_operator_start_from_stopped_requests_container(ready: Driver) -> None:
    ready.send(lc.OperatorStop())
    effects = ready.send(lc.OperatorStart())
    assert ready.state is lc.State.CREATING
    assert effects == [lc.StartContainer()]


def test_operator_start_in_fatal_is_ignored_until_reset(ready: Driver) -> None:
    ready.send(lc.ApiDisconnected(), lc.LockedOut())
    assert ready.state is lc.State.FATAL
    before = ready.status
    assert ready.send(lc.OperatorStart()) == []
    assert ready.status == before


def test_operator_stop_of_ready_gateway_gates_orders_triggers_safe_state_and_stops(
    ready: Driver,
) -> None:
    effects = ready.send(lc.OperatorStop())
    assert ready.state is lc.State.STOPPED
    assert gate_kind(effects) is not None
    assert of_type(effects, lc.TriggerSafeState)
    assert lc.StopContainer() in effects


def test_operator_stop_resolves_every_open_alert(d: Driver) -> None:
    d.to_awaiting_2fa()
    effects = d.send(lc.OperatorStop())
    assert resolved(effects) == {key("2fa")}
    assert d.status.open_alerts == frozenset()


def test_operator_stop_of_a_fatal_gateway_goes_stopped(ready: Driver) -> None:
    ready.send(lc.ApiDisconnected(), lc.LockedOut())
    effects = ready.send(lc.OperatorStop())
    assert ready.state is lc.State.STOPPED
    assert key("fatal") in resolved(effects)
    assert lc.StopContainer() not in effects  # FATAL already stopped it


def test_operator_restart_of_ready_gateway_is_soft_planned_without_safe_state(
    ready: Driver,
) -> None:
    effects = ready.send(lc.OperatorRestart())
    assert ready.state is lc.State.RESTARTING
    assert lc.SoftRestart() in effects
    assert gate_kind(effects) is not None
    assert not of_type(effects, lc.TriggerSafeState)
    assert ready.status.restarts == ()  # planned restarts do not spend the retry budget


def test_operator_restart_while_logging_in_is_a_hard_restart(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1))
    effects = d.send(lc.OperatorRestart())
    assert d.state is lc.State.RESTARTING
    assert effects == [lc.HardRestart()]


def test_operator_restart_in_stopped_is_ignored(ready: Driver) -> None:
    ready.send(lc.OperatorStop())
    assert ready.send(lc.OperatorRestart()) == []
    assert ready.state is lc.State.STOPPED


def test_operator_reset_moves_fatal_to_stopped_and_clears_budgets(ready: Driver) -> None:
    ready.send(lc.ApiDisconnected(), lc.LockedOut())
    effects = ready.send(lc.OperatorReset())
    assert ready.state is lc.State.STOPPED
    assert resolved(effects) == {key("fatal")}
    assert ready.status.login_attempts == ()
    assert ready.status.restarts == ()


def test_operator_reset_in_backoff_retries_at_once(d: Driver) -> None:
    d.to_awaiting_2fa()
    d.send(lc.TwoFactorExpired(relogin=False))
    assert d.state is lc.State.BACKOFF
    effects = d.send(lc.OperatorReset())
    assert d.state is lc.State.RESTARTING
    assert lc.StartContainer() in effects
    assert d.status.failed_logins == 0


def test_stopped_ignores_every_non_operator_event(ready: Driver) -> None:
    ready.send(lc.OperatorStop())
    before = ready.status
    for event in (lc.ContainerDied(1), lc.HeartbeatOk(timedelta(0)), lc.Tick(), lc.LoggedIn()):
        assert ready.send(event) == []
    assert ready.status == before


def test_operator_stop_forgets_an_expected_relaunch_as_fatal_does(ready: Driver) -> None:
    # An IBC relaunch line read just before the stop must not explain a drop after the restart.
    ready.send(lc.IbcRelaunching(kind=lc.RelaunchKind.UNEXPLAINED, status=1))
    assert ready.status.expected_relaunch is not None
    ready.send(lc.OperatorStop())
    assert ready.state is lc.State.STOPPED
    s = ready.status
    assert (s.expected_relaunch, s.relaunch_expected_until, s.planned_until) == (None, None, None)
