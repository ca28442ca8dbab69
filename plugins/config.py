"""The configuration of one hosted strategy, as written in the fleet file's ``strategies`` list."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, field_validator

from gateway.config import MAX_CLIENT_ID, NAME_PATTERN
from gateway.time_fields import Duration

#: ib_async throttles itself to 45 messages/s; IB's pacing limit is about 50.
MAX_MESSAGES_PER_SECOND = 45


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SafeStateAction(enum.StrEnum):
    CANCEL = "cancel"
    FLATTEN = "flatten"
    HOLD = "hold"


class SafeStateConfig(_Strict):
    """What happens to the strategy's orders and positions when its gateway is lost, and when
    the supervisor stops."""

    on_disconnect: SafeStateAction = Field(
        default=SafeStateAction.CANCEL,
        description="When the gateway is lost or stalled past `grace` (or a planned restart "
        "outlasts its bound): cancel (open orders) | flatten (cancel, then close positions) | "
        "hold (leave them). Then the strategy fails over. A planned restart or reset window "
        "within its bound only holds: new orders refused, orders at IB stay. Default cancel.",
    )
    grace: Duration = Field(
        default=dt.timedelta(seconds=5),
        description="How long a gateway may be lost before safe state runs. Default 5s.",
    )
    on_shutdown: SafeStateAction = Field(
        default=SafeStateAction.CANCEL,
        description="When the supervisor stops (SIGTERM): cancel (open orders) | flatten "
        "(cancel, then close positions with market orders: for a strategy that must not carry "
        "positions unsupervised) | hold (leave orders working at IB; the next start reconciles "
        "them from the journal and carries on). Default cancel.",
    )


class LimitsConfig(_Strict):
    """Risk limits the order path enforces before anything is sent."""

    max_order_qty: float = Field(default=100, gt=0, description="Per order. Default 100.")
    max_position: float = Field(default=500, gt=0, description="Per contract. Default 500.")
    max_notional: float = Field(default=50_000, gt=0, description="Per order. Default 50000.")
    max_open_orders: int = Field(default=20, ge=1, description="Open at once. Default 20.")
    max_orders_per_sec: float = Field(
        default=10,
        gt=0,
        le=MAX_MESSAGES_PER_SECOND,
        description=f"Order messages per second (at most {MAX_MESSAGES_PER_SECOND}). Default 10.",
    )
    whatif_margin_check: bool = Field(
        default=False, description="Check margin with a what-if order first. Default false."
    )
    position_limits: dict[str, PositiveFloat] = Field(
        default_factory=dict,
        description="Per symbol: a position limit that replaces max_position for it, e.g. "
        "{AAPL: 200}. Default none.",
    )
    max_daily_loss: PositiveFloat | None = Field(
        default=5_000,
        description="The day's loss (realised plus marked unrealised, from the strategy's own "
        "fills) at which the strategy's orders are cancelled, it is halted and an alert goes "
        "out; until the next trading day only orders that reduce a position pass. null: off. "
        "Default 5000.",
    )
    daily_loss_calendar: str = Field(
        default="XNYS",
        description="The exchange calendar (exchange-calendars name) whose trading day the "
        "daily loss counts: a day runs from one session's open to the next. Default XNYS.",
    )
    daily_loss_reset: dt.time | None = Field(
        default=None,
        description="Instead of the session's open: the local time (in the calendar's time "
        "zone) the day's loss starts again from zero, e.g. 17:00. Default none.",
    )
    price_collar_pct: PositiveFloat | None = Field(
        default=20,
        description="Refuse a limit or stop price more than this % from the last price (a "
        "likely typo); orders without a known market price pass. null: off. Default 20.",
    )

    @field_validator("daily_loss_calendar")
    @classmethod
    def _known_calendar(cls, name: str) -> str:
        # Imported here: the calendars load pandas, which a fleet file without limits skips.
        import exchange_calendars

        if name not in exchange_calendars.get_calendar_names(include_aliases=True):
            raise ValueError(
                f"daily_loss_calendar {name!r} is not an exchange-calendars name "
                "(XNYS, XLON, XTKS, ...)"
            )
        return name


class StrategyConfig(_Strict):
    """One plugin strategy hosted by the supervisor."""

    name: str = Field(pattern=NAME_PATTERN, description="Unique strategy name.")
    plugin: str = Field(
        min_length=1,
        description="Entry point name (group ibfleet.strategies) or module:Class.",
    )
    gateways: list[str] = Field(
        min_length=1, description="Gateway names: the primary first, then failover order."
    )
    client_id: int = Field(
        ge=0, le=MAX_CLIENT_ID, description="Client id on the primary gateway's range."
    )
    read_only: bool = Field(
        default=False, description="A strategy that never places orders. Default false."
    )
    enabled: bool = Field(default=True, description="Start it with the supervisor. Default true.")
    safe_state: SafeStateConfig = Field(
        default_factory=SafeStateConfig,
        description="What happens when the gateway is lost; see `strategies[].safe_state`.",
    )
    limits: LimitsConfig = Field(
        default_factory=LimitsConfig, description="Risk limits; see `strategies[].limits`."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Passed to the strategy.")
