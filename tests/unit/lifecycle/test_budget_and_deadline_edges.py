"""Lifecycle transitions at their edges: budgets that must count, resets that must clear,
deadlines at their exact instant. Each test kills a mutant the mutation check
(benchmarks/mutation.sh) found surviving."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from gateway.config import TwoFactorTimeoutAction
from supervisor import lifecycle as lc
from tests.unit.lifecycle.driver import POLICY, Driver, alerts, key, of_type

OK = lc.HeartbeatOk(rtt=timedelta(milliseconds=5))


RETRY_AT_ONCE = lc.LifecyclePolicy(
    twofa_timeout_action=TwoFactorTimeoutAction.EXIT,
    twofa_retry_at_once=True,
    restart_budget=2,
    login_budget=50,
)


def test_retrying_unanswered_2fa_at_once_spends_the_restart_budget_and_ends_fatal() -> None:
    d = Driver(policy=RETRY_AT_ONCE)
    d.to_awaiting_2fa()
    for _ in range(2):
        d.advance(seconds=POLICY.twofa_timeout.total_seconds())
        d.send(lc.Tick())
        assert d.state is lc.State.RESTARTING
        assert len(d.status.restarts) >= 1  # an unplanned restart: counted
        d.send(lc.ContainerStarted(), lc.LoginAttempt(1), lc.TwoFactorInitiated())
    d.advance(seconds=POLICY.twofa_timeout.total_seconds())
    d.send(lc.Tick())
    assert d.state is lc.State.FATAL
    assert "restart budget spent" in d.status.reason


def _fatal_by_restart_budget() -> Driver:
    d = Driver(policy=lc.LifecyclePolicy(restart_budget=1))
    d.to_ready()
    d.send(lc.ContainerDied(exit_code=1), lc.ContainerStarted(), lc.ContainerDied(exit_code=1))
    assert d.state is lc.State.FATAL and d.status.restarts
    return d


def test_operator_reset_of_a_spent_restart_budget_clears_it_for_the_next_start() -> None:
    d = _fatal_by_restart_budget()
    d.send(lc.OperatorReset())
    assert d.state is lc.State.STOPPED
    assert d.status.restarts == () and d.status.login_attempts == ()
    assert d.status.failed_logins == 0


def test_operator_reset_in_backoff_forgets_failures_and_restarts() -> None:
    d = Driver(policy=lc.LifecyclePolicy(restart_budget=3))
    d.to_ready()
    d.send(lc.ContainerDied(exit_code=1))  # one unplanned restart on the budget
    d.send(lc.ContainerStarted(), lc.LoginAttempt(1), lc.LoginFailed("bad"))
    assert d.state is lc.State.BACKOFF and d.status.restarts and d.status.failed_logins == 1
    d.send(lc.OperatorReset())
    assert d.state is lc.State.RESTARTING
    assert d.status.restarts == () and d.status.failed_logins == 0


def test_a_stall_is_paged_at_exactly_stall_page_after(ready: Driver) -> None:
    ready.send(lc.HeartbeatMissed())
    ready.advance(seconds=POLICY.stall_page_after.total_seconds())
    effects = ready.send(lc.Tick())
    assert key("stall") in {a.key for a in alerts(effects)}


def test_a_reset_window_gateway_inside_its_window_is_not_paged_by_tick(ready: Driver) -> None:
    ready.send(lc.ResetWindowEntered(), lc.IbLinkLost())
    assert ready.state is lc.State.RESET_WINDOW
    ready.advance(seconds=10)
    ready.send(OK)
    assert ready.send(lc.Tick()) == []
    assert ready.state is lc.State.RESET_WINDOW


def test_a_relaunch_expectation_lapses_at_exactly_its_end(ready: Driver) -> None:
    ready.send(lc.DailyRestartExpected())
    ready.advance(seconds=POLICY.restart_command_delay.total_seconds())
    ready.send(OK, lc.Tick())
    assert ready.status.relaunch_expected_until is None
    assert ready.status.expected_relaunch is None


def test_when_ibc_owns_the_2fa_retry_the_login_deadline_still_watches_it() -> None:
    d = Driver(policy=lc.LifecyclePolicy(twofa_timeout_action=TwoFactorTimeoutAction.RESTART))
    d.to_awaiting_2fa()
    d.advance(seconds=POLICY.twofa_timeout.total_seconds())
    effects = d.send(lc.Tick())
    assert d.state is lc.State.LOGGING_IN
    assert lc.CountLogin("fdemo", lc.LoginOutcome.TWOFA_TIMEOUT) in effects
    assert d.status.twofa_deadline is None
    assert d.status.login_deadline == d.now + POLICY.login_timeout
    d.advance(seconds=POLICY.login_timeout.total_seconds())
    d.send(lc.Tick())
    assert d.state is lc.State.BACKOFF  # IBC never logged in again


def test_a_confirmed_lockout_names_what_ib_said(ready: Driver) -> None:
    ready.send(lc.LockedOut("Please wait 53 seconds"), lc.ApiDisconnected())
    assert ready.state is lc.State.FATAL
    assert "Please wait 53 seconds" in ready.status.reason


def test_a_held_line_without_its_bound_is_not_replayed(ready: Driver) -> None:
    ready.status = dataclasses.replace(ready.status, suspect="LoginAttempt", suspect_until=None)
    ready.send(lc.ApiDisconnected())
    assert ready.state is lc.State.DEGRADED
    attempts = [e for e in of_type(ready.effects, lc.CountLogin) if e.outcome.value == "attempt"]
    assert len(attempts) == 1  # only the real login before the line


def test_a_hard_restart_needs_a_login_slot_or_goes_fatal() -> None:
    d = Driver(policy=lc.LifecyclePolicy(login_budget=1, restart_budget=50))
    d.to_ready()  # the one login of the budget
    effects = d.send(lc.ContainerDied(exit_code=1))
    assert d.state is lc.State.FATAL
    assert "login budget spent" in d.status.reason
    assert not of_type(effects, lc.HardRestart)


def test_a_soft_restart_needs_no_login_slot() -> None:
    d = Driver(policy=lc.LifecyclePolicy(login_budget=1, restart_budget=50))
    d.to_ready()
    d.send(lc.OperatorRestart())
    assert d.state is lc.State.RESTARTING
    assert of_type(d.effects, lc.SoftRestart)


def test_every_restart_counts_once_in_the_total(ready: Driver) -> None:
    ready.send(lc.OperatorRestart())
    assert ready.status.restart_count == 1
    ready.send(lc.ContainerStarted(), lc.LoginAttempt(1), lc.LoggedIn(), OK)
    ready.send(lc.ContainerDied(exit_code=1))
    assert ready.status.restart_count == 2


def test_a_restart_that_never_completes_is_escalated_within_the_budget_then_fatal() -> None:
    d = Driver(policy=lc.LifecyclePolicy(restart_budget=2, login_budget=50))
    d.to_ready()
    d.send(lc.ContainerDied(exit_code=1))  # 1 of 2
    d.advance(seconds=POLICY.restart_deadline.total_seconds())
    d.send(lc.Tick())  # the restart did not bring it back: 2 of 2
    assert d.state is lc.State.RESTARTING and len(d.status.restarts) == 2
    d.advance(seconds=POLICY.restart_deadline.total_seconds())
    d.send(lc.Tick())
    assert d.state is lc.State.FATAL


def test_an_api_that_never_answers_after_login_spends_the_restart_budget() -> None:
    d = Driver(policy=lc.LifecyclePolicy(restart_budget=1, login_budget=50))
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1), lc.LoggedIn())
    d.advance(seconds=POLICY.login_timeout.total_seconds())
    d.send(lc.Tick())
    assert d.state is lc.State.RESTARTING and len(d.status.restarts) == 1
    d.send(lc.ContainerStarted(), lc.LoginAttempt(1), lc.LoggedIn())
    d.advance(seconds=POLICY.login_timeout.total_seconds())
    d.send(lc.Tick())
    assert d.state is lc.State.FATAL


def test_a_state_change_moves_since_and_ready_forgets_failed_logins() -> None:
    d = Driver()
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1), lc.LoginFailed("x"))
    assert d.status.failed_logins == 1
    d.advance(seconds=POLICY.backoff.ceiling(0).total_seconds())
    d.send(lc.Tick(), lc.ContainerStarted(), lc.LoginAttempt(1), lc.LoggedIn())
    d.advance(seconds=3)
    d.send(OK)
    assert d.state is lc.State.API_READY
    assert d.status.since == d.now
    assert d.status.failed_logins == 0


def test_the_gate_carries_the_reason_strategies_see(ready: Driver) -> None:
    effects = ready.send(lc.ContainerDied(exit_code=1))
    (closed,) = [e.gate for e in of_type(effects, lc.GateOrders)]
    assert closed.reason == ready.status.reason and "exited with code 1" in closed.reason


def test_a_soft_restarts_relaunch_moves_its_deadline_to_the_relaunch_bound(ready: Driver) -> None:
    ready.send(lc.OperatorRestart())
    ready.advance(seconds=40)
    ready.send(lc.IbcRelaunching(kind=lc.RelaunchKind.RESTART_COMMAND, status=0))
    assert ready.state is lc.State.RESTARTING
    assert ready.status.restart_deadline == ready.now + POLICY.token_relaunch_bound
    assert ready.status.planned_until == ready.status.restart_deadline


def test_ibcs_1111_relaunch_counts_a_failed_login() -> None:
    d = Driver(policy=lc.LifecyclePolicy(twofa_timeout_action=TwoFactorTimeoutAction.RESTART))
    d.to_awaiting_2fa()
    d.send(lc.TwoFactorApproved(), lc.IbcRelaunching(kind=lc.RelaunchKind.TWOFA_EXIT, status=1111))
    assert d.state is lc.State.RESTARTING
    assert d.status.failed_logins == 1
    assert key("2fa") not in d.status.open_alerts


def test_the_same_login_read_twice_counts_once() -> None:
    d = Driver()
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1), lc.LoggedIn())
    before = d.status
    assert d.send(lc.LoggedIn()) == []
    assert d.status == before
