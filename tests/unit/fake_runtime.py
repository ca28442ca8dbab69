"""A hand-written in-memory runtime behind gateway.runtime.Runtime, with fault switches.

It keeps containers as plain records, emits the same events a real engine would (start, die,
oom, destroy) and records every call, so orchestrator tests can assert exactly what was done.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.runtime import (
    ContainerGone,
    ContainerState,
    EventKind,
    ObservedContainer,
    RuntimeEvent,
    RuntimeFailure,
)
from gateway.spec import LABEL_FLEET, ContainerSpec


@dataclass
class FakeContainer:
    id: str
    name: str
    labels: dict[str, str]
    state: ContainerState = ContainerState.CREATED
    started_at: datetime | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    spec: ContainerSpec | None = None
    starts: int = 0

    def observe(self) -> ObservedContainer:
        return ObservedContainer(
            id=self.id,
            name=self.name,
            state=self.state,
            labels=dict(self.labels),
            started_at=self.started_at,
            exit_code=self.exit_code,
            oom_killed=self.oom_killed,
            image=self.spec.image if self.spec else "",
        )


@dataclass
class FakeRuntime:
    """Containers in a dict; ``fail`` maps an operation name to container names that fail it."""

    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    containers: dict[str, FakeContainer] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    fail: dict[str, set[str]] = field(default_factory=dict)
    hang: dict[str, set[str]] = field(default_factory=dict)
    list_fails: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _subscribers: list[asyncio.Queue[RuntimeEvent | None]] = field(default_factory=list)

    # -- test helpers ------------------------------------------------------------------------

    def add_foreign(self, *, name: str, labels: dict[str, str] | None = None) -> FakeContainer:
        """A container someone else made (running), e.g. squatting on a gateway's name."""
        container = FakeContainer(
            id=f"foreign{next(self._ids):04d}",
            name=name,
            labels=dict(labels or {}),
            state=ContainerState.RUNNING,
            started_at=self.clock(),
        )
        self.containers[container.id] = container
        return container

    def by_name(self, name: str) -> FakeContainer:
        for container in self.containers.values():
            if container.name == name:
                return container
        raise KeyError(name)

    def kill(self, name: str, *, exit_code: int = 137, oom: bool = False) -> FakeContainer:
        """An external ``docker kill``: the container exits and the events say so."""
        container = self.by_name(name)
        container.state = ContainerState.EXITED
        container.exit_code = exit_code
        container.oom_killed = oom
        if oom:
            self._event(EventKind.OOM, container)
        self._event(EventKind.DIE, container, exit_code=exit_code)
        return container

    def destroy(self, name: str) -> None:
        container = self.by_name(name)
        del self.containers[container.id]
        self._event(EventKind.DESTROY, container)

    def end_event_streams(self) -> None:
        for queue in self._subscribers:
            queue.put_nowait(None)

    def operations(self, op: str) -> list[str]:
        return [name for called, name in self.calls if called == op]

    # -- the Runtime protocol ----------------------------------------------------------------

    async def _gate(self, op: str, name: str) -> None:
        self.calls.append((op, name))
        if name in self.hang.get(op, set()):
            await asyncio.Event().wait()  # never returns: the caller's timeout must fire
        if name in self.fail.get(op, set()):
            raise RuntimeFailure(f"{op} {name}: injected failure", operation=op, container=name)

    def _get(self, container_id: str, op: str) -> FakeContainer:
        container = self.containers.get(container_id)
        if container is None:
            raise ContainerGone(
                f"{op}: no container {container_id}", operation=op, container=container_id
            )
        return container

    async def list(self, *, fleet: str) -> list[ObservedContainer]:
        self.calls.append(("list", fleet))
        if self.list_fails:
            raise RuntimeFailure("list: engine unreachable", operation="list", container="*")
        prefix = f"ibfleet-{fleet}-"
        return [
            c.observe()
            for c in self.containers.values()
            if c.labels.get(LABEL_FLEET) == fleet or c.name.startswith(prefix)
        ]

    async def create(self, spec: ContainerSpec) -> str:
        await self._gate("create", spec.name)
        if any(c.name == spec.name for c in self.containers.values()):
            raise RuntimeFailure(
                f"create: name {spec.name} in use", operation="create", container=spec.name
            )
        container = FakeContainer(
            id=f"c{next(self._ids):04d}", name=spec.name, labels=spec.label_map, spec=spec
        )
        self.containers[container.id] = container
        return container.id

    async def start(self, container_id: str) -> None:
        container = self._get(container_id, "start")
        await self._gate("start", container.name)
        container.state = ContainerState.RUNNING
        container.started_at = self.clock()
        container.exit_code = None
        container.starts += 1
        self._event(EventKind.START, container)

    async def stop(self, container_id: str, *, timeout: float) -> None:
        container = self._get(container_id, "stop")
        await self._gate("stop", container.name)
        if container.state is ContainerState.RUNNING:
            container.state = ContainerState.EXITED
            container.exit_code = 0
            self._event(EventKind.DIE, container, exit_code=0)

    async def remove(self, container_id: str) -> None:
        container = self._get(container_id, "remove")
        await self._gate("remove", container.name)
        del self.containers[container_id]
        self._event(EventKind.DESTROY, container)

    async def rename(self, container_id: str, name: str) -> None:
        container = self._get(container_id, "rename")
        await self._gate("rename", container.name)
        if any(c.name == name for c in self.containers.values() if c is not container):
            raise RuntimeFailure(f"rename: {name} in use", operation="rename", container=name)
        container.name = name

    async def restart(self, container_id: str, *, timeout: float) -> None:
        await self.stop(container_id, timeout=timeout)
        await self.start(container_id)

    async def inspect(self, container_id: str) -> ObservedContainer:
        return self._get(container_id, "inspect").observe()

    async def command_address(self, container_id: str) -> tuple[str, int] | None:
        container = self._get(container_id, "command_address")
        if container.state is not ContainerState.RUNNING:
            return None
        # A fake address per container, so callers can tell gateways apart.
        return f"10.0.0.{int(container.id[-4:]) % 250 + 2}", 7462

    async def follow_logs(self, container_id: str) -> AsyncIterator[str]:
        self._get(container_id, "logs")
        for line in ():
            yield line

    async def events(self, *, fleet: str) -> AsyncIterator[RuntimeEvent]:
        queue: asyncio.Queue[RuntimeEvent | None] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            while True:
                event = await queue.get()
                if event is None:
                    return
                yield event
        finally:
            self._subscribers.remove(queue)

    def _event(self, kind: EventKind, container: FakeContainer, *, exit_code: int | None = None):
        event = RuntimeEvent(
            kind=kind,
            container_id=container.id,
            at=self.clock(),
            name=container.name,
            gateway=container.labels.get("io.ibfleet.gateway"),
            exit_code=exit_code,
        )
        for queue in self._subscribers:
            queue.put_nowait(event)
