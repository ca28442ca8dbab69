"""IBC's relaunches inside the running container: weekly cold restarts, token relaunches,
IBC's own retries, and planned outages that outlast their bound."""

from __future__ import annotations

from datetime import timedelta

from supervisor import lifecycle as lc
from tests.unit.lifecycle.driver import (
    OPEN,
    POLICY,
    USER,
    Driver,
    K,
    alerts,
    gate_kind,
    key,
    of_type,
)


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
