"""The per-gateway lifecycle state machine (pure), as a package.

One :class:`GatewayStatus` per gateway; :func:`transition` folds one typed event into it at
``now`` and returns the new status plus the effects an adapter must execute (restart, alert,
gate orders, trigger safe state...). Nothing here does I/O or reads the clock.

Where things are: :mod:`.states` (states and their named groups), :mod:`.events` (inputs),
:mod:`.effects` (outputs), :mod:`.status` (the record, journal-friendly), :mod:`.policy`,
:mod:`.alerts` (every alert text), :mod:`.gate` (the outage kind, decided in one place),
:mod:`.table` (the state x event table and :func:`transition`), :mod:`.handlers` (one per
event type, a module per source: container, login, probe, ...), :mod:`.deadlines` (Tick) and
:mod:`.step` (the moves handlers share).

Readiness means "logged in and the API answered a probe within the deadline", never "the
container runs". The machine owns two decisions: restarts (the orchestrator only executes
them) and the kind of outage (:func:`gate_of`). IBC relaunches the Gateway inside the running
container for every planned restart: its log lines name the relaunch, and an API drop while
one is expected is read as it, bounded. A log line alone never ends a session the probe sees
healthy: it only changes how the next drop is read.
"""

from __future__ import annotations

from gateway.authlog import RelaunchKind
from gateway.outage import Gate, OutageKind
from supervisor.alertpolicy import Alert, Severity
from supervisor.lifecycle.alerts import (
    alert_key,
)
from supervisor.lifecycle.effects import (
    CountLogin,
    Effect,
    GateOrders,
    HardRestart,
    LoginOutcome,
    ResolveAlert,
    ScheduleBackoff,
    SoftRestart,
    StartContainer,
    StopContainer,
    TriggerSafeState,
)
from supervisor.lifecycle.events import (
    EVENT_TYPES,
    LOG_EVENTS,
    OPERATOR_EVENTS,
    AccountMismatch,
    ApiConnected,
    ApiDisconnected,
    ClientIdInUse,
    ContainerCreated,
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
    IbcExitStatus,
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
    ReplaceFinished,
    ReplaceStarted,
    ResetWindowEntered,
    ResetWindowLeft,
    RestartScheduled,
    SupervisorStopping,
    Tick,
    TwoFactorApproved,
    TwoFactorExpired,
    TwoFactorInitiated,
    TwoFactorTimedOut,
    WeeklyReauthDue,
)
from supervisor.lifecycle.gate import (
    gate_of,
)
from supervisor.lifecycle.policy import (
    LifecyclePolicy,
)
from supervisor.lifecycle.reasons import (
    ALWAYS_PAGED_REASONS,
)
from supervisor.lifecycle.states import (
    ALL_STATES,
    LOGIN_STATES,
    OPERATOR_STATES,
    PAGEABLE_STATES,
    PLANNED_OUTAGE_STATES,
    READY_STATES,
    RUNNING_STATES,
    SESSION_STATES,
    RestartKind,
    State,
)
from supervisor.lifecycle.status import (
    GatewayStatus,
)
from supervisor.lifecycle.table import (
    TABLE,
    Row,
    render,
    transition,
)

__all__ = [
    "ALL_STATES",
    "ALWAYS_PAGED_REASONS",
    "EVENT_TYPES",
    "LOGIN_STATES",
    "LOG_EVENTS",
    "OPERATOR_EVENTS",
    "OPERATOR_STATES",
    "PAGEABLE_STATES",
    "PLANNED_OUTAGE_STATES",
    "READY_STATES",
    "RUNNING_STATES",
    "SESSION_STATES",
    "TABLE",
    "AccountMismatch",
    "Alert",
    "ApiConnected",
    "ApiDisconnected",
    "ClientIdInUse",
    "ContainerCreated",
    "ContainerDestroyed",
    "ContainerDied",
    "ContainerOom",
    "ContainerStarted",
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
    "ReplaceFinished",
    "ReplaceStarted",
    "ResetWindowEntered",
    "ResetWindowLeft",
    "ResolveAlert",
    "RestartKind",
    "RestartScheduled",
    "Row",
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
    "WeeklyReauthDue",
    "alert_key",
    "gate_of",
    "render",
    "transition",
]
