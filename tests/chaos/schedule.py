"""A seeded schedule of faults for a fleet: the same seed and shape give the same schedule.

Pure: a ``random.Random(seed)`` draws every choice, nothing is read from the outside. Faults
overlap freely (a link loss on one gateway while another is paused and the supervisor is down),
within a few rules that keep the run inside what the fleet is built to survive on its own:

- one container-level fault (kill, pause, partition, early daily restart, a login the schedule
  forces) per gateway at a time: two at once on one container say nothing the one does not;
- one supervisor stop at a time, and time between them for the process to come back;
- container restarts the schedule causes stay within ``restarts_per_hour`` per gateway over any
  hour, under the lifecycle's own restart budget (5 an hour): past it a gateway is FATAL by
  design and waits for a human, which a chaos run cannot tell from a bug.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["FaultKind", "FleetShape", "Step", "counts", "plan"]


class FaultKind(enum.StrEnum):
    """What one step of the schedule does."""

    KILL = "docker_kill"  # the gateway's container is killed; the supervisor restarts it
    PAUSE = "docker_pause"  # the container is frozen (a stall), then unpaused
    PARTITION = "network_partition"  # the container leaves the fleet network, then rejoins
    LINK = "ib_link_loss"  # the control API drops the gateway's IB link (1100), then restores
    FARM = "farm_fault"  # a market data farm (2103) or the HMDS farm (2105) broken, then OK
    TWOFA_UNANSWERED = "twofa_unanswered"  # a forced login whose 2FA prompt nobody answers
    LOGIN_REFUSED = "login_refused"  # the login server refuses every login; one is forced
    SUPERVISOR_SIGKILL = "supervisor_sigkill"  # the supervisor process killed, started again
    SUPERVISOR_SIGTERM = "supervisor_sigterm"  # the supervisor stopped cleanly, started again
    DAILY_RESTART = "daily_restart_early"  # the gateway's clock moved to its daily restart
    MARKET = "market_move"  # not a fault: the price jumps, so brackets fill and trade again

    @property
    def planned(self) -> bool:
        """Faults that are a planned outage: nobody is paged for them."""
        return self is FaultKind.DAILY_RESTART

    @property
    def fleet_wide(self) -> bool:
        """Faults that touch every gateway, whichever one the step names."""
        return self in (
            FaultKind.SUPERVISOR_SIGKILL,
            FaultKind.SUPERVISOR_SIGTERM,
            FaultKind.LOGIN_REFUSED,
        )


#: How likely each kind is drawn (relative weights).
WEIGHTS: dict[FaultKind, float] = {
    FaultKind.MARKET: 2.0,
    FaultKind.LINK: 2.0,
    FaultKind.FARM: 1.5,
    FaultKind.PAUSE: 1.5,
    FaultKind.PARTITION: 1.5,
    FaultKind.KILL: 1.0,
    FaultKind.DAILY_RESTART: 1.0,
    FaultKind.SUPERVISOR_SIGKILL: 0.7,
    FaultKind.SUPERVISOR_SIGTERM: 0.7,
    FaultKind.TWOFA_UNANSWERED: 0.6,
    FaultKind.LOGIN_REFUSED: 0.6,
}

#: How long each kind lasts before it heals, in seconds (low, high).
DURATIONS: dict[FaultKind, tuple[float, float]] = {
    FaultKind.MARKET: (0.0, 0.0),
    FaultKind.KILL: (0.0, 0.0),
    FaultKind.LINK: (2.0, 20.0),
    FaultKind.FARM: (2.0, 20.0),
    FaultKind.PAUSE: (2.0, 15.0),
    FaultKind.PARTITION: (2.0, 15.0),
    # The bound the runner waits for IBC's restart before it sets the clock back.
    FaultKind.DAILY_RESTART: (90.0, 90.0),
    FaultKind.SUPERVISOR_SIGKILL: (0.5, 5.0),
    FaultKind.SUPERVISOR_SIGTERM: (0.5, 5.0),
    FaultKind.TWOFA_UNANSWERED: (10.0, 40.0),
    FaultKind.LOGIN_REFUSED: (3.0, 15.0),
}

#: Kinds that hold the named gateway's container for their duration.
_CONTAINER = frozenset(
    {
        FaultKind.KILL,
        FaultKind.PAUSE,
        FaultKind.PARTITION,
        FaultKind.DAILY_RESTART,
        FaultKind.TWOFA_UNANSWERED,
        FaultKind.LOGIN_REFUSED,
    }
)
#: Kinds whose step restarts the named gateway's container.
_RESTARTS = frozenset({FaultKind.KILL, FaultKind.TWOFA_UNANSWERED, FaultKind.LOGIN_REFUSED})
_SUPERVISOR = frozenset({FaultKind.SUPERVISOR_SIGKILL, FaultKind.SUPERVISOR_SIGTERM})
#: A container fault keeps its gateway for this long at least (a kill: the restart and login).
_CONTAINER_HOLD = 25.0
HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class FleetShape:
    """What the schedule may touch: the gateways, which log in with 2FA, the pacing."""

    gateways: tuple[str, ...]
    twofa: tuple[str, ...] = ()
    restarts_per_hour: int = 3
    #: A supervisor stop waits this long after the last one came back (its start-up).
    supervisor_spacing: float = 25.0
    weights: dict[FaultKind, float] = field(default_factory=lambda: dict(WEIGHTS))

    def __post_init__(self) -> None:
        if not self.gateways:
            raise ValueError("a chaos schedule needs at least one gateway")
        unknown = set(self.twofa) - set(self.gateways)
        if unknown:
            raise ValueError(f"2FA gateways {sorted(unknown)} are not among {self.gateways}")
        if self.restarts_per_hour < 0:
            raise ValueError(f"restarts_per_hour must be >= 0, got {self.restarts_per_hour}")


@dataclass(frozen=True, slots=True)
class Step:
    """One scheduled fault: ``at`` seconds after the schedule starts, healed ``duration`` later.

    ``variant`` says which farm, whether the restored link lost data (``data_lost``), which way
    the market moves; ``value`` the size of a market move (a fraction of the price).
    """

    index: int
    at: float
    kind: FaultKind
    gateway: str | None
    duration: float
    variant: str = ""
    value: float = 0.0

    @property
    def end(self) -> float:
        return self.at + self.duration

    def describe(self) -> str:
        where = f" {self.gateway}" if self.gateway else ""
        extra = f" {self.variant}" if self.variant else ""
        size = f" {self.value:+.3%}" if self.kind is FaultKind.MARKET else ""
        lasts = f" for {self.duration:.1f}s" if self.duration else ""
        return f"#{self.index} t+{self.at:.1f}s {self.kind.value}{where}{extra}{size}{lasts}"


@dataclass
class _Book:
    """What the drawing keeps track of: who is busy until when, restarts per gateway."""

    container_busy: dict[str, float] = field(default_factory=dict)
    restarts: dict[str, list[float]] = field(default_factory=dict)
    supervisor_free: float = 0.0
    refused_free: float = 0.0

    def container_free(self, gateway: str, at: float) -> bool:
        return self.container_busy.get(gateway, 0.0) <= at

    def may_restart(self, gateway: str, at: float, per_hour: int) -> bool:
        recent = [t for t in self.restarts.get(gateway, []) if t > at - HOUR]
        return len(recent) < per_hour


def _duration(rng: random.Random, kind: FaultKind) -> float:
    low, high = DURATIONS[kind]
    return round(rng.uniform(low, high), 1) if high > low else low


def _candidates(kind: FaultKind, shape: FleetShape, book: _Book, at: float) -> list[str | None]:
    """Gateways ``kind`` may hit at ``at`` (``[None]`` for a step that names no gateway)."""
    if kind is FaultKind.MARKET:
        return [None]
    if kind in _SUPERVISOR:
        return [None] if book.supervisor_free <= at else []
    if kind is FaultKind.LOGIN_REFUSED and book.refused_free > at:
        return []
    pool = shape.twofa if kind is FaultKind.TWOFA_UNANSWERED else shape.gateways
    found: list[str | None] = []
    for gateway in pool:
        if kind in _CONTAINER and not book.container_free(gateway, at):
            continue
        if kind in _RESTARTS and not book.may_restart(gateway, at, shape.restarts_per_hour):
            continue
        found.append(gateway)
    return found


def _variant(rng: random.Random, kind: FaultKind) -> tuple[str, float]:
    if kind is FaultKind.FARM:
        return rng.choice(("market_farm", "hmds_farm")), 0.0
    if kind is FaultKind.LINK:
        return ("data_lost" if rng.random() < 0.5 else "data_kept"), 0.0
    if kind is FaultKind.MARKET:
        # Up often enough for the breakout to enter, down to stop its brackets out.
        size = round(rng.uniform(0.002, 0.012), 4)
        return ("up", size) if rng.random() < 0.6 else ("down", -size)
    return "", 0.0


def _book(book: _Book, step: Step, shape: FleetShape) -> None:
    if step.kind in _SUPERVISOR:
        book.supervisor_free = step.end + shape.supervisor_spacing
    if step.kind is FaultKind.LOGIN_REFUSED:
        book.refused_free = step.end
    if step.gateway is not None and step.kind in _CONTAINER:
        book.container_busy[step.gateway] = max(step.end, step.at + _CONTAINER_HOLD)
    if step.gateway is not None and step.kind in _RESTARTS:
        book.restarts.setdefault(step.gateway, []).append(step.at)


def plan(seed: int, *, events: int, shape: FleetShape, mean_gap: float = 2.5) -> list[Step]:
    """``events`` steps drawn from ``seed``: gaps exponential around ``mean_gap`` seconds."""
    if events < 0:
        raise ValueError(f"events must be >= 0, got {events}")
    if mean_gap <= 0:
        raise ValueError(f"mean_gap must be positive, got {mean_gap}")
    rng = random.Random(seed)
    kinds = [k for k, w in shape.weights.items() if w > 0]
    weights = [shape.weights[k] for k in kinds]
    if not shape.twofa and FaultKind.TWOFA_UNANSWERED in kinds:
        i = kinds.index(FaultKind.TWOFA_UNANSWERED)
        del kinds[i], weights[i]
    book = _Book()
    steps: list[Step] = []
    at = 0.0
    while len(steps) < events:
        at = round(at + rng.expovariate(1.0 / mean_gap), 1)
        for _ in range(8):  # a kind with nobody free is drawn again
            kind = rng.choices(kinds, weights)[0]
            targets = _candidates(kind, shape, book, at)
            if targets:
                break
        else:
            kind, targets = FaultKind.MARKET, [None]
        gateway = rng.choice(targets)
        variant, value = _variant(rng, kind)
        step = Step(
            index=len(steps),
            at=at,
            kind=kind,
            gateway=gateway,
            duration=_duration(rng, kind),
            variant=variant,
            value=value,
        )
        _book(book, step, shape)
        steps.append(step)
    return steps


def counts(steps: Sequence[Step]) -> dict[str, int]:
    """Steps per kind, every kind listed (zero when it was never drawn)."""
    out = {k.value: 0 for k in FaultKind}
    for step in steps:
        out[step.kind.value] += 1
    return out
