"""Properties that hold over random event sequences."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import lifecycle as lc
from tests.unit.lifecycle.driver import (
    GW,
    READY,
    T0,
    USER,
)

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


_PREFIXES = st.sampled_from(
    [
        [],
        READY[:1],
        READY[:2],
        READY[:3],
        [*READY[:3], lc.TwoFactorInitiated()],
        READY,
        [*READY, lc.ResetWindowEntered()],
        [*READY, lc.IbLinkLost()],
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
