"""The state x event table and the one transition function.

Each event type has one row: the handler and the states it acts in. Every other cell of the row
is explicitly ignored: the status is returned unchanged with no effects. ``ignored`` says why,
in a sentence. :func:`render` prints the whole matrix
(``tests/unit/lifecycle/test_state_event_table.py`` checks that every cell is one or the other).

STOPPED and FATAL are left only by an operator command: no other row acts in them, except the
window flag (still tracked), a login IBC made before the stop landed (still counted) and the
supervisor's shutdown (closes the gate).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from supervisor.lifecycle import deadlines
from supervisor.lifecycle import events as ev
from supervisor.lifecycle.effects import Effect, GateOrders
from supervisor.lifecycle.gate import gate_of
from supervisor.lifecycle.handlers import (
    commands,
    container,
    login,
    probe,
    relaunch,
    schedule,
    suspect,
)
from supervisor.lifecycle.policy import LifecyclePolicy
from supervisor.lifecycle.states import (
    ALL_STATES,
    LOGIN_STATES,
    OPERATOR_STATES,
    RUNNING_STATES,
    SESSION_STATES,
    State,
)
from supervisor.lifecycle.status import GatewayStatus
from supervisor.lifecycle.step import Step

__all__ = ["TABLE", "Row", "render", "transition"]

Handler = Callable[[Step, Any], None]


@dataclass(frozen=True, slots=True)
class Row:
    """One event type's row: ``handler`` acts in ``states``; every other state ignores it."""

    handler: Handler | None
    states: frozenset[State]
    ignored: str

    def handles(self, state: State) -> bool:
        return self.handler is not None and state in self.states


_NONE: frozenset[State] = frozenset()
_LIVE = ALL_STATES - OPERATOR_STATES  # every state an operator does not hold
_S, _A, _C, _B, _R = (
    State.STARTING,
    State.ABSENT,
    State.CREATING,
    State.BACKOFF,
    State.RESTARTING,
)
_PROBED = RUNNING_STATES | {_R}  # the container runs (or restarts): the probe may see it


def _ignored(why: str) -> Row:
    return Row(None, _NONE, why)


TABLE: dict[type, Row] = {
    # --- the container (runtime events)
    ev.ContainerCreated: _ignored("creation alone changes nothing: only a start begins a life"),
    ev.ContainerStarted: Row(
        container.on_container_started, _LIVE, "an operator holds STOPPED/FATAL"
    ),
    ev.ContainerDied: Row(
        container.on_container_died,
        _LIVE - {_A, _B, _R},
        "ABSENT: not ours yet; BACKOFF: we stopped it; RESTARTING: a restart stops it first",
    ),
    ev.ContainerOom: Row(container.on_container_oom, _LIVE - {_A, _B, _R}, "as ev.ContainerDied"),
    ev.ContainerDestroyed: Row(
        container.on_container_destroyed,
        _LIVE - {_A, _B},
        "ABSENT: nothing to lose; BACKOFF: the retry creates it again",
    ),
    # --- a rollout (the orchestrator replacing the container with a new spec)
    ev.ReplaceStarted: Row(
        commands.on_replace_started,
        _LIVE - {_A},
        "ABSENT: nothing runs to replace; STOPPED/FATAL: an operator holds it",
    ),
    ev.ReplaceFinished: Row(
        commands.on_replace_finished, _LIVE, "an operator holds STOPPED/FATAL: nothing to end"
    ),
    # --- IBC's log (untrusted: never ends a session the probe sees healthy)
    ev.LoginAttempt: Row(login.on_login_attempt, ALL_STATES, "never: IB counts every login"),
    ev.TwoFactorInitiated: Row(
        login.on_twofa_initiated,
        _PROBED - {State.AWAITING_2FA},
        "AWAITING_2FA: the same prompt again, the deadline does not move; not running: stale",
    ),
    ev.TwoFactorTimedOut: _ignored(
        "a fact only: IBC's relaunch (IbcRelaunching) or the container's exit (ContainerDied) "
        "follows, and deciding here too would make two restarts"
    ),
    ev.LoggedIn: Row(login.on_logged_in, LOGIN_STATES | {_S, _R}, "no login is under way"),
    ev.ExistingSessionDetected: Row(login.on_existing_session, _PROBED, "no container runs"),
    ev.LoginFailed: Row(login.on_login_failed, LOGIN_STATES | {_S, _R}, "no login is under way"),
    ev.LockedOut: Row(login.on_locked_out, _LIVE - {_A}, "ABSENT: not ours yet"),
    ev.TwoFactorApproved: Row(
        login.on_twofa_approved, LOGIN_STATES | {_S}, "no login is under way"
    ),
    ev.TwoFactorExpired: Row(login.on_twofa_expired, LOGIN_STATES | {_S}, "no login is under way"),
    ev.IbcExitStatus: _ignored(
        "a fact only: the next lines name the relaunch, or the container's exit arrives; a "
        "daily auto-restart's JVM also exits, so deciding here would read it as a crash"
    ),
    ev.IbcRelaunching: Row(
        relaunch.on_relaunch,
        _LIVE - {_A, _C, _B},
        "BACKOFF: a failed login's cold restart while the machine stops the container",
    ),
    ev.RestartScheduled: Row(
        relaunch.on_restart_scheduled, SESSION_STATES | {_R}, "no session to restart"
    ),
    # --- the API probe
    ev.ApiConnected: Row(probe.on_api_connected, _PROBED, "no container runs"),
    ev.HeartbeatOk: Row(probe.on_heartbeat_ok, _PROBED, "no container runs"),
    ev.HeartbeatMissed: Row(probe.on_heartbeat_missed, SESSION_STATES, "readiness was not reached"),
    ev.ApiDisconnected: Row(probe.on_api_disconnected, _PROBED, "no container runs"),
    ev.IbLinkLost: Row(probe.on_link_lost, RUNNING_STATES, "no container runs"),
    ev.IbLinkRestored: Row(probe.on_link_restored, RUNNING_STATES, "no container runs"),
    ev.FarmBroken: Row(probe.on_farm_broken, RUNNING_STATES, "no container runs"),
    ev.FarmOk: Row(probe.on_farm_ok, RUNNING_STATES, "no container runs"),
    ev.AccountMismatch: Row(probe.on_account_mismatch, _PROBED, "no container runs"),
    ev.PermissionMismatch: Row(probe.on_permission_mismatch, RUNNING_STATES, "no container runs"),
    ev.PermissionOk: Row(probe.on_permission_ok, RUNNING_STATES, "no container runs"),
    ev.ClientIdInUse: _ignored("the probe rotates its client-id lease; not a fact about health"),
    # --- schedules
    ev.ResetWindowEntered: Row(
        schedule.on_window_entered, ALL_STATES, "never: the flag always tracks"
    ),
    ev.ResetWindowLeft: Row(schedule.on_window_left, ALL_STATES, "never: the flag always tracks"),
    ev.DailyRestartExpected: Row(
        schedule.on_daily_expected, SESSION_STATES, "the gateway is already (re)starting"
    ),
    ev.WeeklyReauthDue: Row(schedule.on_weekly_reauth, _LIVE - {_A}, "nothing runs to warn about"),
    ev.Tick: Row(deadlines.on_tick, _LIVE, "an operator holds STOPPED/FATAL: no deadline runs"),
    # --- operators and the supervisor
    ev.OperatorStart: Row(
        commands.on_operator_start,
        frozenset({_A, State.STOPPED}),
        "FATAL: `reset` first, so a human acknowledges the cause; elsewhere it already runs",
    ),
    ev.OperatorStop: Row(
        commands.on_operator_stop, ALL_STATES - {State.STOPPED}, "STOPPED already"
    ),
    ev.OperatorRestart: Row(
        commands.on_operator_restart,
        SESSION_STATES | LOGIN_STATES | {_S, _R, _B, _C},
        "ABSENT/STOPPED/FATAL: use start or reset",
    ),
    ev.OperatorReset: Row(
        commands.on_operator_reset,
        frozenset({State.FATAL, _B}),
        "nothing to reset (no FATAL, no backoff)",
    ),
    ev.SupervisorStopping: Row(
        commands.on_supervisor_stopping, ALL_STATES, "never: every gate closes"
    ),
}


def transition(
    status: GatewayStatus,
    event: ev.Event,
    *,
    now: datetime,
    policy: LifecyclePolicy,
    rng: random.Random | None = None,
) -> tuple[GatewayStatus, list[Effect]]:
    """Fold ``event`` into ``status`` at ``now``; return the new status and the effects.

    ``rng`` jitters backoff delays; without it the delay is the exponential ceiling.
    Raises only for programming errors (naive ``now``, an object that is not an Event).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be a timezone-aware datetime, got naive {now!r}")
    row = TABLE.get(type(event))
    if row is None:
        raise TypeError(f"not a lifecycle event: {event!r}")
    if row.handler is None or status.state not in row.states:
        return status, []
    held = status.state in OPERATOR_STATES and not isinstance(event, ev.OPERATOR_EVENTS)
    step = Step(status, now, policy, rng)
    row.handler(step, event)
    if not held and not isinstance(event, ev.SupervisorStopping):
        # The order gate follows the status; strategies hear of it only when it changes.
        gate = gate_of(step.status, now=now, policy=policy)
        if (gate.open, gate.kind) != (step.status.gate_open, step.status.gate_kind):
            step.emit(GateOrders(gate=gate))
            step.update(gate_open=gate.open, gate_kind=gate.kind)
    if isinstance(event, _PROBE_LOSSES) and step.status.suspect is not None:
        return _confirm_suspect(step.status, step.effects, now=now, policy=policy, rng=rng)
    return step.status, step.effects


# What confirms a held log line: the probe losing the API (a miss, a drop, an overdue answer).
_PROBE_LOSSES = (ev.HeartbeatMissed, ev.ApiDisconnected, ev.Tick)


def _confirm_suspect(
    status: GatewayStatus,
    effects: list[Effect],
    *,
    now: datetime,
    policy: LifecyclePolicy,
    rng: random.Random | None,
) -> tuple[GatewayStatus, list[Effect]]:
    if suspect.probe_healthy(status, now, policy) and now < (status.suspect_until or now):
        return status, effects  # still answering: the line stays suspect
    held = suspect.replay_suspect(status, now)
    status = replace(status, suspect=None, suspect_detail="", suspect_until=None)
    if held is None:
        return status, effects  # stale: the probe answered past the line's bound
    # session (probe lost) -> as the held line says: the loss confirms it.
    status, more = transition(status, held, now=now, policy=policy, rng=rng)
    return status, [*effects, *more]


_SHORT = {
    State.ABSENT: "ABS",
    State.CREATING: "CRE",
    State.STARTING: "STA",
    State.LOGGING_IN: "LOG",
    State.AWAITING_2FA: "2FA",
    State.COMPETING_SESSION: "COM",
    State.API_READY: "RDY",
    State.DEGRADED: "DEG",
    State.RESET_WINDOW: "WIN",
    State.RESTARTING: "RST",
    State.BACKOFF: "BAK",
    State.STOPPED: "STO",
    State.FATAL: "FAT",
}


def render() -> str:
    """The matrix as text: one line per event type, ``x`` where it is handled, ``.`` ignored."""
    states = list(State)
    width = max(len(t.__name__) for t in ev.EVENT_TYPES)
    header = " " * width + " " + " ".join(_SHORT[s] for s in states)
    lines = [header]
    for kind in ev.EVENT_TYPES:
        row = TABLE[kind]
        cells = " ".join(" x " if row.handles(s) else " . " for s in states)
        lines.append(f"{kind.__name__:<{width}} {cells}")
    return "\n".join(lines)
