"""Logins: attempts counted, readiness after the probe, competing sessions, failures."""

from __future__ import annotations

from supervisor import lifecycle as lc
from tests.unit.lifecycle.driver import (
    POLICY,
    T0,
    USER,
    Driver,
    alerts,
    gate_kind,
    key,
    of_type,
    resolved,
)


def test_login_attempt_moves_starting_to_logging_in_and_counts_it(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted())
    effects = d.send(lc.LoginAttempt(1))
    assert d.state is lc.State.LOGGING_IN
    assert effects == [lc.CountLogin(USER, lc.LoginOutcome.ATTEMPT)]
    assert d.status.login_attempts == (T0,)


def test_login_attempt_on_a_ready_gateway_is_a_relogin_once_the_probe_loses_the_api(
    ready: Driver,
) -> None:
    assert ready.send(lc.LoginAttempt(1)) == []  # held: the probe still sees it healthy
    assert ready.state is lc.State.API_READY
    effects = ready.send(lc.ApiDisconnected())
    assert ready.state is lc.State.LOGGING_IN
    assert gate_kind(effects) is not None
    assert of_type(effects, lc.TriggerSafeState)
    assert lc.CountLogin(USER, lc.LoginOutcome.ATTEMPT) in effects


def test_login_attempt_in_backoff_is_counted_but_changes_nothing_else(d: Driver) -> None:
    d.to_awaiting_2fa()
    d.send(lc.TwoFactorExpired(relogin=False))
    # IBC's own cold restart may log in before the stop lands: IB counts it, so do we.
    effects = d.send(lc.LoginAttempt(1))
    assert effects == [lc.CountLogin(USER, lc.LoginOutcome.ATTEMPT)]
    assert d.state is lc.State.BACKOFF
    assert len(d.status.login_attempts) == 2


def test_login_attempt_in_fatal_is_still_counted(ready: Driver) -> None:
    ready.send(lc.ApiDisconnected(), lc.LockedOut())
    effects = ready.send(lc.LoginAttempt(1))
    assert effects == [lc.CountLogin(USER, lc.LoginOutcome.ATTEMPT)]
    assert ready.state is lc.State.FATAL


def test_logged_in_is_not_ready_until_the_api_answers_a_probe(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1))
    effects = d.send(lc.LoggedIn(), lc.ApiConnected())
    assert d.state is lc.State.LOGGING_IN
    assert d.status.logged_in
    assert not of_type(effects, lc.GateOrders)


def test_login_not_completed_within_the_deadline_goes_to_backoff(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1))
    d.advance(seconds=POLICY.login_timeout.total_seconds())
    effects = d.send(lc.Tick())
    assert d.state is lc.State.BACKOFF
    assert lc.CountLogin(USER, lc.LoginOutcome.FAILED) in effects


def test_logged_in_but_api_silent_past_the_deadline_hard_restarts(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1), lc.LoggedIn())
    d.advance(seconds=POLICY.login_timeout.total_seconds())
    effects = d.send(lc.Tick())
    assert d.state is lc.State.RESTARTING
    assert lc.HardRestart() in effects
    assert key("api") in {a.key for a in alerts(effects)}


def test_existing_session_goes_competing_and_alerts(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1))
    effects = d.send(lc.ExistingSessionDetected())
    assert d.state is lc.State.COMPETING_SESSION
    (alert,) = alerts(effects)
    assert alert.key == key("competing") and USER in alert.body


def test_existing_session_on_ready_gateway_leaves_ready_with_safe_state_once_the_probe_misses(
    ready: Driver,
) -> None:
    assert ready.send(lc.ExistingSessionDetected()) == []
    effects = ready.send(lc.HeartbeatMissed())
    assert ready.state is lc.State.COMPETING_SESSION
    assert of_type(effects, lc.TriggerSafeState)


def test_competing_session_resolves_when_login_completes(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.ExistingSessionDetected())
    effects = d.send(lc.LoggedIn())
    assert key("competing") in resolved(effects)


def test_login_failed_goes_to_backoff_with_an_alert(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1))
    effects = d.send(lc.LoginFailed("invalid password"))
    assert d.state is lc.State.BACKOFF
    (alert,) = alerts(effects)
    assert "invalid password" in alert.body and "retries at" in alert.body


def test_locked_out_goes_fatal_and_stops(ready: Driver) -> None:
    ready.send(lc.ApiDisconnected())  # the probe sees the session gone: the line is believed
    effects = ready.send(lc.LockedOut("Too many failed login attempts"))
    assert ready.state is lc.State.FATAL
    assert lc.StopContainer() in effects
    assert lc.CountLogin(USER, lc.LoginOutcome.LOCKED_OUT) in effects
    assert alerts(effects)[-1].severity is lc.Severity.CRITICAL
