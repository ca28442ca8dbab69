"""IB's reset windows: losses inside them page nobody, a gateway not back after the grace does."""

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
)


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


def test_window_flags_are_tracked_while_stopped(ready: Driver) -> None:
    ready.send(lc.OperatorStop())
    assert ready.send(lc.ResetWindowEntered()) == []
    assert ready.status.in_window
    assert ready.state is lc.State.STOPPED


def test_leaving_a_window_that_was_never_entered_is_ignored(ready: Driver) -> None:
    before = ready.status
    assert ready.send(lc.ResetWindowLeft()) == []
    assert ready.status == before
