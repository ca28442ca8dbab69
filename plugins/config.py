"""The configuration of one hosted strategy, as written in the fleet file's ``strategies`` list."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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
