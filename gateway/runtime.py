"""The runtime port: what the supervisor needs from whatever runs gateway containers.

Docker implements it now (:mod:`gateway.docker_runtime`); an in-process simulator runtime and a
Swarm runtime can implement it later, so nothing here names a Docker type. Every method is async
and independent per container, so one slow or failing gateway never stalls the others.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from gateway.spec import LABEL_FLEET, LABEL_GATEWAY, LABEL_SPEC_HASH, ContainerSpec

#: How long before a container's recorded StartedAt its own first log lines may be stamped:
#: Docker has stamped a container's first output 12 ms before the StartedAt it records. A line
#: older than StartedAt by more than this is from an earlier run: a restart of the container
#: takes seconds (IBC's relaunches inside a running container leave StartedAt unchanged).
START_STAMP_TOLERANCE = timedelta(seconds=1)

__all__ = [
    "ContainerGone",
    "ContainerState",
    "EventKind",
    "ObservedContainer",
    "Runtime",
    "RuntimeEvent",
    "RuntimeFailure",
]


class RuntimeFailure(Exception):
    """A runtime call failed; the message names the operation and the container."""

    def __init__(self, message: str, *, operation: str, container: str) -> None:
        super().__init__(message)
        self.operation = operation
        self.container = container


class ContainerGone(RuntimeFailure):
    """The container no longer exists (removed by someone else, or never created)."""


class ContainerState(enum.Enum):
    """Container status as the reconcile planner needs it."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    EXITED = "exited"
    DEAD = "dead"
    REMOVING = "removing"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, text: str) -> ContainerState:
        try:
            return cls(text.lower())
        except ValueError:
            return cls.UNKNOWN


# States in which the gateway process is (or is about to be) alive: reconcile leaves them be.
ALIVE_STATES = frozenset({ContainerState.RUNNING, ContainerState.RESTARTING, ContainerState.PAUSED})
# States from which a plain start brings the gateway back.
STARTABLE_STATES = frozenset({ContainerState.CREATED, ContainerState.EXITED})


@dataclass(frozen=True, slots=True)
class ObservedContainer:
    """One container as the runtime sees it now."""

    id: str
    name: str
    state: ContainerState
    labels: Mapping[str, str] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    image: str = ""

    @property
    def fleet(self) -> str | None:
        return self.labels.get(LABEL_FLEET)

    @property
    def gateway(self) -> str | None:
        return self.labels.get(LABEL_GATEWAY)

    @property
    def spec_hash(self) -> str | None:
        return self.labels.get(LABEL_SPEC_HASH)

    @property
    def is_alive(self) -> bool:
        return self.state in ALIVE_STATES


class EventKind(enum.Enum):
    START = "start"
    DIE = "die"
    OOM = "oom"
    DESTROY = "destroy"


@dataclass(frozen=True, slots=True)
class RuntimeEvent:
    """A container lifecycle event of this fleet (start, die with exit code, oom, destroy)."""

    kind: EventKind
    container_id: str
    at: datetime
    name: str = ""
    gateway: str | None = None
    exit_code: int | None = None


class Runtime(Protocol):
    """Runs gateway containers. Implementations never touch a container they were not asked to."""

    async def list(self, *, fleet: str) -> list[ObservedContainer]:
        """Containers labelled with ``fleet``, plus any whose name claims the fleet's prefix."""
        ...

    async def create(self, spec: ContainerSpec) -> str:
        """Create (not start) the container with its secret files in place; return its id."""
        ...

    async def start(self, container_id: str) -> None: ...

    async def stop(self, container_id: str, *, timeout: float) -> None: ...

    async def remove(self, container_id: str) -> None:
        """Remove the container (force: it may be running)."""
        ...

    async def restart(self, container_id: str, *, timeout: float) -> None: ...

    async def rename(self, container_id: str, name: str) -> None:
        """Give the container a new name (a rollout keeps the previous one under another)."""
        ...

    async def inspect(self, container_id: str) -> ObservedContainer: ...

    async def command_address(self, container_id: str) -> tuple[str, int] | None:
        """Where the supervisor reaches the gateway's IBC command server, or None while the
        container is not running (no address to reach)."""
        ...

    def follow_logs(self, container_id: str) -> AsyncIterator[str]:
        """Lines from the container's current start only (:data:`START_STAMP_TOLERANCE`),
        each prefixed with its RFC 3339 time."""
        ...

    def events(self, *, fleet: str) -> AsyncIterator[RuntimeEvent]:
        """This fleet's container events, for as long as the caller iterates."""
        ...
