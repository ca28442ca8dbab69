"""The per-gateway lifecycle state machine (pure).

One :class:`GatewayStatus` per gateway; :func:`transition` folds one typed event into it at
``now`` and returns the new status plus the effects an adapter must execute (restart, alert,
gate orders, trigger safe state...). Nothing here does I/O or reads the clock, and every
(state, event) pair has an answer: an event that means nothing in a state returns the same
status and no effects.

Readiness means "logged in and the API answered a probe within the deadline", never "the
container runs": API_READY is only entered on a heartbeat answer from a logged-in gateway.

The machine is also the one owner of two decisions: restarts (the orchestrator only executes
them) and what kind of outage a gateway is in (:func:`gate_of`, carried by :class:`GateOrders`).
IBC relaunches the Gateway JVM inside the running container for every planned restart, so no
container event arrives: the log lines name the relaunch (:class:`IbcRelaunching`), and an API
that drops while a relaunch is expected (the daily AutoRestartTime, an accepted RESTART) is read
as that relaunch, bounded; a relaunch that outlasts its bound is a loss. A log line alone never
ends a session the probe sees healthy: it only changes how the next drop is read.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias, TypeVar

from gateway.authlog import RelaunchKind
from gateway.outage import Gate, OutageKind
from supervisor.alertpolicy import Alert, Severity
from supervisor.budget import BackoffPolicy, SlidingWindow

__all__ = [
    "ALL_STATES",
    "ALWAYS_PAGED_REASONS",
    "LOGIN_STATES",
    "OPERATOR_STATES",
    "PAGEABLE_STATES",
    "READY_STATES",
    "RUNNING_STATES",
    "SESSION_STATES",
    "AccountMismatch",
    "Alert",
    "ApiConnected",
    "ApiDisconnected",
    "ClientIdInUse",
    "ContainerCreated",
    "ContainerDestroyed",
    "ContainerDied",
    "ContainerOom",
    "CountLogin",
    "DailyRestartExpected",
    "Effect",
    "Event",
    "ExistingSessionDetected",
    "FarmBroken",
    "FarmOk",
    "Gate",
    "GateOrders",
    "GatewayStatus",
    "HardRestart",
    "HeartbeatMissed",
    "HeartbeatOk",
    "IbLinkLost",
    "IbLinkRestored",
    "IbcExitStatus",
    "IbcRelaunching",
    "LifecyclePolicy",
    "LockedOut",
    "LoggedIn",
    "LoginAttempt",
    "LoginFailed",
    "LoginOutcome",
    "OperatorReset",
    "OperatorRestart",
    "OperatorStart",
    "OperatorStop",
    "OutageKind",
    "PermissionMismatch",
    "PermissionOk",
    "RelaunchKind",
    "ResetWindowEntered",
    "ResetWindowLeft",
    "ResolveAlert",
    "RestartKind",
    "RestartScheduled",
    "ScheduleBackoff",
    "Severity",
    "SoftRestart",
    "StartContainer",
    "State",
    "StopContainer",
    "SupervisorStopping",
    "Tick",
    "TriggerSafeState",
    "TwoFactorApproved",
    "TwoFactorExpired",
    "TwoFactorInitiated",
    "TwoFactorTimedOut",
    "TwoFactorTimeoutAction",
    "WeeklyReauthDue",
    "alert_key",
    "gate_of",
    "transition",
]


# ---------------------------------------------------------------------------------------------
# States


class State(enum.Enum):
    """Where one gateway is in its life."""

    ABSENT = "absent"  # no container known yet
    CREATING = "creating"  # create/start requested, container not started yet
    STARTING = "starting"  # container runs, IBC has not tried to log in yet
    LOGGING_IN = "logging_in"  # login in progress, or logged in and waiting for a probe answer
    AWAITING_2FA = "awaiting_2fa"  # IB pushed an IB Key notification; a human must approve
    COMPETING_SESSION = "competing_session"  # another session holds this username
    API_READY = "api_ready"  # logged in and the API answered a probe within the deadline
    DEGRADED = "degraded"  # session up but link lost, farm broken, permissions off, or stalled
    RESET_WINDOW = "reset_window"  # degraded inside an IB reset window: expected, pages nobody
    RESTARTING = "restarting"  # a restart (soft, hard, or IBC's own) is in progress
    BACKOFF = "backoff"  # container stopped after a failed login; waiting before retrying
    STOPPED = "stopped"  # stopped by an operator
    FATAL = "fatal"  # a budget is spent or the account is wrong: a human must act


ALL_STATES = frozenset(State)
READY_STATES = frozenset({State.API_READY})
# The IB session is up (logged in, API was answering) even if something is wrong with it.
SESSION_STATES = frozenset({State.API_READY, State.DEGRADED, State.RESET_WINDOW})
LOGIN_STATES = frozenset({State.LOGGING_IN, State.AWAITING_2FA, State.COMPETING_SESSION})
# The container is expected to be running.
RUNNING_STATES = frozenset({State.STARTING}) | LOGIN_STATES | SESSION_STATES
# Only an operator command leaves these.
OPERATOR_STATES = frozenset({State.STOPPED, State.FATAL})
# An outage in these states pages a human (RESET_WINDOW is an expected outage).
PAGEABLE_STATES = ALL_STATES - {State.ABSENT, State.STOPPED, State.RESET_WINDOW}

# Degradations that an IB reset window explains; others page even inside a window.
_LINK_LOST = "ib link lost (1100)"
_STALL = "api stalled: heartbeat deadline exceeded"
_OVERDUE = "no heartbeat answer within the deadline"
_DISCONNECTED = "api disconnected"
_SLOW = "slow heartbeat"
_FARM_PREFIX = "farm broken: "
_PERMISSION_PREFIX = "permissions: "
_STALL_REASONS = frozenset({_STALL, _OVERDUE, _DISCONNECTED})
ALWAYS_PAGED_REASONS = (_PERMISSION_PREFIX,)

# IBC exit codes (its own namespace, not TWS API codes); a shell sees them modulo 256.
_IBC_2FA_TIMEOUT = frozenset({1111, 1111 % 256})
# Where an outage can still be the planned relaunch that began it (the Gateway logging back in).
_PLANNED_OUTAGE_STATES = frozenset({State.RESTARTING, State.STARTING}) | LOGIN_STATES


class RestartKind(enum.Enum):
    """How the current restart was started, which decides how to escalate it."""

    SOFT = "soft"  # IBC command server RESTART: keeps the autorestart token
    HARD = "hard"  # container restart: forces a full login
    START = "start"  # container (re)created or started after a stop
    EXTERNAL = "external"  # IBC or the start script restarts by itself (cold restart, exit)


class LoginOutcome(enum.Enum):
    """What CountLogin reports; only ATTEMPT counts against the per-username budget."""

    ATTEMPT = "attempt"
    SUCCESS = "success"
    FAILED = "failed"
    TWOFA_TIMEOUT = "twofa_timeout"
    LOCKED_OUT = "locked_out"


class TwoFactorTimeoutAction(enum.Enum):
    """Who restarts after a 2FA timeout, and how: exactly one mechanism (IBC's user guide).

    IBC: IBC owns it (relogin on, ``--on2fatimeout=restart``): it logs in again by itself and
    relaunches after 1111, so the machine waits and only counts the logins. BACKOFF / RESTART:
    the supervisor owns it (IBC started with ``--on2fatimeout=exit`` and relogin off): it stops
    and retries after a backoff, or restarts at once (budget permitting).
    """

    BACKOFF = "backoff"
    RESTART = "restart"
    IBC = "ibc"


# ---------------------------------------------------------------------------------------------
# Events (inputs)


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

_OPERATOR_EVENTS = (OperatorStart, OperatorStop, OperatorRestart, OperatorReset)

# ---------------------------------------------------------------------------------------------
# Effects (outputs)


@dataclass(frozen=True, slots=True)
class SoftRestart:
    """Restart through IBC's command server (keeps the autorestart token: no 2FA)."""


@dataclass(frozen=True, slots=True)
class HardRestart:
    """Restart the container (loses the token: a full login, on live accounts a 2FA)."""


@dataclass(frozen=True, slots=True)
class StartContainer:
    """Create the container if missing, then start it."""


@dataclass(frozen=True, slots=True)
class StopContainer:
    """Stop the container."""


@dataclass(frozen=True, slots=True)
class ResolveAlert:
    """The problem named by ``key`` is over."""

    key: str


@dataclass(frozen=True, slots=True)
class GateOrders:
    """Open the order gate for strategies on this gateway, or close it for an outage kind."""

    gate: Gate


@dataclass(frozen=True, slots=True)
class TriggerSafeState:
    """The gateway left API_READY unexpectedly; the strategy host applies its grace."""

    reason: str


@dataclass(frozen=True, slots=True)
class ScheduleBackoff:
    """Wake the machine (with a Tick) at ``until``."""

    until: datetime


@dataclass(frozen=True, slots=True)
class CountLogin:
    """A login fact for the per-username ledger (ATTEMPT) and metrics (all outcomes)."""

    username: str
    outcome: LoginOutcome


Effect: TypeAlias = (
    SoftRestart
    | HardRestart
    | StartContainer
    | StopContainer
    | Alert
    | ResolveAlert
    | GateOrders
    | TriggerSafeState
    | ScheduleBackoff
    | CountLogin
)

# ---------------------------------------------------------------------------------------------
# Policy and status


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecyclePolicy:
    """Deadlines and budgets; the wiring maps settings onto this."""

    heartbeat_deadline: timedelta = timedelta(seconds=30)
    slow_heartbeat: timedelta = timedelta(seconds=5)
    twofa_timeout: timedelta = timedelta(seconds=180)  # IB's own limit for IB Key
    login_timeout: timedelta = timedelta(minutes=5)
    ready_grace_after_window: timedelta = timedelta(minutes=10)
    stall_soft_restart_after: timedelta = timedelta(minutes=2)
    # A stall (missed heartbeats, a dropped API socket) gates orders at once but pages only
    # when it lasts this long: one slow second on a busy host is not worth waking anyone.
    stall_page_after: timedelta = timedelta(seconds=5)
    restart_deadline: timedelta = timedelta(minutes=3)
    restart_budget: int = 5
    restart_window: timedelta = timedelta(hours=1)
    login_budget: int = 6
    login_window: timedelta = timedelta(hours=1)
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    twofa_timeout_action: TwoFactorTimeoutAction = TwoFactorTimeoutAction.BACKOFF
    # A token relaunch (daily auto-restart, RESTART): from the API drop to a probe answer.
    token_relaunch_bound: timedelta = timedelta(minutes=3)
    # RESTART restarts at the next minute (RestartTask.java): up to ~60 s, plus the shutdown.
    restart_command_delay: timedelta = timedelta(seconds=75)
    # A cold relaunch (weekly ColdRestartTime): a full login, on live a 2FA prompt too.
    cold_relaunch_bound: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        for name in (
            "token_relaunch_bound",
            "restart_command_delay",
            "cold_relaunch_bound",
            "heartbeat_deadline",
            "twofa_timeout",
            "login_timeout",
            "stall_soft_restart_after",
            "restart_deadline",
            "restart_window",
            "login_window",
        ):
            value = getattr(self, name)
            if value <= timedelta(0):
                raise ValueError(f"lifecycle policy {name} must be positive, got {value}")
        if self.restart_budget < 1 or self.login_budget < 1:
            raise ValueError(
                "lifecycle policy restart_budget and login_budget must be >= 1, got "
                f"{self.restart_budget} and {self.login_budget}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayStatus:
    """Everything the machine knows about one gateway; immutable, journal-friendly."""

    gateway: str
    username: str
    state: State = State.ABSENT
    since: datetime
    reason: str = ""
    logged_in: bool = False
    api_connected: bool = False
    last_heartbeat: datetime | None = None
    login_deadline: datetime | None = None
    twofa_deadline: datetime | None = None
    degraded_reasons: frozenset[str] = frozenset()
    stall_since: datetime | None = None
    in_window: bool = False
    window_ended_at: datetime | None = None
    restart_kind: RestartKind | None = None
    restart_deadline: datetime | None = None
    restart_planned: bool = False
    api_dropped: bool = False
    restarts: tuple[datetime, ...] = ()  # unplanned restarts, for the retry budget
    login_attempts: tuple[datetime, ...] = ()
    failed_logins: int = 0  # consecutive; the backoff exponent
    backoff_until: datetime | None = None
    restart_count: int = 0
    reauth_at: datetime | None = None
    open_alerts: frozenset[str] = frozenset()
    # The planned outage (relaunch) in progress must be over by then; None: none is planned.
    planned_until: datetime | None = None
    # An API drop before then is read as the planned relaunch of ``expected_relaunch``.
    relaunch_expected_until: datetime | None = None
    expected_relaunch: RelaunchKind | None = None
    window_until: datetime | None = None
    # The gate last given to the strategies (GateOrders is emitted when it changes).
    gate_open: bool = False
    gate_kind: OutageKind | None = OutageKind.LOST

    @classmethod
    def initial(cls, *, gateway: str, username: str, now: datetime) -> GatewayStatus:
        """A gateway the supervisor has just learned about."""
        return cls(gateway=gateway, username=username, since=now, reason="new")

    @property
    def ready(self) -> bool:
        """True in API_READY: logged in and answering probes."""
        return self.state in READY_STATES

    def to_record(self) -> dict[str, Any]:
        """JSON-compatible fields, so the journal can persist the machine across restarts."""
        record: dict[str, Any] = {}
        for name in _STR_FIELDS | _BOOL_FIELDS | _INT_FIELDS:
            record[name] = getattr(self, name)
        for name in _INSTANT_FIELDS | _NEW_INSTANT_FIELDS:
            value = getattr(self, name)
            record[name] = None if value is None else value.astimezone(UTC).isoformat()
        record["gate_open"] = self.gate_open
        for name in _INSTANT_TUPLE_FIELDS:
            record[name] = [t.astimezone(UTC).isoformat() for t in getattr(self, name)]
        for name in _STR_SET_FIELDS:
            record[name] = sorted(getattr(self, name))
        record["state"] = self.state.value
        record["restart_kind"] = None if self.restart_kind is None else self.restart_kind.value
        record["expected_relaunch"] = (
            None if self.expected_relaunch is None else self.expected_relaunch.value
        )
        record["gate_kind"] = None if self.gate_kind is None else self.gate_kind.value
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> GatewayStatus:
        """Rebuild from :meth:`to_record`; a bad field raises ValueError naming it."""
        where = f"gateway status {record.get('gateway', '?')!r}"
        values: dict[str, Any] = {}
        for name in _STR_FIELDS:
            values[name] = _typed(record, name, str, where)
        for name in _BOOL_FIELDS:
            values[name] = _typed(record, name, bool, where)
        for name in _INT_FIELDS:
            values[name] = _typed(record, name, int, where)
        for name in _INSTANT_FIELDS | _NEW_INSTANT_FIELDS:
            raw = record.get(name)
            values[name] = None if raw is None else _instant(raw, f"{where}.{name}")
        # Fields added later default when a record from an older supervisor lacks them.
        values["gate_open"] = _typed(
            {"gate_open": record.get("gate_open", False)}, "gate_open", bool, where
        )
        relaunch = record.get("expected_relaunch")
        values["expected_relaunch"] = (
            None
            if relaunch is None
            else _enum(RelaunchKind, relaunch, f"{where}.expected_relaunch")
        )
        gate_kind = record.get("gate_kind", OutageKind.LOST.value)
        values["gate_kind"] = (
            None if gate_kind is None else _enum(OutageKind, gate_kind, f"{where}.gate_kind")
        )
        for name in _INSTANT_TUPLE_FIELDS:
            items = _typed(record, name, list, where)
            values[name] = tuple(
                _instant(item, f"{where}.{name}[{i}]") for i, item in enumerate(items)
            )
        for name in _STR_SET_FIELDS:
            items = _typed(record, name, list, where)
            if not all(isinstance(item, str) for item in items):
                raise ValueError(f"{where}.{name}: expected a list of strings, got {items!r}")
            values[name] = frozenset(items)
        values["state"] = _enum(State, record.get("state"), f"{where}.state")
        kind = record.get("restart_kind")
        values["restart_kind"] = (
            None if kind is None else _enum(RestartKind, kind, f"{where}.restart_kind")
        )
        return cls(**values)


_STR_FIELDS = frozenset({"gateway", "username", "reason"})
_BOOL_FIELDS = frozenset(
    {"logged_in", "api_connected", "in_window", "restart_planned", "api_dropped"}
)
_INT_FIELDS = frozenset({"failed_logins", "restart_count"})
_INSTANT_FIELDS = frozenset(
    {
        "since",
        "last_heartbeat",
        "login_deadline",
        "twofa_deadline",
        "stall_since",
        "window_ended_at",
        "restart_deadline",
        "backoff_until",
        "reauth_at",
    }
)
_NEW_INSTANT_FIELDS = frozenset({"planned_until", "relaunch_expected_until", "window_until"})
_INSTANT_TUPLE_FIELDS = frozenset({"restarts", "login_attempts"})
_STR_SET_FIELDS = frozenset({"degraded_reasons", "open_alerts"})


def _typed(record: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    value = record.get(name)
    # bool is an int subclass; an int field must not accept True.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{where}.{name}: expected {kind.__name__}, got {value!r}")
    return value


def _instant(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected an ISO-8601 timestamp, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{where}: {value!r} is not an ISO-8601 timestamp") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{where}: {value!r} has no UTC offset")
    return parsed.astimezone(UTC)


_E = TypeVar("_E", bound=enum.Enum)


def _enum(kind: type[_E], value: object, where: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in kind)
        raise ValueError(f"{where}: {value!r} is not one of {allowed}") from None


def alert_key(gateway: str, problem: str) -> str:
    """The alert key for ``problem`` on ``gateway`` (``gateway:paper-a:2fa``)."""
    return f"gateway:{gateway}:{problem}"


def gate_of(status: GatewayStatus, *, now: datetime, policy: LifecyclePolicy) -> Gate:
    """The order gate for ``status``: the one place that decides what kind of outage it is.

    API_READY is open. A planned relaunch (and the login that follows it) is PLANNED_RESTART
    until ``planned_until``; an IB reset window is RESET_WINDOW until its end plus the grace;
    a degraded session whose only reasons are a stalled or slow API is STALLED; anything else
    (a dead or restarting container, a failed login, FATAL, an operator stop) is LOST.
    """
    state = status.state
    if state is State.API_READY:
        return Gate(open=True)
    reason = status.reason
    planned = status.planned_until
    if planned is not None and state in _PLANNED_OUTAGE_STATES:
        bound = max(planned - now, timedelta(0))
        return Gate(open=False, kind=OutageKind.PLANNED_RESTART, reason=reason, bound=bound)
    if state is State.RESET_WINDOW:
        end = status.window_until or status.window_ended_at or now
        bound = max(end + policy.ready_grace_after_window - now, timedelta(0))
        return Gate(open=False, kind=OutageKind.RESET_WINDOW, reason=reason, bound=bound)
    if state is State.DEGRADED and status.degraded_reasons <= _STALL_REASONS | {_SLOW}:
        return Gate(open=False, kind=OutageKind.STALLED, reason=reason)
    return Gate(open=False, kind=OutageKind.LOST, reason=reason)


# ---------------------------------------------------------------------------------------------
# Machinery


class _Step:
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

    def alert(self, problem: str, severity: Severity, title: str, body: str) -> None:
        """Raise once per key: an open key is not raised again until it is resolved."""
        key = alert_key(self.status.gateway, problem)
        if key in self.status.open_alerts:
            return
        self.emit(Alert(key=key, severity=severity, title=title, body=body))
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

    @property
    def who(self) -> str:
        return f"{self.status.gateway} / {self.status.username}"


def _seconds(value: timedelta) -> str:
    total = int(value.total_seconds())
    if total % 60 == 0 and total >= 120:
        return f"{total // 60} min"
    return f"{total} s"


def _restart_window(step: _Step) -> SlidingWindow:
    return SlidingWindow(
        limit=step.policy.restart_budget,
        window=step.policy.restart_window,
        events=step.status.restarts,
    )


def _login_window(step: _Step) -> SlidingWindow:
    return SlidingWindow(
        limit=step.policy.login_budget,
        window=step.policy.login_window,
        events=step.status.login_attempts,
    )


def _clear_session(step: _Step) -> None:
    """Forget everything learned from the previous container start or session."""
    step.update(
        logged_in=False,
        api_connected=False,
        last_heartbeat=None,
        twofa_deadline=None,
        degraded_reasons=frozenset(),
        stall_since=None,
    )


def _fatal(step: _Step, reason: str, todo: str) -> None:
    """Any state -> FATAL: stop the container (so it burns no more logins) and page."""
    if step.state is State.FATAL:
        return
    step.resolve_all()
    if step.state not in (State.ABSENT, State.STOPPED):
        step.emit(StopContainer())
    _clear_session(step)
    step.update(
        restart_kind=None,
        restart_deadline=None,
        backoff_until=None,
        login_deadline=None,
        planned_until=None,
        relaunch_expected_until=None,
        expected_relaunch=None,
    )
    step.goto(State.FATAL, reason)
    step.alert(
        "fatal",
        Severity.CRITICAL,
        f"{step.status.gateway}: stopped, a human must act",
        f"Gateway {step.who} is FATAL: {reason}. ibfleet will not retry by itself. {todo} "
        f"Then run `ibfleet gateway start {step.status.gateway}`.",
    )


def _restart(step: _Step, kind: RestartKind, reason: str, *, planned: bool) -> None:
    """-> RESTARTING with the restart effect, or -> FATAL when a budget is spent.

    Unplanned restarts count against the retry budget and need a login slot, so a
    misbehaving gateway can never loop: the budget ends in FATAL and a page.
    """
    if not planned:
        window = _restart_window(step)
        if not window.allows(step.now):
            _fatal(
                step,
                f"restart budget spent ({step.policy.restart_budget} restarts within "
                f"{_seconds(step.policy.restart_window)}); last cause: {reason}",
                "Find out why it keeps failing (logs, credentials, IB status).",
            )
            return
        if kind is not RestartKind.SOFT and not _login_window(step).allows(step.now):
            _fatal(
                step,
                f"login budget spent ({step.policy.login_budget} logins within "
                f"{_seconds(step.policy.login_window)}); last cause: {reason}",
                "More automatic logins risk an IB account lockout; check the credentials.",
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
    _clear_session(step)
    step.update(
        restart_kind=kind,
        restart_deadline=deadline,
        restart_planned=planned,
        api_dropped=False,
        backoff_until=None,
        login_deadline=None,
        restart_count=step.status.restart_count + 1,
        planned_until=deadline if planned_outage else None,
        relaunch_expected_until=None,
        expected_relaunch=None,
    )
    step.goto(State.RESTARTING, reason, expected=planned)


def _relaunch_bound(policy: LifecyclePolicy, kind: RelaunchKind) -> timedelta:
    if kind.token:
        return policy.token_relaunch_bound
    if kind is RelaunchKind.WEEKLY_COLD:
        return policy.cold_relaunch_bound
    return policy.restart_deadline


_RELAUNCH_WHY = {
    RelaunchKind.AUTO_RESTART: "IBC daily auto-restart (token relaunch)",
    RelaunchKind.RESTART_COMMAND: "IBC RESTART (token relaunch)",
    RelaunchKind.WEEKLY_COLD: "IBC weekly cold restart (full login)",
    RelaunchKind.COLD_AFTER_FAILURE: "IBC cold restart after a failure",
    RelaunchKind.NO_LOGIN_DIALOG: "IBC relaunch: the login dialog never appeared (exit 1112)",
    RelaunchKind.TWOFA_EXIT: "IBC relaunch: 2FA approved but the login did not complete (1111)",
    RelaunchKind.UNEXPLAINED: "IBC relaunched the Gateway for no reason its log gave",
}


def _relaunching(step: _Step, kind: RelaunchKind, *, planned: bool) -> None:
    """-> RESTARTING (external): IBC relaunches the JVM by itself; nothing to execute.

    The container keeps running, so the machine only waits, within the relaunch's bound; the
    restart deadline then escalates to a hard restart (a planned relaunch that outlasts its
    bound is a loss).
    """
    deadline = step.now + _relaunch_bound(step.policy, kind)
    _clear_session(step)
    step.update(
        restart_kind=RestartKind.EXTERNAL,
        restart_deadline=deadline,
        restart_planned=planned,
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
    step.goto(State.RESTARTING, _RELAUNCH_WHY[kind], expected=planned)


def _login_failed(step: _Step, outcome: LoginOutcome, reason: str) -> None:
    """A failed login (2FA timeout included: IB counts it) -> BACKOFF, RESTARTING or FATAL."""
    step.count_login(outcome)
    failures = step.status.failed_logins + 1
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
        and step.policy.twofa_timeout_action is TwoFactorTimeoutAction.RESTART
    ):
        # Policy RESTART: try again at once (the budget still bounds it).
        step.alert(
            "login",
            Severity.WARNING,
            f"{step.status.gateway}: 2FA not approved",
            f"Gateway {step.who}: {reason}. ibfleet restarts it now; approve the next IB Key "
            "notification.",
        )
        _restart(step, RestartKind.HARD, reason, planned=False)
        return
    if not _restart_window(step).allows(step.now):
        _fatal(
            step,
            f"restart budget spent ({step.policy.restart_budget} restarts within "
            f"{_seconds(step.policy.restart_window)}); last cause: {reason}",
            "Find out why logins keep failing (credentials, 2FA device, IB status).",
        )
        return
    if not _login_window(step).allows(step.now):
        _fatal(
            step,
            f"login budget spent ({step.policy.login_budget} logins within "
            f"{_seconds(step.policy.login_window)}); last cause: {reason}",
            "More automatic logins risk an IB account lockout; check the credentials.",
        )
        return
    delay = step.policy.backoff.delay(failures - 1, rng=step.rng)
    until = step.now + delay
    # Recorded, not paged: the retries are bounded by the login budget, whose end (FATAL) is
    # the one page a wrong password costs.
    step.alert(
        "login",
        Severity.INFO,
        f"{step.status.gateway}: login failed",
        f"Gateway {step.who}: {reason}. ibfleet retries at {until:%Y-%m-%d %H:%M:%S} UTC "
        f"(failure {failures}); check the credentials and keep the IB Key phone at hand.",
    )
    if step.state not in (State.ABSENT, State.CREATING):
        step.emit(StopContainer())
    _clear_session(step)
    step.update(backoff_until=until, restart_kind=None, restart_deadline=None)
    step.emit(ScheduleBackoff(until=until))
    step.goto(State.BACKOFF, reason)


def _quiet(status: GatewayStatus, now: datetime, policy: LifecyclePolicy) -> bool:
    """Inside a reset window, or within the grace after one: outages page nobody."""
    if status.in_window:
        return True
    ended = status.window_ended_at
    return ended is not None and now < ended + policy.ready_grace_after_window


def _window_explains(reasons: frozenset[str]) -> bool:
    return not any(r.startswith(ALWAYS_PAGED_REASONS) for r in reasons)


def _settle(step: _Step) -> None:
    """For a logged-in, answering session: API_READY, DEGRADED or RESET_WINDOW by reasons."""
    status = step.status
    reasons = status.degraded_reasons
    stalled = reasons & _STALL_REASONS
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
    if _quiet(status, step.now, step.policy) and _window_explains(reasons):
        # -> RESET_WINDOW: an expected outage inside (or just after) an IB reset window.
        step.goto(State.RESET_WINDOW, f"IB reset window: {listed}", expected=True)
        return
    # -> DEGRADED: the session is up but not healthy; page once per episode.
    after_window = status.state is State.RESET_WINDOW
    step.goto(State.DEGRADED, listed)
    stall_only = reasons <= _STALL_REASONS
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
        step.alert(
            "not-ready",
            Severity.WARNING,
            f"{step.status.gateway}: not ready after the IB reset window",
            f"Gateway {step.who} is still not ready "
            f"{_seconds(step.policy.ready_grace_after_window)} after the IB reset window ended "
            f"({listed}). Check IB's system status and the gateway's logs.",
        )
    step.alert(
        "degraded",
        Severity.WARNING,
        f"{step.status.gateway}: degraded",
        f"Gateway {step.who} is degraded: {listed}. Orders are gated until it recovers; "
        "check IB's system status and the gateway's logs.",
    )
    if stalled:
        step.alert(
            "stall",
            Severity.WARNING,
            f"{step.status.gateway}: API stalled",
            f"Gateway {step.who}: {', '.join(sorted(stalled))}. ibfleet soft-restarts it if "
            f"this persists {_seconds(step.policy.stall_soft_restart_after)}, then hard-restarts "
            "if that does not help.",
        )


def _degrade(
    step: _Step, *, add: frozenset[str] = frozenset(), drop: Callable[[str], bool]
) -> None:
    """Update the reasons; in a session state, settle; before the session, just remember."""
    reasons = frozenset(r for r in step.status.degraded_reasons if not drop(r)) | add
    step.update(degraded_reasons=reasons)
    if step.state in SESSION_STATES:
        _settle(step)


def _never(_: str) -> bool:
    return False


# ---------------------------------------------------------------------------------------------
# Handlers: one per event type. Each labelled line is one transition.


def _on_operator_start(step: _Step, _: OperatorStart) -> None:
    if step.state in (State.ABSENT, State.STOPPED):
        # ABSENT/STOPPED -> CREATING: the operator wants it running; counters start fresh.
        step.update(failed_logins=0, restarts=(), backoff_until=None)
        _clear_session(step)
        step.emit(StartContainer())
        step.update(
            restart_kind=RestartKind.START,
            restart_deadline=step.now + step.policy.restart_deadline,
            restart_planned=True,
        )
        step.goto(State.CREATING, "operator start")
    # FATAL: ignored; `reset` first, so a human acknowledges the cause. Others: already on.


def _on_operator_stop(step: _Step, _: OperatorStop) -> None:
    if step.state is State.STOPPED:
        return
    # any -> STOPPED: only an operator stops a gateway; nothing stays paged.
    if step.state not in (State.ABSENT, State.FATAL):
        step.emit(StopContainer())
    step.resolve_all()
    _clear_session(step)
    step.update(
        restart_kind=None,
        restart_deadline=None,
        backoff_until=None,
        login_deadline=None,
    )
    step.goto(State.STOPPED, "operator stop")


def _on_operator_restart(step: _Step, _: OperatorRestart) -> None:
    if step.state in SESSION_STATES:
        # session states -> RESTARTING (soft): keeps the token, so no 2FA.
        _restart(step, RestartKind.SOFT, "operator restart", planned=True)
    elif step.state in LOGIN_STATES | {
        State.STARTING,
        State.RESTARTING,
        State.BACKOFF,
        State.CREATING,
    }:
        # login/transitional states -> RESTARTING (hard): there is no session to keep.
        _restart(step, RestartKind.HARD, "operator restart", planned=True)
    # ABSENT/STOPPED/FATAL: ignored; use start or reset.


def _on_operator_reset(step: _Step, _: OperatorReset) -> None:
    if step.state is State.FATAL:
        # FATAL -> STOPPED: a human cleared it; budgets start fresh, start is explicit.
        step.resolve_all()
        step.update(restarts=(), login_attempts=(), failed_logins=0)
        step.goto(State.STOPPED, "operator reset")
    elif step.state is State.BACKOFF:
        # BACKOFF -> RESTARTING: the operator says try now and forget the failures.
        step.update(restarts=(), failed_logins=0)
        _restart(step, RestartKind.START, "operator reset", planned=True)


def _on_container_created(step: _Step, _: ContainerCreated) -> None:
    # Creation alone changes nothing: only a start begins a new life.
    return


def _on_container_started(step: _Step, _: ContainerStarted) -> None:
    if step.state in OPERATOR_STATES:
        return
    unexpected = step.state in RUNNING_STATES
    # CREATING/RESTARTING/BACKOFF/ABSENT (adopted)/running -> STARTING: a new container life;
    # log lines and probe facts from before no longer count.
    _clear_session(step)
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


def _died(step: _Step, reason: str, todo: str) -> None:
    if step.state in (State.ABSENT, State.BACKOFF, State.RESTARTING):
        # BACKOFF: we stopped it. RESTARTING: a restart stops it first. ABSENT: not ours yet.
        return
    # running/CREATING -> RESTARTING (hard): an unplanned death pages and is restarted,
    # within the retry budget (else FATAL).
    step.alert(
        "died",
        Severity.WARNING,
        f"{step.status.gateway}: container died",
        f"Gateway {step.who}: {reason}. ibfleet restarts it (restart budget "
        f"{step.policy.restart_budget} per {_seconds(step.policy.restart_window)}). {todo}",
    )
    _restart(step, RestartKind.HARD, reason, planned=False)


def _on_container_died(step: _Step, event: ContainerDied) -> None:
    if event.exit_code in _IBC_2FA_TIMEOUT and step.state in LOGIN_STATES | {State.STARTING}:
        # login states -> RESTARTING/BACKOFF: IBC exited with 1111 and did not relaunch
        # (--on2fatimeout=exit): the supervisor owns this restart.
        _login_failed(
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


def _on_container_oom(step: _Step, _: ContainerOom) -> None:
    _died(
        step,
        "container was killed for memory (OOM)",
        "Raise the memory limit or JAVA_HEAP_SIZE for this gateway.",
    )


def _on_container_destroyed(step: _Step, _: ContainerDestroyed) -> None:
    if step.state in (State.ABSENT, State.BACKOFF):
        # BACKOFF: the retry creates it again. ABSENT: nothing to lose.
        return
    # running/CREATING/RESTARTING -> RESTARTING (start): it vanished; recreate within budget.
    step.alert(
        "died",
        Severity.WARNING,
        f"{step.status.gateway}: container removed",
        f"Gateway {step.who}: its container was removed outside ibfleet. ibfleet "
        "recreates it; find out who removed it.",
    )
    _restart(step, RestartKind.START, "container removed", planned=False)


def _count_attempt(step: _Step) -> SlidingWindow:
    # Every attempt counts against the per-username budget: IB locks accounts, not containers,
    # and IB counts a login whatever state the machine thought the gateway was in.
    step.count_login(LoginOutcome.ATTEMPT)
    window = _login_window(step).record(step.now)
    step.update(login_attempts=window.events)
    return window


def _on_login_attempt(step: _Step, _: LoginAttempt) -> None:
    window = _count_attempt(step)
    if step.state in (State.ABSENT, State.BACKOFF, State.CREATING):
        # Counted only: a cold restart IBC began before the machine's stop landed.
        return
    if window.used(step.now) > step.policy.login_budget:
        # any -> FATAL: IBC logged in beyond the budget by itself; stop it before IB locks us
        # out. (The last attempt within the budget may complete; its failure goes FATAL.)
        _fatal(
            step,
            f"login budget spent ({step.policy.login_budget} logins within "
            f"{_seconds(step.policy.login_window)})",
            "More automatic logins risk an IB account lockout; check the credentials.",
        )
        return
    expected = step.state not in SESSION_STATES or _quiet(step.status, step.now, step.policy)
    if step.state in SESSION_STATES:
        _clear_session(step)
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


def _on_twofa_initiated(step: _Step, _: TwoFactorInitiated) -> None:
    if step.state not in RUNNING_STATES | {State.RESTARTING}:
        return
    if step.state is State.AWAITING_2FA:
        # Same prompt seen through a second log line: the deadline does not move.
        return
    expected = step.state not in SESSION_STATES or _quiet(step.status, step.now, step.policy)
    _clear_session(step)
    deadline = step.now + step.policy.twofa_timeout
    step.update(
        twofa_deadline=deadline,
        restart_kind=None,
        restart_deadline=None,
        login_deadline=step.status.login_deadline or step.now + step.policy.login_timeout,
    )
    # -> AWAITING_2FA: a human must approve on the phone now, even inside a reset window.
    step.goto(State.AWAITING_2FA, "waiting for IB Key approval", expected=expected)
    step.alert(
        "2fa",
        Severity.CRITICAL,
        f"{step.status.gateway}: approve the IB Key login",
        f"Approve the IB Key notification for {step.who} within "
        f"{int(step.policy.twofa_timeout.total_seconds())} s (by {deadline:%H:%M:%S} UTC).",
    )


def _on_twofa_timed_out(step: _Step, _: TwoFactorTimedOut) -> None:
    # "IBC closing because login has not completed after Second Factor Authentication": the
    # user approved and exit 1111 follows. What happens next is one mechanism's: IBC's
    # relaunch (--on2fatimeout=restart, IbcRelaunching) or the container's exit
    # (--on2fatimeout=exit, ContainerDied). Deciding here too would make two.
    return


def _on_logged_in(step: _Step, _: LoggedIn) -> None:
    if step.state not in LOGIN_STATES | {State.STARTING, State.RESTARTING}:
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


def _on_existing_session(step: _Step, _: ExistingSessionDetected) -> None:
    if step.state not in RUNNING_STATES | {State.RESTARTING}:
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
    step.alert(
        "competing",
        Severity.WARNING,
        f"{step.status.gateway}: competing IB session",
        f"Another session is logged in as {step.status.username} (gateway "
        f"{step.status.gateway}). Close it (TWS, mobile app, another gateway) or check IBC's "
        "ExistingSessionDetectedAction.",
    )


def _on_login_failed(step: _Step, event: LoginFailed) -> None:
    if step.state not in LOGIN_STATES | {State.STARTING, State.RESTARTING}:
        return
    # login states -> BACKOFF (or FATAL when budgets are spent).
    detail = f": {event.message}" if event.message else ""
    _login_failed(step, LoginOutcome.FAILED, f"IB rejected the login{detail}")


def _on_locked_out(step: _Step, event: LockedOut) -> None:
    if step.state is State.ABSENT:
        return
    step.count_login(LoginOutcome.LOCKED_OUT)
    # any -> FATAL: IB locked the username; any further attempt makes it worse.
    _fatal(
        step,
        f"IB locked {step.status.username} after too many failed logins"
        + (f" ({event.message})" if event.message else ""),
        "Wait for IB to unlock the username (or reset its password in the client portal).",
    )


def _on_ibc_exit(step: _Step, event: IbcExitStatus) -> None:
    # A fact only: the start script's next lines name the relaunch (IbcRelaunching), or the
    # loop ends and the container's exit arrives (ContainerDied). Deciding here would read a
    # daily auto-restart, whose JVM also exits, as a crash.
    return


def _api_up(status: GatewayStatus) -> bool:
    return status.state is State.API_READY and status.api_connected


def _on_relaunch(step: _Step, event: IbcRelaunching) -> None:
    state, kind = step.state, event.kind
    if state in (State.ABSENT, State.CREATING, State.BACKOFF):
        # BACKOFF: a failed login's cold restart; the machine is stopping the container.
        return
    if _api_up(step.status):
        # API_READY -> API_READY: the probe sees the session healthy, so the line alone ends
        # nothing; it says how the API drop that must follow is read.
        step.update(
            relaunch_expected_until=step.now + _relaunch_bound(step.policy, kind),
            expected_relaunch=kind,
        )
        return
    _apply_relaunch(step, kind)


def _apply_relaunch(step: _Step, kind: RelaunchKind) -> None:
    status, now = step.status, step.now
    if kind.planned:
        if status.state is State.RESTARTING:
            # RESTARTING -> RESTARTING: the relaunch a restart asked for is under way; its
            # bound counts from now, and a restart planned or not stays what it was.
            deadline = now + _relaunch_bound(step.policy, kind)
            step.update(
                restart_deadline=deadline,
                api_dropped=True,
                planned_until=deadline if status.planned_until is not None else None,
            )
            return
        # session (API down)/login/STARTING -> RESTARTING (planned): IBC relaunches by itself
        # for a planned reason; no page, no restart sent, orders held within the bound.
        _relaunching(step, kind, planned=True)
        return
    window = _restart_window(step)
    if not window.allows(now):
        _fatal(
            step,
            f"restart budget spent ({step.policy.restart_budget} restarts within "
            f"{_seconds(step.policy.restart_window)}); last cause: {_RELAUNCH_WHY[kind]}",
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
        step.alert(
            "login",
            Severity.WARNING,
            f"{status.gateway}: 2FA approved but the login did not complete",
            f"Gateway {step.who}: the IB Key notification was approved, but the login did not "
            "complete in time, so IBC exited (1111) and is restarting the Gateway for a new "
            "login. Approve the next IB Key notification; if this repeats, check IB's status.",
        )
    elif status.state in SESSION_STATES | {State.RESTARTING}:
        step.alert(
            "relaunch",
            Severity.WARNING,
            f"{status.gateway}: IBC relaunched the Gateway",
            f"Gateway {step.who}: {_RELAUNCH_WHY[kind]}. ibfleet waits for it to come back "
            f"(hard restart after {_seconds(step.policy.restart_deadline)}).",
        )
    # any running -> RESTARTING (external, unplanned): IBC relaunches by itself; counted
    # against the restart budget, escalated by the restart deadline.
    _relaunching(step, kind, planned=False)


def _relaunch_expected(status: GatewayStatus, now: datetime) -> bool:
    until = status.relaunch_expected_until
    return until is not None and now < until


def _on_restart_scheduled(step: _Step, _: RestartScheduled) -> None:
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


def _on_daily_expected(step: _Step, _: DailyRestartExpected) -> None:
    if step.state in SESSION_STATES:
        # session -> session: the Gateway's AutoRestartTime is now; nothing is sent (IBC
        # restarts it by itself), and the API drop that follows is read as that relaunch.
        step.update(
            relaunch_expected_until=step.now + step.policy.restart_command_delay,
            expected_relaunch=RelaunchKind.AUTO_RESTART,
        )
    # Elsewhere the gateway is already (re)starting; nothing to expect.


def _on_twofa_approved(step: _Step, _: TwoFactorApproved) -> None:
    if step.state not in LOGIN_STATES | {State.STARTING}:
        return
    step.resolve("2fa")
    step.update(twofa_deadline=None, login_deadline=step.now + step.policy.login_timeout)
    # AWAITING_2FA -> LOGGING_IN: the human approved; the login must complete by the deadline.
    step.goto(State.LOGGING_IN, "2FA approved; waiting for the login to complete")


def _on_twofa_expired(step: _Step, event: TwoFactorExpired) -> None:
    if step.state not in LOGIN_STATES | {State.STARTING}:
        return
    if event.relogin:
        if not _login_window(step).allows(step.now):
            # AWAITING_2FA -> FATAL: IBC's own relogin in 5 s would exceed the login budget.
            step.count_login(LoginOutcome.TWOFA_TIMEOUT)
            _fatal(
                step,
                f"login budget spent ({step.policy.login_budget} logins within "
                f"{_seconds(step.policy.login_window)}); last cause: 2FA not approved in time",
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
    _login_failed(
        step,
        LoginOutcome.TWOFA_TIMEOUT,
        f"2FA was not approved within {_seconds(step.policy.twofa_timeout)}",
    )


def _on_supervisor_stopping(step: _Step, _: SupervisorStopping) -> None:
    # any -> same state: the supervisor stops; strategies apply their shutdown policy. The
    # status is left as it is, so the next supervisor carries on without a page.
    step.emit(
        GateOrders(
            gate=Gate(open=False, kind=OutageKind.SHUTDOWN, reason="the supervisor is stopping")
        )
    )


def _on_api_connected(step: _Step, _: ApiConnected) -> None:
    if step.state in RUNNING_STATES | {State.RESTARTING}:
        # A connect alone proves nothing: readiness waits for a probe answer.
        step.update(api_connected=True)


def _on_heartbeat_ok(step: _Step, event: HeartbeatOk) -> None:
    state = step.state
    if state is State.RESTARTING and not step.status.api_dropped:
        # The old session still answering: the restart has not happened yet.
        return
    if state not in RUNNING_STATES | {State.RESTARTING}:
        return
    slow = event.rtt > step.policy.slow_heartbeat
    add = frozenset({_SLOW}) if slow else frozenset()
    reasons = (
        frozenset(r for r in step.status.degraded_reasons if r not in _STALL_REASONS and r != _SLOW)
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
    _settle(step)


def _on_heartbeat_missed(step: _Step, _: HeartbeatMissed) -> None:
    if step.state not in SESSION_STATES:
        return
    if _relaunch_expected(step.status, step.now):
        # session -> RESTARTING (planned): the API stopped answering as the announced
        # relaunch (daily restart, accepted RESTART, the log's relaunch lines) takes it down.
        _apply_relaunch(step, step.status.expected_relaunch or RelaunchKind.AUTO_RESTART)
        return
    # session -> DEGRADED (stall, paged) or RESET_WINDOW (quiet).
    _degrade(step, add=frozenset({_STALL}), drop=_never)


def _on_api_disconnected(step: _Step, _: ApiDisconnected) -> None:
    if step.state is State.RESTARTING:
        step.update(api_connected=False, api_dropped=True)
        return
    if step.state not in SESSION_STATES:
        if step.state in RUNNING_STATES:
            step.update(api_connected=False)
        return
    step.update(api_connected=False)
    if _relaunch_expected(step.status, step.now):
        # session -> RESTARTING (as announced): the API dropped for the relaunch the schedule
        # or the log lines said is coming; not a stall.
        _apply_relaunch(step, step.status.expected_relaunch or RelaunchKind.AUTO_RESTART)
        return
    # session -> DEGRADED (paged) or RESET_WINDOW (quiet).
    _degrade(step, add=frozenset({_DISCONNECTED}), drop=_never)


def _probe_state(step: _Step) -> bool:
    return step.state in RUNNING_STATES


def _on_link_lost(step: _Step, _: IbLinkLost) -> None:
    if _probe_state(step):
        # session -> DEGRADED (paged) or RESET_WINDOW (quiet): IB code 1100.
        _degrade(step, add=frozenset({_LINK_LOST}), drop=_never)


def _on_link_restored(step: _Step, _: IbLinkRestored) -> None:
    if _probe_state(step):
        # DEGRADED/RESET_WINDOW -> API_READY when this was the last reason (1101/1102).
        _degrade(step, drop=lambda r: r == _LINK_LOST)


def _on_farm_broken(step: _Step, event: FarmBroken) -> None:
    if _probe_state(step):
        # session -> DEGRADED (paged) or RESET_WINDOW (quiet).
        _degrade(step, add=frozenset({f"{_FARM_PREFIX}{event.farm}"}), drop=_never)


def _on_farm_ok(step: _Step, event: FarmOk) -> None:
    if _probe_state(step):
        # DEGRADED/RESET_WINDOW -> API_READY when this was the last reason.
        _degrade(step, drop=lambda r: r == f"{_FARM_PREFIX}{event.farm}")


def _on_permission_mismatch(step: _Step, event: PermissionMismatch) -> None:
    if _probe_state(step):
        # session -> DEGRADED, paged even inside a reset window: resets do not change permissions.
        _degrade(
            step,
            add=frozenset({f"{_PERMISSION_PREFIX}{event.detail}"}),
            drop=lambda r: r.startswith(_PERMISSION_PREFIX),
        )


def _on_permission_ok(step: _Step, _: PermissionOk) -> None:
    if _probe_state(step):
        # DEGRADED -> API_READY when this was the last reason.
        _degrade(step, drop=lambda r: r.startswith(_PERMISSION_PREFIX))


def _on_account_mismatch(step: _Step, event: AccountMismatch) -> None:
    if step.state not in RUNNING_STATES | {State.RESTARTING}:
        return
    # any running -> FATAL: orders must never reach the wrong account.
    _fatal(
        step,
        f"logged into account {event.actual}, expected {event.expected}",
        "Fix the gateway's credentials or its configured account.",
    )


def _on_client_id_in_use(step: _Step, _: ClientIdInUse) -> None:
    # The probe rotates its client-id lease (326); not a fact about the gateway's health.
    return


def _on_window_entered(step: _Step, event: ResetWindowEntered) -> None:
    step.update(in_window=True, window_ended_at=None, window_until=event.until)
    if step.state is State.DEGRADED:
        # DEGRADED -> RESET_WINDOW when the window explains every reason.
        _settle(step)


def _on_window_left(step: _Step, _: ResetWindowLeft) -> None:
    if not step.status.in_window:
        return
    # The grace clock starts; Tick pages if the gateway is not ready when it runs out.
    step.update(in_window=False, window_ended_at=step.now)


def _on_weekly_reauth(step: _Step, event: WeeklyReauthDue) -> None:
    if step.state in OPERATOR_STATES | {State.ABSENT}:
        return
    # Warn ahead: the first start after Sunday 01:00 ET needs a full IB Key login.
    step.update(reauth_at=event.at)
    step.alert(
        "reauth",
        Severity.WARNING,
        f"{step.status.gateway}: weekly IB re-authentication ahead",
        f"Gateway {step.who} needs a full login with IB Key after "
        f"{event.at:%Y-%m-%d %H:%M} UTC (IB's weekly re-authentication). Keep the phone at "
        "hand; ibfleet alerts again when the notification arrives.",
    )


def _on_tick(step: _Step, _: Tick) -> None:
    status, now, policy = step.status, step.now, step.policy
    state = status.state
    if status.relaunch_expected_until is not None and now >= status.relaunch_expected_until:
        # The announced relaunch did not happen: a later drop is read as what it is.
        step.update(relaunch_expected_until=None, expected_relaunch=None)
        status = step.status
    if (
        status.planned_until is not None
        and now >= status.planned_until
        and state in _PLANNED_OUTAGE_STATES - {State.RESTARTING}
    ):
        # login states (planned) -> same state (lost): the planned relaunch outlasted its
        # bound; the login goes on under its own deadline, but the outage is a loss now.
        step.update(planned_until=None)
        step.alert(
            "restart",
            Severity.WARNING,
            f"{status.gateway}: not back after a planned restart",
            f"Gateway {step.who} is still not ready after its planned restart ({status.reason});"
            " strategies treat it as lost.",
        )
        status = step.status
    if (
        state is State.AWAITING_2FA
        and status.twofa_deadline
        and now >= status.twofa_deadline
        and policy.twofa_timeout_action is TwoFactorTimeoutAction.IBC
    ):
        # AWAITING_2FA -> LOGGING_IN: IBC owns the retry (relogin on) and logs in again by
        # itself; the machine restarts nothing, the login deadline watches IBC.
        step.count_login(LoginOutcome.TWOFA_TIMEOUT)
        step.update(twofa_deadline=None, login_deadline=now + policy.login_timeout)
        step.goto(State.LOGGING_IN, "2FA not approved in time; waiting for IBC to log in again")
    elif state is State.AWAITING_2FA and status.twofa_deadline and now >= status.twofa_deadline:
        # AWAITING_2FA -> BACKOFF: nobody approved in time; IB counts it as a failed login.
        _login_failed(
            step,
            LoginOutcome.TWOFA_TIMEOUT,
            f"2FA was not approved within {_seconds(policy.twofa_timeout)}",
        )
    elif (
        state in LOGIN_STATES | {State.STARTING}
        and status.login_deadline
        and now >= status.login_deadline
    ):
        if status.logged_in:
            # LOGGING_IN (logged in) -> RESTARTING (hard): the API never answered a probe.
            step.alert(
                "api",
                Severity.WARNING,
                f"{status.gateway}: API not answering",
                f"Gateway {step.who} logged in but its API did not answer a probe "
                f"within {_seconds(policy.login_timeout)}; ibfleet restarts it.",
            )
            _restart(step, RestartKind.HARD, "API did not answer after login", planned=False)
        else:
            # login states -> BACKOFF: the login did not complete within the deadline.
            _login_failed(
                step,
                LoginOutcome.FAILED,
                f"login did not complete within {_seconds(policy.login_timeout)}",
            )
    elif state is State.BACKOFF and status.backoff_until and now >= status.backoff_until:
        # BACKOFF -> RESTARTING (start): the wait is over; budgets decide (else FATAL).
        _restart(step, RestartKind.START, "retry after backoff", planned=False)
    elif (
        state in (State.RESTARTING, State.CREATING)
        and status.restart_deadline
        and now >= status.restart_deadline
    ):
        # RESTARTING/CREATING -> RESTARTING: the restart did not bring it back; restart the
        # container (or start it again if it never started), within the budget.
        kind = status.restart_kind.value if status.restart_kind else "pending"
        again = RestartKind.START if status.restart_kind is RestartKind.START else RestartKind.HARD
        step.alert(
            "restart",
            Severity.WARNING,
            f"{status.gateway}: restart did not complete",
            f"Gateway {step.who} did not come back within "
            f"{_seconds(policy.restart_deadline)} after a {kind} restart; ibfleet "
            "restarts the container.",
        )
        _restart(step, again, f"{kind} restart did not complete", planned=False)
    elif state in SESSION_STATES:
        _tick_session(step)


def _tick_session(step: _Step) -> None:
    status, now, policy = step.status, step.now, step.policy
    last = status.last_heartbeat
    if last is None or now - last > policy.heartbeat_deadline:
        # API_READY -> DEGRADED: readiness needs a probe answer within the deadline.
        _degrade(step, add=frozenset({_OVERDUE}), drop=_never)
        status = step.status
    if status.state is State.RESET_WINDOW and not _quiet(status, now, policy):
        # RESET_WINDOW -> DEGRADED: the window is over and the grace too; page now.
        _settle(step)
        status = step.status
    if (
        status.state is State.DEGRADED
        and status.stall_since is not None
        and now - status.stall_since >= policy.stall_page_after
        and alert_key(status.gateway, "stall") not in status.open_alerts
    ):
        # DEGRADED (stall) -> DEGRADED (paged): the stall outlasted stall_page_after.
        _settle(step)
        status = step.status
    if (
        status.state is State.DEGRADED
        and status.stall_since is not None
        and now - status.stall_since >= policy.stall_soft_restart_after
        and not _relaunch_expected(status, now)
    ):
        # DEGRADED (stalled) -> RESTARTING (soft): the stall persisted; a hard restart follows
        # if the soft restart does not help within the restart deadline.
        _restart(step, RestartKind.SOFT, "API stall persisted", planned=False)


_Handler = Callable[[_Step, Any], None]
_HANDLERS: dict[type, _Handler] = {
    ContainerCreated: _on_container_created,
    ContainerStarted: _on_container_started,
    ContainerDied: _on_container_died,
    ContainerOom: _on_container_oom,
    ContainerDestroyed: _on_container_destroyed,
    LoginAttempt: _on_login_attempt,
    TwoFactorInitiated: _on_twofa_initiated,
    TwoFactorTimedOut: _on_twofa_timed_out,
    LoggedIn: _on_logged_in,
    ExistingSessionDetected: _on_existing_session,
    LoginFailed: _on_login_failed,
    LockedOut: _on_locked_out,
    TwoFactorApproved: _on_twofa_approved,
    TwoFactorExpired: _on_twofa_expired,
    IbcExitStatus: _on_ibc_exit,
    IbcRelaunching: _on_relaunch,
    RestartScheduled: _on_restart_scheduled,
    ApiConnected: _on_api_connected,
    HeartbeatOk: _on_heartbeat_ok,
    HeartbeatMissed: _on_heartbeat_missed,
    ApiDisconnected: _on_api_disconnected,
    IbLinkLost: _on_link_lost,
    IbLinkRestored: _on_link_restored,
    FarmBroken: _on_farm_broken,
    FarmOk: _on_farm_ok,
    AccountMismatch: _on_account_mismatch,
    PermissionMismatch: _on_permission_mismatch,
    PermissionOk: _on_permission_ok,
    ClientIdInUse: _on_client_id_in_use,
    ResetWindowEntered: _on_window_entered,
    ResetWindowLeft: _on_window_left,
    DailyRestartExpected: _on_daily_expected,
    WeeklyReauthDue: _on_weekly_reauth,
    OperatorStart: _on_operator_start,
    OperatorStop: _on_operator_stop,
    OperatorRestart: _on_operator_restart,
    OperatorReset: _on_operator_reset,
    SupervisorStopping: _on_supervisor_stopping,
    Tick: _on_tick,
}


def transition(
    status: GatewayStatus,
    event: Event,
    *,
    now: datetime,
    policy: LifecyclePolicy,
    rng: random.Random | None = None,
) -> tuple[GatewayStatus, list[Effect]]:
    """Fold ``event`` into ``status`` at ``now``; return the new status and the effects.

    ``rng`` jitters backoff delays; without it the delay is the exponential ceiling.
    Raises only for programming errors (naive ``now``, an object that is not an Event).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be a timezone-aware datetime, got naive {now!r}")
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"not a lifecycle event: {event!r}")
    if status.state in OPERATOR_STATES and not isinstance(event, _OPERATOR_EVENTS):
        # STOPPED/FATAL are left only by an operator command; the window flag still tracks,
        # a login IBC made before the stop landed still counts, and shutdown closes the gate.
        if isinstance(event, ResetWindowEntered | ResetWindowLeft | SupervisorStopping):
            window_step = _Step(status, now, policy, rng)
            handler(window_step, event)
            return window_step.status, window_step.effects
        if isinstance(event, LoginAttempt):
            count_step = _Step(status, now, policy, rng)
            _count_attempt(count_step)
            return count_step.status, count_step.effects
        return status, []
    step = _Step(status, now, policy, rng)
    handler(step, event)
    if not isinstance(event, SupervisorStopping):
        # The order gate follows the status; strategies hear of it only when it changes.
        gate = gate_of(step.status, now=now, policy=policy)
        if (gate.open, gate.kind) != (step.status.gate_open, step.status.gate_kind):
            step.emit(GateOrders(gate=gate))
            step.update(gate_open=gate.open, gate_kind=gate.kind)
    return step.status, step.effects
