"""What the API probe sees: connects, heartbeats, drops, IB's link and farm codes, permissions."""

from gateway.authlog import RelaunchKind
from supervisor.lifecycle.events import (
    AccountMismatch,
    ApiConnected,
    ApiDisconnected,
    FarmBroken,
    FarmOk,
    HeartbeatMissed,
    HeartbeatOk,
    IbLinkLost,
    IbLinkRestored,
    PermissionMismatch,
    PermissionOk,
)
from supervisor.lifecycle.handlers.relaunch import apply_relaunch, relaunch_expected
from supervisor.lifecycle.reasons import (
    DISCONNECTED,
    FARM_PREFIX,
    LINK_LOST,
    PERMISSION_PREFIX,
    SLOW,
    STALL,
    STALL_REASONS,
)
from supervisor.lifecycle.states import (
    SESSION_STATES,
    State,
)
from supervisor.lifecycle.step import (
    Step,
    degrade,
    fatal,
    never,
    settle,
)


def on_api_connected(step: Step, _: ApiConnected) -> None:
    # A connect alone proves nothing: readiness waits for a probe answer.
    step.update(api_connected=True)


def on_heartbeat_ok(step: Step, event: HeartbeatOk) -> None:
    state = step.state
    if state is State.RESTARTING and not step.status.api_dropped:
        # The old session still answering: the restart has not happened yet.
        return
    slow = event.rtt > step.policy.slow_heartbeat
    add = frozenset({SLOW}) if slow else frozenset()
    reasons = (
        frozenset(r for r in step.status.degraded_reasons if r not in STALL_REASONS and r != SLOW)
        | add
    )
    # The API answers only after a login, so an answer proves the session is up.
    step.update(
        last_heartbeat=step.now,
        api_connected=True,
        logged_in=True,
        degraded_reasons=reasons,
        login_deadline=None,
        twofa_deadline=None,
        restart_kind=None,
        restart_deadline=None,
    )
    step.resolve("2fa")
    step.resolve("competing")
    step.resolve("login")
    # STARTING/login/RESTARTING/session -> API_READY, DEGRADED or RESET_WINDOW by reasons.
    settle(step)


def on_heartbeat_missed(step: Step, _: HeartbeatMissed) -> None:
    if relaunch_expected(step.status, step.now):
        # session -> RESTARTING (planned): the API stopped answering as the announced
        # relaunch (daily restart, accepted RESTART, the log's relaunch lines) takes it down.
        apply_relaunch(step, step.status.expected_relaunch or RelaunchKind.AUTO_RESTART)
        return
    # session -> DEGRADED (stall, paged) or RESET_WINDOW (quiet).
    degrade(step, add=frozenset({STALL}), drop=never)


def on_api_disconnected(step: Step, _: ApiDisconnected) -> None:
    if step.state is State.RESTARTING:
        step.update(api_connected=False, api_dropped=True)
        return
    if step.state not in SESSION_STATES:
        # STARTING/login states: remembered; readiness needs a probe answer anyway.
        step.update(api_connected=False)
        return
    step.update(api_connected=False)
    if relaunch_expected(step.status, step.now):
        # session -> RESTARTING (as announced): the API dropped for the relaunch the schedule
        # or the log lines said is coming; not a stall.
        apply_relaunch(step, step.status.expected_relaunch or RelaunchKind.AUTO_RESTART)
        return
    # session -> DEGRADED (paged) or RESET_WINDOW (quiet).
    degrade(step, add=frozenset({DISCONNECTED}), drop=never)


def on_link_lost(step: Step, _: IbLinkLost) -> None:
    # session -> DEGRADED (paged) or RESET_WINDOW (quiet): IB code 1100.
    degrade(step, add=frozenset({LINK_LOST}), drop=never)


def on_link_restored(step: Step, _: IbLinkRestored) -> None:
    # DEGRADED/RESET_WINDOW -> API_READY when this was the last reason (1101/1102).
    degrade(step, drop=lambda r: r == LINK_LOST)


def on_farm_broken(step: Step, event: FarmBroken) -> None:
    # session -> DEGRADED (paged) or RESET_WINDOW (quiet).
    degrade(step, add=frozenset({f"{FARM_PREFIX}{event.farm}"}), drop=never)


def on_farm_ok(step: Step, event: FarmOk) -> None:
    # DEGRADED/RESET_WINDOW -> API_READY when this was the last reason.
    degrade(step, drop=lambda r: r == f"{FARM_PREFIX}{event.farm}")


def on_permission_mismatch(step: Step, event: PermissionMismatch) -> None:
    # session -> DEGRADED, paged even inside a reset window: resets do not change permissions.
    degrade(
        step,
        add=frozenset({f"{PERMISSION_PREFIX}{event.detail}"}),
        drop=lambda r: r.startswith(PERMISSION_PREFIX),
    )


def on_permission_ok(step: Step, _: PermissionOk) -> None:
    # DEGRADED -> API_READY when this was the last reason.
    degrade(step, drop=lambda r: r.startswith(PERMISSION_PREFIX))


def on_account_mismatch(step: Step, event: AccountMismatch) -> None:
    # any running -> FATAL: orders must never reach the wrong account.
    fatal(
        step,
        f"logged into account {event.actual}, expected {event.expected}",
        "Fix the gateway's credentials or its configured account.",
    )
