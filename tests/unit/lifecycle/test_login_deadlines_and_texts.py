"""Logins that stall after a competing session, an approved or expired 2FA prompt, a failure
or a lockout: the deadline each one starts, what it counts, and what the operator and the
strategies read (cases the mutation check, benchmarks/mutation.sh, found untested)."""

from __future__ import annotations

from datetime import timedelta

from supervisor import lifecycle as lc
from tests.unit.lifecycle.driver import (
    GW,
    IBC_OWNS,
    POLICY,
    USER,
    Driver,
    alerts,
    key,
    of_type,
)

LOGIN_TIMEOUT = POLICY.login_timeout


def _ready_with_an_overdue_probe(d: Driver) -> None:
    # The probe's last answer is older than the heartbeat deadline: a log line is not held
    # as a suspect, it acts at once.
    d.to_ready()
    d.advance(seconds=POLICY.heartbeat_deadline.total_seconds() + 1)


def test_a_competing_session_on_a_ready_gateway_puts_its_strategies_in_safe_state(
    d: Driver,
) -> None:
    _ready_with_an_overdue_probe(d)
    effects = d.send(lc.ExistingSessionDetected())
    assert d.state is lc.State.COMPETING_SESSION
    assert lc.TriggerSafeState(reason=f"{GW}: another session holds the username") in effects
    assert d.status.reason == "another session holds the username"


def test_a_competing_session_that_does_not_clear_within_the_login_timeout_is_a_failed_login(
    d: Driver,
) -> None:
    # Not an unanswering API (a hard restart): the session the machine had is gone.
    _ready_with_an_overdue_probe(d)
    d.send(lc.ExistingSessionDetected())
    d.advance(seconds=LOGIN_TIMEOUT.total_seconds() - 1)
    assert of_type(d.send(lc.Tick()), lc.StopContainer) == []
    assert d.state is lc.State.COMPETING_SESSION
    d.advance(seconds=1)
    effects = d.send(lc.Tick())
    assert d.state is lc.State.BACKOFF
    assert lc.CountLogin(USER, lc.LoginOutcome.FAILED) in effects
    assert of_type(effects, lc.HardRestart) == []


def test_a_competing_session_during_a_login_keeps_the_logins_deadline(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1))
    first = d.status.login_deadline
    d.advance(seconds=30)
    d.send(lc.ExistingSessionDetected())
    assert d.status.login_deadline == first


def test_an_approved_2fa_gives_the_login_a_fresh_login_timeout_from_the_approval(
    d: Driver,
) -> None:
    d.to_awaiting_2fa()
    first_deadline = d.now + LOGIN_TIMEOUT
    d.advance(seconds=170)
    approved_at = d.now
    d.send(lc.TwoFactorApproved())
    assert d.status.reason == "2FA approved; waiting for the login to complete"
    d.now = first_deadline
    d.send(lc.Tick())
    assert d.state is lc.State.LOGGING_IN
    d.now = approved_at + LOGIN_TIMEOUT - timedelta(seconds=1)
    d.send(lc.Tick())
    assert d.state is lc.State.LOGGING_IN
    d.advance(seconds=1)
    effects = d.send(lc.Tick())
    assert d.state is lc.State.BACKOFF
    assert lc.CountLogin(USER, lc.LoginOutcome.FAILED) in effects


def test_a_2fa_timeout_ibc_retries_counts_and_waits_one_login_timeout_for_ibcs_login() -> None:
    d = Driver(policy=lc.LifecyclePolicy(twofa_timeout_action=IBC_OWNS))
    d.to_awaiting_2fa()
    d.advance(seconds=60)
    expired_at = d.now
    effects = d.send(lc.TwoFactorExpired(relogin=True))
    assert d.state is lc.State.LOGGING_IN
    assert lc.CountLogin(USER, lc.LoginOutcome.TWOFA_TIMEOUT) in effects
    assert d.status.reason == "2FA not approved in time; IBC logs in again"
    assert d.status.twofa_deadline is None
    d.now = expired_at + LOGIN_TIMEOUT - timedelta(seconds=1)
    d.send(lc.Tick())
    assert d.state is lc.State.LOGGING_IN
    d.advance(seconds=1)
    d.send(lc.Tick())
    assert d.state is lc.State.BACKOFF


def test_a_2fa_timeout_ibc_retries_counts_as_a_failure_for_the_next_backoff() -> None:
    d = Driver(policy=lc.LifecyclePolicy(twofa_timeout_action=IBC_OWNS))
    d.to_awaiting_2fa()
    d.send(lc.TwoFactorExpired(relogin=True))
    effects = d.send(lc.LoginFailed("wrong password"))
    (backoff,) = of_type(effects, lc.ScheduleBackoff)
    # The second consecutive failure: the backoff's second step, not its first.
    assert backoff.until == d.now + POLICY.backoff.delay(1, rng=None)
    assert d.status.failed_logins == 2


def test_a_2fa_timeout_whose_relogin_would_spend_the_login_budget_stops_and_says_so() -> None:
    d = Driver(policy=lc.LifecyclePolicy(twofa_timeout_action=IBC_OWNS, login_budget=1))
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1), lc.TwoFactorInitiated())
    effects = d.send(lc.TwoFactorExpired(relogin=True))
    assert d.state is lc.State.FATAL
    assert lc.CountLogin(USER, lc.LoginOutcome.TWOFA_TIMEOUT) in effects
    assert d.status.reason == (
        "login budget spent (1 logins within 60 min); last cause: 2FA not approved in time"
    )
    (page,) = [a for a in alerts(effects) if a.key == key("fatal")]
    assert (
        "More automatic logins risk an IB account lockout; approve the prompt next time."
        in page.body
    )


def test_a_rejected_login_without_ibs_words_says_only_that_ib_rejected_it(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1))
    effects = d.send(lc.LoginFailed())
    assert d.status.reason == "IB rejected the login"
    assert lc.CountLogin(USER, lc.LoginOutcome.FAILED) in effects


def test_a_rejected_login_quotes_ibs_words(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1))
    d.send(lc.LoginFailed("invalid username or password"))
    assert d.status.reason == "IB rejected the login: invalid username or password"


def test_a_lockout_pages_the_username_ibs_words_and_what_to_do(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1))
    effects = d.send(lc.LockedOut(message="too many failed attempts"))
    assert d.state is lc.State.FATAL
    assert lc.CountLogin(USER, lc.LoginOutcome.LOCKED_OUT) in effects
    assert d.status.reason == (
        f"IB locked {USER} after too many failed logins (too many failed attempts)"
    )
    (page,) = [a for a in alerts(effects) if a.key == key("fatal")]
    assert (
        "Wait for IB to unlock the username (or reset its password in the client portal)."
        in page.body
    )


def test_a_lockout_without_ibs_words_names_only_the_username(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1))
    d.send(lc.LockedOut())
    assert d.status.reason == f"IB locked {USER} after too many failed logins"
