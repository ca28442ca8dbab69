"""The typed events IBC's and its start script's log lines are read into.

One frozen dataclass per thing a line can say about logging in (:data:`AuthEvent` is their
union), and :class:`RelaunchKind`, why the start script relaunched the Gateway JVM inside a
running container. Pure data: :mod:`gateway.authlog.classifier` makes them from lines and
:mod:`gateway.authlog.follower` keeps the current run's.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, time

from gateway.codes import IbcExit


class ExistingSessionOutcome(enum.Enum):
    """What IBC did about another session of the same username."""

    DETECTED = "detected"  # the dialog appeared; IBC has not decided yet
    USER_MUST_CHOOSE = "user_must_choose"  # manual: nothing happens until a human acts
    THIS_SESSION_ENDS = "this_session_ends"
    THIS_SESSION_CONTINUES = "this_session_continues"


@dataclass(frozen=True)
class SessionStarting:
    """IBC began a session (first in its run, or again after an in-process restart)."""

    at: datetime | None
    dialog_timeout_seconds: int | None
    restarting: bool


@dataclass(frozen=True)
class LoginAttempt:
    at: datetime | None
    number: int


@dataclass(frozen=True)
class TwoFactorInitiated:
    """A 2FA prompt is on the user's phone."""

    at: datetime | None


@dataclass(frozen=True)
class TwoFactorTimedOut:
    """IBC is exiting because login did not complete after 2FA (exit code 1111 follows)."""

    at: datetime | None


@dataclass(frozen=True)
class TwoFactorReloginScheduled:
    """Nobody answered the 2FA prompt; IBC will try the login again in 5 s."""

    at: datetime | None


@dataclass(frozen=True)
class LoggedIn:
    """Login has completed (or IBC's configuration after login finished)."""

    at: datetime | None
    configured: bool  # True for "Configuration tasks completed", which comes later


@dataclass(frozen=True)
class ExistingSessionDetected:
    at: datetime | None
    outcome: ExistingSessionOutcome


@dataclass(frozen=True)
class ReloginRequired:
    """IB's "Re-login is required" dialog: another login displaced this session."""

    at: datetime | None


@dataclass(frozen=True)
class LoginFailed:
    """A login failed; ``message`` is IB's dialog text when the log carried it."""

    at: datetime | None
    message: str | None


@dataclass(frozen=True)
class TooManyFailedAttempts:
    """IB locked the username; ``wait_seconds`` is IB's stated wait when the line gave it."""

    at: datetime | None
    wait_seconds: int | None


@dataclass(frozen=True)
class ColdRestart:
    """IBC is stopping for a cold restart (after a failed login or a lost server)."""

    at: datetime | None


@dataclass(frozen=True)
class WillReloginAt:
    """IBC scheduled a login after a lockout; ``when`` is in the gateway's zone."""

    at: datetime | None
    when: datetime | None
    login_number: int | None


@dataclass(frozen=True)
class AutorestartFound:
    """The start script found the restart token: no 2FA is needed for this start."""

    at: datetime | None
    path: str


@dataclass(frozen=True)
class AutorestartNotFound:
    """The start script found no restart token: full authentication (2FA on live)."""

    at: datetime | None


@dataclass(frozen=True)
class Stopping:
    """IBC is shutting down (STOP command or a cold restart)."""

    at: datetime | None
    was_logged_in: bool


@dataclass(frozen=True)
class IbcExiting:
    """IBC halts the JVM with one of its own exit codes."""

    at: datetime | None
    code: int
    ibc_exit: IbcExit | None


@dataclass(frozen=True)
class ExitStatus:
    """The start script saw IBC exit; ``status`` is modulo 256 as a shell sees it."""

    at: datetime | None
    status: int
    ibc_exit: IbcExit | None


@dataclass(frozen=True)
class RestartShortly:
    """The start script will run IBC again (``cold`` means without the restart token)."""

    at: datetime | None
    cold: bool


@dataclass(frozen=True)
class RestartScheduled:
    """IBC accepted a RESTART: ``Setting auto-restart time to hh:mm AM`` (RestartTask.java).

    The Gateway restarts itself at that minute, up to about a minute later, with its token.
    """

    at: datetime | None
    when: time | None


@dataclass(frozen=True)
class TwoFactorApproved:
    """The 2FA prompt was answered in time; IBC exits after ``exit_in_seconds`` if the login
    still has not completed (LoginManager.java, relogin on): the user *did* approve."""

    at: datetime | None
    exit_in_seconds: int


@dataclass(frozen=True)
class TwoFactorExpired:
    """Nobody answered the 2FA prompt and IBC will not log in again (relogin off): it waits
    at the login dialog, with no exit (LoginManager.java)."""

    at: datetime | None


@dataclass(frozen=True)
class LoopEnded:
    """The start script's loop ended (``Gateway finished``): the container exits next."""

    at: datetime | None


class RelaunchKind(enum.Enum):
    """Why IBC's start script relaunched the Gateway JVM inside the running container."""

    #: The Gateway's own daily auto-restart (AutoRestartTime): relaunched with the token.
    AUTO_RESTART = "auto_restart"
    #: A command-server RESTART (``Setting auto-restart time to ...`` first): with the token.
    RESTART_COMMAND = "restart_command"
    #: The weekly ColdRestartTime: ``exiting via [File, Close] menu``, then a full login.
    WEEKLY_COLD = "weekly_cold"
    #: A cold restart after ``Login failed``, a login error or a lost server connection.
    COLD_AFTER_FAILURE = "cold_after_failure"
    #: Exit 1112 (88): the login dialog never appeared; always relaunched.
    NO_LOGIN_DIALOG = "no_login_dialog"
    #: Exit 1111 (87) with ``--on2fatimeout=restart``: 2FA approved, login never completed.
    TWOFA_EXIT = "twofa_exit"
    #: A relaunch no line of the ending run explains.
    UNEXPLAINED = "unexplained"

    @property
    def planned(self) -> bool:
        """Expected and bounded: the daily restart, a RESTART, the weekly cold restart."""
        return self in _PLANNED_RELAUNCHES

    @property
    def token(self) -> bool:
        """Relaunched with the autorestart token: no login, no 2FA."""
        return self in (RelaunchKind.AUTO_RESTART, RelaunchKind.RESTART_COMMAND)


_PLANNED_RELAUNCHES = frozenset(
    {RelaunchKind.AUTO_RESTART, RelaunchKind.RESTART_COMMAND, RelaunchKind.WEEKLY_COLD}
)


@dataclass(frozen=True)
class Relaunch:
    """The start script relaunches the JVM for ``kind`` (``status``: the ended run's exit)."""

    at: datetime | None
    kind: RelaunchKind
    status: int | None


AuthEvent = (
    RestartScheduled
    | TwoFactorApproved
    | TwoFactorExpired
    | LoopEnded
    | Relaunch
    | SessionStarting
    | LoginAttempt
    | TwoFactorInitiated
    | TwoFactorTimedOut
    | TwoFactorReloginScheduled
    | LoggedIn
    | ExistingSessionDetected
    | ReloginRequired
    | LoginFailed
    | TooManyFailedAttempts
    | ColdRestart
    | WillReloginAt
    | AutorestartFound
    | AutorestartNotFound
    | Stopping
    | IbcExiting
    | ExitStatus
    | RestartShortly
)
