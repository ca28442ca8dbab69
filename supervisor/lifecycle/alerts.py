"""Every alert the lifecycle raises: its key, severity and text, in one place.

The texts tell the operator what happened and what to do; IB's or IBC's own words reach them
only as already-cleaned reasons. ``who`` is ``gateway / username``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from supervisor.alertpolicy import Severity
from supervisor.lifecycle.policy import LifecyclePolicy
from supervisor.lifecycle.status import GatewayStatus

__all__ = ["AlertText", "alert_key", "seconds"]


class AlertText(NamedTuple):
    """One alert before it gets its gateway's key: ``problem`` names it (``2fa``, ``fatal``)."""

    problem: str
    severity: Severity
    title: str
    body: str


def alert_key(gateway: str, problem: str) -> str:
    """The alert key for ``problem`` on ``gateway`` (``gateway:paper-a:2fa``)."""
    return f"gateway:{gateway}:{problem}"


def seconds(value: timedelta) -> str:
    """A duration as an operator reads it: ``90 s``, ``10 min``."""
    total = int(value.total_seconds())
    if total % 60 == 0 and total >= 120:
        return f"{total // 60} min"
    return f"{total} s"


def _who(s: GatewayStatus) -> str:
    return f"{s.gateway} / {s.username}"


# Reasons (the status's ``reason`` and the FATAL page's cause).


def restart_budget_spent(policy: LifecyclePolicy, cause: str) -> str:
    return (
        f"restart budget spent ({policy.restart_budget} restarts within "
        f"{seconds(policy.restart_window)}); last cause: {cause}"
    )


def login_budget_spent(policy: LifecyclePolicy, cause: str | None = None) -> str:
    spent = (
        f"login budget spent ({policy.login_budget} logins within {seconds(policy.login_window)})"
    )
    return spent if cause is None else f"{spent}; last cause: {cause}"


LOCKOUT_RISK = "More automatic logins risk an IB account lockout; check the credentials."


# Alerts.


def fatal(s: GatewayStatus, reason: str, todo: str) -> AlertText:
    return AlertText(
        "fatal",
        Severity.CRITICAL,
        f"{s.gateway}: stopped, a human must act",
        f"Gateway {_who(s)} is FATAL: {reason}. ibfleet will not retry by itself. {todo} "
        f"Then run `ibfleet gateway start {s.gateway}`.",
    )


def twofa_restart_now(s: GatewayStatus, reason: str) -> AlertText:
    return AlertText(
        "login",
        Severity.WARNING,
        f"{s.gateway}: 2FA not approved",
        f"Gateway {_who(s)}: {reason}. ibfleet restarts it now; approve the next IB Key "
        "notification.",
    )


def login_failed(s: GatewayStatus, reason: str, until: datetime, failures: int) -> AlertText:
    # Recorded, not paged: the retries are bounded by the login budget, whose end (FATAL) is
    # the one page a wrong password costs.
    return AlertText(
        "login",
        Severity.INFO,
        f"{s.gateway}: login failed",
        f"Gateway {_who(s)}: {reason}. ibfleet retries at {until:%Y-%m-%d %H:%M:%S} UTC "
        f"(failure {failures}); check the credentials and keep the IB Key phone at hand.",
    )


def not_ready_after_window(s: GatewayStatus, policy: LifecyclePolicy, listed: str) -> AlertText:
    return AlertText(
        "not-ready",
        Severity.WARNING,
        f"{s.gateway}: not ready after the IB reset window",
        f"Gateway {_who(s)} is still not ready "
        f"{seconds(policy.ready_grace_after_window)} after the IB reset window ended "
        f"({listed}). Check IB's system status and the gateway's logs.",
    )


def degraded(s: GatewayStatus, listed: str) -> AlertText:
    return AlertText(
        "degraded",
        Severity.WARNING,
        f"{s.gateway}: degraded",
        f"Gateway {_who(s)} is degraded: {listed}. Orders are gated until it recovers; "
        "check IB's system status and the gateway's logs.",
    )


def stall(s: GatewayStatus, policy: LifecyclePolicy, stalled: frozenset[str]) -> AlertText:
    return AlertText(
        "stall",
        Severity.WARNING,
        f"{s.gateway}: API stalled",
        f"Gateway {_who(s)}: {', '.join(sorted(stalled))}. ibfleet soft-restarts it if "
        f"this persists {seconds(policy.stall_soft_restart_after)}, then hard-restarts "
        "if that does not help.",
    )


def container_died(s: GatewayStatus, policy: LifecyclePolicy, reason: str, todo: str) -> AlertText:
    return AlertText(
        "died",
        Severity.WARNING,
        f"{s.gateway}: container died",
        f"Gateway {_who(s)}: {reason}. ibfleet restarts it (restart budget "
        f"{policy.restart_budget} per {seconds(policy.restart_window)}). {todo}",
    )


def container_removed(s: GatewayStatus) -> AlertText:
    return AlertText(
        "died",
        Severity.WARNING,
        f"{s.gateway}: container removed",
        f"Gateway {_who(s)}: its container was removed outside ibfleet. ibfleet "
        "recreates it; find out who removed it.",
    )


def approve_2fa(s: GatewayStatus, policy: LifecyclePolicy, deadline: datetime) -> AlertText:
    return AlertText(
        "2fa",
        Severity.CRITICAL,
        f"{s.gateway}: approve the IB Key login",
        f"Approve the IB Key notification for {_who(s)} within "
        f"{int(policy.twofa_timeout.total_seconds())} s (by {deadline:%H:%M:%S} UTC).",
    )


def competing(s: GatewayStatus) -> AlertText:
    return AlertText(
        "competing",
        Severity.WARNING,
        f"{s.gateway}: competing IB session",
        f"Another session is logged in as {s.username} (gateway "
        f"{s.gateway}). Close it (TWS, mobile app, another gateway) or check IBC's "
        "ExistingSessionDetectedAction.",
    )


def twofa_exit_relaunch(s: GatewayStatus) -> AlertText:
    return AlertText(
        "login",
        Severity.WARNING,
        f"{s.gateway}: 2FA approved but the login did not complete",
        f"Gateway {_who(s)}: the IB Key notification was approved, but the login did not "
        "complete in time, so IBC exited (1111) and is restarting the Gateway for a new "
        "login. Approve the next IB Key notification; if this repeats, check IB's status.",
    )


def relaunched(s: GatewayStatus, policy: LifecyclePolicy, why: str) -> AlertText:
    return AlertText(
        "relaunch",
        Severity.WARNING,
        f"{s.gateway}: IBC relaunched the Gateway",
        f"Gateway {_who(s)}: {why}. ibfleet waits for it to come back "
        f"(hard restart after {seconds(policy.restart_deadline)}).",
    )


def reauth_ahead(s: GatewayStatus, at: datetime) -> AlertText:
    return AlertText(
        "reauth",
        Severity.WARNING,
        f"{s.gateway}: weekly IB re-authentication ahead",
        f"Gateway {_who(s)} needs a full login with IB Key after "
        f"{at:%Y-%m-%d %H:%M} UTC (IB's weekly re-authentication). Keep the phone at "
        "hand; ibfleet alerts again when the notification arrives.",
    )


def planned_restart_overdue(s: GatewayStatus) -> AlertText:
    return AlertText(
        "restart",
        Severity.WARNING,
        f"{s.gateway}: not back after a planned restart",
        f"Gateway {_who(s)} is still not ready after its planned restart ({s.reason});"
        " strategies treat it as lost.",
    )


def api_not_answering(s: GatewayStatus, policy: LifecyclePolicy) -> AlertText:
    return AlertText(
        "api",
        Severity.WARNING,
        f"{s.gateway}: API not answering",
        f"Gateway {_who(s)} logged in but its API did not answer a probe "
        f"within {seconds(policy.login_timeout)}; ibfleet restarts it.",
    )


def restart_incomplete(s: GatewayStatus, policy: LifecyclePolicy, kind: str) -> AlertText:
    return AlertText(
        "restart",
        Severity.WARNING,
        f"{s.gateway}: restart did not complete",
        f"Gateway {_who(s)} did not come back within "
        f"{seconds(policy.restart_deadline)} after a {kind} restart; ibfleet "
        "restarts the container.",
    )
