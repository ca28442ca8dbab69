"""The schedule: IBC's daily restart is planned and quiet; the weekly re-authentication warns
ahead."""

from __future__ import annotations

from datetime import timedelta

from supervisor import lifecycle as lc
from tests.unit.lifecycle.driver import (
    POLICY,
    Driver,
    alerts,
    gate_kind,
    key,
    of_type,
    resolved,
)


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


def test_daily_restart_comes_back_through_login_without_any_alert(ready: Driver) -> None:
    ready.send(lc.DailyRestartExpected())
    ready.send(lc.ApiDisconnected(), lc.LoginAttempt(1))
    assert ready.state is lc.State.LOGGING_IN
    ready.send(lc.LoggedIn(), lc.ApiConnected(), lc.HeartbeatOk(rtt=timedelta(milliseconds=5)))
    assert ready.state is lc.State.API_READY
    assert alerts(ready.effects) == []
    assert not of_type(ready.effects, lc.TriggerSafeState)


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


def test_no_soft_restart_on_top_of_an_expected_daily_restart(ready: Driver) -> None:
    ready.send(lc.DailyRestartExpected(), lc.HeartbeatMissed())
    assert ready.state is lc.State.RESTARTING  # the expected relaunch, not a stall
    assert not of_type(ready.effects, lc.SoftRestart)


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
