"""The Docker Swarm adapter behind :class:`gateway.runtime.Runtime`: each gateway a service.

It talks to a Swarm manager through the docker SDK's low-level client (services, tasks, nodes,
secrets, networks, service logs), seen through :class:`SwarmApi` so the unit tests drive a
hand-written fake. Blocking calls run in a bounded thread pool under a deadline, as in
:mod:`gateway.docker_runtime`; streams run in threads that feed asyncio queues.

What each runtime call means for a service (the service's spec is :mod:`gateway.swarm_spec`,
its readings :mod:`gateway.swarm_replies`):

* ``create``: the fleet's overlay network if missing, the secrets, the service with 0
  replicas (created, not started). Its id is the service id, which every other call takes.
* ``start``: 1 replica; if it already asks for 1 and its task has ended (exited, or its node
  was lost), a forced update: Swarm places a new task on a node that meets the constraints.
* ``stop``: 0 replicas, the task given ``timeout`` to stop; returns once no task runs.
* ``restart``: a forced update (stop-first): the task is replaced, maybe on another node.
* ``remove``: the service (its task is stopped), then the fleet's secrets no service uses.
* ``rename``: the :data:`gateway.swarm_spec.LABEL_NAME` label (Swarm cannot rename).
* ``events``: the manager sends no task events, so the fleet's tasks and the nodes are polled
  every ``poll_interval`` and each change is reported as the container event it stands for.

IBC's command server (:meth:`SwarmRuntime.command_address`) is reached on the task's address
on the overlay network, so only a supervisor attached to that network (a service of the stack,
``deploy/swarm/stack.yml``) reaches it. What guards it is IBC's own ControlFrom, which admits
exactly the supervisors' task addresses known when the gateway was created (this process's
``control_sources`` and the running tasks of the fleet's supervisor services); a supervisor
rescheduled to a new address is refused until the gateway is next recreated, and its soft
restarts fall back to hard ones. There are no firewall rules: an overlay network has no
inter-container switch, so any other service an operator attaches to the fleet's network
reaches the gateways' API ports; the README says so.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import secrets as secrets_mod
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import docker.errors

from gateway.docker_replies import parse_docker_time_ns
from gateway.docker_runtime import FleetNetworks, engine_call
from gateway.ibc_ini import with_control_from
from gateway.log_stream import stream_lines
from gateway.runtime import (
    START_STAMP_TOLERANCE,
    ObservedContainer,
    RuntimeEvent,
    RuntimeFailure,
)
from gateway.secret_files import secret_owner
from gateway.spec import COMMAND_SERVER_PORT, LABEL_FLEET, LABEL_GATEWAY, ContainerSpec
from gateway.swarm_api import LABEL_SUPERVISOR_OF, SwarmApi, overlay_problem
from gateway.swarm_replies import (
    ON_THE_WAY,
    TO_RUN,
    TaskView,
    current_task,
    log_line,
    observe_service,
    snapshot,
    task_address,
    task_events,
    task_is_live,
    task_may_run,
)
from gateway.swarm_spec import (
    LABEL_NAME,
    forced,
    render_service,
    replicas_of,
    scaled,
    with_secret_ids,
)

__all__ = ["LABEL_SUPERVISOR_OF", "SwarmApi", "SwarmRuntime", "overlay_problem"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class SwarmRuntime(FleetNetworks):
    """:class:`gateway.runtime.Runtime` on a Docker Swarm, through a manager's engine."""

    _api: SwarmApi

    def __init__(
        self,
        api: SwarmApi,
        *,
        secret_key: bytes | None = None,
        control_sources: tuple[str, ...] = (),
        encrypted: bool = True,
        call_timeout: float = 60.0,
        max_workers: int = 16,
        poll_interval: float = 1.0,
        stop_settle: float = 10.0,
    ) -> None:
        """``secret_key`` keys the digests in secret names (the supervisor's spec-hash key,
        so a standby names equal content alike; a random one otherwise). ``control_sources``
        are this supervisor's addresses on the overlay network (IBC's ControlFrom admits
        them). ``encrypted`` creates the overlay network with IPsec between nodes.
        ``stop_settle`` is how long past its grace a stopping task may take to be seen gone.
        """
        self._api = api
        self._key = secret_key or secrets_mod.token_bytes(32)
        self._control_sources = control_sources
        self._encrypted = encrypted
        self._call_timeout = call_timeout
        self._poll_interval = poll_interval
        self._stop_settle = stop_settle
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="ibfleet-swarm"
        )
        self._network_lock = asyncio.Lock()
        self._networks_ready: set[str] = set()
        self._owners: dict[str, tuple[int, int, int]] = {}

    def close(self) -> None:
        """Release the thread pool (hung calls are abandoned, never waited for)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _call(
        self, op: str, target: str, fn: Callable[[], T], *, extra_timeout: float = 0.0
    ) -> T:
        return await engine_call(
            self._pool, fn, op=op, target=target, timeout=self._call_timeout + extra_timeout
        )

    # -- observe (blocking helpers run in the pool) ------------------------------------------

    def _down_nodes(self) -> frozenset[str]:
        nodes = self._api.nodes()
        return frozenset(
            str(n.get("ID")) for n in nodes if (n.get("Status") or {}).get("State") == "down"
        )

    def _tasks_of(self, service_ids: list[str]) -> list[dict[str, Any]]:
        if not service_ids:
            return []
        return self._api.tasks(filters={"service": service_ids})

    def _fleet_services(self, fleet: str) -> list[dict[str, Any]]:
        labelled = self._api.services(filters={"label": f"{LABEL_FLEET}={fleet}"})
        named = self._api.services(filters={"name": f"ibfleet-{fleet}-"})
        seen: dict[str, dict[str, Any]] = {}
        for item in [*labelled, *named]:
            labels = (item.get("Spec") or {}).get("Labels") or {}
            name = str((item.get("Spec") or {}).get("Name") or "")
            if labels.get(LABEL_FLEET) == fleet or name.startswith(f"ibfleet-{fleet}-"):
                seen[str(item["ID"])] = item
        return list(seen.values())

    def _observe_one(self, service_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        service = self._api.inspect_service(service_id)
        return service, self._tasks_of([str(service["ID"])])

    async def list(self, *, fleet: str) -> list[ObservedContainer]:
        def observe() -> list[ObservedContainer]:
            services = self._fleet_services(fleet)
            try:
                tasks = self._tasks_of([str(s["ID"]) for s in services])
            except docker.errors.NotFound:
                # A listed service was removed meanwhile (the manager 404s the whole filter).
                services = self._fleet_services(fleet)
                tasks = self._tasks_of([str(s["ID"]) for s in services])
            down = self._down_nodes()
            by_service: dict[str, list[dict[str, Any]]] = {}
            for task in tasks:
                by_service.setdefault(str(task.get("ServiceID")), []).append(task)
            return [
                observe_service(s, by_service.get(str(s["ID"]), []), down_nodes=down)
                for s in services
            ]

        return await self._call("list", fleet, observe)

    async def inspect(self, container_id: str) -> ObservedContainer:
        def observe() -> ObservedContainer:
            service, tasks = self._observe_one(container_id)
            return observe_service(service, tasks, down_nodes=self._down_nodes())

        return await self._call("inspect", container_id, observe)

    async def command_address(self, container_id: str) -> tuple[str, int] | None:
        """The current task's address on the fleet's overlay network and IBC's 7462; None while
        no task runs (or its node is lost)."""

        def address() -> tuple[str, int] | None:
            service, tasks = self._observe_one(container_id)
            task = current_task(tasks)
            if task is None or not task_is_live(task, self._down_nodes()):
                return None
            networks = ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("Networks")
            for net in networks or []:
                found = task_address(task, str(net.get("Target") or ""))
                if found is not None:
                    return found, COMMAND_SERVER_PORT
            return None

        return await self._call("inspect", container_id, address)

    # -- act ---------------------------------------------------------------------------------

    async def _ensure_network(self, name: str, *, fleet: str) -> None:
        if name in self._networks_ready:
            return
        async with self._network_lock:
            if name in self._networks_ready:
                return

            def ensure() -> None:
                existing = [n for n in self._api.networks(names=[name]) if n.get("Name") == name]
                if not existing:
                    # Not attachable: only services (made through a manager) join it.
                    self._api.create_network(
                        name,
                        driver="overlay",
                        labels={LABEL_FLEET: fleet},
                        options={"encrypted": ""} if self._encrypted else None,
                        enable_ipv6=False,
                        attachable=False,
                        scope="swarm",
                        check_duplicate=True,
                    )
                    log.info("runtime_network_created network=%s fleet=%s", name, fleet)
                attrs = self._api.inspect_network(name, scope="swarm")
                problem = overlay_problem(attrs, fleet=fleet)
                if problem is not None:
                    raise RuntimeFailure(
                        f"network {name}: {problem}", operation="network", container=name
                    )

            await self._call("network", name, ensure)
            self._networks_ready.add(name)

    def _supervisor_sources(self, fleet: str, network: str) -> tuple[str, ...]:
        """The overlay addresses of the fleet's running supervisor tasks (leader, standby)."""
        found = list(self._control_sources)
        services = self._api.services(filters={"label": f"{LABEL_SUPERVISOR_OF}={fleet}"})
        if services:
            down = self._down_nodes()
            for task in self._tasks_of([str(s["ID"]) for s in services]):
                if task_is_live(task, down):
                    address = task_address(task, network)
                    if address is None:
                        # The task names the network by id: try it.
                        with contextlib.suppress(docker.errors.DockerException):
                            net_id = str(self._api.inspect_network(network).get("Id") or "")
                            address = task_address(task, net_id) if net_id else None
                    if address is not None and address not in found:
                        found.append(address)
        return tuple(found)

    def _owner(self, image: str) -> tuple[int, int, int]:
        """The image's user, when the manager has the image; else files any user may read."""
        if image not in self._owners:
            try:
                attrs = self._api.inspect_image(image)
            except docker.errors.DockerException:
                return 0, 0, 0o444  # the image lives on the workers only; not cached
            user = str((attrs.get("Config") or {}).get("User") or "")
            self._owners[image] = secret_owner(user)
        return self._owners[image]

    async def create(self, spec: ContainerSpec) -> str:
        await self._ensure_network(spec.network, fleet=spec.fleet)

        def create() -> str:
            sources = self._supervisor_sources(spec.fleet, spec.network)
            # ControlFrom admits exactly where the supervisors' IBC commands come from.
            controlled = with_control_from(spec, sources)
            plan = render_service(
                controlled,
                suffix=secrets_mod.token_hex(3),
                key=self._key,
                owner=self._owner(spec.image),
            )
            ids: dict[str, str] = {}
            made: list[str] = []
            try:
                for secret in plan.secrets:
                    existing = [
                        s
                        for s in self._api.secrets(filters={"name": secret.name})
                        if (s.get("Spec") or {}).get("Name") == secret.name
                    ]
                    if existing:
                        ids[secret.name] = str(existing[0]["ID"])
                        continue
                    result = self._api.create_secret(
                        secret.name,
                        secret.content.get_secret_value().encode(),
                        labels=dict(secret.labels),
                    )
                    ids[secret.name] = str(result["ID"])
                    made.append(ids[secret.name])
                body = with_secret_ids(plan.body, ids)
                result = self._api.create_service(
                    body["TaskTemplate"],
                    name=body["Name"],
                    labels=body["Labels"],
                    mode=body["Mode"],
                    update_config=body["UpdateConfig"],
                    endpoint_spec=body["EndpointSpec"],
                )
            except BaseException:
                # Never leave secrets behind that no service will ever use.
                for secret_id in made:
                    with contextlib.suppress(docker.errors.DockerException):
                        self._api.remove_secret(secret_id)
                raise
            return str(result["ID"])

        service_id = await self._call("create", spec.name, create)
        log.info("runtime_created service=%s id=%s", spec.name, service_id[:12])
        # Secrets a stopping task still held when its service was removed go now.
        with contextlib.suppress(RuntimeFailure):
            await self._call(
                "secrets",
                spec.name,
                lambda: self._sweep_secrets(spec.fleet, gateway=spec.gateway),
            )
        return service_id

    def _update(self, service: dict[str, Any], body: dict[str, Any]) -> None:
        version = int((service.get("Version") or {}).get("Index") or 0)
        self._api.update_service(
            str(service["ID"]),
            version,
            task_template=body["TaskTemplate"],
            name=body.get("Name"),
            labels=body.get("Labels") or {},
            mode=body.get("Mode"),
            update_config=body.get("UpdateConfig"),
            endpoint_spec=body.get("EndpointSpec"),
            rollback_config=body.get("RollbackConfig"),
        )

    async def start(self, container_id: str) -> None:
        def start() -> None:
            service, tasks = self._observe_one(container_id)
            spec = service.get("Spec") or {}
            task = current_task(tasks)
            if replicas_of(spec) == 0:
                self._update(service, scaled(spec, 1))
            elif task is not None and not _on_its_way(task, self._down_nodes()):
                self._update(service, forced(spec))

        await self._call("start", container_id, start)

    def _wait_no_live_task(self, service_id: str, deadline: float) -> None:
        while True:
            try:
                tasks = self._tasks_of([service_id])
            except docker.errors.NotFound:
                return
            down = self._down_nodes()
            if not any(task_may_run(t, down) for t in tasks):
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the task of {service_id[:12]} still runs")
            time.sleep(0.25)

    async def stop(self, container_id: str, *, timeout: float) -> None:
        def stop() -> None:
            service = self._api.inspect_service(container_id)
            spec = service.get("Spec") or {}
            if replicas_of(spec) != 0:
                self._update(service, scaled(spec, 0, stop_grace=timeout))
            # A stop returns when the gateway is gone: its username may log in elsewhere then.
            self._wait_no_live_task(container_id, time.monotonic() + timeout + self._stop_settle)

        await self._call("stop", container_id, stop, extra_timeout=timeout + self._stop_settle)

    async def restart(self, container_id: str, *, timeout: float) -> None:
        def restart() -> None:
            service = self._api.inspect_service(container_id)
            self._update(service, forced(service.get("Spec") or {}, stop_grace=timeout))

        await self._call("restart", container_id, restart, extra_timeout=timeout)

    async def rename(self, container_id: str, name: str) -> None:
        def rename() -> None:
            service = self._api.inspect_service(container_id)
            spec = dict(service.get("Spec") or {})
            spec["Labels"] = {**(spec.get("Labels") or {}), LABEL_NAME: name}
            self._update(service, spec)

        await self._call("rename", container_id, rename)

    async def remove(self, container_id: str) -> None:
        def remove() -> None:
            labels: dict[str, str] = {}
            try:
                service = self._api.inspect_service(container_id)
            except docker.errors.NotFound:
                service = None
            if service is not None:
                spec = service.get("Spec") or {}
                labels = dict(spec.get("Labels") or {})
                # Scaled to 0 and waited for while the service exists: once it is removed the
                # manager no longer lists its tasks, yet a task still stopping holds the
                # username's session (and a host port) for its grace.
                if replicas_of(spec) != 0:
                    self._update(service, scaled(spec, 0))
                with contextlib.suppress(TimeoutError):
                    self._wait_no_live_task(
                        container_id, time.monotonic() + self._stop_settle + 30.0
                    )
                self._api.remove_service(container_id)
            else:
                self._api.remove_service(container_id)  # gone: the engine's NotFound says so
            fleet, gateway = labels.get(LABEL_FLEET), labels.get(LABEL_GATEWAY)
            if fleet is not None and gateway is not None:
                self._sweep_secrets(fleet, gateway=gateway)

        await self._call("remove", container_id, remove, extra_timeout=self._stop_settle + 30.0)

    def _sweep_secrets(self, fleet: str, *, gateway: str | None = None) -> None:
        """Remove the fleet's secrets (of one gateway, whose actions run one at a time, so
        none is swept between its creation and its service's) that no service references."""
        used: set[str] = set()
        for service in self._api.services(filters={"label": f"{LABEL_FLEET}={fleet}"}):
            container = ((service.get("Spec") or {}).get("TaskTemplate") or {}).get(
                "ContainerSpec"
            ) or {}
            used.update(str(ref.get("SecretID")) for ref in container.get("Secrets") or [])
        for secret in self._api.secrets(filters={"label": f"{LABEL_FLEET}={fleet}"}):
            labels = (secret.get("Spec") or {}).get("Labels") or {}
            if gateway is not None and labels.get(LABEL_GATEWAY) != gateway:
                continue
            if str(secret["ID"]) not in used:
                # In use by a task still shutting down: the next sweep takes it.
                with contextlib.suppress(docker.errors.APIError):
                    self._api.remove_secret(str(secret["ID"]))

    async def sweep_secrets(self, fleet: str) -> None:
        """Remove the fleet's unused secrets (``ibfleet down``, a test's finalizer; not while a
        supervisor creates gateways: a secret made for a service not yet created is unused)."""
        await self._call("secrets", fleet, lambda: self._sweep_secrets(fleet))

    async def teardown(self, fleet: str) -> None:
        """The fleet's leftovers once its services are gone: its unused secrets (idempotent)."""
        await self.sweep_secrets(fleet)

    # -- streams -----------------------------------------------------------------------------

    async def follow_logs(self, container_id: str) -> AsyncIterator[str]:
        """The current task's lines since it started, each with its RFC 3339 time."""

        def current() -> tuple[str | None, int | None]:
            _service, tasks = self._observe_one(container_id)
            task = current_task(tasks)
            if task is None:
                return None, None
            status = task.get("Status")
            stamp = status.get("Timestamp") if isinstance(status, Mapping) else None
            return str(task.get("ID")), parse_docker_time_ns(str(stamp or ""))

        task_id, started_ns = await self._call("logs", container_id, current)
        if started_ns is None:
            return
        earliest_ns = started_ns - round(START_STAMP_TOLERANCE.total_seconds() * 1e9)
        raw_lines = stream_lines(
            lambda: self._api.service_logs(
                container_id,
                details=True,
                follow=True,
                stdout=True,
                stderr=True,
                timestamps=True,
                since=max(0, int(earliest_ns / 1e9) - 1),
                is_tty=False,
            ),
            name=container_id[:12],
        )
        async with contextlib.aclosing(raw_lines):
            async for raw in raw_lines:
                line = log_line(raw, task_id=task_id)
                if line is None:
                    continue
                at = parse_docker_time_ns(line.partition(" ")[0])
                if at is not None and at < earliest_ns:
                    continue
                yield line

    async def events(self, *, fleet: str) -> AsyncIterator[RuntimeEvent]:
        """The fleet's start/die/destroy events, from polling its tasks and the nodes."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[RuntimeEvent] = asyncio.Queue()
        done = threading.Event()

        def poll() -> dict[str, TaskView]:
            services = self._fleet_services(fleet)
            tasks = self._tasks_of([str(s["ID"]) for s in services])
            return snapshot(services, tasks, down_nodes=self._down_nodes())

        def pump(first: dict[str, TaskView]) -> None:
            before = first
            while not done.wait(self._poll_interval):
                try:
                    after = poll()
                except Exception as exc:
                    log.warning(
                        "runtime_events_poll_failed fleet=%s error=%s", fleet, type(exc).__name__
                    )
                    continue
                for event in task_events(before, after, now=datetime.now(tz=UTC)):
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(queue.put_nowait, event)
                before = after

        # Events from the moment of subscribing on: the first snapshot is the baseline.
        first = await self._call("events", fleet, poll)
        thread = threading.Thread(
            target=pump, args=(first,), name=f"ibfleet-swarm-events-{fleet}", daemon=True
        )
        thread.start()
        try:
            while True:
                yield await queue.get()
        finally:
            done.set()


def _on_its_way(task: Mapping[str, Any], down_nodes: frozenset[str]) -> bool:
    """Whether the task runs or is being started (a start then needs nothing more)."""
    state = str((task.get("Status") or {}).get("State") or "")
    if task.get("DesiredState") not in TO_RUN:
        return False
    if state == "running":
        return task_is_live(task, down_nodes)
    return state in ON_THE_WAY
