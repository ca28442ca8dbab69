"""Relaunches IBC announces (its log's relaunch lines, an accepted RESTART) and how an API drop
is read while one is expected."""

from datetime import datetime

from gateway.authlog import RelaunchKind
from supervisor.lifecycle import alerts
from supervisor.lifecycle.effects import LoginOutcome
from supervisor.lifecycle.events import (
    IbcRelaunching,
    RestartScheduled,
)
from supervisor.lifecycle.states import (
    SESSION_STATES,
    RestartKind,
    State,
)
from supervisor.lifecycle.status import GatewayStatus
from supervisor.lifecycle.step import (
    RELAUNCH_WHY,
    Step,
    fatal,
    relaunch_bound,
    relaunching,
    restart_window,
)


def _api_up(status: GatewayStatus) -> bool:
    return status.state is State.API_READY and status.api_connected


def on_relaunch(step: Step, event: IbcRelaunching) -> None:
    kind = event.kind
    # Not in BACKOFF (a failed login's cold restart; the machine is stopping the container).
    if _api_up(step.status):
        # API_READY -> API_READY: the probe sees the session healthy, so the line alone ends
        # nothing; it says how the API drop that must follow is read.
        step.update(
            relaunch_expected_until=step.now + relaunch_bound(step.policy, kind),
            expected_relaunch=kind,
        )
        return
    apply_relaunch(step, kind)


def apply_relaunch(step: Step, kind: RelaunchKind) -> None:
    status, now = step.status, step.now
    if kind.planned:
        if status.state is State.RESTARTING:
            # RESTARTING -> RESTARTING: the relaunch a restart asked for is under way; its
            # bound counts from now, and a restart planned or not stays what it was.
            deadline = now + relaunch_bound(step.policy, kind)
            step.update(
                restart_deadline=deadline,
                api_dropped=True,
                planned_until=deadline if status.planned_until is not None else None,
            )
            return
        # session (API down)/login/STARTING -> RESTARTING (planned): IBC relaunches by itself
        # for a planned reason; no page, no restart sent, orders held within the bound.
        relaunching(step, kind, planned=True)
        return
    window = restart_window(step)
    if not window.allows(now):
        fatal(
            step,
            alerts.restart_budget_spent(step.policy, RELAUNCH_WHY[kind]),
            "Find out why IBC keeps relaunching the Gateway (its log, credentials, IB status).",
        )
        return
    step.update(restarts=window.record(now).events)
    if kind is RelaunchKind.TWOFA_EXIT:
        # IBC owns the 2FA-timeout restart here (--on2fatimeout=restart): it relaunches, the
        # machine only waits. IB counts the unfinished login.
        step.count_login(LoginOutcome.TWOFA_TIMEOUT)
        step.update(failed_logins=status.failed_logins + 1)
        step.resolve("2fa")
        step.alert(alerts.twofa_exit_relaunch(status))
    elif status.state in SESSION_STATES | {State.RESTARTING}:
        step.alert(alerts.relaunched(status, step.policy, RELAUNCH_WHY[kind]))
    # any running -> RESTARTING (external, unplanned): IBC relaunches by itself; counted
    # against the restart budget, escalated by the restart deadline.
    relaunching(step, kind, planned=False)


def relaunch_expected(status: GatewayStatus, now: datetime) -> bool:
    until = status.relaunch_expected_until
    return until is not None and now < until


def on_restart_scheduled(step: Step, _: RestartScheduled) -> None:
    status, now, policy = step.status, step.now, step.policy
    if status.state in SESSION_STATES:
        # session -> session: IBC will restart the Gateway at the next minute; the drop then
        # is that relaunch.
        step.update(
            relaunch_expected_until=now + policy.restart_command_delay,
            expected_relaunch=RelaunchKind.RESTART_COMMAND,
        )
    elif status.state is State.RESTARTING and status.restart_kind is RestartKind.SOFT:
        # RESTARTING (soft) -> RESTARTING: accepted; it happens within the minute, then the
        # token relaunch.
        deadline = now + policy.restart_command_delay + policy.token_relaunch_bound
        step.update(
            restart_deadline=deadline,
            planned_until=deadline if status.planned_until is not None else None,
        )
