"""IBC's login lines: attempts, the IB Key prompt and its outcome, success, failure, lockout."""

from supervisor.budget import Budget
from supervisor.lifecycle import alerts
from supervisor.lifecycle.effects import LoginOutcome
from supervisor.lifecycle.events import (
    ExistingSessionDetected,
    LockedOut,
    LoggedIn,
    LoginAttempt,
    LoginFailed,
    TwoFactorApproved,
    TwoFactorExpired,
    TwoFactorInitiated,
)
from supervisor.lifecycle.handlers.suspect import held_as_suspect
from supervisor.lifecycle.states import (
    OPERATOR_STATES,
    SESSION_STATES,
    State,
)
from supervisor.lifecycle.step import (
    Step,
    clear_session,
    fatal,
    login_failed,
    login_window,
    quiet,
)


def _count_attempt(step: Step) -> Budget:
    # Every attempt counts against the per-username budget: IB locks accounts, not containers,
    # and IB counts a login whatever state the machine thought the gateway was in.
    step.count_login(LoginOutcome.ATTEMPT)
    window = login_window(step).record(step.now)
    step.update(login_attempts=window.events)
    return window


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
