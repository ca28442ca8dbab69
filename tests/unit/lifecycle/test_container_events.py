"""Container events: created, started, died, out of memory, destroyed."""

from __future__ import annotations

from datetime import timedelta

from supervisor import lifecycle as lc
from tests.unit.lifecycle.driver import (
    EXIT,
    GW,
    OPEN,
    POLICY,
    T0,
    USER,
    Driver,
    alerts,
    key,
    of_type,
)


def test_container_created_changes_nothing(d: Driver) -> None:
    d.send(lc.OperatorStart())
    before = d.status
    assert d.send(lc.ContainerCreated()) == []
    assert d.status == before


def test_container_started_moves_creating_to_starting_with_login_deadline(d: Driver) -> None:
    d.send(lc.OperatorStart())
    assert d.send(lc.ContainerStarted()) == []
    assert d.state is lc.State.STARTING
    assert d.status.login_deadline == T0 + POLICY.login_timeout


def test_container_started_when_absent_adopts_the_running_container(d: Driver) -> None:
    d.send(lc.ContainerStarted())
    assert d.state is lc.State.STARTING


def test_container_started_in_stopped_is_ignored(ready: Driver) -> None:
    ready.send(lc.OperatorStop())
    assert ready.send(lc.ContainerStarted()) == []
    assert ready.state is lc.State.STOPPED


def test_container_restarted_underneath_a_ready_gateway_goes_starting_with_safe_state(
    ready: Driver,
) -> None:
    effects = ready.send(lc.ContainerStarted())
    assert ready.state is lc.State.STARTING
    assert of_type(effects, lc.TriggerSafeState)
    assert not ready.status.logged_in


def test_adopted_running_gateway_becomes_ready_on_a_probe_answer(d: Driver) -> None:
    # After a supervisor restart: the container is found running and the API answers.
    d.send(lc.ContainerStarted())
    effects = d.send(lc.HeartbeatOk(rtt=timedelta(milliseconds=5)))
    assert d.state is lc.State.API_READY
    assert effects == [OPEN]


def test_container_that_never_starts_is_started_again_after_the_deadline(d: Driver) -> None:
    d.send(lc.OperatorStart())
    d.advance(seconds=POLICY.restart_deadline.total_seconds())
    effects = d.send(lc.Tick())
    assert d.state is lc.State.RESTARTING
    assert lc.StartContainer() in effects
    assert key("restart") in {a.key for a in alerts(effects)}


def test_container_died_unexpectedly_alerts_and_hard_restarts(ready: Driver) -> None:
    effects = ready.send(lc.ContainerDied(exit_code=137))
    assert ready.state is lc.State.RESTARTING
    assert lc.HardRestart() in effects
    (alert,) = alerts(effects)
    assert alert.key == key("died")
    assert GW in alert.body and "137" in alert.body
    assert of_type(effects, lc.TriggerSafeState)
    assert len(ready.status.restarts) == 1


def test_container_died_during_planned_restart_is_quiet(ready: Driver) -> None:
    ready.send(lc.OperatorRestart())
    assert ready.send(lc.ContainerDied(exit_code=0)) == []
    assert ready.state is lc.State.RESTARTING


def test_container_died_in_backoff_is_expected(d: Driver) -> None:
    d.to_awaiting_2fa()
    d.send(lc.TwoFactorExpired(relogin=False))
    assert d.send(lc.ContainerDied(exit_code=0)) == []
    assert d.state is lc.State.BACKOFF


def test_container_died_with_ibc_2fa_exit_code_counts_a_failed_login(d: Driver) -> None:
    d.to_awaiting_2fa()
    effects = d.send(lc.ContainerDied(exit_code=87))
    assert d.state is lc.State.BACKOFF
    assert lc.CountLogin(USER, lc.LoginOutcome.TWOFA_TIMEOUT) in effects
    # 1111 means the user approved: the text says so.
    assert "approved" in d.status.reason


def test_container_exit_1111_restarts_once_when_the_supervisor_owns_the_2fa_restart() -> None:
    d = Driver(policy=lc.LifecyclePolicy(twofa_timeout_action=EXIT, twofa_retry_at_once=True))
    d.to_awaiting_2fa()
    effects = d.send(lc.TwoFactorApproved(), lc.ContainerDied(exit_code=87))
    assert d.state is lc.State.RESTARTING
    assert of_type(effects, lc.HardRestart) == [lc.HardRestart()]
    assert "approved but the login did not complete" in alerts(effects)[-1].body


def test_container_oom_alerts_with_memory_advice(ready: Driver) -> None:
    effects = ready.send(lc.ContainerOom())
    assert ready.state is lc.State.RESTARTING
    (alert,) = alerts(effects)
    assert "memory" in alert.body.lower()
    assert lc.HardRestart() in effects


def test_container_destroyed_unexpectedly_recreates_it(ready: Driver) -> None:
    effects = ready.send(lc.ContainerDestroyed())
    assert ready.state is lc.State.RESTARTING
    assert lc.StartContainer() in effects
    assert alerts(effects)
