"""The container's life as the runtime reports it: started, died, killed for memory, removed."""

from supervisor.lifecycle import alerts
from supervisor.lifecycle.effects import LoginOutcome
from supervisor.lifecycle.events import (
    ContainerDestroyed,
    ContainerDied,
    ContainerOom,
    ContainerStarted,
)
from supervisor.lifecycle.states import (
    LOGIN_STATES,
    RUNNING_STATES,
    RestartKind,
    State,
)
from supervisor.lifecycle.step import (
    Step,
    clear_session,
    login_failed,
    replacing,
    restart,
)

# IBC exit codes (its own namespace, not TWS API codes); a shell sees them modulo 256.
_IBC_2FA_TIMEOUT = frozenset({1111, 1111 % 256})


def on_container_started(step: Step, _: ContainerStarted) -> None:
    replaced = replacing(step.status, step.now)
    unexpected = step.state in RUNNING_STATES and not replaced
    # CREATING/RESTARTING/BACKOFF/ABSENT (adopted)/running -> STARTING: a new container life;
    # log lines and probe facts from before no longer count.
    clear_session(step)
    step.update(
        login_deadline=step.now + step.policy.login_timeout,
        # A rollout's new container (or its rollback) is still the rollout's until it ends.
        restart_kind=RestartKind.REPLACE if replaced else None,
        restart_deadline=None,
        backoff_until=None,
    )
    step.goto(
        State.STARTING,
        "container restarted underneath" if unexpected else "container started",
        expected=not unexpected,
    )


def _died(step: Step, reason: str, todo: str) -> None:
    # Not in ABSENT (not ours yet), BACKOFF (we stopped it), RESTARTING (a restart stops it
    # first): the table ignores those.
    # running/CREATING -> RESTARTING (hard): an unplanned death pages and is restarted,
    # within the retry budget (else FATAL).
    step.alert(alerts.container_died(step.status, step.policy, reason, todo))
    restart(step, RestartKind.HARD, reason, planned=False)


def on_container_died(step: Step, event: ContainerDied) -> None:
    if replacing(step.status, step.now):
        # any -> same: a rollout stops the old container itself, and a new one that dies is
        # the rollout's to roll back (one alert, from it), never a restart of the lifecycle's.
        return
    if event.exit_code in _IBC_2FA_TIMEOUT and step.state in LOGIN_STATES | {State.STARTING}:
        # login states -> RESTARTING/BACKOFF: IBC exited with 1111 and did not relaunch
        # (--on2fatimeout=exit): the supervisor owns this restart.
        login_failed(
            step,
            LoginOutcome.TWOFA_TIMEOUT,
            "the IB Key notification was approved but the login did not complete (IBC exit 1111)",
        )
        return
    _died(
        step,
        f"container exited with code {event.exit_code}",
        "Check the container logs if this repeats.",
    )


def on_container_oom(step: Step, _: ContainerOom) -> None:
    if replacing(step.status, step.now):
        return  # as on_container_died: the rollout decides
    _died(
        step,
        "container was killed for memory (OOM)",
        "Raise the memory limit or JAVA_HEAP_SIZE for this gateway.",
    )


def on_container_destroyed(step: Step, _: ContainerDestroyed) -> None:
    # Not in BACKOFF (the retry creates it again) or ABSENT (nothing to lose): the table.
    if replacing(step.status, step.now):
        # any -> same: a rollout removes the old container (or a failed new one) itself.
        return
    # running/CREATING/RESTARTING -> RESTARTING (start): it vanished; recreate within budget.
    step.alert(alerts.container_removed(step.status))
    restart(step, RestartKind.START, "container removed", planned=False)
