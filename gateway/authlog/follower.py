"""The follower: reads a container's log lines in order and trusts only the current run.

:class:`AuthLogFollower` drops every line from before the container's current start, so a stale
"Login has completed" can never report a login, and tracks where the current run's login stands
(:class:`LoginPhase`).

Inside a container IBC's start script relaunches the Gateway JVM in a loop, so one container
start holds many JVM runs. The follower reads each relaunch by what the lines of the ending run
and the script's decision say (:class:`~gateway.authlog.events.Relaunch`,
:class:`~gateway.authlog.events.RelaunchKind`), never by the clock: a daily auto-restart and a
RESTART are token relaunches (no login), a weekly ``ColdRestartTime`` and a failed login are
cold ones (a full login), 1112 and 1111 have their own. Pure: no I/O, time comes in with the
lines.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo

from gateway.authlog.classifier import MAX_DETAIL, classify, is_error_header, split_line
from gateway.authlog.events import (
    AuthEvent,
    AutorestartFound,
    AutorestartNotFound,
    ColdRestart,
    ExistingSessionDetected,
    ExistingSessionOutcome,
    ExitStatus,
    LoggedIn,
    LoginAttempt,
    LoginFailed,
    LoopEnded,
    Relaunch,
    RelaunchKind,
    ReloginRequired,
    RestartScheduled,
    RestartShortly,
    SessionStarting,
    Stopping,
    TooManyFailedAttempts,
    TwoFactorApproved,
    TwoFactorInitiated,
    TwoFactorTimedOut,
)
from gateway.codes import IbcExit, ibc_exit_from_status, inert
from gateway.runtime import START_STAMP_TOLERANCE

_MAX_EVENTS = 1000  # events and relaunches remembered per container start


@dataclass
class _JvmRun:
    """What one JVM run of IBC said, read to name the relaunch that ends it.

    ibcstart.sh decides after each exit: a ``COLDRESTART`` flag (``IBC will cold-restart
    shortly``), else the autorestart token (``autorestart file found``), else exit 1111 with
    ``--on2fatimeout=restart``; 1112 always relaunches; otherwise the loop ends. The reason for
    a cold flag is in the run's own lines: StopTask.java writes it for ColdRestartTime after
    ``exiting via [File, Close] menu``, and for the login-failure dialogs after their lines.
    """

    restart_scheduled: bool = False
    failure: bool = False
    closed_logged_in: bool = False
    exit_status: int | None = None
    decision: RelaunchKind | None = None

    def note(self, event: AuthEvent) -> bool:
        """Take one event; True when the script said it relaunches (the story is complete)."""
        if self.exit_status is None:
            if isinstance(event, RestartScheduled):
                self.restart_scheduled = True
            elif isinstance(event, LoginFailed | ColdRestart) or (
                isinstance(event, Stopping) and not event.was_logged_in
            ):
                self.failure = True
            elif isinstance(event, Stopping):
                self.closed_logged_in = True
            elif isinstance(event, ExitStatus):
                self.exit_status = event.status
                if ibc_exit_from_status(event.status) is IbcExit.LOGIN_DIALOG_DISPLAY_TIMED_OUT:
                    self.decision = RelaunchKind.NO_LOGIN_DIALOG
            return False
        if isinstance(event, AutorestartFound) and self.decision is None:
            self.decision = (
                RelaunchKind.RESTART_COMMAND
                if self.restart_scheduled
                else RelaunchKind.AUTO_RESTART
            )
        elif isinstance(event, AutorestartNotFound) and self.decision is None:
            if ibc_exit_from_status(self.exit_status) is IbcExit.SECOND_FACTOR_AUTH_LOGIN_TIMED_OUT:
                self.decision = RelaunchKind.TWOFA_EXIT
        elif isinstance(event, RestartShortly) and event.cold:
            if self.failure:
                self.decision = RelaunchKind.COLD_AFTER_FAILURE
            elif self.closed_logged_in:
                self.decision = RelaunchKind.WEEKLY_COLD
            else:
                self.decision = RelaunchKind.UNEXPLAINED
        elif isinstance(event, RestartShortly):
            return True
        elif isinstance(event, LoopEnded):
            self.exit_status = None  # the loop ended: no relaunch to name
        return False

    def kind(self) -> RelaunchKind:
        return self.decision or RelaunchKind.UNEXPLAINED


class LoginPhase(enum.Enum):
    """Where the current run's login stands, as far as its log lines tell."""

    UNKNOWN = "unknown"  # no line since the start yet
    STARTING = "starting"
    LOGGING_IN = "logging_in"
    AWAITING_2FA = "awaiting_2fa"
    EXISTING_SESSION = "existing_session"
    LOGGED_IN = "logged_in"
    FAILED = "failed"
    LOCKED_OUT = "locked_out"
    STOPPING = "stopping"
    EXITED = "exited"


_MAX_HELD = 200  # undated events held while it is unknown whether they are fresh


class AuthLogFollower:
    """Reads a container's log lines in order and keeps only what the current run said.

    Reset it with the container's start time at each (re)start. A dated line before that time
    is stale and dropped. An undated line (the start script's plain echoes, when the logs were
    read without Docker's timestamps) takes its freshness from the dated lines around it: it
    is held until the next dated line, kept if that line is fresh and dropped if it is stale.
    Read Docker logs with ``timestamps=True`` and every line is dated.
    """

    def __init__(
        self,
        *,
        started_at: datetime,
        tz: tzinfo = UTC,
        tolerance: timedelta = START_STAMP_TOLERANCE,
    ) -> None:
        if started_at.tzinfo is None:
            raise ValueError(
                f"AuthLogFollower: started_at must be timezone-aware, got {started_at!r}"
            )
        self._tz = tz
        # Docker may stamp a container's first lines a few ms before the StartedAt it records,
        # and IBC's own stamps have millisecond precision.
        self._tolerance = tolerance
        self.reset(started_at=started_at)

    def reset(self, *, started_at: datetime) -> None:
        """Forget everything: the container (re)started at ``started_at``."""
        if started_at.tzinfo is None:
            raise ValueError(
                f"AuthLogFollower.reset: started_at must be timezone-aware, got {started_at!r}"
            )
        self.started_at = started_at
        self.phase = LoginPhase.UNKNOWN
        self.login_attempts = 0
        self.autorestart_found: bool | None = None
        self.last_exit_status: int | None = None
        self.last_failure: str | None = None
        self.events: list[AuthEvent] = []
        self._fresh: bool | None = None  # freshness of the last dated line; None: none yet
        self._held: list[AuthEvent] = []
        self._error_detail_pending: LoginFailed | None = None
        self.relaunches: list[Relaunch] = []
        self._run = _JvmRun()

    @property
    def logged_in(self) -> bool:
        return self.phase is LoginPhase.LOGGED_IN

    @property
    def awaiting_2fa(self) -> bool:
        return self.phase is LoginPhase.AWAITING_2FA

    def feed(self, line: str) -> list[AuthEvent]:
        """Take the next line; returns the fresh events it (and any held lines) produced.

        A line that ends a relaunch's story also yields a :class:`Relaunch` after its own event.
        """
        try:
            split = split_line(line, self._tz)
            event = classify(split.message, split.at, self._tz)
        except (ValueError, OverflowError, IndexError):
            return []
        out: list[AuthEvent] = []
        if split.at is not None:
            self._fresh = split.at >= self.started_at - self._tolerance
            held, self._held = self._held, []
            if self._fresh:
                # The undated lines before this fresh one belong to the current run.
                for h in held:
                    out.extend(self._accept(h))
            else:
                # A stale line: it and everything undated before it are from an older run.
                self._error_detail_pending = None
                return []

        # IBC prints a failed login's dialog text on the line after "Login error message:".
        if self._error_detail_pending is not None:
            pending, self._error_detail_pending = self._error_detail_pending, None
            if event is None and not split.from_ibc and split.message:
                detail = inert(split.message, limit=MAX_DETAIL) or None
                out.extend(self._admit(replace(pending, message=detail)))
                return out
            out.extend(self._admit(pending))

        if isinstance(event, LoginFailed) and event.message is None and is_error_header(split):
            # Wait one line for the dialog text before reporting the failure.
            self._error_detail_pending = event
        elif event is not None:
            out.extend(self._admit(event))
        return out

    def flush(self) -> list[AuthEvent]:
        """Report a failure still waiting for its detail line (e.g. at the end of a read)."""
        if self._error_detail_pending is None:
            return []
        pending, self._error_detail_pending = self._error_detail_pending, None
        return self._admit(pending)

    def _admit(self, event: AuthEvent) -> list[AuthEvent]:
        if event.at is not None or self._fresh:
            return self._accept(event)
        # Undated and nothing fresh seen yet: hold until a dated line decides.
        if len(self._held) < _MAX_HELD:
            self._held.append(event)
        return []

    def _accept(self, event: AuthEvent) -> list[AuthEvent]:
        out: list[AuthEvent] = []
        if isinstance(event, SessionStarting):
            # A new JVM run began without the script's "restart shortly" line: close the last.
            out.extend(self._relaunched(event.at))
        out.append(event)
        self.events.append(event)
        self._advance(event)
        if self._run.note(event):
            out.extend(self._relaunched(event.at))
        del self.events[:-_MAX_EVENTS]
        return out

    def _relaunched(self, at: datetime | None) -> list[AuthEvent]:
        run, self._run = self._run, _JvmRun()
        if run.exit_status is None:
            return []  # no JVM ended since the last relaunch: nothing to explain
        relaunch = Relaunch(at=at, kind=run.kind(), status=run.exit_status)
        self.relaunches.append(relaunch)
        del self.relaunches[:-_MAX_EVENTS]
        self.events.append(relaunch)
        return [relaunch]

    def _advance(self, event: AuthEvent) -> None:
        # Each event moves the phase as the real gateway's login moves; lines that only
        # inform (autorestart found, relogin scheduled) leave the phase alone.
        if isinstance(event, SessionStarting):
            self.phase = LoginPhase.STARTING
        elif isinstance(event, LoginAttempt):
            self.login_attempts = max(self.login_attempts, event.number)
            self.phase = LoginPhase.LOGGING_IN
        elif isinstance(event, TwoFactorInitiated):
            self.phase = LoginPhase.AWAITING_2FA
        elif isinstance(event, LoggedIn):
            self.phase = LoginPhase.LOGGED_IN
        elif isinstance(event, ExistingSessionDetected):
            if event.outcome is ExistingSessionOutcome.THIS_SESSION_ENDS:
                self.phase = LoginPhase.FAILED
                self.last_failure = "existing session kept by the other side"
            elif self.phase is not LoginPhase.LOGGED_IN:
                self.phase = LoginPhase.EXISTING_SESSION
        elif isinstance(event, ReloginRequired):
            self.phase = LoginPhase.EXISTING_SESSION
        elif isinstance(event, TwoFactorTimedOut):
            self.phase = LoginPhase.FAILED
            self.last_failure = "second factor authentication timed out"
        elif isinstance(event, LoginFailed):
            self.phase = LoginPhase.FAILED
            self.last_failure = event.message or "login failed"
        elif isinstance(event, TooManyFailedAttempts):
            self.phase = LoginPhase.LOCKED_OUT
            self.last_failure = "too many failed login attempts"
        elif isinstance(event, ColdRestart | Stopping):
            self.phase = LoginPhase.STOPPING
        elif isinstance(event, AutorestartFound):
            self.autorestart_found = True
        elif isinstance(event, AutorestartNotFound):
            self.autorestart_found = False
        elif isinstance(event, ExitStatus):
            self.last_exit_status = event.status
            self.phase = LoginPhase.EXITED
        elif isinstance(event, TwoFactorApproved):
            self.phase = LoginPhase.LOGGING_IN
        elif isinstance(event, LoopEnded):
            self.phase = LoginPhase.EXITED
