"""The lifecycle's inputs: one frozen dataclass per fact (the table's columns).

Container events come from the runtime, login and relaunch events from IBC's log (untrusted
text: a log line alone never ends a session the probe sees healthy), probe events from the
API probe, the rest from schedules and operators.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeAlias

from gateway.authlog import RelaunchKind


@dataclass(frozen=True, slots=True)
class ContainerCreated:
    """The runtime created the container."""


@dataclass(frozen=True, slots=True)
class ContainerStarted:
    """The container's process started (a new start: earlier log lines no longer count)."""


@dataclass(frozen=True, slots=True)
class ContainerDied:
    """The container exited with ``exit_code``."""

    exit_code: int


@dataclass(frozen=True, slots=True)
class ContainerOom:
    """The kernel killed the container for memory."""


@dataclass(frozen=True, slots=True)
class ContainerDestroyed:
    """The container was removed."""


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """IBC logged ``Login attempt: N``."""

    number: int = 1


@dataclass(frozen=True, slots=True)
class TwoFactorInitiated:
    """IB pushed a second-factor (IB Key) notification."""


@dataclass(frozen=True, slots=True)
class TwoFactorTimedOut:
    """IBC gave up waiting for the second factor."""


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """IBC logged ``Login has completed``."""


@dataclass(frozen=True, slots=True)
class ExistingSessionDetected:
    """IB reported another session for the same username."""


@dataclass(frozen=True, slots=True)
class LoginFailed:
    """IB rejected the login (``message`` is IB's text, already free of secrets)."""

    message: str = ""


@dataclass(frozen=True, slots=True)
class LockedOut:
    """IB locked the username after too many failed logins."""

    message: str = ""


@dataclass(frozen=True, slots=True)
class TwoFactorApproved:
    """IBC: ``If login has not completed, IBC will exit in N seconds``: the user approved."""

    exit_in: timedelta = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class TwoFactorExpired:
    """Nobody answered the prompt in time; ``relogin``: IBC logs in again by itself."""

    relogin: bool


@dataclass(frozen=True, slots=True)
class IbcExitStatus:
    """The start script reported ``IBC returned exit status N`` (IBC's code namespace).

    A fact only: what follows (a relaunch, or the container's exit) decides.
    """

    code: int


@dataclass(frozen=True, slots=True)
class IbcRelaunching:
    """The start script relaunches the Gateway JVM for ``kind`` (the container keeps running)."""

    kind: RelaunchKind
    status: int | None = None


@dataclass(frozen=True, slots=True)
class RestartScheduled:
    """IBC accepted a RESTART (``OK RESTART at``, ``Setting auto-restart time to``): the Gateway
    restarts itself with its token at the next minute."""


@dataclass(frozen=True, slots=True)
class ApiConnected:
    """The probe's API socket connected."""


@dataclass(frozen=True, slots=True)
class HeartbeatOk:
    """The API answered a probe request in ``rtt``."""

    rtt: timedelta


@dataclass(frozen=True, slots=True)
class HeartbeatMissed:
    """A probe request got no answer within the deadline although the socket is open."""


@dataclass(frozen=True, slots=True)
class ApiDisconnected:
    """The probe's API socket closed."""


@dataclass(frozen=True, slots=True)
class IbLinkLost:
    """TWS API code 1100: connectivity between IB and the gateway lost."""


@dataclass(frozen=True, slots=True)
class IbLinkRestored:
    """TWS API code 1101 (``data_lost``: resubscribe) or 1102 (data maintained)."""

    data_lost: bool = False


@dataclass(frozen=True, slots=True)
class FarmBroken:
    """A data farm reported broken (2103, 2105, 2157, 2110)."""

    farm: str


@dataclass(frozen=True, slots=True)
class FarmOk:
    """A data farm reported OK again (2104, 2106, 2158)."""

    farm: str


@dataclass(frozen=True, slots=True)
class AccountMismatch:
    """The gateway is logged into a different account than configured."""

    expected: str
    actual: str


@dataclass(frozen=True, slots=True)
class PermissionMismatch:
    """Trading permissions or read-only mode differ from the configuration."""

    detail: str


@dataclass(frozen=True, slots=True)
class PermissionOk:
    """Permissions match the configuration again."""


@dataclass(frozen=True, slots=True)
class ClientIdInUse:
    """TWS API code 326 for the probe's client id."""

    client_id: int


@dataclass(frozen=True, slots=True)
class ResetWindowEntered:
    """An IB server reset window for this gateway's region began (ends at ``until``)."""

    name: str = ""
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class ResetWindowLeft:
    """The reset window ended."""


@dataclass(frozen=True, slots=True)
class DailyRestartExpected:
    """The Gateway's daily AutoRestartTime came: IBC restarts it by itself, with its token.

    Nothing is sent (a RESTART on top of it would make two); an API drop now is read as it.
    """


@dataclass(frozen=True, slots=True)
class WeeklyReauthDue:
    """The weekly full re-authentication (Sunday 01:00 ET) is at ``at``: warn ahead."""

    at: datetime


@dataclass(frozen=True, slots=True)
class OperatorStart:
    """An operator asked to start the gateway."""


@dataclass(frozen=True, slots=True)
class OperatorStop:
    """An operator asked to stop the gateway."""


@dataclass(frozen=True, slots=True)
class OperatorRestart:
    """An operator asked to restart the gateway (softly when the session is up)."""


@dataclass(frozen=True, slots=True)
class OperatorReset:
    """An operator cleared FATAL (or a backoff) and its counters."""


@dataclass(frozen=True, slots=True)
class ReplaceStarted:
    """A rollout replaces the container with the fleet file's new spec (a planned full login).

    ``until`` bounds it (the rollout's deadline and its rollback); None: one restart deadline.
    """

    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReplaceFinished:
    """The rollout of this gateway ended: ``ok`` on the new spec, else rolled back."""

    ok: bool = True


@dataclass(frozen=True, slots=True)
class SupervisorStopping:
    """The supervisor itself is stopping: every gate closes with kind SHUTDOWN."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Periodic: evaluates deadlines at the ``now`` given to :func:`transition`."""


Event: TypeAlias = (
    ContainerCreated
    | ContainerStarted
    | ContainerDied
    | ContainerOom
    | ContainerDestroyed
    | ReplaceStarted
    | ReplaceFinished
    | LoginAttempt
    | TwoFactorInitiated
    | TwoFactorTimedOut
    | LoggedIn
    | ExistingSessionDetected
    | LoginFailed
    | LockedOut
    | TwoFactorApproved
    | TwoFactorExpired
    | IbcExitStatus
    | IbcRelaunching
    | RestartScheduled
    | ApiConnected
    | HeartbeatOk
    | HeartbeatMissed
    | ApiDisconnected
    | IbLinkLost
    | IbLinkRestored
    | FarmBroken
    | FarmOk
    | AccountMismatch
    | PermissionMismatch
    | PermissionOk
    | ClientIdInUse
    | ResetWindowEntered
    | ResetWindowLeft
    | DailyRestartExpected
    | WeeklyReauthDue
    | OperatorStart
    | OperatorStop
    | OperatorRestart
    | OperatorReset
    | SupervisorStopping
    | Tick
)

OPERATOR_EVENTS = (OperatorStart, OperatorStop, OperatorRestart, OperatorReset)
# Read from IBC's log: on their own they never end a session the probe sees healthy.
LOG_EVENTS = (
    LoginAttempt,
    TwoFactorInitiated,
    TwoFactorTimedOut,
    LoggedIn,
    ExistingSessionDetected,
    LoginFailed,
    LockedOut,
    TwoFactorApproved,
    TwoFactorExpired,
    IbcExitStatus,
    IbcRelaunching,
    RestartScheduled,
)
EVENT_TYPES: tuple[type, ...] = typing.get_args(Event)
