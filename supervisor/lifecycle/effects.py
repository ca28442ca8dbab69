"""The lifecycle's outputs: what an adapter must execute after a transition."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

from gateway.outage import Gate
from supervisor.alertpolicy import Alert


class LoginOutcome(enum.Enum):
    """What CountLogin reports; only ATTEMPT counts against the per-username budget."""

    ATTEMPT = "attempt"
    SUCCESS = "success"
    FAILED = "failed"
    TWOFA_TIMEOUT = "twofa_timeout"
    LOCKED_OUT = "locked_out"


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
