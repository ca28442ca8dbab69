"""Operator commands (start, stop, restart, reset) and the supervisor's own stop."""

from gateway.outage import Gate, OutageKind
from supervisor.lifecycle.effects import GateOrders, StartContainer
from supervisor.lifecycle.events import (
    OperatorReset,
    OperatorRestart,
    OperatorStart,
    OperatorStop,
    ReplaceFinished,
    ReplaceStarted,
    SupervisorStopping,
)
from supervisor.lifecycle.states import (
    LOGIN_STATES,
    SESSION_STATES,
    RestartKind,
    State,
)
from supervisor.lifecycle.step import (
    Step,
    clear_session,
    halt,
    restart,
)


def on_operator_start(step: Step, _: OperatorStart) -> None:
    # ABSENT/STOPPED -> CREATING: the operator wants it running; counters start fresh.
    step.update(failed_logins=0, restarts=(), backoff_until=None)
    clear_session(step)
    step.emit(StartContainer())
    step.update(
        restart_kind=RestartKind.START,
        restart_deadline=step.now + step.policy.restart_deadline,
    )
    step.goto(State.CREATING, "operator start")


def on_operator_stop(step: Step, _: OperatorStop) -> None:
    # any -> STOPPED: only an operator stops a gateway; nothing stays paged.
    halt(step, down=(State.ABSENT, State.FATAL))
    step.goto(State.STOPPED, "operator stop")


def on_operator_restart(step: Step, _: OperatorRestart) -> None:
    if step.state in SESSION_STATES:
        # session states -> RESTARTING (soft): keeps the token, so no 2FA.
        restart(step, RestartKind.SOFT, "operator restart", planned=True)
    elif step.state in LOGIN_STATES | {
        State.STARTING,
        State.RESTARTING,
        State.BACKOFF,
        State.CREATING,
    }:
        # login/transitional states -> RESTARTING (hard): there is no session to keep.
        restart(step, RestartKind.HARD, "operator restart", planned=True)
    # ABSENT/STOPPED/FATAL: ignored; use start or reset.


def on_operator_reset(step: Step, _: OperatorReset) -> None:
    if step.state is State.FATAL:
        # FATAL -> STOPPED: a human cleared it; budgets start fresh, start is explicit.
        step.resolve_all()
        step.update(restarts=(), login_attempts=(), failed_logins=0)
        step.goto(State.STOPPED, "operator reset")
    elif step.state is State.BACKOFF:
        # BACKOFF -> RESTARTING: the operator says try now and forget the failures.
        step.update(restarts=(), failed_logins=0)
        restart(step, RestartKind.START, "operator reset", planned=True)


def on_replace_started(step: Step, event: ReplaceStarted) -> None:
    # running/transitional -> RESTARTING (replace): a rollout replaces the container with its
    # new spec. Planned: no page, and a session that was up is a planned outage for the
    # strategies (they were moved off first); the full login follows the new container's start.
    # Until ReplaceFinished (or ``until``) the rollout decides what a death, a failed login or
    # a missed deadline means: it rolls back, so the lifecycle neither restarts nor holds.
    restart(step, RestartKind.REPLACE, "replacing the container with its new spec", planned=True)
    policy = step.policy
    until = event.until or step.now + policy.restart_deadline + policy.login_timeout
    # The planned outage lasts what the rollout allows the new container (then its rollback).
    planned = until if step.status.planned_until is not None else None
    step.update(replacing_until=until, planned_until=planned)


def on_replace_finished(step: Step, event: ReplaceFinished) -> None:
    # any -> same: the rollout is over (on the new spec, or the previous container started
    # again); deaths, logins and deadlines are the lifecycle's again, counted from the
    # container's start (its login deadline was set then).
    step.update(replacing_until=None)
    if step.status.restart_kind is RestartKind.REPLACE:
        step.update(restart_kind=None)
    if step.state in (State.STARTING, State.LOGGING_IN) and step.status.login_deadline is None:
        # A failed login of the new container cleared it; the restored one gets its own.
        step.update(login_deadline=step.now + step.policy.login_timeout)


def on_supervisor_stopping(step: Step, _: SupervisorStopping) -> None:
    # any -> same state: the supervisor stops; strategies apply their shutdown policy. The
    # status is left as it is, so the next supervisor carries on without a page.
    step.emit(
        GateOrders(
            gate=Gate(open=False, kind=OutageKind.SHUTDOWN, reason="the supervisor is stopping")
        )
    )
