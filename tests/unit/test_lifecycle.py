"""The per-gateway lifecycle machine: one test per transition, plus random-sequence properties."""

from __future__ import annotations

import dataclasses
import json
import random
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import TwoFactorTimeoutAction
from supervisor import lifecycle as lc
from supervisor.budget import BackoffPolicy

GW = "paper-a"
USER = "fdemo"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
POLICY = lc.LifecyclePolicy()
# Who restarts after a 2FA timeout (the fleet file's two_factor.timeout_action).
IBC_OWNS, EXIT = TwoFactorTimeoutAction.RESTART, TwoFactorTimeoutAction.EXIT


def key(problem: str) -> str:
    return lc.alert_key(GW, problem)


@dataclass
class Driver:
    """Drives one machine under a fake clock and keeps every effect."""

    policy: lc.LifecyclePolicy = POLICY
    now: datetime = T0
    status: lc.GatewayStatus = field(init=False)
    effects: list[lc.Effect] = field(default_factory=list)
    rng: random.Random | None = None

    def __post_init__(self) -> None:
        self.status = lc.GatewayStatus.initial(gateway=GW, username=USER, now=self.now)

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def send(self, *events: lc.Event) -> list[lc.Effect]:
        """Apply events at the current time; return this call's effects."""
        out: list[lc.Effect] = []
        for event in events:
            self.status, effects = lc.transition(
                self.status, event, now=self.now, policy=self.policy, rng=self.rng
            )
            out.extend(effects)
        self.effects.extend(out)
        return out

    @property
    def state(self) -> lc.State:
        return self.status.state

    def to_ready(self) -> None:
        self.send(
            lc.OperatorStart(),
            lc.ContainerCreated(),
            lc.ContainerStarted(),
            lc.LoginAttempt(1),
            lc.LoggedIn(),
            lc.ApiConnected(),
            lc.HeartbeatOk(rtt=timedelta(milliseconds=20)),
        )
        assert self.state is lc.State.API_READY

    def to_awaiting_2fa(self) -> None:
        self.send(
            lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1), lc.TwoFactorInitiated()
        )
        assert self.state is lc.State.AWAITING_2FA


OPEN = lc.GateOrders(gate=lc.Gate(open=True))


def gate_kind(effects: list[lc.Effect]) -> lc.OutageKind | None:
    """The kind of the last closed gate among ``effects`` (None: the gate did not close)."""
    closed = [e.gate.kind for e in effects if isinstance(e, lc.GateOrders) and not e.gate.open]
    return closed[-1] if closed else None


def of_type(effects: list[lc.Effect], kind: type) -> list[lc.Effect]:
    return [e for e in effects if isinstance(e, kind)]


def alerts(effects: list[lc.Effect]) -> list[lc.Alert]:
    return [e for e in effects if isinstance(e, lc.Alert)]


def resolved(effects: list[lc.Effect]) -> set[str]:
    return {e.key for e in effects if isinstance(e, lc.ResolveAlert)}


@pytest.fixture
def d() -> Driver:
    return Driver()


@pytest.fixture
def ready() -> Driver:
    driver = Driver()
    driver.to_ready()
    return driver


# --- operator commands --------------------------------------------------------------------


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


# --- container events ---------------------------------------------------------------------


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


# --- auth events --------------------------------------------------------------------------


def test_login_attempt_moves_starting_to_logging_in_and_counts_it(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted())
    effects = d.send(lc.LoginAttempt(1))
    assert d.state is lc.State.LOGGING_IN
    assert effects == [lc.CountLogin(USER, lc.LoginOutcome.ATTEMPT)]
    assert d.status.login_attempts == (T0,)


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


def test_approved_twofa_resolves_the_prompt_and_waits_for_the_login(d: Driver) -> None:
    d.to_awaiting_2fa()
    effects = d.send(lc.TwoFactorApproved(exit_in=timedelta(seconds=60)))
    assert d.state is lc.State.LOGGING_IN
    assert key("2fa") in resolved(effects)
    assert d.status.twofa_deadline is None


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


# --- IBC's relaunches inside the running container ----------------------------------------

K = lc.RelaunchKind


def test_weekly_cold_relaunch_after_the_api_drop_is_planned_and_pages_nobody(
    ready: Driver,
) -> None:
    ready.send(lc.ApiDisconnected())
    effects = ready.send(lc.IbcRelaunching(kind=K.WEEKLY_COLD, status=0))
    assert ready.state is lc.State.RESTARTING
    assert not of_type(effects, lc.SoftRestart | lc.HardRestart | lc.StartContainer)
    assert gate_kind(effects) is lc.OutageKind.PLANNED_RESTART
    assert ready.status.planned_until == ready.now + POLICY.cold_relaunch_bound
    assert ready.status.restarts == ()  # IBC's planned relaunch spends no retry budget
    # The full login that follows is counted and stays planned; no page on the way back.
    effects = ready.send(lc.LoginAttempt(1), lc.LoggedIn(), lc.ApiConnected())
    assert gate_kind(effects) is None  # still the same planned outage
    effects = ready.send(lc.HeartbeatOk(rtt=timedelta(milliseconds=5)))
    assert OPEN in effects
    assert len(ready.status.login_attempts) == 2
    assert not alerts(ready.effects)


def test_relaunch_line_while_the_probe_sees_the_session_healthy_ends_nothing(
    ready: Driver,
) -> None:
    before = ready.status
    assert ready.send(lc.IbcRelaunching(kind=K.UNEXPLAINED, status=1)) == []
    assert ready.state is lc.State.API_READY
    assert ready.status.expected_relaunch is K.UNEXPLAINED
    assert before.gate_open and ready.status.gate_open
    # The drop that follows is read as that relaunch: unplanned, paged, IBC's own restart.
    effects = ready.send(lc.ApiDisconnected())
    assert ready.state is lc.State.RESTARTING
    assert ready.status.restart_kind is lc.RestartKind.EXTERNAL
    assert gate_kind(effects) is lc.OutageKind.LOST
    assert key("relaunch") in {a.key for a in alerts(effects)}
    assert not of_type(effects, lc.SoftRestart | lc.HardRestart | lc.StartContainer)


def test_stall_read_before_a_token_relaunch_line_becomes_planned_without_a_page(
    ready: Driver,
) -> None:
    effects = ready.send(lc.ApiDisconnected())
    assert gate_kind(effects) is lc.OutageKind.STALLED
    ready.advance(seconds=1)
    effects = ready.send(lc.IbcRelaunching(kind=K.AUTO_RESTART, status=0))
    assert ready.state is lc.State.RESTARTING
    assert gate_kind(effects) is lc.OutageKind.PLANNED_RESTART
    (gate,) = [e.gate for e in effects if isinstance(e, lc.GateOrders)]
    assert gate.bound == POLICY.token_relaunch_bound
    ready.advance(seconds=10)
    ready.send(lc.Tick())  # past stall_page_after: still nobody paged
    effects = ready.send(
        lc.LoggedIn(), lc.ApiConnected(), lc.HeartbeatOk(rtt=timedelta(milliseconds=5))
    )
    assert ready.state is lc.State.API_READY
    assert not alerts(ready.effects)
    # A token relaunch logs in without a login attempt: nothing is counted.
    assert len(ready.status.login_attempts) == 1


def test_planned_relaunch_that_outlasts_its_bound_is_a_loss(ready: Driver) -> None:
    ready.send(lc.ApiDisconnected(), lc.IbcRelaunching(kind=K.AUTO_RESTART, status=0))
    ready.advance(seconds=POLICY.token_relaunch_bound.total_seconds())
    effects = ready.send(lc.Tick())
    assert of_type(effects, lc.HardRestart) == [lc.HardRestart()]
    assert gate_kind(effects) is lc.OutageKind.LOST
    assert key("restart") in {a.key for a in alerts(effects)}


def test_planned_login_that_outlasts_its_bound_turns_lost_and_pages(ready: Driver) -> None:
    ready.send(lc.ApiDisconnected(), lc.IbcRelaunching(kind=K.WEEKLY_COLD, status=0))
    ready.send(lc.LoginAttempt(1), lc.TwoFactorInitiated())
    ready.advance(seconds=POLICY.cold_relaunch_bound.total_seconds())
    effects = ready.send(lc.Tick())
    assert gate_kind(effects) is lc.OutageKind.LOST
    assert key("restart") in {a.key for a in alerts(effects)}


def test_ibc_exit_status_alone_decides_nothing(ready: Driver) -> None:
    before = ready.status
    assert ready.send(lc.IbcExitStatus(code=0)) == []
    assert ready.status == before


def test_login_dialog_timeout_relaunch_is_ibcs_own_and_spends_the_retry_budget(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted())
    effects = d.send(
        lc.IbcExitStatus(code=88), lc.IbcRelaunching(kind=K.NO_LOGIN_DIALOG, status=88)
    )
    assert d.state is lc.State.RESTARTING
    assert not of_type(effects, lc.SoftRestart | lc.HardRestart | lc.StartContainer)
    assert len(d.status.restarts) == 1


def test_twofa_exit_relaunch_counts_a_failed_login_and_says_the_user_approved(d: Driver) -> None:
    d.to_awaiting_2fa()
    effects = d.send(lc.TwoFactorApproved(), lc.IbcRelaunching(kind=K.TWOFA_EXIT, status=87))
    assert d.state is lc.State.RESTARTING
    assert lc.CountLogin(USER, lc.LoginOutcome.TWOFA_TIMEOUT) in effects
    # IBC restarts (--on2fatimeout=restart): the machine does not restart as well.
    assert not of_type(effects, lc.SoftRestart | lc.HardRestart | lc.StartContainer)
    (alert,) = [a for a in alerts(effects) if a.key == key("login")]
    assert "approved" in alert.body and "1111" in alert.body


def test_relaunch_in_backoff_is_the_failed_logins_cold_restart(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1), lc.LoginFailed("bad"))
    assert d.state is lc.State.BACKOFF
    assert d.send(lc.IbcRelaunching(kind=K.COLD_AFTER_FAILURE, status=0)) == []


def test_accepted_restart_makes_the_next_drop_a_planned_token_relaunch(ready: Driver) -> None:
    ready.send(lc.RestartScheduled())
    effects = ready.send(lc.ApiDisconnected())
    assert ready.state is lc.State.RESTARTING
    assert gate_kind(effects) is lc.OutageKind.PLANNED_RESTART
    assert not alerts(effects)


# --- probe results ------------------------------------------------------------------------


def test_heartbeat_after_login_enters_api_ready_and_opens_the_gate(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1), lc.LoggedIn())
    effects = d.send(lc.HeartbeatOk(rtt=timedelta(milliseconds=20)))
    assert d.state is lc.State.API_READY
    assert effects == [OPEN]


def test_api_connected_alone_is_not_ready(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted())
    assert d.send(lc.ApiConnected()) == []
    assert d.state is lc.State.STARTING


def test_entering_api_ready_resolves_open_alerts(ready: Driver) -> None:
    ready.send(lc.IbLinkLost())
    effects = ready.send(lc.IbLinkRestored(data_lost=True))
    assert ready.state is lc.State.API_READY
    assert key("degraded") in resolved(effects)
    assert OPEN in effects


def test_link_lost_1100_degrades_alerts_gates_and_triggers_safe_state(ready: Driver) -> None:
    effects = ready.send(lc.IbLinkLost())
    assert ready.state is lc.State.DEGRADED
    assert gate_kind(effects) is not None
    assert of_type(effects, lc.TriggerSafeState)
    assert [a.key for a in alerts(effects)] == [key("degraded")]


def test_degraded_returns_to_ready_only_when_every_reason_clears(ready: Driver) -> None:
    ready.send(lc.IbLinkLost(), lc.FarmBroken("usfarm"))
    ready.send(lc.IbLinkRestored())
    assert ready.state is lc.State.DEGRADED
    ready.send(lc.FarmOk("eufarm"))
    assert ready.state is lc.State.DEGRADED
    ready.send(lc.FarmOk("usfarm"))
    assert ready.state is lc.State.API_READY


def test_second_degradation_does_not_page_again(ready: Driver) -> None:
    ready.send(lc.IbLinkLost())
    effects = ready.send(lc.FarmBroken("usfarm"))
    assert alerts(effects) == []


def test_permission_mismatch_degrades_and_permission_ok_clears(ready: Driver) -> None:
    ready.send(lc.PermissionMismatch("read-only API"))
    assert ready.state is lc.State.DEGRADED
    ready.send(lc.PermissionOk())
    assert ready.state is lc.State.API_READY


def test_slow_heartbeat_degrades_and_a_fast_one_recovers(ready: Driver) -> None:
    ready.send(lc.HeartbeatOk(rtt=timedelta(seconds=6)))
    assert ready.state is lc.State.DEGRADED
    ready.send(lc.HeartbeatOk(rtt=timedelta(milliseconds=10)))
    assert ready.state is lc.State.API_READY


def test_account_mismatch_goes_fatal(ready: Driver) -> None:
    effects = ready.send(lc.AccountMismatch(expected="DU123", actual="U999"))
    assert ready.state is lc.State.FATAL
    assert "U999" in alerts(effects)[-1].body


def test_client_id_in_use_is_ignored(ready: Driver) -> None:
    before = ready.status
    assert ready.send(lc.ClientIdInUse(client_id=7)) == []
    assert ready.status == before


def test_heartbeat_missed_degrades_and_gates_orders_at_once_without_paging(ready: Driver) -> None:
    effects = ready.send(lc.HeartbeatMissed())
    assert ready.state is lc.State.DEGRADED
    assert gate_kind(effects) is not None
    assert alerts(effects) == []


def test_stall_that_persists_is_paged_on_tick(ready: Driver) -> None:
    ready.send(lc.HeartbeatMissed())
    ready.advance(seconds=POLICY.stall_page_after.total_seconds() + 0.5)
    effects = ready.send(lc.Tick())
    assert ready.state is lc.State.DEGRADED
    assert {a.key for a in alerts(effects)} == {key("degraded"), key("stall")}
    ready.advance(seconds=1)
    assert alerts(ready.send(lc.Tick())) == []  # paged once per episode


def test_stall_that_clears_quickly_pages_nobody(ready: Driver) -> None:
    ready.send(lc.HeartbeatMissed())
    ready.advance(seconds=1)
    effects = ready.send(lc.HeartbeatOk(rtt=timedelta(milliseconds=2)))
    assert ready.state is lc.State.API_READY
    ready.advance(seconds=POLICY.stall_page_after.total_seconds() + 1)
    effects += ready.send(lc.Tick())
    assert alerts(effects) == []


def test_heartbeat_overdue_on_tick_degrades(ready: Driver) -> None:
    ready.advance(seconds=POLICY.heartbeat_deadline.total_seconds() + 1)
    ready.send(lc.Tick())
    assert ready.state is lc.State.DEGRADED


def test_fresh_heartbeat_keeps_ready_on_tick(ready: Driver) -> None:
    ready.advance(seconds=POLICY.heartbeat_deadline.total_seconds())
    assert ready.send(lc.Tick()) == []
    assert ready.state is lc.State.API_READY


def test_stall_that_persists_triggers_a_soft_restart(ready: Driver) -> None:
    ready.send(lc.HeartbeatMissed())
    ready.advance(seconds=POLICY.stall_soft_restart_after.total_seconds() - 1)
    assert not of_type(ready.send(lc.Tick()), lc.SoftRestart)
    ready.advance(seconds=1)
    effects = ready.send(lc.Tick())
    assert ready.state is lc.State.RESTARTING
    assert lc.SoftRestart() in effects
    assert len(ready.status.restarts) == 1


def test_soft_restart_that_does_not_help_escalates_to_a_hard_restart(ready: Driver) -> None:
    ready.send(lc.HeartbeatMissed())
    ready.advance(seconds=POLICY.stall_soft_restart_after.total_seconds())
    ready.send(lc.Tick())
    # RESTART restarts at the next minute: the deadline allows for that and the relaunch.
    allowed = POLICY.restart_command_delay + POLICY.token_relaunch_bound
    ready.advance(seconds=allowed.total_seconds() - 1)
    assert not of_type(ready.send(lc.Tick()), lc.HardRestart)
    ready.advance(seconds=1)
    effects = ready.send(lc.Tick())
    assert ready.state is lc.State.RESTARTING
    assert lc.HardRestart() in effects
    assert ready.status.restart_kind is lc.RestartKind.HARD


def test_soft_restart_returns_to_ready_after_the_api_drops_and_answers(ready: Driver) -> None:
    ready.send(lc.OperatorRestart())
    # The old session answering before the restart takes effect proves nothing.
    ready.send(lc.HeartbeatOk(rtt=timedelta(milliseconds=5)))
    assert ready.state is lc.State.RESTARTING
    ready.send(lc.RestartScheduled(), lc.ApiDisconnected())
    ready.send(lc.IbcRelaunching(kind=K.RESTART_COMMAND, status=0), lc.ApiConnected())
    effects = ready.send(lc.HeartbeatOk(rtt=timedelta(milliseconds=5)))
    assert ready.state is lc.State.API_READY
    assert OPEN in effects


def test_no_soft_restart_on_top_of_an_expected_daily_restart(ready: Driver) -> None:
    ready.send(lc.DailyRestartExpected(), lc.HeartbeatMissed())
    assert ready.state is lc.State.RESTARTING  # the expected relaunch, not a stall
    assert not of_type(ready.effects, lc.SoftRestart)


def test_api_disconnected_outside_a_window_degrades_and_pages_if_it_lasts(ready: Driver) -> None:
    effects = ready.send(lc.ApiDisconnected())
    assert ready.state is lc.State.DEGRADED
    ready.advance(seconds=POLICY.stall_page_after.total_seconds() + 0.5)
    effects += ready.send(lc.Tick())
    assert alerts(effects)


# --- reset windows ------------------------------------------------------------------------


def test_link_loss_inside_a_reset_window_pages_nobody(ready: Driver) -> None:
    ready.send(lc.ResetWindowEntered("na-daily"))
    effects = ready.send(lc.IbLinkLost(), lc.ApiDisconnected(), lc.FarmBroken("usfarm"))
    assert ready.state is lc.State.RESET_WINDOW
    assert alerts(effects) == []
    assert gate_kind(effects) is not None
    assert not of_type(effects, lc.TriggerSafeState)


def test_recovery_inside_the_window_returns_to_ready(ready: Driver) -> None:
    ready.send(lc.ResetWindowEntered(), lc.IbLinkLost())
    ready.send(lc.IbLinkRestored())
    assert ready.state is lc.State.API_READY


def test_not_ready_after_the_window_grace_pages(ready: Driver) -> None:
    ready.send(lc.ResetWindowEntered(), lc.IbLinkLost())
    ready.advance(minutes=30)
    ready.send(lc.ResetWindowLeft())
    ready.advance(seconds=POLICY.ready_grace_after_window.total_seconds() - 1)
    ready.send(lc.HeartbeatOk(rtt=timedelta(milliseconds=5)))
    assert alerts(ready.send(lc.Tick())) == []
    assert ready.state is lc.State.RESET_WINDOW
    ready.advance(seconds=1)
    effects = ready.send(lc.Tick())
    assert ready.state is lc.State.DEGRADED
    assert key("not-ready") in {a.key for a in alerts(effects)}


def test_permission_mismatch_pages_even_inside_a_reset_window(ready: Driver) -> None:
    ready.send(lc.ResetWindowEntered())
    effects = ready.send(lc.PermissionMismatch("no options permission"))
    assert ready.state is lc.State.DEGRADED
    assert alerts(effects)


def test_degraded_gateway_entering_a_window_becomes_reset_window(ready: Driver) -> None:
    ready.send(lc.IbLinkLost())
    ready.send(lc.ResetWindowEntered())
    assert ready.state is lc.State.RESET_WINDOW


def test_twofa_inside_a_reset_window_still_pages(ready: Driver) -> None:
    ready.send(lc.ResetWindowEntered(), lc.ApiDisconnected(), lc.LoginAttempt(1))
    effects = ready.send(lc.TwoFactorInitiated())
    assert key("2fa") in {a.key for a in alerts(effects)}


# --- schedule ticks -----------------------------------------------------------------------


def test_daily_restart_time_sends_nothing_and_keeps_the_gate_open(ready: Driver) -> None:
    effects = ready.send(lc.DailyRestartExpected())
    # IBC restarts the Gateway by itself at AutoRestartTime: a RESTART on top would make two.
    assert effects == []
    assert ready.state is lc.State.API_READY
    assert ready.status.expected_relaunch is lc.RelaunchKind.AUTO_RESTART


def test_daily_restart_drop_is_planned_and_triggers_no_safe_state(ready: Driver) -> None:
    ready.send(lc.DailyRestartExpected())
    ready.advance(seconds=20)
    effects = ready.send(lc.ApiDisconnected())
    assert ready.state is lc.State.RESTARTING
    assert gate_kind(effects) is lc.OutageKind.PLANNED_RESTART
    assert not of_type(effects, lc.TriggerSafeState)
    assert not alerts(effects)


def test_daily_restart_expectation_lapses_so_a_later_drop_is_a_stall(ready: Driver) -> None:
    ready.send(lc.DailyRestartExpected())
    ready.advance(seconds=POLICY.restart_command_delay.total_seconds())
    ready.send(lc.Tick(), lc.HeartbeatOk(rtt=timedelta(milliseconds=5)))
    effects = ready.send(lc.ApiDisconnected())
    assert ready.state is lc.State.DEGRADED
    assert gate_kind(effects) is lc.OutageKind.STALLED


def test_daily_restart_while_logging_in_is_ignored(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1))
    assert d.send(lc.DailyRestartExpected()) == []


def test_weekly_reauth_warns_ahead_and_resolves_after_the_full_login(ready: Driver) -> None:
    boundary = ready.now + timedelta(hours=2)
    effects = ready.send(lc.WeeklyReauthDue(at=boundary))
    (alert,) = alerts(effects)
    assert alert.key == key("reauth") and "IB Key" in alert.body
    ready.send(lc.LoginAttempt(1), lc.LoggedIn())  # before the boundary: still pending
    assert key("reauth") in ready.status.open_alerts
    ready.now = boundary + timedelta(minutes=5)
    effects = ready.send(lc.LoginAttempt(1), lc.TwoFactorInitiated(), lc.LoggedIn())
    assert key("reauth") in resolved(effects)


# --- more transitions ---------------------------------------------------------------------


def test_daily_restart_comes_back_through_login_without_any_alert(ready: Driver) -> None:
    ready.send(lc.DailyRestartExpected())
    ready.send(lc.ApiDisconnected(), lc.LoginAttempt(1))
    assert ready.state is lc.State.LOGGING_IN
    ready.send(lc.LoggedIn(), lc.ApiConnected(), lc.HeartbeatOk(rtt=timedelta(milliseconds=5)))
    assert ready.state is lc.State.API_READY
    assert alerts(ready.effects) == []
    assert not of_type(ready.effects, lc.TriggerSafeState)


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


def test_operator_stop_of_a_fatal_gateway_goes_stopped(ready: Driver) -> None:
    ready.send(lc.ApiDisconnected(), lc.LockedOut())
    effects = ready.send(lc.OperatorStop())
    assert ready.state is lc.State.STOPPED
    assert key("fatal") in resolved(effects)
    assert lc.StopContainer() not in effects  # FATAL already stopped it


def test_window_flags_are_tracked_while_stopped(ready: Driver) -> None:
    ready.send(lc.OperatorStop())
    assert ready.send(lc.ResetWindowEntered()) == []
    assert ready.status.in_window
    assert ready.state is lc.State.STOPPED


def test_leaving_a_window_that_was_never_entered_is_ignored(ready: Driver) -> None:
    before = ready.status
    assert ready.send(lc.ResetWindowLeft()) == []
    assert ready.status == before


def test_status_round_trips_through_json(ready: Driver) -> None:
    ready.send(lc.IbLinkLost(), lc.FarmBroken("usfarm"), lc.ContainerDied(exit_code=1))
    ready.send(lc.WeeklyReauthDue(at=T0 + timedelta(days=1)))
    record = json.loads(json.dumps(ready.status.to_record()))
    assert lc.GatewayStatus.from_record(record) == ready.status
    names = {f.name for f in dataclasses.fields(lc.GatewayStatus)}
    assert set(record) == names


def test_status_record_errors_name_the_field(ready: Driver) -> None:
    record = ready.status.to_record()
    record["state"] = "sleeping"
    with pytest.raises(ValueError, match=r"'paper-a'.state: 'sleeping' is not one of"):
        lc.GatewayStatus.from_record(record)
    record = ready.status.to_record()
    record["restarts"] = ["2026-01-01T00:00:00"]
    with pytest.raises(ValueError, match=r"restarts\[0\]: .* has no UTC offset"):
        lc.GatewayStatus.from_record(record)


def _status_in(state: lc.State) -> lc.GatewayStatus:
    d = Driver(policy=lc.LifecyclePolicy(login_budget=50))
    paths: dict[lc.State, list[lc.Event]] = {
        lc.State.ABSENT: [],
        lc.State.CREATING: [lc.OperatorStart()],
        lc.State.STARTING: [lc.OperatorStart(), lc.ContainerStarted()],
        lc.State.LOGGING_IN: [lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1)],
        lc.State.AWAITING_2FA: [lc.OperatorStart(), lc.ContainerStarted(), lc.TwoFactorInitiated()],
        lc.State.COMPETING_SESSION: [
            lc.OperatorStart(),
            lc.ContainerStarted(),
            lc.ExistingSessionDetected(),
        ],
        lc.State.API_READY: _READY,
        lc.State.DEGRADED: [*_READY, lc.IbLinkLost()],
        lc.State.RESET_WINDOW: [*_READY, lc.ResetWindowEntered(), lc.IbLinkLost()],
        lc.State.RESTARTING: [*_READY, lc.OperatorRestart()],
        lc.State.BACKOFF: [lc.OperatorStart(), lc.ContainerStarted(), lc.LoginFailed()],
        lc.State.STOPPED: [lc.OperatorStart(), lc.OperatorStop()],
        lc.State.FATAL: [*_READY, lc.ApiDisconnected(), lc.LockedOut()],
    }
    d.send(*paths[state])
    assert d.state is state
    return d.status


_ONE_OF_EACH: list[lc.Event] = [
    lc.ContainerCreated(),
    lc.ContainerStarted(),
    lc.ContainerDied(exit_code=1),
    lc.ContainerDied(exit_code=87),
    lc.ContainerOom(),
    lc.ContainerDestroyed(),
    lc.LoginAttempt(1),
    lc.TwoFactorInitiated(),
    lc.TwoFactorTimedOut(),
    lc.LoggedIn(),
    lc.ExistingSessionDetected(),
    lc.LoginFailed("x"),
    lc.LockedOut(),
    lc.TwoFactorApproved(),
    lc.TwoFactorExpired(relogin=True),
    lc.TwoFactorExpired(relogin=False),
    lc.IbcExitStatus(code=1),
    lc.IbcExitStatus(code=1112),
    *(lc.IbcRelaunching(kind=kind, status=0) for kind in lc.RelaunchKind),
    lc.RestartScheduled(),
    lc.ApiConnected(),
    lc.HeartbeatOk(rtt=timedelta(milliseconds=5)),
    lc.HeartbeatMissed(),
    lc.ApiDisconnected(),
    lc.IbLinkLost(),
    lc.IbLinkRestored(),
    lc.FarmBroken("usfarm"),
    lc.FarmOk("usfarm"),
    lc.AccountMismatch("DU1", "U2"),
    lc.PermissionMismatch("read-only"),
    lc.PermissionOk(),
    lc.ClientIdInUse(3),
    lc.ResetWindowEntered(),
    lc.ResetWindowLeft(),
    lc.DailyRestartExpected(),
    lc.WeeklyReauthDue(at=T0),
    lc.OperatorStart(),
    lc.OperatorStop(),
    lc.OperatorRestart(),
    lc.OperatorReset(),
    lc.SupervisorStopping(),
    lc.Tick(),
]


def test_one_of_each_covers_every_event_type() -> None:
    assert {type(e) for e in _ONE_OF_EACH} == set(typing.get_args(lc.Event))


@pytest.mark.parametrize("state", list(lc.State), ids=lambda s: s.name)
def test_every_state_answers_every_event(state: lc.State) -> None:
    status = _status_in(state)
    for event in _ONE_OF_EACH:
        for later in (timedelta(seconds=1), timedelta(hours=2)):
            new, effects = lc.transition(status, event, now=T0 + later, policy=POLICY)
            assert isinstance(new, lc.GatewayStatus)
            if new == status and not isinstance(event, lc.SupervisorStopping):
                assert effects == []


# --- machinery ----------------------------------------------------------------------------


def test_stopped_ignores_every_non_operator_event(ready: Driver) -> None:
    ready.send(lc.OperatorStop())
    before = ready.status
    for event in (lc.ContainerDied(1), lc.HeartbeatOk(timedelta(0)), lc.Tick(), lc.LoggedIn()):
        assert ready.send(event) == []
    assert ready.status == before


def test_naive_now_is_rejected_with_a_clear_error(d: Driver) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        lc.transition(d.status, lc.Tick(), now=datetime(2026, 1, 1), policy=POLICY)


def test_a_non_event_is_rejected(d: Driver) -> None:
    with pytest.raises(TypeError, match="not a lifecycle event"):
        lc.transition(d.status, "boom", now=T0, policy=POLICY)  # type: ignore[arg-type]


def test_policy_rejects_a_non_positive_deadline() -> None:
    with pytest.raises(ValueError, match="twofa_timeout"):
        lc.LifecyclePolicy(twofa_timeout=timedelta(0))


# --- properties over random event sequences -----------------------------------------------

_EVENTS = st.one_of(
    st.sampled_from(
        [
            lc.ContainerCreated(),
            lc.ContainerStarted(),
            lc.ContainerOom(),
            lc.ContainerDestroyed(),
            lc.LoginAttempt(1),
            lc.TwoFactorInitiated(),
            lc.TwoFactorTimedOut(),
            lc.LoggedIn(),
            lc.ExistingSessionDetected(),
            lc.LoginFailed("x"),
            lc.LockedOut(),
            lc.TwoFactorApproved(),
            lc.TwoFactorExpired(relogin=True),
            lc.TwoFactorExpired(relogin=False),
            lc.RestartScheduled(),
            lc.ApiConnected(),
            lc.HeartbeatMissed(),
            lc.ApiDisconnected(),
            lc.IbLinkLost(),
            lc.IbLinkRestored(),
            lc.IbLinkRestored(data_lost=True),
            lc.PermissionOk(),
            lc.ClientIdInUse(3),
            lc.ResetWindowEntered(),
            lc.ResetWindowLeft(),
            lc.DailyRestartExpected(),
            lc.OperatorStart(),
            lc.OperatorStop(),
            lc.OperatorRestart(),
            lc.OperatorReset(),
            lc.Tick(),
            lc.Tick(),
            lc.Tick(),
        ]
    ),
    st.builds(lc.ContainerDied, st.sampled_from([0, 1, 87, 137, 1111])),
    st.builds(lc.IbcExitStatus, st.sampled_from([1, 87, 88, 1111, 1112])),
    st.builds(lc.IbcRelaunching, st.sampled_from(list(lc.RelaunchKind)), st.just(0)),
    st.builds(lc.HeartbeatOk, st.sampled_from([timedelta(milliseconds=5), timedelta(seconds=9)])),
    st.builds(lc.FarmBroken, st.sampled_from(["usfarm", "hmds"])),
    st.builds(lc.FarmOk, st.sampled_from(["usfarm", "hmds"])),
    st.builds(lc.PermissionMismatch, st.just("read-only")),
    st.builds(lc.AccountMismatch, st.just("DU1"), st.just("U2")),
    st.builds(lc.WeeklyReauthDue, st.just(T0 + timedelta(days=2))),
)
# Common life events are repeated so random walks reach deep states, not just FATAL.
_COMMON = st.sampled_from(
    [
        lc.ContainerStarted(),
        lc.LoginAttempt(1),
        lc.LoggedIn(),
        lc.HeartbeatOk(rtt=timedelta(milliseconds=5)),
        lc.HeartbeatOk(rtt=timedelta(milliseconds=5)),
        lc.TwoFactorInitiated(),
        lc.Tick(),
    ]
)
_READY = [
    lc.OperatorStart(),
    lc.ContainerStarted(),
    lc.LoginAttempt(1),
    lc.LoggedIn(),
    lc.HeartbeatOk(rtt=timedelta(milliseconds=5)),
]
_PREFIXES = st.sampled_from(
    [
        [],
        _READY[:1],
        _READY[:2],
        _READY[:3],
        [*_READY[:3], lc.TwoFactorInitiated()],
        _READY,
        [*_READY, lc.ResetWindowEntered()],
        [*_READY, lc.IbLinkLost()],
    ]
)
_TAIL = st.lists(
    st.tuples(st.one_of(_COMMON, _EVENTS), st.integers(min_value=0, max_value=900)), max_size=60
)
_STEPS = st.builds(lambda prefix, tail: [(e, 1) for e in prefix] + tail, _PREFIXES, _TAIL)
_RESTART_EFFECTS = (lc.SoftRestart, lc.HardRestart, lc.StartContainer)


@settings(max_examples=300, deadline=None)
@given(steps=_STEPS, seed=st.integers(min_value=0, max_value=10))
def test_random_event_sequences_keep_the_invariants(
    steps: list[tuple[lc.Event, int]], seed: int
) -> None:
    policy = lc.LifecyclePolicy(restart_budget=3, login_budget=4)
    status = lc.GatewayStatus.initial(gateway=GW, username=USER, now=T0)
    rng = random.Random(seed)
    now = T0
    open_keys: set[str] = set()
    gate: tuple[bool, lc.OutageKind | None] = (False, lc.OutageKind.LOST)
    for event, seconds in steps:
        now += timedelta(seconds=seconds)
        before = status
        status, effects = lc.transition(status, event, now=now, policy=policy, rng=rng)
        operator = isinstance(
            event, lc.OperatorStart | lc.OperatorStop | lc.OperatorRestart | lc.OperatorReset
        )
        for effect in effects:
            if isinstance(effect, lc.Alert):
                # Never the same key twice without a resolve in between.
                assert effect.key not in open_keys
                assert effect.key.startswith(f"gateway:{GW}:")
                assert GW in effect.body
                open_keys.add(effect.key)
            elif isinstance(effect, lc.ResolveAlert):
                assert effect.key in open_keys
                open_keys.discard(effect.key)
            elif isinstance(effect, lc.GateOrders):
                new_gate = (effect.gate.open, effect.gate.kind)
                assert new_gate != gate  # a gate is given again only when it changes
                gate = new_gate
                # The kind the strategies hear is the one the status decides.
                assert effect.gate == lc.gate_of(status, now=now, policy=policy)
        assert status.open_alerts == open_keys
        # The gate is open exactly in API_READY.
        assert gate[0] == (status.state is lc.State.API_READY)
        # FATAL and STOPPED are left, and STOPPED entered, only by operator commands.
        if before.state in lc.OPERATOR_STATES and status.state is not before.state:
            assert operator
        if status.state is lc.State.STOPPED and before.state is not lc.State.STOPPED:
            assert operator
        # At most one restart-type effect per step.
        assert sum(isinstance(e, _RESTART_EFFECTS) for e in effects) <= 1
        # Readiness means logged in and a probe answer within the deadline.
        if status.state is lc.State.API_READY:
            assert status.logged_in and status.last_heartbeat is not None
            if isinstance(event, lc.Tick):
                assert now - status.last_heartbeat <= policy.heartbeat_deadline
        # The retry budget is never exceeded.
        recent = [t for t in status.restarts if t > now - policy.restart_window]
        assert len(recent) <= policy.restart_budget
        # Unchanged state on an ignored event means no effects.
        if status == before:
            assert effects == []


# --- the order gate's outage kind -----------------------------------------------------------


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


def test_status_without_the_newer_fields_is_still_restored(ready: Driver) -> None:
    record = ready.status.to_record()
    for name in ("planned_until", "relaunch_expected_until", "window_until", "gate_open"):
        record.pop(name)
    record.pop("expected_relaunch")
    record.pop("gate_kind")
    restored = lc.GatewayStatus.from_record(record)
    assert restored.state is lc.State.API_READY


# --- IBC's real line sequences through the parser and the machine -------------------------


class _Pipeline:
    """Log lines -> AuthLogFollower -> the supervisor's mapping -> the machine, with the probe
    seen as a drop when the JVM exits and an answer after the relaunch logs in."""

    def __init__(self, policy: lc.LifecyclePolicy = POLICY) -> None:
        from gateway.authlog import AuthLogFollower

        self.driver = Driver(policy=policy)
        self.driver.to_ready()
        self.follower = AuthLogFollower(started_at=self.driver.now - timedelta(minutes=1))

    def feed(self, lines: list[str]) -> None:
        from gateway import authlog
        from supervisor.lifecycle_inputs import from_auth_event
        from tests.unit.test_authlog import docker

        for line in lines:
            self.driver.advance(seconds=1)
            for event in self.follower.feed(docker(line, self.driver.now)):
                if isinstance(event, authlog.ExitStatus):
                    self.driver.send(lc.ApiDisconnected())  # the JVM is gone: so is the API
                mapped = from_auth_event(event)
                if mapped is not None:
                    self.driver.send(mapped)
        if self.driver.status.logged_in:
            self.driver.send(lc.ApiConnected(), lc.HeartbeatOk(rtt=timedelta(milliseconds=5)))

    def paged(self) -> list[lc.Alert]:
        return [a for a in alerts(self.driver.effects) if a.severity >= lc.Severity.WARNING]

    def gate_kinds(self) -> list[lc.OutageKind | None]:
        return [e.gate.kind for e in self.driver.effects if isinstance(e, lc.GateOrders)]


@pytest.mark.parametrize(
    ("sequence", "logins"),
    [("DAILY", 0), ("RESTART_COMMAND", 0), ("WEEKLY_COLD", 1)],
    ids=["daily", "restart", "weekly-cold"],
)
def test_planned_relaunch_sequences_hold_orders_page_nobody_and_count_only_real_logins(
    sequence: str, logins: int
) -> None:
    from tests.unit import test_authlog

    pipe = _Pipeline()
    before = len(pipe.driver.status.login_attempts)
    pipe.driver.effects.clear()
    pipe.feed(getattr(test_authlog, sequence))
    assert pipe.driver.state is lc.State.API_READY
    assert pipe.paged() == []
    # Closed as a planned restart (maybe briefly read as a stall first), then open again.
    kinds = pipe.gate_kinds()
    assert lc.OutageKind.PLANNED_RESTART in kinds and kinds[-1] is None
    assert lc.OutageKind.LOST not in kinds
    assert not of_type(pipe.driver.effects, lc.SoftRestart | lc.HardRestart | lc.StartContainer)
    assert len(pipe.driver.status.login_attempts) - before == logins
    assert pipe.driver.status.restarts == ()


def test_login_failure_sequence_is_unplanned_and_the_machine_owns_the_retry() -> None:
    from tests.unit import test_authlog

    pipe = _Pipeline()
    pipe.driver.send(lc.ApiDisconnected(), lc.ContainerStarted())  # a fresh container start
    pipe.follower.reset(started_at=pipe.driver.now)
    pipe.feed(test_authlog.LOGIN_FAILED_COLD)
    assert pipe.driver.state is lc.State.BACKOFF
    # Stopped once; IBC's own cold-restart login that raced the stop is counted too.
    assert of_type(pipe.driver.effects, lc.StopContainer) == [lc.StopContainer()]
    assert len(pipe.driver.status.login_attempts) == 3
    assert lc.OutageKind.PLANNED_RESTART not in pipe.gate_kinds()


def test_twofa_exit_sequence_with_ibc_owning_the_restart_restarts_nothing_itself() -> None:
    from tests.unit import test_authlog

    pipe = _Pipeline(lc.LifecyclePolicy(twofa_timeout_action=IBC_OWNS))
    pipe.driver.send(lc.ApiDisconnected(), lc.ContainerStarted())
    pipe.follower.reset(started_at=pipe.driver.now)
    pipe.feed(test_authlog.TWOFA_EXIT_RELAUNCHED)
    assert pipe.driver.state is lc.State.LOGGING_IN
    assert not of_type(pipe.driver.effects, lc.SoftRestart | lc.HardRestart | lc.StopContainer)
    (alert,) = [a for a in pipe.paged() if a.key == key("login")]
    assert "approved" in alert.body
