"""Stalls: paged only if they last, a soft restart when they persist, a hard one if that fails."""

from __future__ import annotations

from datetime import timedelta

from supervisor import lifecycle as lc
from tests.unit.lifecycle.driver import (
    OPEN,
    POLICY,
    Driver,
    K,
    alerts,
    key,
    of_type,
)


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
