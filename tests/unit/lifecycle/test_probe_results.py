"""Probe results: readiness, degradation and its reasons, heartbeats due on a tick."""

from __future__ import annotations

from datetime import timedelta

from supervisor import lifecycle as lc
from tests.unit.lifecycle.driver import (
    OPEN,
    POLICY,
    Driver,
    alerts,
    gate_kind,
    key,
    of_type,
    resolved,
)


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


def test_heartbeat_overdue_on_tick_degrades(ready: Driver) -> None:
    ready.advance(seconds=POLICY.heartbeat_deadline.total_seconds() + 1)
    ready.send(lc.Tick())
    assert ready.state is lc.State.DEGRADED


def test_fresh_heartbeat_keeps_ready_on_tick(ready: Driver) -> None:
    ready.advance(seconds=POLICY.heartbeat_deadline.total_seconds())
    assert ready.send(lc.Tick()) == []
    assert ready.state is lc.State.API_READY


def test_api_disconnected_outside_a_window_degrades_and_pages_if_it_lasts(ready: Driver) -> None:
    effects = ready.send(lc.ApiDisconnected())
    assert ready.state is lc.State.DEGRADED
    ready.advance(seconds=POLICY.stall_page_after.total_seconds() + 0.5)
    effects += ready.send(lc.Tick())
    assert alerts(effects)


def test_a_link_loss_ends_when_a_new_probe_session_sees_the_link_up(ready: Driver) -> None:
    # The 1,000-event chaos run: the probe reconnected while IB's link was down, the 1102
    # went to no session of the probe's, and the gateway stayed "ib link lost" for good.
    from gateway import probe as probe_mod
    from supervisor.lifecycle_inputs import from_probe_event

    ready.send(lc.IbLinkLost(), lc.ApiDisconnected())
    assert ready.state is lc.State.DEGRADED
    ready.advance(seconds=5)
    link_up = from_probe_event(probe_mod.ProbeLinkUp(), account="DU1000001")
    assert link_up is not None
    effects = ready.send(lc.ApiConnected(), link_up, lc.HeartbeatOk(rtt=timedelta(milliseconds=20)))
    assert ready.state is lc.State.API_READY
    assert key("degraded") in resolved(effects)
