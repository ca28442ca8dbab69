"""Tick: the deadlines the machine keeps (2FA, login, backoff, restart, heartbeat, stall).

Kept apart from the event handlers because it is the one input that acts on time alone: every
deadline a status carries is evaluated here, at the ``now`` the caller passes.
"""

from __future__ import annotations

from gateway.config import TwoFactorTimeoutAction
from supervisor.lifecycle import alerts
from supervisor.lifecycle.alerts import alert_key
from supervisor.lifecycle.effects import LoginOutcome
from supervisor.lifecycle.events import Tick
from supervisor.lifecycle.handlers.relaunch import relaunch_expected
from supervisor.lifecycle.reasons import OVERDUE
from supervisor.lifecycle.states import (
    LOGIN_STATES,
    PLANNED_OUTAGE_STATES,
    SESSION_STATES,
    RestartKind,
    State,
)
from supervisor.lifecycle.step import (
    Step,
    degrade,
    login_failed,
    never,
    quiet,
    replacing,
    restart,
    settle,
)

__all__ = ["on_tick"]


def on_tick(step: Step, _: Tick) -> None:
    status, now, policy = step.status, step.now, step.policy
    state = status.state
    if status.relaunch_expected_until is not None and now >= status.relaunch_expected_until:
        # The announced relaunch did not happen: a later drop is read as what it is.
        step.update(relaunch_expected_until=None, expected_relaunch=None)
        status = step.status
    if (
        status.planned_until is not None
        and now >= status.planned_until
        and state in PLANNED_OUTAGE_STATES - {State.RESTARTING}
    ):
        # login states (planned) -> same state (lost): the planned relaunch outlasted its
        # bound; the login goes on under its own deadline, but the outage is a loss now.
        step.update(planned_until=None)
        step.alert(alerts.planned_restart_overdue(status))
        status = step.status
    if (
        state is State.AWAITING_2FA
        and status.twofa_deadline
        and now >= status.twofa_deadline
        and policy.twofa_timeout_action is TwoFactorTimeoutAction.RESTART
    ):
        # AWAITING_2FA -> LOGGING_IN: IBC owns the retry (relogin on) and logs in again by
        # itself; the machine restarts nothing, the login deadline watches IBC.
        step.count_login(LoginOutcome.TWOFA_TIMEOUT)
        step.update(twofa_deadline=None, login_deadline=now + policy.login_timeout)
        step.goto(State.LOGGING_IN, "2FA not approved in time; waiting for IBC to log in again")
    elif state is State.AWAITING_2FA and status.twofa_deadline and now >= status.twofa_deadline:
        # AWAITING_2FA -> BACKOFF: nobody approved in time; IB counts it as a failed login.
        login_failed(
            step,
            LoginOutcome.TWOFA_TIMEOUT,
            f"2FA was not approved within {alerts.seconds(policy.twofa_timeout)}",
        )
    elif (
        state in LOGIN_STATES | {State.STARTING}
        and status.login_deadline
        and now >= status.login_deadline
        # During a replacement the rollout's deadline decides (ready, or rolled back), so the
        # two deadlines never race: ours counts again from the container ReplaceFinished leaves.
        and not replacing(status, now)
    ):
        if status.logged_in:
            # LOGGING_IN (logged in) -> RESTARTING (hard): the API never answered a probe.
            step.alert(alerts.api_not_answering(status, policy))
            restart(step, RestartKind.HARD, "API did not answer after login", planned=False)
        else:
            # login states -> BACKOFF: the login did not complete within the deadline.
            login_failed(
                step,
                LoginOutcome.FAILED,
                f"login did not complete within {alerts.seconds(policy.login_timeout)}",
            )
    elif state is State.BACKOFF and status.backoff_until and now >= status.backoff_until:
        # BACKOFF -> RESTARTING (start): the wait is over; budgets decide (else FATAL).
        restart(step, RestartKind.START, "retry after backoff", planned=False)
    elif (
        state in (State.RESTARTING, State.CREATING)
        and status.restart_deadline
        and now >= status.restart_deadline
        # A rollout's replacement has the rollout's own deadline (and rollback).
        and status.restart_kind is not RestartKind.REPLACE
        and not replacing(status, now)
    ):
        # RESTARTING/CREATING -> RESTARTING: the restart did not bring it back; restart the
        # container (or start it again if it never started), within the budget.
        kind = status.restart_kind.value if status.restart_kind else "pending"
        again = RestartKind.START if status.restart_kind is RestartKind.START else RestartKind.HARD
        step.alert(alerts.restart_incomplete(status, policy, kind))
        restart(step, again, f"{kind} restart did not complete", planned=False)
    elif state in SESSION_STATES:
        _tick_session(step)


def _tick_session(step: Step) -> None:
    status, now, policy = step.status, step.now, step.policy
    last = status.last_heartbeat
    if last is None or now - last > policy.heartbeat_deadline:
        # API_READY -> DEGRADED: readiness needs a probe answer within the deadline.
        degrade(step, add=frozenset({OVERDUE}), drop=never)
        status = step.status
    if status.state is State.RESET_WINDOW and not quiet(status, now, policy):
        # RESET_WINDOW -> DEGRADED: the window is over and the grace too; page now.
        settle(step)
        status = step.status
    if (
        status.state is State.DEGRADED
        and status.stall_since is not None
        and now - status.stall_since >= policy.stall_page_after
        and alert_key(status.gateway, "stall") not in status.open_alerts
    ):
        # DEGRADED (stall) -> DEGRADED (paged): the stall outlasted stall_page_after.
        settle(step)
        status = step.status
    if (
        status.state is State.DEGRADED
        and status.stall_since is not None
        and now - status.stall_since >= policy.stall_soft_restart_after
        and not relaunch_expected(status, now)
    ):
        # DEGRADED (stalled) -> RESTARTING (soft): the stall persisted; a hard restart follows
        # if the soft restart does not help within the restart deadline.
        restart(step, RestartKind.SOFT, "API stall persisted", planned=False)
