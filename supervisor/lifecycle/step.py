"""One transition in progress (:class:`Step`) and the moves several handlers share.

A move is a labelled piece of a transition (``-> FATAL``, ``-> RESTARTING``, ``-> BACKOFF``,
settling a session by its degradation reasons); the handlers in :mod:`.handlers` compose them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from gateway.authlog import RelaunchKind
from gateway.config import TwoFactorTimeoutAction
from supervisor.alertpolicy import Alert
from supervisor.budget import Budget
from supervisor.lifecycle import alerts
from supervisor.lifecycle.alerts import alert_key
from supervisor.lifecycle.effects import (
    CountLogin,
    Effect,
    HardRestart,
    LoginOutcome,
    ResolveAlert,
    ScheduleBackoff,
    SoftRestart,
    StartContainer,
    StopContainer,
    TriggerSafeState,
)
from supervisor.lifecycle.policy import LifecyclePolicy
from supervisor.lifecycle.reasons import (
    ALWAYS_PAGED_REASONS,
    STALL_REASONS,
)
from supervisor.lifecycle.states import SESSION_STATES, RestartKind, State
from supervisor.lifecycle.status import GatewayStatus


class Step:
    """Accumulates one transition: the evolving status and the effects, in order."""

    def __init__(
        self,
        status: GatewayStatus,
        now: datetime,
        policy: LifecyclePolicy,
        rng: random.Random | None,
    ) -> None:
        self.status = status
        self.now = now
        self.policy = policy
        self.rng = rng
        self.effects: list[Effect] = []

    @property
    def state(self) -> State:
        return self.status.state

    def update(self, **changes: Any) -> None:
        self.status = replace(self.status, **changes)

    def emit(self, effect: Effect) -> None:
        self.effects.append(effect)

    def goto(self, state: State, reason: str, *, expected: bool = False) -> None:
        """Change state; the order gate follows at the end of the transition (:func:`gate_of`)."""
        old = self.status.state
        if old is state:
            self.update(reason=reason)
            return
        if old is State.API_READY and not expected:
            # Strategies must be told at once; the host decides the grace period.
            self.emit(TriggerSafeState(reason=f"{self.status.gateway}: {reason}"))
        self.update(state=state, since=self.now, reason=reason)
        if state is State.API_READY:
            self.update(
                failed_logins=0,
                stall_since=None,
                window_ended_at=None,
                planned_until=None,
                relaunch_expected_until=None,
                expected_relaunch=None,
            )
            keep = {alert_key(self.status.gateway, "reauth")}
            self.resolve_all(keep=keep)

    def alert(self, text: alerts.AlertText) -> None:
        """Raise once per key: an open key is not raised again until it is resolved."""
        key = alert_key(self.status.gateway, text.problem)
        if key in self.status.open_alerts:
            return
        self.emit(Alert(key=key, severity=text.severity, title=text.title, body=text.body))
        self.update(open_alerts=self.status.open_alerts | {key})

    def resolve(self, problem: str) -> None:
        key = alert_key(self.status.gateway, problem)
        if key not in self.status.open_alerts:
            return
        self.emit(ResolveAlert(key=key))
        self.update(open_alerts=self.status.open_alerts - {key})

    def resolve_all(self, *, keep: frozenset[str] | set[str] = frozenset()) -> None:
        for key in sorted(self.status.open_alerts - keep):
            self.emit(ResolveAlert(key=key))
        self.update(open_alerts=self.status.open_alerts & keep)

    def count_login(self, outcome: LoginOutcome) -> None:
        self.emit(CountLogin(username=self.status.username, outcome=outcome))


def restart_window(step: Step) -> Budget:
    return Budget(
        limit=step.policy.restart_budget,
        window=step.policy.restart_window,
        events=step.status.restarts,
    )


def login_window(step: Step) -> Budget:
    return Budget(
        limit=step.policy.login_budget,
        window=step.policy.login_window,
        events=step.status.login_attempts,
    )


def clear_session(step: Step) -> None:
    """Forget everything learned from the previous container start or session."""
    step.update(
        logged_in=False,
        api_connected=False,
        last_heartbeat=None,
        twofa_deadline=None,
        degraded_reasons=frozenset(),
        stall_since=None,
    )


def replacing(status: GatewayStatus, now: datetime) -> bool:
    """A rollout is replacing the container: its deadline and rollback decide, not ours."""
    until = status.replacing_until
    return until is not None and now < until


def halt(step: Step, *, down: tuple[State, ...]) -> None:
    """Stop the container unless it is ``down`` already, close every alert and forget the
    session and every pending restart, login and relaunch deadline (-> STOPPED or FATAL).

    A replacement under way no longer holds the machine: the stop or FATAL wins, and the
    rollout leaves the previous container down when it rolls back.
    """
    step.resolve_all()
    if step.state not in down:
        step.emit(StopContainer())
    clear_session(step)
    step.update(
        restart_kind=None,
        restart_deadline=None,
        backoff_until=None,
        login_deadline=None,
        planned_until=None,
        relaunch_expected_until=None,
        expected_relaunch=None,
        replacing_until=None,
    )


def fatal(step: Step, reason: str, todo: str) -> None:
    """Any state -> FATAL: stop the container (so it burns no more logins) and page."""
    if step.state is State.FATAL:
        return
    halt(step, down=(State.ABSENT, State.STOPPED))
    step.goto(State.FATAL, reason)
    step.alert(alerts.fatal(step.status, reason, todo))


def restart(step: Step, kind: RestartKind, reason: str, *, planned: bool) -> None:
    """-> RESTARTING with the restart effect, or -> FATAL when a budget is spent.

    Unplanned restarts count against the retry budget and need a login slot, so a
    misbehaving gateway can never loop: the budget ends in FATAL and a page.
    """
    if not planned and replacing(step.status, step.now):
        # During a replacement the rollout decides (ready, or rolled back at its deadline);
        # a restart of ours would race its rollback and hold a gateway it restores.
        step.update(reason=f"{reason} (replacing: the rollout decides)")
        return
    if not planned:
        window = restart_window(step)
        if not window.allows(step.now):
            fatal(
                step,
                alerts.restart_budget_spent(step.policy, reason),
                "Find out why it keeps failing (logs, credentials, IB status).",
            )
            return
        if kind is not RestartKind.SOFT and not login_window(step).allows(step.now):
            fatal(
                step,
                alerts.login_budget_spent(step.policy, reason),
                alerts.LOCKOUT_RISK,
            )
            return
        step.update(restarts=window.record(step.now).events)
    if kind is RestartKind.SOFT:
        step.emit(SoftRestart())
    elif kind is RestartKind.HARD:
        step.emit(HardRestart())
    elif kind is RestartKind.START:
        step.emit(StartContainer())
    # RESTART restarts at the next minute, then relaunches with the token: allow for both.
    policy = step.policy
    deadline = step.now + (
        policy.restart_command_delay + policy.token_relaunch_bound
        if kind is RestartKind.SOFT
        else policy.restart_deadline
    )
    # Only a planned restart of a running session is a planned outage for the strategies.
    planned_outage = planned and step.state in SESSION_STATES
    clear_session(step)
    step.update(
        restart_kind=kind,
        restart_deadline=deadline,
        api_dropped=False,
        backoff_until=None,
        login_deadline=None,
        restart_count=step.status.restart_count + 1,
        planned_until=deadline if planned_outage else None,
        relaunch_expected_until=None,
        expected_relaunch=None,
    )
    step.goto(State.RESTARTING, reason, expected=planned)


def relaunch_bound(policy: LifecyclePolicy, kind: RelaunchKind) -> timedelta:
    if kind.token:
        return policy.token_relaunch_bound
    if kind is RelaunchKind.WEEKLY_COLD:
        return policy.cold_relaunch_bound
    return policy.restart_deadline


RELAUNCH_WHY = {
    RelaunchKind.AUTO_RESTART: "IBC daily auto-restart (token relaunch)",
    RelaunchKind.RESTART_COMMAND: "IBC RESTART (token relaunch)",
    RelaunchKind.WEEKLY_COLD: "IBC weekly cold restart (full login)",
    RelaunchKind.COLD_AFTER_FAILURE: "IBC cold restart after a failure",
    RelaunchKind.NO_LOGIN_DIALOG: "IBC relaunch: the login dialog never appeared (exit 1112)",
    RelaunchKind.TWOFA_EXIT: "IBC relaunch: 2FA approved but the login did not complete (1111)",
    RelaunchKind.UNEXPLAINED: "IBC relaunched the Gateway for no reason its log gave",
}


def relaunching(step: Step, kind: RelaunchKind, *, planned: bool) -> None:
    """-> RESTARTING (external): IBC relaunches the JVM by itself; nothing to execute.

    The container keeps running, so the machine only waits, within the relaunch's bound; the
    restart deadline then escalates to a hard restart (a planned relaunch that outlasts its
    bound is a loss).
    """
    deadline = step.now + relaunch_bound(step.policy, kind)
    clear_session(step)
    step.update(
        restart_kind=RestartKind.EXTERNAL,
        restart_deadline=deadline,
        api_dropped=True,
        backoff_until=None,
        login_deadline=None,
        twofa_deadline=None,
        restart_count=step.status.restart_count + 1,
        planned_until=deadline if planned else None,
        relaunch_expected_until=None,
        expected_relaunch=None,
    )
    if planned:
        # A stall read before the relaunch's lines arrived was this relaunch: nobody is paged.
        step.resolve("stall")
        step.resolve("degraded")
    step.goto(State.RESTARTING, RELAUNCH_WHY[kind], expected=planned)


def login_failed(step: Step, outcome: LoginOutcome, reason: str) -> None:
    """A failed login (2FA timeout included: IB counts it) -> BACKOFF, RESTARTING or FATAL.

    During a replacement: counted only; the rollout rolls back at its deadline, and one alert
    (the rollout's) says so. A BACKOFF here would stop and hold the container it restores.
    """
    step.count_login(outcome)
    failures = step.status.failed_logins + 1
    if replacing(step.status, step.now):
        step.update(
            failed_logins=failures,
            twofa_deadline=None,
            login_deadline=None,
            logged_in=False,
            reason=f"{reason} (replacing: the rollout decides)",
        )
        step.resolve("2fa")
        return
    step.update(
        failed_logins=failures,
        twofa_deadline=None,
        login_deadline=None,
        planned_until=None,
        relaunch_expected_until=None,
        expected_relaunch=None,
    )
    step.resolve("2fa")
    step.resolve("competing")
    if (
        outcome is LoginOutcome.TWOFA_TIMEOUT
        and step.policy.twofa_timeout_action is TwoFactorTimeoutAction.EXIT
        and step.policy.twofa_retry_at_once
    ):
        # The supervisor owns it and retries at once (the budget still bounds it).
        step.alert(alerts.twofa_restart_now(step.status, reason))
        restart(step, RestartKind.HARD, reason, planned=False)
        return
    if not restart_window(step).allows(step.now):
        fatal(
            step,
            alerts.restart_budget_spent(step.policy, reason),
            "Find out why logins keep failing (credentials, 2FA device, IB status).",
        )
        return
    if not login_window(step).allows(step.now):
        fatal(
            step,
            alerts.login_budget_spent(step.policy, reason),
            alerts.LOCKOUT_RISK,
        )
        return
    delay = step.policy.backoff.delay(failures - 1, rng=step.rng)
    until = step.now + delay
    step.alert(alerts.login_failed(step.status, reason, until, failures))
    if step.state not in (State.ABSENT, State.CREATING):
        step.emit(StopContainer())
    clear_session(step)
    step.update(backoff_until=until, restart_kind=None, restart_deadline=None)
    step.emit(ScheduleBackoff(until=until))
    step.goto(State.BACKOFF, reason)


def quiet(status: GatewayStatus, now: datetime, policy: LifecyclePolicy) -> bool:
    """Inside a reset window, or within the grace after one: outages page nobody."""
    if status.in_window:
        return True
    ended = status.window_ended_at
    return ended is not None and now < ended + policy.ready_grace_after_window


def window_explains(reasons: frozenset[str]) -> bool:
    return not any(r.startswith(ALWAYS_PAGED_REASONS) for r in reasons)


def settle(step: Step) -> None:
    """For a logged-in, answering session: API_READY, DEGRADED or RESET_WINDOW by reasons."""
    status = step.status
    reasons = status.degraded_reasons
    stalled = reasons & STALL_REASONS
    if not stalled:
        step.update(stall_since=None)
        step.resolve("stall")
    elif status.stall_since is None:
        step.update(stall_since=step.now)
    if not reasons:
        # any session state -> API_READY: all reasons cleared and the probe answered.
        step.goto(State.API_READY, "logged in and answering probes")
        return
    listed = ", ".join(sorted(reasons))
    if quiet(status, step.now, step.policy) and window_explains(reasons):
        # -> RESET_WINDOW: an expected outage inside (or just after) an IB reset window.
        step.goto(State.RESET_WINDOW, f"IB reset window: {listed}", expected=True)
        return
    # -> DEGRADED: the session is up but not healthy; page once per episode.
    after_window = status.state is State.RESET_WINDOW
    step.goto(State.DEGRADED, listed)
    stall_only = reasons <= STALL_REASONS
    since = step.status.stall_since
    if (
        stall_only
        and not after_window
        and (since is None or step.now - since < step.policy.stall_page_after)
    ):
        # DEGRADED (stall, not yet paged): orders are gated; Tick pages if it persists.
        return
    if after_window:
        # RESET_WINDOW -> DEGRADED: the window and its grace are over and it is not back.
        step.alert(alerts.not_ready_after_window(step.status, step.policy, listed))
    step.alert(alerts.degraded(step.status, listed))
    if stalled:
        step.alert(alerts.stall(step.status, step.policy, stalled))


def degrade(step: Step, *, add: frozenset[str] = frozenset(), drop: Callable[[str], bool]) -> None:
    """Update the reasons; in a session state, settle; before the session, just remember."""
    reasons = frozenset(r for r in step.status.degraded_reasons if not drop(r)) | add
    step.update(degraded_reasons=reasons)
    if step.state in SESSION_STATES:
        settle(step)


def never(_: str) -> bool:
    return False
