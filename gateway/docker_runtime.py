"""The Docker adapter behind :class:`gateway.runtime.Runtime`, on the docker SDK.

Every blocking SDK call runs in a bounded thread pool under a deadline, so a hung engine call
for one container never stalls the event loop or the other gateways. Log and event streams run
in threads of their own and feed asyncio queues; the event stream reconnects (resuming from the
last event's time) when the engine drops it.

Secrets: the spec's secret files are copied with ``put_archive`` into the created-but-not-started
container (:mod:`gateway.secret_files`). Nothing of them shows in ``docker inspect``: not in the
environment (only ``*_FILE`` paths are), and not as a bind mount (whose host path inspect would
show and whose host file would have to be readable by the container's uid). The files live and
die with the container's writable layer, so no host copy is ever left behind.

Isolation (which networks are adopted, the fleet's firewall rules) is
:mod:`gateway.docker_isolation`; the engine's replies are read by :mod:`gateway.docker_replies`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions

from gateway.aio import within
from gateway.docker_isolation import (
    ICC_OPTION,
    Firewall,
    FleetIsolation,
    binding_problem,
    network_problem,
)
from gateway.docker_replies import (
    EVENT_KINDS,
    event_from,
    observe,
    observe_summary,
    parse_docker_time_ns,
)
from gateway.firewall import Iptables
from gateway.ibc_ini import with_control_from
from gateway.log_stream import stream_lines
from gateway.runtime import (
    START_STAMP_TOLERANCE,
    ContainerGone,
    ObservedContainer,
    RuntimeEvent,
    RuntimeFailure,
)
from gateway.secret_files import secret_owner, secrets_tar
from gateway.spec import COMMAND_SERVER_PORT, LABEL_FLEET, SECRETS_DIR, ContainerSpec

__all__ = ["DockerRuntime", "FleetNetworks", "engine_call"]

log = logging.getLogger(__name__)
T = TypeVar("T")


async def engine_call(
    pool: concurrent.futures.Executor,
    fn: Callable[[], T],
    *,
    op: str,
    target: str,
    timeout: float,
) -> T:
    """Run one blocking engine call in ``pool`` under ``timeout``; the SDK's errors come back
    as :class:`RuntimeFailure` (:class:`ContainerGone` when the object is not found)."""
    loop = asyncio.get_running_loop()
    try:
        return await within(loop.run_in_executor(pool, fn), timeout=timeout)
    except docker.errors.NotFound as exc:
        raise ContainerGone(
            f"{op} {target}: not found ({exc.explanation})", operation=op, container=target
        ) from None
    except docker.errors.APIError as exc:
        raise RuntimeFailure(
            f"{op} {target}: engine refused ({exc.status_code}: {exc.explanation})",
            operation=op,
            container=target,
        ) from None
    except (
        TimeoutError,
        requests.exceptions.RequestException,
        docker.errors.DockerException,
    ) as exc:
        raise RuntimeFailure(
            f"{op} {target}: {type(exc).__name__} {exc}".rstrip(),
            operation=op,
            container=target,
        ) from None


class FleetNetworks:
    """The fleet's networks, as ``ibfleet fleet down`` lists and removes them (both runtimes)."""

    _api: Any
    _networks_ready: set[str]

    async def _call(
        self, op: str, target: str, fn: Callable[[], T], *, extra_timeout: float = 0.0
    ) -> T:
        raise NotImplementedError

    async def fleet_networks(self, *, fleet: str) -> tuple[str, ...]:
        """The networks labelled as the fleet's: the ones the runtime created for it."""

        def names() -> tuple[str, ...]:
            found = self._api.networks(filters={"label": f"{LABEL_FLEET}={fleet}"})
            return tuple(sorted(str(n["Name"]) for n in found))

        return await self._call("networks", fleet, names)

    async def remove_network(self, name: str) -> None:
        """Remove a network (the engine refuses while anything is still attached)."""
        await self._call("network-remove", name, lambda: self._api.remove_network(name))
        self._networks_ready.discard(name)


class DockerRuntime(FleetNetworks):
    """:class:`gateway.runtime.Runtime` on a Docker engine."""

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        call_timeout: float = 60.0,
        max_workers: int = 16,
        event_retry: float = 1.0,
        isolate: bool = True,
        firewall: Firewall | None = None,
        supervisor_container: str | None = None,
        host_uids: tuple[int, ...] | None = None,
    ) -> None:
        """``isolate`` (the default) creates fleet networks without inter-container traffic
        and keeps the fleet's iptables rules (``firewall``, the host's iptables unless given);
        a gateway whose rules cannot be applied is not created. ``supervisor_container`` names
        the container the supervisor runs in, if any: it is attached to the fleet network and
        its address there is what ControlFrom and the rules admit. ``host_uids`` are the host
        users admitted (default: this process's uid, and root, which runs the engine's proxy).
        """
        self._isolate = isolate
        self._supervisor_container = supervisor_container
        uids = host_uids if host_uids is not None else tuple(sorted({0, os.getuid()}))
        self._isolation = (
            FleetIsolation(client.api, firewall or Iptables(), host_uids=uids) if isolate else None
        )
        self._network_subnets: dict[str, tuple[str, ...]] = {}
        self._supervisor_sources: dict[str, tuple[str, ...]] = {}
        self._client = client
        self._api = client.api
        self._call_timeout = call_timeout
        self._event_retry = event_retry
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="ibfleet-docker"
        )
        self._network_locks: dict[str, asyncio.Lock] = {}
        self._networks_ready: set[str] = set()
        # Each fleet network's gateway IPs: where the supervisor's connections into it come from.
        self._network_gateways: dict[str, tuple[str, ...]] = {}
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

    # -- observe -----------------------------------------------------------------------------

    async def list(self, *, fleet: str) -> list[ObservedContainer]:
        prefix = f"ibfleet-{fleet}-"

        def summaries() -> list[dict[str, Any]]:
            labelled = self._api.containers(all=True, filters={"label": f"{LABEL_FLEET}={fleet}"})
            named = self._api.containers(all=True, filters={"name": prefix})
            seen: dict[str, dict[str, Any]] = {}
            for item in [*labelled, *named]:
                names = [str(n).lstrip("/") for n in item.get("Names") or []]
                is_ours = (item.get("Labels") or {}).get(LABEL_FLEET) == fleet
                if is_ours or any(n.startswith(prefix) for n in names):
                    seen[item["Id"]] = item
            return list(seen.values())

        items = await self._call("list", fleet, summaries)

        async def detail(item: dict[str, Any]) -> ObservedContainer | None:
            try:
                return await self.inspect(item["Id"])
            except ContainerGone:
                return None  # removed between the listing and the inspect
            except RuntimeFailure:
                return observe_summary(item)  # still tell reconcile that it exists

        found = await asyncio.gather(*(detail(item) for item in items))
        return [c for c in found if c is not None]

    async def inspect(self, container_id: str) -> ObservedContainer:
        attrs = await self._call(
            "inspect", container_id, lambda: self._api.inspect_container(container_id)
        )
        return observe(attrs)

    async def command_address(self, container_id: str) -> tuple[str, int] | None:
        """The container's IP on its (fleet) network and IBC's 7462; the host reaches bridge
        networks directly on Linux, so the command server needs no published port."""
        attrs = await self._call(
            "inspect", container_id, lambda: self._api.inspect_container(container_id)
        )
        if not (attrs.get("State") or {}).get("Running"):
            return None
        networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
        mode = str((attrs.get("HostConfig") or {}).get("NetworkMode") or "")
        ordered = sorted(networks.items(), key=lambda item: (item[0] != mode, item[0]))
        for _name, endpoint in ordered:
            address = str((endpoint or {}).get("IPAddress") or "")
            if address:
                return address, COMMAND_SERVER_PORT
        return None

    # -- act ---------------------------------------------------------------------------------

    async def _ensure_network(self, name: str, *, fleet: str) -> None:
        if name in self._networks_ready:
            return
        lock = self._network_locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name in self._networks_ready:
                return

            def ensure() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
                existing = [n for n in self._api.networks(names=[name]) if n.get("Name") == name]
                if not existing:
                    options = {ICC_OPTION: "false"} if self._isolate else None
                    # IPv4 only, whatever the engine's defaults: the rules filter IPv4.
                    self._api.create_network(
                        name,
                        driver="bridge",
                        labels={LABEL_FLEET: fleet},
                        options=options,
                        enable_ipv6=False,
                        check_duplicate=True,
                    )
                    log.info("runtime_network_created network=%s fleet=%s", name, fleet)
                attrs = self._api.inspect_network(name)
                problem = network_problem(attrs, fleet=fleet, isolate=self._isolate)
                if problem is not None:
                    raise RuntimeFailure(
                        f"network {name}: {problem}", operation="network", container=name
                    )
                configs = (attrs.get("IPAM") or {}).get("Config") or []
                gateways = tuple(str(c["Gateway"]) for c in configs if c.get("Gateway"))
                subnets = tuple(str(c["Subnet"]) for c in configs if c.get("Subnet"))
                sources = self._attach_supervisor(name) if self._supervisor_container else ()
                return gateways, subnets, sources

            gateways, subnets, sources = await self._call("network", name, ensure)
            self._network_gateways[name] = gateways
            self._network_subnets[name] = subnets
            self._supervisor_sources[name] = sources
            self._networks_ready.add(name)

    def _attach_supervisor(self, network: str) -> tuple[str, ...]:
        """The supervisor's container on the fleet network (attached if it is not): its IPs."""
        assert self._supervisor_container is not None
        attrs = self._api.inspect_container(self._supervisor_container)
        networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
        if network not in networks:
            self._api.connect_container_to_network(self._supervisor_container, network)
            attrs = self._api.inspect_container(self._supervisor_container)
            networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
        endpoint = networks.get(network) or {}
        return tuple(a for a in (str(endpoint.get("IPAddress") or ""),) if a)

    def control_sources(self, network: str) -> tuple[str, ...]:
        """Where the supervisor's connections into ``network`` come from: its own container's
        address there when it runs in one, else the network's gateway IP (the host's side)."""
        return self._supervisor_sources.get(network) or self._network_gateways.get(network, ())

    async def network_gateways(self, name: str, *, fleet: str) -> tuple[str, ...]:
        """The fleet network's gateway IPs (created if missing): the host's side of it."""
        await self._ensure_network(name, fleet=fleet)
        return self._network_gateways.get(name, ())

    async def _owner(self, image: str) -> tuple[int, int, int]:
        if image not in self._owners:
            attrs = await self._call("inspect-image", image, lambda: self._api.inspect_image(image))
            user = str((attrs.get("Config") or {}).get("User") or "")
            self._owners[image] = secret_owner(user)
        return self._owners[image]

    async def create(self, spec: ContainerSpec) -> str:
        problems = [binding_problem(p) for p in spec.ports] if self._isolate else []
        for problem in problems:
            if problem is not None:
                raise RuntimeFailure(
                    f"create {spec.name}: {problem}", operation="create", container=spec.name
                )
        await self._ensure_network(spec.network, fleet=spec.fleet)
        # ControlFrom admits exactly where the supervisor's IBC commands come from.
        spec = with_control_from(spec, self.control_sources(spec.network))
        uid, gid, mode = await self._owner(spec.image)
        hard = spec.hardening
        # A read-only root takes no archive: the secrets go into a volume of their own.
        base = SECRETS_DIR if hard.read_only_root else "/"
        archive = secrets_tar(spec, uid=uid, gid=gid, mode=mode, base=base)

        def create() -> str:
            host_config = self._api.create_host_config(
                port_bindings={
                    f"{p.container_port}/tcp": (p.host_ip, p.host_port) for p in spec.ports
                },
                mem_limit=spec.memory_bytes,
                memswap_limit=spec.memory_swap_bytes,
                restart_policy={"Name": spec.restart_policy},
                network_mode=spec.network,
                cap_drop=list(hard.cap_drop),
                cap_add=list(hard.cap_add) or None,
                security_opt=list(hard.security_opt) or None,
                pids_limit=hard.pids_limit,
                nano_cpus=hard.nano_cpus,
                read_only=hard.read_only_root,
                tmpfs=dict(hard.tmpfs) if hard.read_only_root else None,
                log_config={
                    "Type": "json-file",
                    "Config": {
                        "max-size": hard.log_max_size,
                        "max-file": str(hard.log_max_files),
                    },
                },
            )
            networking = self._api.create_networking_config(
                {spec.network: self._api.create_endpoint_config(aliases=list(spec.network_aliases))}
            )
            result = self._api.create_container(
                spec.image,
                command=list(spec.command) if spec.command is not None else None,
                entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
                name=spec.name,
                environment=spec.env_map,
                labels=spec.label_map,
                ports=[p.container_port for p in spec.ports],
                host_config=host_config,
                networking_config=networking,
                volumes=[SECRETS_DIR] if hard.read_only_root else None,
                detach=True,
            )
            container_id = str(result["Id"])
            try:
                if spec.files and not self._api.put_archive(container_id, base, archive):
                    raise RuntimeFailure(
                        f"create {spec.name}: the engine refused the secret files",
                        operation="create",
                        container=spec.name,
                    )
                # The rules include this container before it can ever start.
                self._guard(spec.fleet, spec.network)
            except BaseException:
                # Never leave a container that would start without its credentials or rules.
                with contextlib.suppress(docker.errors.DockerException):
                    self._api.remove_container(container_id, force=True, v=True)
                raise
            return container_id

        container_id = await self._call("create", spec.name, create)
        log.info("runtime_created container=%s id=%s", spec.name, container_id[:12])
        return container_id

    async def start(self, container_id: str) -> None:
        await self._call("start", container_id, lambda: self._api.start(container_id))

    async def stop(self, container_id: str, *, timeout: float) -> None:
        await self._call(
            "stop",
            container_id,
            lambda: self._api.stop(container_id, timeout=int(timeout)),
            extra_timeout=timeout,
        )

    async def remove(self, container_id: str) -> None:
        def remove() -> None:
            labels: dict[str, str] = {}
            network = ""
            with contextlib.suppress(docker.errors.NotFound):
                attrs = self._api.inspect_container(container_id)
                labels = dict((attrs.get("Config") or {}).get("Labels") or {})
                network = str((attrs.get("HostConfig") or {}).get("NetworkMode") or "")
            self._api.remove_container(container_id, force=True, v=True)
            fleet = labels.get(LABEL_FLEET)
            if fleet is not None:
                self._guard(fleet, network)

        await self._call("remove", container_id, remove)

    async def rename(self, container_id: str, name: str) -> None:
        await self._call("rename", container_id, lambda: self._api.rename(container_id, name))

    # -- isolation ---------------------------------------------------------------------------

    def _guard(self, fleet: str, network: str) -> None:
        """Rebuild the fleet's rules from its containers (blocking; nothing without isolation)."""
        if self._isolation is not None:
            self._isolation.guard(
                fleet,
                network,
                subnets=self._network_subnets.get(network),
                supervisor_sources=self._supervisor_sources.get(network, ()),
            )

    async def teardown(self, fleet: str) -> None:
        """Remove the fleet's firewall rules (fleet down, a test's finalizer); idempotent."""
        isolation = self._isolation
        if isolation is not None:
            await self._call("firewall", fleet, lambda: isolation.remove(fleet))

    async def sweep(self) -> tuple[str, ...]:
        """Remove the rules of every fleet whose network is gone; the fleets swept."""
        isolation = self._isolation
        if isolation is None:
            return ()
        return await self._call("firewall", "sweep", isolation.sweep)

    async def restart(self, container_id: str, *, timeout: float) -> None:
        await self._call(
            "restart",
            container_id,
            lambda: self._api.restart(container_id, timeout=int(timeout)),
            extra_timeout=timeout,
        )

    # -- streams -----------------------------------------------------------------------------

    async def follow_logs(self, container_id: str) -> AsyncIterator[str]:
        """Lines since the container's current start, each with Docker's RFC 3339 time prefix.

        ``since`` narrows the engine's reply to a second before the earliest line kept; the
        timestamp filter then drops anything older than StartedAt less
        :data:`~gateway.runtime.START_STAMP_TOLERANCE` or not newer than the previous run's
        FinishedAt, so a line from before a restart never shows up as if it were new, and the
        container's first line, which Docker may stamp a few ms before StartedAt, is not lost.
        """
        attrs = await self._call(
            "logs", container_id, lambda: self._api.inspect_container(container_id)
        )
        state = attrs.get("State") or {}
        started_ns = parse_docker_time_ns(str(state.get("StartedAt", "")))
        if started_ns is None:
            return
        earliest_ns = started_ns - round(START_STAMP_TOLERANCE.total_seconds() * 1e9)
        # After a restart, FinishedAt is the earlier run's end: nothing stamped by that run
        # is new, however soon the container was started again.
        finished_ns = parse_docker_time_ns(str(state.get("FinishedAt", "")))
        if finished_ns is not None and finished_ns < started_ns:
            earliest_ns = max(earliest_ns, finished_ns + 1)
        lines = stream_lines(
            lambda: self._api.logs(
                container_id,
                stream=True,
                follow=True,
                timestamps=True,
                since=earliest_ns / 1e9 - 1.0,
            ),
            name=container_id[:12],
        )
        # Closed with this iterator (aclose, an early break), not when the GC finalises it.
        async with contextlib.aclosing(lines):
            async for line in lines:
                stamp, _, _rest = line.partition(" ")
                at = parse_docker_time_ns(stamp)
                if at is not None and at < earliest_ns:
                    continue
                yield line

    async def events(self, *, fleet: str) -> AsyncIterator[RuntimeEvent]:
        """This fleet's start/die/oom/destroy events; reconnects until the caller stops."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[RuntimeEvent] = asyncio.Queue()
        done = threading.Event()
        holder: dict[str, Any] = {}

        # Events from the moment of subscribing on, even if the thread connects a bit later.
        subscribed = time.time()

        def pump() -> None:
            since = subscribed
            while not done.is_set():
                try:
                    stream = self._api.events(
                        decode=True,
                        since=since,
                        filters={
                            "type": "container",
                            "label": f"{LABEL_FLEET}={fleet}",
                            "event": list(EVENT_KINDS),
                        },
                    )
                    holder["stream"] = stream
                    for item in stream:
                        if done.is_set():
                            return
                        event = event_from(item)
                        nanos = item.get("timeNano")
                        if isinstance(nanos, int):
                            # Resume just after this event if the stream breaks.
                            since = nanos / 1e9 + 1e-6
                        if event is not None:
                            with contextlib.suppress(RuntimeError):
                                loop.call_soon_threadsafe(queue.put_nowait, event)
                except Exception as exc:
                    if done.is_set():
                        return
                    log.warning(
                        "runtime_events_reconnect fleet=%s error=%s", fleet, type(exc).__name__
                    )
                done.wait(self._event_retry)

        thread = threading.Thread(target=pump, name=f"ibfleet-events-{fleet}", daemon=True)
        thread.start()
        try:
            while True:
                yield await queue.get()
        finally:
            done.set()
            stream = holder.get("stream")
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()
