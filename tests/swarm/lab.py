"""A throwaway multi-node Docker Swarm on this host: Docker-in-Docker nodes on a private bridge.

Interface (for tests of ibfleet's Swarm runtime and the node-loss benchmark):

* Fixture ``swarm_lab`` (session scope, tests/swarm/conftest.py): a started :class:`SwarmLab`
  of three nodes with the simulator image (``IBFLEET_TEST_IMAGE_TAG``) loaded into each. Mark
  tests ``docker``, ``slow`` and ``swarm``. Tests share the cluster: remove the services,
  secrets and networks you create (or give them unique names). Tests outside tests/swarm may
  re-export the fixture (``from tests.swarm.conftest import swarm_lab``): :func:`shared_lab`
  keeps it to one cluster per process.
* ``lab.manager`` -> ``docker.DockerClient`` of a live manager (every node is a manager; the
  property skips killed nodes). ``lab.manager_url`` is its ``tcp://IP:2375`` base URL, for code
  that builds its own client (ibfleet's Swarm runtime). ``node.client`` is one node's client.
* ``lab.nodes``: :class:`LabNode` ``n1``, ``n2``, ``n3`` with ``.name`` (container and swarm
  hostname), ``.node_id`` (swarm node id), ``.ip`` (reachable from the host), ``.zone``;
  ``lab.node("n2")``, ``lab.node_by_id(id)``, ``lab.node_in_zone("b")``.
* Node labels: ``ibfleet.zone`` = ``a`` / ``b`` / ``c`` for n1 / n2 / n3 (place with
  ``node.labels.ibfleet.zone==b``). n1 is the first manager and the Raft leader at start;
  ``lab.leader()`` is the leader now. Killing the leader's node costs an election (Raft's
  10 ticks of 1 s, 18-20 s seen under load) before Swarm reacts to anything: tests that do
  are marked ``@pytest.mark.swarm(kills_leader=True)`` and run last in the session.
* ``lab.overlay``: the name of an attachable overlay network (``ibfleet-lab``) made at start.
* ``lab.load_image(tag)`` -> image id: ``docker save`` from the host's engine, loaded into each
  node's engine (skipped where the id is present). ``lab.sim_image`` / ``lab.sim_image_id``
  is the simulator's. Put the image *id* in service specs: with a tag, every task start makes
  the node try a registry pull first (there is none), with an id the engine skips the pull.
* ``lab.kill(node)`` SIGKILLs the whole dind container (returns ``time.monotonic()`` at the
  kill); ``lab.restart(node)`` starts it again (same IP, same swarm state) and waits until the
  swarm sees it ready. The fixture restarts killed nodes after the session's tests only at
  teardown, so a test that kills a node should restart it when done.
* Waits (deadline-bound, tests/waiting.py): ``wait_node_state(node, "down"|"ready")``,
  ``running_tasks(service)``, ``wait_task_running(service, not_on=(...))`` -> LabNode,
  ``published_endpoint(service)`` -> (node IP, published port) of its running task.

Networking on this kernel: it has no IPVS, so Swarm's routing mesh and VIP load balancing do
not work. Services use ``endpoint_spec=EndpointSpec(mode="dnsrr", ports={P: (T, "tcp",
"host")})``: the overlay's DNS names the task's own address, and the host reaches a gateway on
``<node IP>:P`` of the node its task runs on (which is also what a failover should look like:
the API moves with the task). Give each service its own published port so a rescheduled task
can land on a node that already runs another. Nor does it have IPsec ESP (CONFIG_INET_ESP),
so an overlay made with ``encrypted`` carries no traffic between nodes here (tried: an HTTP
request from a task on n3 to one on n2 answers on a plain overlay, times out on an encrypted
one); the lab's overlays are plain. A task rescheduled onto a node with no task on its overlay
yet starts ~12 s later than onto one that has (measured: a sleeper with no network 3.8 s from
the kill to running, on the overlay 14.6 s, the node declared down at ~2.5 s in both).

Swarm shape: three managers, so losing any one node keeps the Raft quorum (2 of 3) and the
test may kill whichever node runs the primary gateway, even a manager, with the control plane
still answering (one manager and two workers would forbid killing the manager's node). The
dispatcher heartbeat is 1 s instead of Docker's 5 s: a node is declared down after about three
missed heartbeats (swarmkit's grace multiplier), so a killed node is noticed in ~3 s, not 15 s.

The nodes are not privileged containers: this host's capability bounding set lacks
CAP_SYS_RESOURCE, which ``--privileged`` requests, so a node gets every other capability, no
seccomp/AppArmor profile and every device, and mounts its own /proc and remounts /sys and its
cgroups writable itself (tests/swarm/node/entrypoint.sh).

Everything a lab makes (containers, volumes, the bridge) carries the label
``io.ibfleet.swarmlab=<run id>`` and its owner's pid; :func:`sweep_leftovers` removes the labs
of processes that no longer exist (a crashed earlier run), never a live run's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container
from docker.types import IPAMConfig, IPAMPool

from tests.swarm.node_image import ensure_node_image
from tests.waiting import wait_until

log = logging.getLogger("tests.swarm")

LABEL = "io.ibfleet.swarmlab"
LABEL_PID = "io.ibfleet.swarmlab.pid"
LABEL_HOST = "io.ibfleet.swarmlab.host"
ZONE_LABEL = "ibfleet.zone"
ZONES = ("a", "b", "c")
OVERLAY = "ibfleet-lab"
ENGINE_PORT = 2375
SWARM_PORT = 2377
#: The lab bridges' /24s come from here; the overlays' from a pool that cannot overlap them.
BRIDGE_RANGE = "10.200"
OVERLAY_POOL = "10.201.0.0/16"
HEARTBEAT_S = 1.0
NODE_API_VERSION = "1.41"


@dataclass
class LabNode:
    """One dind node: its container on the host, its engine's client and its swarm identity."""

    key: str  # n1, n2, ...
    name: str  # container name and the swarm node's hostname
    ip: str
    zone: str
    volume: str
    container: Container
    client: docker.DockerClient
    node_id: str = ""
    alive: bool = True

    @property
    def url(self) -> str:
        return f"tcp://{self.ip}:{ENGINE_PORT}"


@dataclass
class SwarmLab:
    """Start with :meth:`start`, always :meth:`close` (also after a failed start)."""

    host: docker.DockerClient
    size: int = 3
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    nodes: list[LabNode] = field(default_factory=list)
    network: str = ""
    subnet: str = ""
    sim_image: str = ""
    sim_image_id: str = ""
    overlay: str = OVERLAY
    _loaded: dict[str, str] = field(default_factory=dict)

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def labels(self) -> dict[str, str]:
        return {
            LABEL: self.run_id,
            LABEL_PID: str(os.getpid()),
            LABEL_HOST: socket.gethostname(),
            "io.ibfleet.test": "1",
        }

    def start(self, *, timeout: float = 180.0) -> SwarmLab:
        """Make the bridge and nodes, form the swarm, label the nodes, make the overlay."""
        if not 1 <= self.size <= len(ZONES):
            raise ValueError(f"SwarmLab size must be 1..{len(ZONES)}, got {self.size}")
        image = ensure_node_image(self.host)
        octet = self._make_bridge()
        for index in range(1, self.size + 1):
            ip = f"{BRIDGE_RANGE}.{octet}.{10 + index}"
            self.nodes.append(self._start_node(image, index, ip))
        for node in self.nodes:
            wait_until(lambda n=node: _pings(n.client), timeout=60, what=f"{node.name}'s engine")
        self._form_swarm(timeout=timeout)
        return self

    def _make_bridge(self) -> int:
        name = f"ibfleet-swarmlab-{self.run_id}"
        octets = list(range(1, 255))
        random.shuffle(octets)
        for octet in octets:
            subnet = f"{BRIDGE_RANGE}.{octet}.0/24"
            ipam = IPAMConfig(
                pool_configs=[IPAMPool(subnet=subnet, gateway=f"{BRIDGE_RANGE}.{octet}.1")]
            )
            try:
                self.host.networks.create(name, driver="bridge", ipam=ipam, labels=self.labels)
            except docker.errors.APIError as exc:
                # Another lab (or any network) holds this /24: try the next.
                if "overlap" in str(exc).lower():
                    continue
                raise
            self.network, self.subnet = name, subnet
            return octet
        raise RuntimeError(f"no free /24 in {BRIDGE_RANGE}.0.0/16 for a Swarm lab bridge")

    def _start_node(self, image: str, index: int, ip: str) -> LabNode:
        name = f"ibfleet-swarmlab-{self.run_id}-n{index}"
        volume = self.host.volumes.create(name=name, labels=self.labels).name
        container = self.host.containers.run(
            image,
            detach=True,
            name=name,
            hostname=name,
            labels=self.labels,
            # Not --privileged: see the module docstring.
            cap_add=["ALL"],
            cap_drop=["SYS_RESOURCE"],
            security_opt=["seccomp=unconfined", "apparmor=unconfined"],
            device_cgroup_rules=["a *:* rwm"],
            cgroupns="private",
            volumes={volume: {"bind": "/var/lib/docker", "mode": "rw"}},
            network=self.network,
            networking_config={self.network: self.host.api.create_endpoint_config(ipv4_address=ip)},
        )
        # Debian bookworm's engine speaks API 1.41; asking it would need the engine up already.
        client = docker.DockerClient(
            base_url=f"tcp://{ip}:{ENGINE_PORT}", version=NODE_API_VERSION, timeout=120
        )
        return LabNode(
            key=f"n{index}",
            name=name,
            ip=ip,
            zone=ZONES[index - 1],
            volume=volume,
            container=container,
            client=client,
        )

    def _form_swarm(self, *, timeout: float) -> None:
        first = self.nodes[0]
        first.client.swarm.init(
            advertise_addr=first.ip,
            listen_addr=f"0.0.0.0:{SWARM_PORT}",
            default_addr_pool=[OVERLAY_POOL],
            subnet_size=24,
            # See the module docstring: a dead node noticed in ~3 heartbeats of 1 s.
            dispatcher_heartbeat_period=int(HEARTBEAT_S * 1e9),
            task_history_retention_limit=2,
        )
        first.client.swarm.reload()
        token = first.client.swarm.attrs["JoinTokens"]["Manager"]
        for node in self.nodes[1:]:
            node.client.swarm.join(
                remote_addrs=[f"{first.ip}:{SWARM_PORT}"],
                join_token=token,
                listen_addr=f"0.0.0.0:{SWARM_PORT}",
                advertise_addr=node.ip,
            )
        by_host = {n.name: n for n in self.nodes}

        def all_ready() -> bool:
            listed = first.client.nodes.list()
            ready = [
                n
                for n in listed
                if n.attrs["Status"]["State"] == "ready"
                and n.attrs.get("ManagerStatus", {}).get("Reachability") == "reachable"
            ]
            return len(ready) == self.size

        wait_until(all_ready, timeout=timeout, what="every lab node ready and reachable")
        for swarm_node in first.client.nodes.list():
            node = by_host[swarm_node.attrs["Description"]["Hostname"]]
            node.node_id = swarm_node.id
            spec = dict(swarm_node.attrs["Spec"])
            spec["Labels"] = {**spec.get("Labels", {}), ZONE_LABEL: node.zone}
            swarm_node.update(spec)
        first.client.networks.create(
            OVERLAY, driver="overlay", attachable=True, labels={LABEL: self.run_id}
        )

    def close(self) -> None:
        """Remove every node (killing it), its volume and the bridge; never raises."""
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.client.close()
        remove_lab(self.host, self.run_id)

    # -- images ---------------------------------------------------------------------------------

    def load_image(self, tag: str) -> str:
        """Copy ``tag`` from the host's engine into every live node; return the image id."""
        image_id = str(self.host.images.get(tag).id)
        missing = [n for n in self.nodes if n.alive and not _has_image(n.client, image_id)]
        if missing:
            with tempfile.TemporaryDirectory(prefix="ibfleet-swarmlab-") as tmp:
                archive = Path(tmp) / "image.tar"
                with archive.open("wb") as out:
                    for chunk in self.host.api.get_image(tag):
                        out.write(chunk)
                errors: list[BaseException] = []

                def load(node: LabNode) -> None:
                    try:
                        with archive.open("rb") as src:
                            node.client.images.load(src)
                    except BaseException as exc:  # reported after every thread has finished
                        errors.append(exc)

                threads = [threading.Thread(target=load, args=(n,)) for n in missing]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                if errors:
                    raise RuntimeError(f"loading {tag} into the lab's nodes failed: {errors[0]}")
        for node in missing:
            if not _has_image(node.client, image_id):
                raise RuntimeError(f"{node.name} does not hold {tag} ({image_id}) after loading")
        self._loaded[tag] = image_id
        return image_id

    # -- nodes ----------------------------------------------------------------------------------

    @property
    def manager(self) -> docker.DockerClient:
        """A live manager's client (n1 unless it was killed)."""
        return self._live_manager().client

    @property
    def manager_url(self) -> str:
        return self._live_manager().url

    def _live_manager(self) -> LabNode:
        for node in self.nodes:
            if node.alive:
                return node
        raise RuntimeError("every node of the Swarm lab is down")

    def node(self, key: str) -> LabNode:
        for node in self.nodes:
            if key in (node.key, node.name):
                return node
        raise KeyError(f"no lab node {key!r} (have {[n.key for n in self.nodes]})")

    def node_by_id(self, node_id: str) -> LabNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no lab node with swarm id {node_id!r}")

    def node_in_zone(self, zone: str) -> LabNode:
        for node in self.nodes:
            if node.zone == zone:
                return node
        raise KeyError(f"no lab node in zone {zone!r}")

    def leader(self) -> LabNode:
        """The node that leads the Raft group now (n1 until a test kills it)."""
        for swarm_node in self.manager.nodes.list():
            if (swarm_node.attrs.get("ManagerStatus") or {}).get("Leader"):
                return self.node_by_id(swarm_node.id)
        raise RuntimeError("the Swarm lab has no Raft leader right now")

    def kill(self, node: LabNode) -> float:
        """SIGKILL the node's whole container (engine, its containers); return when (monotonic)."""
        node.container.kill()
        killed = time.monotonic()
        node.alive = False
        return killed

    def restart(self, node: LabNode, *, timeout: float = 90.0) -> None:
        """Start a killed node again and wait until the swarm has it ready."""
        node.container.start()
        wait_until(lambda: _pings(node.client), timeout=60, what=f"{node.name}'s engine again")
        node.alive = True
        self.wait_node_state(node, "ready", timeout=timeout)

    def node_state(self, node: LabNode) -> str:
        return str(self.manager.nodes.get(node.node_id).attrs["Status"]["State"])

    def wait_node_state(self, node: LabNode, state: str, *, timeout: float = 30.0) -> None:
        wait_until(
            lambda: _quiet(lambda: self.node_state(node)) == state,
            timeout=timeout,
            what=f"swarm node {node.name} {state}",
        )

    # -- services -------------------------------------------------------------------------------

    def running_tasks(self, service: str) -> list[dict[str, Any]]:
        """The service's tasks that run and are meant to."""
        tasks = self.manager.services.get(service).tasks()
        return [
            t for t in tasks if t["Status"]["State"] == "running" and t["DesiredState"] == "running"
        ]

    def wait_task_running(
        self, service: str, *, not_on: Iterable[LabNode] = (), timeout: float = 60.0
    ) -> LabNode:
        """Wait for a running task of ``service`` on a node not in ``not_on``; return its node."""
        excluded = {n.node_id for n in not_on}

        def placed() -> LabNode | None:
            tasks = _quiet(lambda: self.running_tasks(service)) or []
            for task in tasks:
                if task.get("NodeID") and task["NodeID"] not in excluded:
                    return self.node_by_id(task["NodeID"])
            return None

        found: LabNode = wait_until(
            placed, timeout=timeout, what=f"a running task of {service}", step=0.2
        )
        return found

    def published_endpoint(self, service: str) -> tuple[str, int]:
        """(node IP, published port) where the host reaches the service's running task."""
        node = self.wait_task_running(service)
        ports = self.manager.services.get(service).attrs["Endpoint"].get("Ports") or [{}]
        return node.ip, int(ports[0]["PublishedPort"])


def _pings(client: docker.DockerClient) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # not up yet: the caller's wait retries until its deadline
        return False


def _quiet(call: Any) -> Any:
    # A manager answering "no leader" while a killed manager is voted out is a transient state.
    try:
        return call()
    except (docker.errors.APIError, docker.errors.DockerException, OSError):
        return None


def _has_image(client: docker.DockerClient, image_id: str) -> bool:
    try:
        client.images.get(image_id)
    except docker.errors.ImageNotFound:
        return False
    return True


def remove_lab(host: docker.DockerClient, run_id: str) -> None:
    """Remove one lab's containers, volumes and bridge from the host's engine."""
    selector = {"label": f"{LABEL}={run_id}"}
    for container in host.containers.list(all=True, filters=selector):
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            log.warning("swarmlab_cleanup container=%s error=%s", container.name, exc)
    for volume in host.volumes.list(filters=selector):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            volume.remove(force=True)
    for network in host.networks.list(filters=selector):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            network.remove()


def sweep_leftovers(host: docker.DockerClient) -> list[str]:
    """Remove the labs whose owning process on this host is gone; return their run ids."""
    owners: dict[str, tuple[str, str]] = {}
    for item in (
        *host.containers.list(all=True, filters={"label": LABEL}),
        *host.networks.list(filters={"label": LABEL}),
        *host.volumes.list(filters={"label": LABEL}),
    ):
        labels = item.attrs.get("Labels") or item.attrs.get("Config", {}).get("Labels") or {}
        owners.setdefault(labels[LABEL], (labels.get(LABEL_PID, ""), labels.get(LABEL_HOST, "")))
    gone = [
        run
        for run, (pid, hostname) in owners.items()
        if hostname == socket.gethostname() and not _alive(pid)
    ]
    for run in gone:
        log.info("swarmlab_sweep run=%s", run)
        remove_lab(host, run)
    return gone


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


_SHARED: dict[str, Any] = {"lab": None, "users": 0}


@contextlib.contextmanager
def shared_lab(host: docker.DockerClient, sim_image: str) -> Iterator[SwarmLab]:
    """One started lab per process, however many fixtures ask for it; closed with the last.

    A test module elsewhere that re-exports the ``swarm_lab`` fixture defines a second session
    fixture: both come here and share one cluster instead of starting two.
    """
    if _SHARED["lab"] is None:
        sweep_leftovers(host)
        lab = SwarmLab(host)
        started = time.monotonic()
        try:
            lab.start()
            lab.sim_image = sim_image
            lab.sim_image_id = lab.load_image(sim_image)
        except BaseException:
            lab.close()
            raise
        log.info("swarm_lab_ready run=%s seconds=%.1f", lab.run_id, time.monotonic() - started)
        _SHARED["lab"] = lab
    _SHARED["users"] += 1
    try:
        yield _SHARED["lab"]
    finally:
        _SHARED["users"] -= 1
        if _SHARED["users"] == 0:
            done, _SHARED["lab"] = _SHARED["lab"], None
            done.close()
