"""Who pays for a restart (the restart budget, the strategies' safe state), the gate a stopping
supervisor gives, how an announced RESTART is read, and the reason the status shows after each
(cases the mutation check, benchmarks/mutation.sh, found untested)."""

from __future__ import annotations

import pytest

from gateway.outage import Gate, OutageKind
from supervisor import lifecycle as lc
from tests.unit.lifecycle.driver import GW, POLICY, Driver, key, of_type, resolved


def test_a_container_removed_outside_ibfleet_is_an_unplanned_loss_that_costs_a_restart(
    ready: Driver,
) -> None:
    effects = ready.send(lc.ContainerDestroyed())
    assert ready.state is lc.State.RESTARTING
    assert lc.TriggerSafeState(reason=f"{GW}: container removed") in effects
    assert lc.StartContainer() in effects
    assert ready.status.reason == "container removed"
    assert ready.status.restarts == (ready.now,)
    assert ready.status.planned_until is None


def test_an_operators_restart_of_a_login_spends_no_restart_budget() -> None:
    d = Driver(policy=lc.LifecyclePolicy(restart_budget=1))
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1))
    for _ in range(3):
        effects = d.send(lc.OperatorRestart())
        assert d.state is lc.State.RESTARTING
        assert lc.HardRestart() in effects
        assert d.status.reason == "operator restart"
    assert d.status.restarts == ()


def test_an_operators_restart_of_a_session_is_soft_planned_and_says_so(ready: Driver) -> None:
    effects = ready.send(lc.OperatorRestart())
    assert lc.SoftRestart() in effects
    assert of_type(effects, lc.TriggerSafeState) == []
    assert ready.status.reason == "operator restart"


def test_an_operators_reset_of_a_backoff_retries_now_and_says_so(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1), lc.LoginFailed())
    assert d.state is lc.State.BACKOFF
    effects = d.send(lc.OperatorReset())
    assert d.state is lc.State.RESTARTING
    assert lc.StartContainer() in effects
    assert d.status.reason == "operator reset"
    assert d.status.failed_logins == 0


def test_an_operators_reset_of_a_fatal_gateway_stops_it_and_says_so(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1), lc.LockedOut())
    d.send(lc.OperatorReset())
    assert d.state is lc.State.STOPPED
    assert d.status.reason == "operator reset"


def test_a_rollouts_replacement_says_what_it_does(ready: Driver) -> None:
    ready.send(lc.ReplaceStarted())
    assert ready.status.reason == "replacing the container with its new spec"


def test_a_stopping_supervisor_closes_the_gate_for_a_shutdown() -> None:
    d = Driver()
    d.to_ready()
    effects = d.send(lc.SupervisorStopping())
    assert effects == [
        lc.GateOrders(
            gate=Gate(open=False, kind=OutageKind.SHUTDOWN, reason="the supervisor is stopping")
        )
    ]


@pytest.mark.parametrize(
    "drop", [lc.HeartbeatMissed(), lc.ApiDisconnected()], ids=["missed", "disconnected"]
)
def test_the_drop_after_an_accepted_restart_command_is_read_as_that_restart(
    ready: Driver, drop: lc.Event
) -> None:
    ready.send(lc.RestartScheduled())
    ready.advance(seconds=30)
    effects = ready.send(drop)
    assert ready.state is lc.State.RESTARTING
    assert ready.status.reason == "IBC RESTART (token relaunch)"
    assert of_type(effects, lc.TriggerSafeState) == []


def test_an_accepted_restart_command_extends_a_soft_restarts_deadline(ready: Driver) -> None:
    ready.send(lc.OperatorRestart())
    first = ready.status.restart_deadline
    ready.advance(seconds=60)
    ready.send(lc.RestartScheduled())
    extended = ready.now + POLICY.restart_command_delay + POLICY.token_relaunch_bound
    assert ready.status.restart_deadline == extended
    ready.now = first  # the first deadline passes: the restart is still within its time
    assert of_type(ready.send(lc.Tick()), lc.HardRestart) == []
    ready.now = extended
    assert lc.HardRestart() in ready.send(lc.Tick())


def test_an_accepted_restart_command_does_not_extend_a_hard_restarts_deadline(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.LoginAttempt(1), lc.OperatorRestart())
    first = d.status.restart_deadline
    d.advance(seconds=60)
    d.send(lc.RestartScheduled())
    assert d.status.restart_deadline == first


def test_a_stall_does_not_soft_restart_while_an_accepted_restart_command_is_due(
    ready: Driver,
) -> None:
    ready.send(lc.HeartbeatMissed())
    stalled_at = ready.now
    assert ready.state is lc.State.DEGRADED
    ready.advance(seconds=60)
    ready.send(lc.RestartScheduled())  # IBC relaunches within restart_command_delay
    due = ready.now + POLICY.restart_command_delay
    ready.now = stalled_at + POLICY.stall_soft_restart_after
    assert of_type(ready.send(lc.Tick()), lc.SoftRestart) == []
    assert ready.state is lc.State.DEGRADED
    ready.now = due  # the announced relaunch did not come: the stall is a stall again
    assert lc.SoftRestart() in ready.send(lc.Tick())


def test_a_persisting_stall_soft_restarts_and_says_why(ready: Driver) -> None:
    ready.send(lc.HeartbeatMissed())
    ready.advance(seconds=POLICY.stall_soft_restart_after.total_seconds())
    effects = ready.send(lc.HeartbeatMissed(), lc.Tick())
    assert lc.SoftRestart() in effects
    assert ready.status.reason == "API stall persisted"


def test_a_failed_login_after_a_competing_session_closes_the_competing_alert(d: Driver) -> None:
    d.send(lc.OperatorStart(), lc.ContainerStarted(), lc.ExistingSessionDetected())
    assert key("competing") in d.status.open_alerts
    effects = d.send(lc.LoginFailed())
    assert key("competing") in resolved(effects)
    assert key("competing") not in d.status.open_alerts
