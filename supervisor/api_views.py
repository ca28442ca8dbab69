"""What the supervisor's HTTP API speaks: the views it answers with, the requests it takes,
and the two Protocols (``FleetControl``, ``StrategyControl``) through which it reaches the
running supervisor and the strategy host. No routes here: those are :mod:`supervisor.api`."""

import datetime as dt
import enum
from typing import Protocol

from pydantic import BaseModel, Field

__all__ = [
    "Action",
    "AlertView",
    "ApplyRequest",
    "ApplyResult",
    "CancelRequest",
    "CancelResult",
    "CommandResult",
    "EventView",
    "FleetControl",
    "GatewayView",
    "Health",
    "HeartbeatSampleView",
    "HeartbeatsView",
    "KillRequest",
    "KillResult",
    "LeaderView",
    "PendingChange",
    "Problem",
    "Readiness",
    "ReplacementView",
    "ResumeRequest",
    "RolloutView",
    "ScheduleKind",
    "ScheduleView",
    "ScheduledEvent",
    "StatusView",
    "StrategyCancelRequest",
    "StrategyControl",
    "StrategyView",
]


class PendingChange(BaseModel):
    """A change of the fleet file not carried out yet on one gateway (``ibfleet plan``'s line)."""

    gateway: str
    change: str = Field(description="recreate, create, start or remove.")
    changed: list[str] = Field(default_factory=list, description="Spec parts that differ.")
    full_login: bool = Field(description="The new container logs in afresh.")
    needs_2fa: bool = Field(description="That login waits for a second factor (IB Key on live).")
    when: str = Field(description="now, or window: the next runtime.update_window.")
    at: dt.datetime | None = Field(default=None, description="The window's next opening.")
    canary: bool = Field(default=False, description="Replaced first; a failure stops the rest.")
    status: str = Field(
        description="waiting (for the window), due, replacing (now), or blocked (a failed "
        "replacement waits for `ibfleet apply`)."
    )


class GatewayView(BaseModel):
    """One gateway as operators see it."""

    name: str
    state: str = Field(description="Lifecycle state, e.g. API_READY, AWAITING_2FA, FATAL.")
    ready: bool = Field(description="Logged in and the API answered a probe within the deadline.")
    should_run: bool = Field(description="False when an operator stopped it.")
    mode: str
    account: str
    since: dt.datetime | None = Field(default=None, description="When the state was entered.")
    reason: str = Field(default="", description="Why it is in this state.")
    last_heartbeat: dt.datetime | None = None
    heartbeat_rtt_seconds: float | None = None
    container_id: str | None = None
    restarts: dict[str, int] = Field(default_factory=dict, description="Restarts by kind.")
    open_alerts: list[str] = Field(default_factory=list, description="Keys of open alerts.")
    pending_change: PendingChange | None = Field(
        default=None, description="A fleet-file change not carried out yet (null: none)."
    )


class EventView(BaseModel):
    """One journal event."""

    id: int
    at: dt.datetime
    kind: str
    gateway: str | None = None
    strategy: str | None = None
    severity: str = "info"
    message: str


class Action(enum.StrEnum):
    RESTART = "restart"
    STOP = "stop"
    START = "start"


class CommandResult(BaseModel):
    """What an operator command did."""

    gateway: str
    action: Action
    accepted: bool
    detail: str


class LeaderView(BaseModel):
    """Who leads the fleet's journal (a PostgreSQL journal's lease; SQLite: this process)."""

    holder: str = Field(description="host:pid:tag of the leading supervisor.")
    epoch: int = Field(description="Its lease epoch (one more at each takeover; 0: SQLite).")
    expires_in: float | None = Field(
        description="Seconds left on its lease unless renewed; null: no lease (SQLite)."
    )


class Health(BaseModel):
    """The body of /healthz: alive, and which role this supervisor holds."""

    status: str = "ok"
    role: str = Field(
        default="leader",
        description="leader | standby | starting | handing-over | stopping (a standby "
        "touches neither IB nor Docker).",
    )
    holder: str | None = Field(default=None, description="This supervisor's lease holder name.")
    leader: LeaderView | None = Field(default=None, description="Who leads, as last read.")


class Readiness(BaseModel):
    ready: bool
    not_ready: list[str] = Field(description="Gateways that should run but are not ready.")
    problems: list[str] = Field(
        default_factory=list,
        description="Problems of the supervisor itself, e.g. a journal that cannot be written.",
    )


class Problem(BaseModel):
    """The body of every 4xx and 5xx answer."""

    detail: str


class HeartbeatSampleView(BaseModel):
    """One recent heartbeat of a gateway."""

    at: dt.datetime
    rtt_seconds: float | None = Field(description="Round trip; null: missed (no answer).")


class HeartbeatsView(BaseModel):
    """A gateway's recent heartbeats, oldest first (a bounded ring buffer)."""

    gateway: str
    span_seconds: float = Field(description="How far back the samples reach at most.")
    samples: list[HeartbeatSampleView]


class AlertView(BaseModel):
    """One open alert cause (texts redacted of secrets)."""

    key: str
    severity: str
    title: str
    since: dt.datetime = Field(description="When its incident opened.")


class ScheduleKind(enum.StrEnum):
    DAILY_RESTART = "daily_restart"
    WEEKLY_REAUTH = "weekly_reauth"
    RESET_WINDOW = "reset_window"


class ScheduledEvent(BaseModel):
    """A coming (or, for a reset window, current) scheduled event."""

    kind: ScheduleKind
    name: str
    gateway: str | None = Field(default=None, description="Null: the whole fleet.")
    at: dt.datetime
    until: dt.datetime | None = Field(default=None, description="A reset window's end.")
    active: bool = Field(default=False, description="A reset window in progress now.")


class ScheduleView(BaseModel):
    """The fleet's next scheduled events, soonest first."""

    at: dt.datetime = Field(description="The supervisor's clock they were computed at.")
    timezone: str = Field(description="The fleet's time zone (restart times are on its clock).")
    region: str = Field(description="The IB server region whose reset windows apply.")
    events: list[ScheduledEvent]


class ReplacementView(BaseModel):
    """One rolling replacement carried out (or rolled back) by this supervisor."""

    gateway: str
    outcome: str = Field(description="replaced, rolled_back or failed.")
    detail: str
    canary: bool
    at: dt.datetime
    seconds: float


class RolloutView(BaseModel):
    """The rollout of the fleet file's changes: what waits, what runs, what failed."""

    at: dt.datetime
    replacing: str | None = Field(description="The gateway being replaced now.")
    blocked: ReplacementView | None = Field(
        description="The failed replacement that holds the rest until `ibfleet apply`."
    )
    window_start: dt.datetime | None = Field(description="runtime.update_window's next opening.")
    window_open: bool = False
    pending: list[PendingChange]
    replacements: list[ReplacementView] = Field(description="The latest, oldest first.")


class ApplyRequest(BaseModel):
    gateways: list[str] = Field(
        default_factory=list, description="These go now, window or not; empty: the whole plan."
    )
    now: bool = Field(default=False, description="With no gateways: everything now.")


class ApplyResult(BaseModel):
    """What ``ibfleet apply`` set going."""

    accepted: bool
    detail: str
    unblocked: str | None = Field(description="The failed gateway whose block was lifted.")
    rollout: RolloutView


class FleetControl(Protocol):
    """What the API needs from the running supervisor."""

    def gateways(self) -> list[GatewayView]: ...

    async def events(
        self, *, since_id: int | None, limit: int, gateway: str | None
    ) -> list[EventView]: ...

    async def command(self, gateway: str, action: Action) -> CommandResult: ...

    def metrics(self) -> tuple[bytes, str]: ...

    def heartbeats(self, gateway: str) -> HeartbeatsView: ...

    def alerts(self) -> list[AlertView]: ...

    def schedule(self) -> ScheduleView: ...

    def rollout(self) -> RolloutView: ...

    async def apply(self, request: ApplyRequest) -> ApplyResult:
        """Carry out the plan (``ibfleet apply``); raises ValueError when there is nothing to."""
        ...


class StrategyView(BaseModel):
    """One hosted strategy."""

    name: str
    plugin: str
    state: str = Field(description="RUNNING, HALTED, SAFE_STATE, FAILING_OVER, CRASHED, ...")
    gateway: str | None
    client_id: int | None
    open_orders: int
    orders_sent: int
    orders_refused: int
    fills: int
    safe_state_runs: int
    failovers: int
    unknown_intents: int = Field(description="Intents that may be live at IB, unresolved.")
    last_error: str | None


class ResumeRequest(BaseModel):
    gateway: str | None = Field(default=None, description="Resume on this gateway.")


class KillRequest(BaseModel):
    strategy: str | None = Field(default=None, description="One strategy; null: all of them.")
    flatten: bool = Field(default=False, description="Also close positions, not only orders.")


class KillResult(BaseModel):
    runs: list[dict[str, object]]


class StrategyCancelRequest(BaseModel):
    symbol: str | None = Field(default=None, description="Only orders of this symbol.")
    dry_run: bool = Field(default=False, description="Only name the orders; cancel none.")


class CancelRequest(BaseModel):
    strategy: str | None = Field(default=None, description="One strategy; null: all of them.")
    symbol: str | None = Field(default=None, description="Only orders of this symbol.")
    all_orders_on_account: bool = Field(
        default=False,
        description="Every open order on the strategies' accounts, also those ibfleet did "
        "not place (reqGlobalCancel without a symbol). Name them first with dry_run.",
    )
    dry_run: bool = Field(default=False, description="Only name the orders; cancel none.")


class CancelResult(BaseModel):
    runs: list[dict[str, object]] = Field(
        description="Per strategy (or per account): the orders named, those still open, ok."
    )


class StrategyControl(Protocol):
    """What the API needs from the strategy host (absent when no strategy is configured)."""

    def strategies(self) -> list[StrategyView]: ...

    async def halt(self, name: str) -> StrategyView: ...

    async def resume(self, name: str, *, gateway: str | None) -> StrategyView: ...

    async def kill(self, name: str | None, *, flatten: bool) -> list[dict[str, object]]: ...

    async def cancel(
        self, name: str | None, *, symbol: str | None, all_orders_on_account: bool, dry_run: bool
    ) -> list[dict[str, object]]:
        """Cancel by criteria; raises ConnectionError when nothing can reach IB."""
        ...


class StatusView(BaseModel):
    """Everything the status page shows, in one consistent read."""

    at: dt.datetime = Field(description="The supervisor's clock when this was read.")
    gateways: list[GatewayView]
    heartbeats: list[HeartbeatsView]
    alerts: list[AlertView]
    schedule: ScheduleView
    strategies: list[StrategyView] | None = Field(description="Null: none configured.")
