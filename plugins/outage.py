"""How the strategy host reacts to a closed order gate, and which gateway a strategy starts on.

Pure: the host feeds in the outage kind the supervisor's lifecycle decided (``gateway.outage``),
the strategy's safe-state policy and how long the outage has lasted, and gets back what to do
now and when time alone would change that. The host's timers only re-evaluate these functions;
no other place in the host decides between holding, waiting out the grace, safe state and
failover.

The table :func:`react` implements (``grace`` and the actions come from the strategy's
``safe_state``, ``bound`` from the gate):

=============================  ==================  ============================================
kind                           elapsed             reaction
=============================  ==================  ============================================
PLANNED_RESTART, RESET_WINDOW  < bound (or none)   HOLD: new orders refused, orders at IB stay
PLANNED_RESTART, RESET_WINDOW  >= bound            as LOST (it outlasted what was expected)
LOST, STALLED                  < grace             WAIT: new orders refused, same gateway tried
LOST, STALLED                  >= grace            SAFE_STATE ``on_disconnect``, then fail over
SHUTDOWN                       any                 SAFE_STATE ``on_shutdown``, no failover
=============================  ==================  ============================================
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from gateway.outage import Gate, OutageKind
from plugins.config import SafeStateAction, SafeStateConfig

__all__ = [
    "GatewayReadiness",
    "Reaction",
    "StartChoice",
    "Step",
    "describe",
    "gate_of_ready",
    "react",
    "start_choice",
]

_ZERO = timedelta(0)


class Step(enum.Enum):
    """What the host does for a strategy whose gateway's outage it is reacting to."""

    #: A planned outage within its bound: new orders refused, orders at IB stay, no safe
    #: state, no failover; the strategy resumes on the same gateway when its gate opens.
    HOLD = "hold"
    #: An unplanned outage within the grace: new orders refused; the host tries to get the
    #: same gateway back (a dropped session reconnects) before anything else happens.
    WAIT = "wait"
    #: Run the safe state ``action`` now, then fail over when ``fail_over`` says so.
    SAFE_STATE = "safe_state"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reaction:
    """What to do now; ``recheck_in`` is when elapsed time alone changes it (None: never)."""

    step: Step
    action: SafeStateAction | None = None
    fail_over: bool = False
    recheck_in: timedelta | None = None


_PHRASES = {
    OutageKind.PLANNED_RESTART: "planned restart",
    OutageKind.RESET_WINDOW: "IB reset window",
    OutageKind.LOST: "gateway lost",
    OutageKind.STALLED: "gateway stalled",
    OutageKind.SHUTDOWN: "supervisor shutting down",
}


def describe(kind: OutageKind) -> str:
    """A short human phrase for an outage kind (for refusals and logs)."""
    return _PHRASES[kind]


def react(
    kind: OutageKind,
    policy: SafeStateConfig,
    elapsed: timedelta,
    bound: timedelta | None,
) -> Reaction:
    """The host's reaction to an outage of ``kind`` that has lasted ``elapsed`` so far.

    ``elapsed`` counts from the strategy's first sign of the outage (its gate closing or its
    session dropping); ``bound`` is how long a planned outage is expected to last at most.
    """
    if elapsed < _ZERO:
        raise ValueError(f"outage elapsed time must not be negative, got {elapsed}")
    if bound is not None and bound < _ZERO:
        raise ValueError(f"outage bound must not be negative, got {bound}")
    if kind is OutageKind.SHUTDOWN:
        # The supervisor stops, the gateways keep running: the strategy's shutdown policy,
        # and nowhere to fail over to.
        return Reaction(step=Step.SAFE_STATE, action=policy.on_shutdown)
    if kind.planned:
        if bound is None:
            # No expected end given: hold until the lifecycle opens the gate or calls it lost.
            return Reaction(step=Step.HOLD)
        if elapsed < bound:
            return Reaction(step=Step.HOLD, recheck_in=bound - elapsed)
        # Outlasted its bound: from here on it is a lost gateway, timed from its start.
    grace = policy.grace
    if elapsed < grace:
        return Reaction(step=Step.WAIT, recheck_in=grace - elapsed)
    return Reaction(step=Step.SAFE_STATE, action=policy.on_disconnect, fail_over=True)


def gate_of_ready(ready: bool, reason: str = "") -> Gate:
    """The gate for a caller that only knows ready or not: not ready is a lost gateway.

    Never infers a planned kind: only the lifecycle knows a restart or reset window is planned.
    """
    if ready:
        return Gate(open=True)
    return Gate(open=False, kind=OutageKind.LOST, reason=reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayReadiness:
    """One of a strategy's gateways as the host sees it when the strategy is to start."""

    name: str
    #: The order gate: open, closed, or None when no supervisor has said.
    open: bool | None
    #: How long it has been so (for an unknown gate: since the strategy began to wait).
    for_: timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class StartChoice:
    """The gateways to try now, in order, and when to look again if none of them works."""

    try_now: tuple[str, ...]
    recheck_in: timedelta | None


def start_choice(gateways: Sequence[GatewayReadiness], *, patience: timedelta) -> StartChoice:
    """Where a strategy that is not running yet may start: its primary whenever that is up.

    ``gateways`` is the strategy's list, primary first. A failover gateway is tried only when
    the primary's gate is not open and the failover gateway has been available for
    ``patience``: gateways coming up in the same moment never race each other, whatever time
    the host started.
    """
    if not gateways:
        raise ValueError("a strategy names at least one gateway")
    primary, *others = gateways
    tried: list[str] = []
    if primary.open is not False:
        tried.append(primary.name)
    if primary.open is True:
        # The primary is up: it is the one place to start (a failed connect is retried there).
        return StartChoice(try_now=tuple(tried), recheck_in=None)
    soonest: timedelta | None = None
    for other in others:
        if other.open is False:
            continue
        if other.for_ >= patience:
            tried.append(other.name)
        else:
            left = patience - other.for_
            soonest = left if soonest is None else min(soonest, left)
    return StartChoice(try_now=tuple(tried), recheck_in=soonest)
