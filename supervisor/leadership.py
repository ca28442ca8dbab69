"""Which role this supervisor holds on a shared journal, as a pure state machine.

Two ``ibfleet run`` processes on one PostgreSQL journal: the one holding the lease
(:mod:`supervisor.journal.lease`) leads and acts; the other waits as a standby and touches
neither IB nor Docker. Lease events go in (:meth:`RoleMachine.step`), actions come out; the
driver in :mod:`supervisor.standby` executes them. Time is passed in (monotonic seconds), so a
test drives every transition.

Transitions (each has a test in tests/unit/test_leadership.py):

- STANDBY -> STARTING on :class:`LeaseTaken`: build and start the leader's parts.
- STARTING -> LEADER on :class:`LeaderUp`: the fleet is adopted, the API serves.
- STARTING | LEADER -> HANDING_OVER on :class:`LeaseLost` (another holder, a fenced write) or
  on a :class:`Tick` past ``confirmed_at + lease_ttl`` (renewals failed until the lease ran
  out): fence at once (no action touches IB or Docker from here), then tear the leader's
  parts down without acting (no safe state, no orders, no alerts: the new leader owns them).
- HANDING_OVER -> STANDBY on :class:`HandedOver`: wait for the lease again (a clean step-down
  rather than an exit: the process keeps serving its API, and systemd needs no restart).
- STARTING | LEADER -> STOPPING on :class:`StopRequested`: the normal shutdown (gates closed
  with their policies, the lease handed on); -> STOPPED on :class:`Stopped`.
- STANDBY -> STOPPED on :class:`StopRequested`; HANDING_OVER remembers the stop and ends
  STOPPED once handed over. A lease lost while STOPPING fences what is left of the shutdown.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# ------------------------------------------------------------------------------ states


class Role(enum.Enum):
    """This process's role; ``value`` is what /healthz says."""

    STANDBY = "standby"
    STARTING = "starting"  # the lease is held, the leader's parts are being started
    LEADER = "leader"
    HANDING_OVER = "handing-over"  # the lease is lost, the leader's parts are being torn down
    STOPPING = "stopping"
    STOPPED = "stopped"


#: Roles that hold the lease and may act (while the lease is confirmed).
ACTING = frozenset({Role.STARTING, Role.LEADER})
#: Roles that hold the lease: the normal shutdown still acts (gates closed with policies).
HOLDING = ACTING | {Role.STOPPING}
#: Roles in which nothing touches IB or Docker.
PASSIVE = frozenset({Role.STANDBY, Role.HANDING_OVER, Role.STOPPED})


# ------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class LeaseTaken:
    """``try_lead`` won the lease with ``epoch``; ``at`` is when the attempt started."""

    epoch: int
    at: float


@dataclass(frozen=True, slots=True)
class LeaseLost:
    """The journal found another holder (a renewal, or a write refused as fenced)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Tick:
    """The clock: ``now``, and when the journal last confirmed the lease (None: never)."""

    now: float
    confirmed_at: float | None


@dataclass(frozen=True, slots=True)
class LeaderUp:
    """The leader's parts are started."""


@dataclass(frozen=True, slots=True)
class HandedOver:
    """The leader's parts are torn down."""


@dataclass(frozen=True, slots=True)
class StopRequested:
    """SIGTERM or SIGINT."""


@dataclass(frozen=True, slots=True)
class Stopped:
    """The normal shutdown finished."""


Event = LeaseTaken | LeaseLost | Tick | LeaderUp | HandedOver | StopRequested | Stopped


# ------------------------------------------------------------------------------ actions


@dataclass(frozen=True, slots=True)
class TryLead:
    """Ask the journal for the lease (a standby's poll)."""


@dataclass(frozen=True, slots=True)
class StartLeader:
    """Start the leader's parts: adopt the fleet, restore alerts, host the strategies."""

    epoch: int


@dataclass(frozen=True, slots=True)
class Fence:
    """Stop acting now: every IB or Docker action is refused from here."""

    reason: str


@dataclass(frozen=True, slots=True)
class HandOver:
    """Tear the leader's parts down without acting (they belong to the new leader)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Shutdown:
    """The normal stop: gates closed with their policies, the lease handed on."""


@dataclass(frozen=True, slots=True)
class Exit:
    """End the process with ``code``."""

    code: int


Action = TryLead | StartLeader | Fence | HandOver | Shutdown | Exit


# ------------------------------------------------------------------------------ the machine


class RoleMachine:
    """The role of one supervisor process on a shared journal (see the module doc)."""

    def __init__(self, *, lease_ttl: float) -> None:
        if lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be > 0 seconds, got {lease_ttl}")
        self.lease_ttl = lease_ttl
        self.role = Role.STANDBY
        self.epoch: int | None = None
        self.confirmed_at: float | None = None
        self.last_reason: str | None = None
        self._fenced = False
        self._stop_after_hand_over = False

    def may_act(self, now: float) -> bool:
        """True while this process leads on a lease confirmed less than ``lease_ttl`` ago.

        Measured from the start of the confirming call, on this host's monotonic clock: the
        server's expiry (its own clock, from later) is never earlier, so a True here means no
        other supervisor can hold the lease yet.
        """
        if self.role not in HOLDING or self._fenced or self.confirmed_at is None:
            return False
        return now - self.confirmed_at < self.lease_ttl

    def step(self, event: Event) -> list[Action]:
        """Apply one event; returns what the driver must do, in order."""
        role = self.role
        if isinstance(event, Tick):
            return self._tick(event)
        if isinstance(event, LeaseTaken):
            if role is not Role.STANDBY:
                return []  # a late answer to a poll made before a stop or a start
            self.role, self.epoch, self.confirmed_at = Role.STARTING, event.epoch, event.at
            self.last_reason, self._fenced = None, False
            return [StartLeader(event.epoch)]
        if isinstance(event, LeaseLost):
            return self._lose(event.reason)
        if isinstance(event, LeaderUp):
            if role is Role.STARTING:
                self.role = Role.LEADER
            return []
        if isinstance(event, HandedOver):
            if role is not Role.HANDING_OVER:
                return []
            self.epoch, self.confirmed_at, self._fenced = None, None, False
            if self._stop_after_hand_over:
                self.role = Role.STOPPED
                return [Exit(0)]
            self.role = Role.STANDBY
            return [TryLead()]
        if isinstance(event, StopRequested):
            if role is Role.STANDBY:
                self.role = Role.STOPPED
                return [Exit(0)]
            if role in ACTING:
                self.role = Role.STOPPING
                return [Shutdown()]
            if role is Role.HANDING_OVER:
                self._stop_after_hand_over = True
            return []
        # Stopped
        if role is Role.STOPPING:
            self.role = Role.STOPPED
            return [Exit(0)]
        return []

    def _tick(self, tick: Tick) -> list[Action]:
        if self.role is Role.STANDBY:
            return [TryLead()]
        if self.role not in HOLDING or self._fenced:
            return []
        if tick.confirmed_at is not None and (
            self.confirmed_at is None or tick.confirmed_at > self.confirmed_at
        ):
            self.confirmed_at = tick.confirmed_at
        if self.may_act(tick.now):
            return []
        assert self.confirmed_at is not None  # set when the lease was taken
        late = tick.now - self.confirmed_at
        return self._lose(
            f"the lease was not renewed for {late:.1f}s (lease {self.lease_ttl:g}s): "
            "another supervisor may lead now"
        )

    def _lose(self, reason: str) -> list[Action]:
        if self.role not in HOLDING or self._fenced:
            return []
        self._fenced, self.last_reason = True, reason
        if self.role is Role.STOPPING:
            return [Fence(reason)]
        self.role = Role.HANDING_OVER
        return [Fence(reason), HandOver(reason)]
