"""Retry and login budgets, and the backoff that holds a failed gateway."""

from __future__ import annotations

import random
from datetime import timedelta

from supervisor import lifecycle as lc
from supervisor.budget import BackoffPolicy
from tests.unit.lifecycle.driver import (
    POLICY,
    Driver,
    alerts,
    key,
    of_type,
)


def test_restarts_beyond_the_budget_go_fatal_with_a_critical_alert() -> None:
    policy = lc.LifecyclePolicy(restart_budget=2, login_budget=50)
    d = Driver(policy=policy)
    d.to_ready()
    for _ in range(2):
        d.advance(seconds=10)
        d.send(lc.ContainerDied(exit_code=1))
        assert d.state is lc.State.RESTARTING
        d.send(lc.ContainerStarted(), lc.LoginAttempt(1), lc.LoggedIn())
        d.send(lc.HeartbeatOk(rtt=timedelta(milliseconds=5)))
        assert d.state is lc.State.API_READY
    d.advance(seconds=10)
    effects = d.send(lc.ContainerDied(exit_code=1))
    assert d.state is lc.State.FATAL
    assert not of_type(effects, lc.HardRestart)
    fatal = [a for a in alerts(effects) if a.key == key("fatal")]
    assert fatal and fatal[0].severity is lc.Severity.CRITICAL
    assert "human must act" in fatal[0].title
    assert lc.StopContainer() in effects


def test_restart_budget_frees_up_after_the_window() -> None:
    policy = lc.LifecyclePolicy(restart_budget=1, restart_window=timedelta(minutes=30))
    d = Driver(policy=policy)
    d.to_ready()
    d.send(lc.ContainerDied(exit_code=1), lc.ContainerStarted(), lc.LoginAttempt(1))
    d.send(lc.LoggedIn(), lc.HeartbeatOk(rtt=timedelta(milliseconds=5)))
    d.advance(minutes=31)
    d.send(lc.HeartbeatOk(rtt=timedelta(milliseconds=5)))
    effects = d.send(lc.ContainerDied(exit_code=1))
    assert d.state is lc.State.RESTARTING
    assert lc.HardRestart() in effects


def test_login_attempts_beyond_the_budget_go_fatal_and_stop_the_container() -> None:
    d = Driver(policy=lc.LifecyclePolicy(login_budget=3))
    d.send(lc.OperatorStart(), lc.ContainerStarted())
    for n in range(1, 4):
        d.advance(seconds=30)
        d.send(lc.LoginAttempt(n))
        assert d.state is lc.State.LOGGING_IN
    d.advance(seconds=30)
    effects = d.send(lc.LoginAttempt(4))
    assert d.state is lc.State.FATAL
    assert lc.StopContainer() in effects
    assert "lockout" in alerts(effects)[-1].body


def test_failed_login_that_spends_the_budget_goes_fatal_with_one_page() -> None:
    d = Driver(policy=lc.LifecyclePolicy(login_budget=2))
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1), lc.LoginFailed("bad"))
    assert d.state is lc.State.BACKOFF
    # The retry is recorded, not paged: only the end of the budget pages.
    assert [a.severity for a in alerts(d.effects)] == [lc.Severity.INFO]
    d.now = d.status.backoff_until or d.now
    d.send(lc.Tick(), lc.ContainerStarted(), lc.LoginAttempt(1))
    effects = d.send(lc.LoginFailed("bad"))
    assert d.state is lc.State.FATAL
    assert lc.StopContainer() in effects
    paged = [a for a in alerts(d.effects) if a.severity >= lc.Severity.WARNING]
    assert [a.key for a in paged] == [key("fatal")]
    assert len(d.status.login_attempts) == 2


def test_repeated_twofa_timeouts_never_loop_forever() -> None:
    policy = lc.LifecyclePolicy(restart_budget=3, login_budget=100)
    d = Driver(policy=policy)
    d.to_awaiting_2fa()
    for _ in range(20):
        d.advance(seconds=181)
        d.send(lc.Tick())  # 2FA deadline -> BACKOFF
        if d.state is lc.State.FATAL:
            break
        assert d.state is lc.State.BACKOFF
        d.now = d.status.backoff_until or d.now
        d.send(lc.Tick())  # backoff over -> RESTARTING or FATAL
        if d.state is lc.State.FATAL:
            break
        d.send(lc.ContainerStarted(), lc.LoginAttempt(1), lc.TwoFactorInitiated())
    assert d.state is lc.State.FATAL
    assert len(of_type(d.effects, lc.StartContainer)) <= 1 + policy.restart_budget


def test_backoff_elapsed_starts_the_container(d: Driver) -> None:
    d.to_awaiting_2fa()
    d.send(lc.TwoFactorExpired(relogin=False))
    until = d.status.backoff_until
    assert until is not None
    d.now = until - timedelta(seconds=1)
    assert d.send(lc.Tick()) == []
    d.now = until
    effects = d.send(lc.Tick())
    assert d.state is lc.State.RESTARTING
    assert lc.StartContainer() in effects
    d.send(lc.ContainerStarted())
    assert d.state is lc.State.STARTING


def test_backoff_grows_exponentially_per_consecutive_failure(d: Driver) -> None:
    waits = []
    d.to_awaiting_2fa()
    for _ in range(3):
        d.send(lc.LoginFailed("bad"))
        assert d.status.backoff_until is not None
        waits.append(d.status.backoff_until - d.now)
        d.now = d.status.backoff_until
        d.send(lc.Tick(), lc.ContainerStarted(), lc.LoginAttempt(1))
    base = POLICY.backoff.base
    assert waits == [base, base * 2, base * 4]


def test_backoff_is_full_jitter_from_the_injected_rng() -> None:
    policy = lc.LifecyclePolicy(backoff=BackoffPolicy(base=timedelta(minutes=1)))
    waits = set()
    for seed in range(5):
        d = Driver(policy=policy, rng=random.Random(seed))
        d.to_awaiting_2fa()
        d.send(lc.LoginFailed())
        assert d.status.backoff_until is not None
        wait = d.status.backoff_until - d.now
        assert timedelta(0) <= wait <= timedelta(minutes=1)
        waits.add(wait)
    assert len(waits) == 5
