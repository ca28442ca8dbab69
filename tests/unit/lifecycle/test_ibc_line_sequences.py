"""IBC's real line sequences through the log parser, the supervisor's mapping and the machine."""

from __future__ import annotations

from datetime import timedelta

import pytest

from supervisor import lifecycle as lc
from tests.unit.lifecycle.driver import (
    IBC_OWNS,
    POLICY,
    Driver,
    alerts,
    key,
    of_type,
)


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
