"""Container log lines -> typed auth events, and a follower that trusts only the current run.

Where things are: :mod:`.events` (the typed events and :class:`RelaunchKind`),
:mod:`.classifier` (:func:`parse_line`: one IBC or start-script line -> its event, untrusted
text made inert) and :mod:`.follower` (:class:`AuthLogFollower`: lines in order, stale ones
dropped, the login phase and each in-container relaunch named). The package re-exports their
public names so callers write ``authlog.LoginAttempt`` and ``authlog.parse_line``. Pure: no
I/O, time comes in with the lines. Splitting a raw log stream into bounded lines is
:mod:`gateway.linesplit`'s job, before a line gets here.
"""

from __future__ import annotations

from gateway.authlog.classifier import parse_line
from gateway.authlog.events import (
    AuthEvent,
    AutorestartFound,
    AutorestartNotFound,
    ColdRestart,
    ExistingSessionDetected,
    ExistingSessionOutcome,
    ExitStatus,
    IbcExiting,
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
    TwoFactorExpired,
    TwoFactorInitiated,
    TwoFactorReloginScheduled,
    TwoFactorTimedOut,
    WillReloginAt,
)
from gateway.authlog.follower import AuthLogFollower, LoginPhase

__all__ = [
    "AuthEvent",
    "AuthLogFollower",
    "AutorestartFound",
    "AutorestartNotFound",
    "ColdRestart",
    "ExistingSessionDetected",
    "ExistingSessionOutcome",
    "ExitStatus",
    "IbcExiting",
    "LoggedIn",
    "LoginAttempt",
    "LoginFailed",
    "LoginPhase",
    "LoopEnded",
    "Relaunch",
    "RelaunchKind",
    "ReloginRequired",
    "RestartScheduled",
    "RestartShortly",
    "SessionStarting",
    "Stopping",
    "TooManyFailedAttempts",
    "TwoFactorApproved",
    "TwoFactorExpired",
    "TwoFactorInitiated",
    "TwoFactorReloginScheduled",
    "TwoFactorTimedOut",
    "WillReloginAt",
    "parse_line",
]
