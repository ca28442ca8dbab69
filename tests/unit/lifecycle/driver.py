"""Drives one lifecycle machine under a fake clock: the shared constants, driver and effect
filters of the lifecycle tests."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from gateway.config import TwoFactorTimeoutAction
from supervisor import lifecycle as lc

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
K = lc.RelaunchKind  # short, for the relaunch tests' many kind= arguments


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


# The events that take a fresh machine to API_READY.
READY = [
    lc.OperatorStart(),
    lc.ContainerStarted(),
    lc.LoginAttempt(1),
    lc.LoggedIn(),
    lc.HeartbeatOk(rtt=timedelta(milliseconds=5)),
]


def status_in(state: lc.State) -> lc.GatewayStatus:
    """A status in ``state``, reached by the shortest ordinary path."""
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
        lc.State.API_READY: READY,
        lc.State.DEGRADED: [*READY, lc.IbLinkLost()],
        lc.State.RESET_WINDOW: [*READY, lc.ResetWindowEntered(), lc.IbLinkLost()],
        lc.State.RESTARTING: [*READY, lc.OperatorRestart()],
        lc.State.BACKOFF: [lc.OperatorStart(), lc.ContainerStarted(), lc.LoginFailed()],
        lc.State.STOPPED: [lc.OperatorStart(), lc.OperatorStop()],
        lc.State.FATAL: [*READY, lc.ApiDisconnected(), lc.LockedOut()],
    }
    d.send(*paths[state])
    assert d.state is state
    return d.status


# One event of every type (and of each relaunch kind): the table tests send each to every state.
ONE_OF_EACH: list[lc.Event] = [
    lc.ContainerCreated(),
    lc.ContainerStarted(),
    lc.ContainerDied(exit_code=1),
    lc.ContainerDied(exit_code=87),
    lc.ContainerOom(),
    lc.ContainerDestroyed(),
    lc.ReplaceStarted(),
    lc.ReplaceFinished(ok=True),
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
