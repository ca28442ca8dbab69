"""The order gate: the one place that decides what kind of outage a gateway is in."""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.outage import Gate, OutageKind
from supervisor.lifecycle.policy import LifecyclePolicy
from supervisor.lifecycle.reasons import SLOW, STALL_REASONS
from supervisor.lifecycle.states import PLANNED_OUTAGE_STATES, State
from supervisor.lifecycle.status import GatewayStatus

__all__ = ["gate_of"]


def gate_of(status: GatewayStatus, *, now: datetime, policy: LifecyclePolicy) -> Gate:
    """The order gate for ``status``: the one place that decides what kind of outage it is.

    API_READY is open. A planned relaunch (and the login that follows it) is PLANNED_RESTART
    until ``planned_until``; an IB reset window is RESET_WINDOW until its end plus the grace;
    a degraded session whose only reasons are a stalled or slow API is STALLED; anything else
    (a dead or restarting container, a failed login, FATAL, an operator stop) is LOST.
    """
    state = status.state
    if state is State.API_READY:
        return Gate(open=True)
    reason = status.reason
    planned = status.planned_until
    if planned is not None and state in PLANNED_OUTAGE_STATES:
        bound = max(planned - now, timedelta(0))
        return Gate(open=False, kind=OutageKind.PLANNED_RESTART, reason=reason, bound=bound)
    if state is State.RESET_WINDOW:
        end = status.window_until or status.window_ended_at or now
        bound = max(end + policy.ready_grace_after_window - now, timedelta(0))
        return Gate(open=False, kind=OutageKind.RESET_WINDOW, reason=reason, bound=bound)
    if state is State.DEGRADED and status.degraded_reasons <= STALL_REASONS | {SLOW}:
        return Gate(open=False, kind=OutageKind.STALLED, reason=reason)
    return Gate(open=False, kind=OutageKind.LOST, reason=reason)
