"""Second-factor prompts: the page, its deadline, and who restarts after a timeout."""

from __future__ import annotations

from datetime import timedelta

from supervisor import lifecycle as lc
from tests.unit.lifecycle.driver import (
    EXIT,
    GW,
    IBC_OWNS,
    POLICY,
    T0,
    USER,
    Driver,
    alerts,
    key,
    of_type,
    resolved,
)


def test_twofa_initiated_alerts_at_once_naming_gateway_user_and_deadline(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1))
    effects = d.send(lc.TwoFactorInitiated())
    assert d.state is lc.State.AWAITING_2FA
    (alert,) = alerts(effects)
    assert alert.key == key("2fa")
    assert alert.severity is lc.Severity.CRITICAL
    assert f"{GW} / {USER}" in alert.body
    assert "180 s" in alert.body
    assert d.status.twofa_deadline == T0 + timedelta(seconds=180)


def test_twofa_initiated_twice_keeps_the_first_deadline_and_alert(d: Driver) -> None:
    d.to_awaiting_2fa()
    d.advance(seconds=30)
    assert d.send(lc.TwoFactorInitiated()) == []
    assert d.status.twofa_deadline == T0 + timedelta(seconds=180)


def test_twofa_alert_resolves_on_login(d: Driver) -> None:
    d.to_awaiting_2fa()
    effects = d.send(lc.LoggedIn())
    assert key("2fa") in resolved(effects)
    assert lc.CountLogin(USER, lc.LoginOutcome.SUCCESS) in effects


def test_approved_twofa_resolves_the_prompt_and_waits_for_the_login(d: Driver) -> None:
    d.to_awaiting_2fa()
    effects = d.send(lc.TwoFactorApproved(exit_in=timedelta(seconds=60)))
    assert d.state is lc.State.LOGGING_IN
    assert key("2fa") in resolved(effects)
    assert d.status.twofa_deadline is None


def test_awaiting_2fa_times_out_to_backoff(d: Driver) -> None:
    d.to_awaiting_2fa()
    d.advance(seconds=179)
    assert d.send(lc.Tick()) == []
    d.advance(seconds=1)
    effects = d.send(lc.Tick())
    assert d.state is lc.State.BACKOFF
    assert lc.CountLogin(USER, lc.LoginOutcome.TWOFA_TIMEOUT) in effects
    assert key("2fa") in resolved(effects)
    assert lc.StopContainer() in effects
    (backoff,) = of_type(effects, lc.ScheduleBackoff)
    assert backoff == lc.ScheduleBackoff(until=d.now + POLICY.backoff.base)


def test_twofa_closing_line_alone_decides_nothing(d: Driver) -> None:
    # "IBC closing because login has not completed after 2FA": the relaunch or the container's
    # exit that follows decides, so one mechanism restarts.
    d.to_awaiting_2fa()
    before = d.status
    assert d.send(lc.TwoFactorTimedOut()) == []
    assert d.status == before


def test_unanswered_twofa_with_relogin_off_goes_to_backoff(d: Driver) -> None:
    d.to_awaiting_2fa()
    effects = d.send(lc.TwoFactorExpired(relogin=False))
    assert d.state is lc.State.BACKOFF
    assert [a.key for a in alerts(effects)] == [key("login")]


def test_twofa_timeout_with_restart_policy_restarts_at_once() -> None:
    policy = lc.LifecyclePolicy(twofa_timeout_action=EXIT, twofa_retry_at_once=True)
    d = Driver(policy=policy)
    d.to_awaiting_2fa()
    effects = d.send(lc.TwoFactorExpired(relogin=False))
    assert d.state is lc.State.RESTARTING
    assert of_type(effects, lc.HardRestart) == [lc.HardRestart()]


def test_unanswered_twofa_when_ibc_owns_the_retry_restarts_nothing() -> None:
    d = Driver(policy=lc.LifecyclePolicy(twofa_timeout_action=IBC_OWNS))
    d.to_awaiting_2fa()
    d.advance(seconds=POLICY.twofa_timeout.total_seconds())
    effects = d.send(lc.Tick(), lc.TwoFactorExpired(relogin=True))
    assert d.state is lc.State.LOGGING_IN
    assert not of_type(effects, lc.HardRestart | lc.StopContainer | lc.StartContainer)
    # IBC's relogin: a new attempt (counted) and a new prompt with a new deadline.
    d.advance(seconds=5)
    effects = d.send(lc.LoginAttempt(2), lc.TwoFactorInitiated())
    assert d.state is lc.State.AWAITING_2FA
    assert d.status.twofa_deadline == d.now + POLICY.twofa_timeout
    assert len(d.status.login_attempts) == 2
    assert not alerts(effects)  # the prompt alert is still open: nobody is paged twice


def test_ibc_relogin_that_would_exceed_the_login_budget_goes_fatal() -> None:
    d = Driver(policy=lc.LifecyclePolicy(login_budget=1))
    d.to_awaiting_2fa()
    effects = d.send(lc.TwoFactorExpired(relogin=True))
    assert d.state is lc.State.FATAL
    assert lc.StopContainer() in effects
