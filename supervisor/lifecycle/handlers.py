"""One handler per event type; each labelled comment is one transition.

A handler runs only in the states its row of :data:`.table.TABLE` names (the table is where a
reader sees which states an event matters to); inside, it may still branch on the state.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from gateway.authlog import RelaunchKind
from gateway.outage import Gate, OutageKind
from supervisor.budget import Budget
from supervisor.lifecycle import alerts
from supervisor.lifecycle.effects import GateOrders, LoginOutcome, StartContainer, StopContainer
from supervisor.lifecycle.events import (
    AccountMismatch,
    ApiConnected,
    ApiDisconnected,
    ContainerDestroyed,
    ContainerDied,
    ContainerOom,
    ContainerStarted,
    DailyRestartExpected,
    Event,
    ExistingSessionDetected,
    FarmBroken,
    FarmOk,
    HeartbeatMissed,
    HeartbeatOk,
    IbcRelaunching,
    IbLinkLost,
    IbLinkRestored,
    LockedOut,
    LoggedIn,
    LoginAttempt,
    LoginFailed,
    OperatorReset,
    OperatorRestart,
    OperatorStart,
    OperatorStop,
    PermissionMismatch,
    PermissionOk,
    ResetWindowEntered,
    ResetWindowLeft,
    RestartScheduled,
    SupervisorStopping,
    TwoFactorApproved,
    TwoFactorExpired,
    TwoFactorInitiated,
    WeeklyReauthDue,
)
from supervisor.lifecycle.policy import LifecyclePolicy
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
    LOGIN_STATES,
    OPERATOR_STATES,
    RUNNING_STATES,
    SESSION_STATES,
    RestartKind,
    State,
)
from supervisor.lifecycle.status import GatewayStatus
from supervisor.lifecycle.step import (
    RELAUNCH_WHY,
    Step,
    clear_session,
    degrade,
    fatal,
    login_failed,
    login_window,
    never,
    quiet,
    relaunch_bound,
    relaunching,
    restart,
    restart_window,
    settle,
)

# IBC exit codes (its own namespace, not TWS API codes); a shell sees them modulo 256.
_IBC_2FA_TIMEOUT = frozenset({1111, 1111 % 256})


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
    if step.state not in (State.ABSENT, State.FATAL):
        step.emit(StopContainer())
    step.resolve_all()
    clear_session(step)
    step.update(
        restart_kind=None,
        restart_deadline=None,
        backoff_until=None,
        login_deadline=None,
    )
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


def on_container_started(step: Step, _: ContainerStarted) -> None:
    unexpected = step.state in RUNNING_STATES
    # CREATING/RESTARTING/BACKOFF/ABSENT (adopted)/running -> STARTING: a new container life;
    # log lines and probe facts from before no longer count.
    clear_session(step)
    step.update(
        login_deadline=step.now + step.policy.login_timeout,
        restart_kind=None,
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
    _died(
        step,
        "container was killed for memory (OOM)",
        "Raise the memory limit or JAVA_HEAP_SIZE for this gateway.",
    )


def on_container_destroyed(step: Step, _: ContainerDestroyed) -> None:
    # Not in BACKOFF (the retry creates it again) or ABSENT (nothing to lose): the table.
    # running/CREATING/RESTARTING -> RESTARTING (start): it vanished; recreate within budget.
    step.alert(alerts.container_removed(step.status))
    restart(step, RestartKind.START, "container removed", planned=False)


def _count_attempt(step: Step) -> Budget:
    # Every attempt counts against the per-username budget: IB locks accounts, not containers,
    # and IB counts a login whatever state the machine thought the gateway was in.
    step.count_login(LoginOutcome.ATTEMPT)
    window = login_window(step).record(step.now)
    step.update(login_attempts=window.events)
    return window


def probe_healthy(status: GatewayStatus, now: datetime, policy: LifecyclePolicy) -> bool:
    """The session is up and the probe's last answer is fresh: the API is demonstrably alive."""
    last = status.last_heartbeat
    return (
        status.state in SESSION_STATES
        and status.api_connected
        and last is not None
        and now - last <= policy.heartbeat_deadline
        and not status.degraded_reasons & STALL_REASONS
    )


# Log events held while the probe sees the session healthy, by name, rebuilt on replay.
SUSPECT_EVENTS: dict[str, Callable[[str], Event]] = {
    "LoginAttempt": lambda _: LoginAttempt(1),
    "TwoFactorInitiated": lambda _: TwoFactorInitiated(),
    "ExistingSessionDetected": lambda _: ExistingSessionDetected(),
    "LockedOut": lambda detail: LockedOut(message=detail),
}


def held_as_suspect(step: Step, event: Event, detail: str = "") -> bool:
    """Hold a log line that would end a session the probe sees healthy; True when held.

    IBC's log is untrusted text: anything in the container (or a forged line) can print
    ``Login attempt`` or a 2FA prompt. Only the probe losing the API confirms it (the line is
    then replayed); until then the session, the gate and the login budget stay as they are.
    """
    if not probe_healthy(step.status, step.now, step.policy):
        return False
    step.update(
        suspect=type(event).__name__,
        suspect_detail=detail,
        # The probe sees a loss within one deadline (a miss, a drop, or an overdue answer at
        # the next Tick after it): twice that bounds the wait for it.
        suspect_until=step.now + 2 * step.policy.heartbeat_deadline,
    )
    return True


def replay_suspect(status: GatewayStatus, now: datetime) -> Event | None:
    """The held log event to replay now that the probe lost the API (None: none, or stale)."""
    until = status.suspect_until
    if status.suspect is None or until is None or now >= until:
        return None
    make = SUSPECT_EVENTS.get(status.suspect)
    return None if make is None else make(status.suspect_detail)


def on_login_attempt(step: Step, event: LoginAttempt) -> None:
    if held_as_suspect(step, event):
        # session (probe healthy) -> same: a login line alone is not a relogin.
        return
    window = _count_attempt(step)
    if step.state in OPERATOR_STATES | {State.ABSENT, State.BACKOFF, State.CREATING}:
        # Counted only: a login IBC began before the machine's stop landed (IB counts it).
        return
    if window.used(step.now) > step.policy.login_budget:
        # any -> FATAL: IBC logged in beyond the budget by itself; stop it before IB locks us
        # out. (The last attempt within the budget may complete; its failure goes FATAL.)
        fatal(
            step,
            alerts.login_budget_spent(step.policy),
            alerts.LOCKOUT_RISK,
        )
        return
    expected = step.state not in SESSION_STATES or quiet(step.status, step.now, step.policy)
    if step.state in SESSION_STATES:
        clear_session(step)
    deadline = step.status.login_deadline or step.now + step.policy.login_timeout
    if step.state is State.RESTARTING:
        deadline = step.now + step.policy.login_timeout
    step.update(
        login_deadline=deadline,
        twofa_deadline=None,
        logged_in=False,
        restart_kind=None,
        restart_deadline=None,
    )
    # STARTING/RESTARTING/login/session states -> LOGGING_IN: IBC is logging in.
    step.goto(State.LOGGING_IN, "login attempt", expected=expected)


def on_twofa_initiated(step: Step, event: TwoFactorInitiated) -> None:
    if held_as_suspect(step, event):
        # session (probe healthy) -> same: no session needs a second factor while it answers.
        return
    expected = step.state not in SESSION_STATES or quiet(step.status, step.now, step.policy)
    clear_session(step)
    deadline = step.now + step.policy.twofa_timeout
    step.update(
        twofa_deadline=deadline,
        restart_kind=None,
        restart_deadline=None,
        login_deadline=step.status.login_deadline or step.now + step.policy.login_timeout,
    )
    # -> AWAITING_2FA: a human must approve on the phone now, even inside a reset window.
    step.goto(State.AWAITING_2FA, "waiting for IB Key approval", expected=expected)
    step.alert(alerts.approve_2fa(step.status, step.policy, deadline))


def on_logged_in(step: Step, _: LoggedIn) -> None:
    if step.state is State.LOGGING_IN and step.status.logged_in:
        # LOGGING_IN (logged in) -> same: the same login read twice counts once.
        return
    step.count_login(LoginOutcome.SUCCESS)
    step.resolve("2fa")
    step.resolve("competing")
    step.resolve("login")
    reauth = step.status.reauth_at
    if reauth is not None and step.now >= reauth:
        step.resolve("reauth")
        step.update(reauth_at=None)
    step.update(
        logged_in=True,
        twofa_deadline=None,
        failed_logins=0,
        restart_kind=None,
        restart_deadline=None,
        # The API must now answer a probe within the login timeout.
        login_deadline=step.now + step.policy.login_timeout,
    )
    # login states -> LOGGING_IN (logged in, waiting for the API to answer a probe).
    step.goto(State.LOGGING_IN, "logged in; waiting for the API to answer a probe")


def on_existing_session(step: Step, event: ExistingSessionDetected) -> None:
    if held_as_suspect(step, event):
        # session (probe healthy) -> same: a competing session shows as the probe's loss.
        return
    expected = step.state not in SESSION_STATES
    step.update(
        logged_in=False,
        restart_kind=None,
        restart_deadline=None,
        login_deadline=step.status.login_deadline or step.now + step.policy.login_timeout,
    )
    # -> COMPETING_SESSION: another session holds this username.
    step.goto(State.COMPETING_SESSION, "another session holds the username", expected=expected)
    step.alert(alerts.competing(step.status))


def on_login_failed(step: Step, event: LoginFailed) -> None:
    # login states -> BACKOFF (or FATAL when budgets are spent).
    detail = f": {event.message}" if event.message else ""
    login_failed(step, LoginOutcome.FAILED, f"IB rejected the login{detail}")


def on_locked_out(step: Step, event: LockedOut) -> None:
    if held_as_suspect(step, event, event.message):
        # session (probe healthy) -> same: a lockout line cannot stop a session that answers.
        return
    step.count_login(LoginOutcome.LOCKED_OUT)
    # any -> FATAL: IB locked the username; any further attempt makes it worse.
    fatal(
        step,
        f"IB locked {step.status.username} after too many failed logins"
        + (f" ({event.message})" if event.message else ""),
        "Wait for IB to unlock the username (or reset its password in the client portal).",
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
    _apply_relaunch(step, kind)


def _apply_relaunch(step: Step, kind: RelaunchKind) -> None:
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


def on_daily_expected(step: Step, _: DailyRestartExpected) -> None:
    # session -> session: the Gateway's AutoRestartTime is now; nothing is sent (IBC
    # restarts it by itself), and the API drop that follows is read as that relaunch.
    step.update(
        relaunch_expected_until=step.now + step.policy.restart_command_delay,
        expected_relaunch=RelaunchKind.AUTO_RESTART,
    )


def on_twofa_approved(step: Step, _: TwoFactorApproved) -> None:
    step.resolve("2fa")
    step.update(twofa_deadline=None, login_deadline=step.now + step.policy.login_timeout)
    # AWAITING_2FA -> LOGGING_IN: the human approved; the login must complete by the deadline.
    step.goto(State.LOGGING_IN, "2FA approved; waiting for the login to complete")


def on_twofa_expired(step: Step, event: TwoFactorExpired) -> None:
    if event.relogin:
        if not login_window(step).allows(step.now):
            # AWAITING_2FA -> FATAL: IBC's own relogin in 5 s would exceed the login budget.
            step.count_login(LoginOutcome.TWOFA_TIMEOUT)
            fatal(
                step,
                alerts.login_budget_spent(step.policy, "2FA not approved in time"),
                "More automatic logins risk an IB account lockout; approve the prompt next time.",
            )
            return
        # AWAITING_2FA -> LOGGING_IN: IBC logs in again by itself in 5 s (relogin on), so the
        # machine restarts nothing; the next login attempt is counted against the budget.
        step.count_login(LoginOutcome.TWOFA_TIMEOUT)
        step.update(
            failed_logins=step.status.failed_logins + 1,
            twofa_deadline=None,
            login_deadline=step.now + step.policy.login_timeout,
        )
        step.goto(State.LOGGING_IN, "2FA not approved in time; IBC logs in again")
        return
    # AWAITING_2FA -> BACKOFF/RESTARTING: IBC waits at the login dialog (relogin off), so the
    # supervisor owns the retry.
    login_failed(
        step,
        LoginOutcome.TWOFA_TIMEOUT,
        f"2FA was not approved within {alerts.seconds(step.policy.twofa_timeout)}",
    )


def on_supervisor_stopping(step: Step, _: SupervisorStopping) -> None:
    # any -> same state: the supervisor stops; strategies apply their shutdown policy. The
    # status is left as it is, so the next supervisor carries on without a page.
    step.emit(
        GateOrders(
            gate=Gate(open=False, kind=OutageKind.SHUTDOWN, reason="the supervisor is stopping")
        )
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
        _apply_relaunch(step, step.status.expected_relaunch or RelaunchKind.AUTO_RESTART)
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
        _apply_relaunch(step, step.status.expected_relaunch or RelaunchKind.AUTO_RESTART)
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


def on_window_entered(step: Step, event: ResetWindowEntered) -> None:
    step.update(in_window=True, window_ended_at=None, window_until=event.until)
    if step.state is State.DEGRADED:
        # DEGRADED -> RESET_WINDOW when the window explains every reason.
        settle(step)


def on_window_left(step: Step, _: ResetWindowLeft) -> None:
    if not step.status.in_window:
        return
    # The grace clock starts; Tick pages if the gateway is not ready when it runs out.
    step.update(in_window=False, window_ended_at=step.now)


def on_weekly_reauth(step: Step, event: WeeklyReauthDue) -> None:
    # Warn ahead: the first start after Sunday 01:00 ET needs a full IB Key login.
    step.update(reauth_at=event.at)
    step.alert(alerts.reauth_ahead(step.status, event.at))
