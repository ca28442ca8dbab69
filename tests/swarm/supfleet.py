"""A simulator fleet supervised by ``ibfleet run`` from the supervisor image, as Swarm services
on the lab (what tests/swarm/test_fleet_on_swarm.py and test_standby_on_swarm.py share).

Where things run (n1 is the lab's first manager and Raft leader, never killed by these tests):
a supervisor on n1, the failover gw-b on n3 (zone c), the primary gw-a on n2 (constraint
zone!=a, so its replacement may go to n3), the broker on n1. The broker has no placement of its
own, so :meth:`Fleet.prepare` steers Swarm's spread scheduler (fewest tasks first) with idle
ballast tasks on n2 and n3; the tests check where everything landed before they kill anything.

The fleet's overlay network is made here, plain: the runtime creates an encrypted one by
default, and encrypted overlays carry nothing between the lab's nodes on this kernel (no IPsec
ESP; tests/swarm/lab.py). The runtime adopts a network carrying the fleet's label.

A supervisor service mounts its node's Docker socket (its group added, as deploy/swarm/stack.yml
does), reads the fleet file from a Swarm config and its secrets from Swarm secrets, carries the
``io.ibfleet.supervisor-of`` label (IBC's ControlFrom admits its address), and publishes its API
in host mode on its node, where the host reaches it. The broker's control API is bound to the
loopback of its task, so the broker's record is read from inside that task.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import docker
import docker.errors
import httpx
import pytest
import yaml
from docker.types import ConfigReference, EndpointSpec, Mount, Placement, SecretReference

from gateway.spec import LABEL_FLEET, LABEL_GATEWAY
from gateway.swarm_api import LABEL_SUPERVISOR_OF
from supervisor import cli_image
from supervisor.simfleet import BROKER_CONTROL_PORT, BROKER_GATEWAY
from tests.integration.conftest import PROJECT_ROOT, TEST_IMAGE_TAG
from tests.swarm.lab import LabNode, SwarmLab
from tests.waiting import wait_until

SUPERVISOR_TAG = f"ibfleet:{TEST_IMAGE_TAG.rpartition(':')[2] or 'test'}"
SECRETS = "/run/secrets/ibfleet"
GRACE_S = 2.0


@pytest.fixture(scope="session")
def supervisor_image_id(swarm_lab: SwarmLab, docker_client: docker.DockerClient) -> str:
    """The supervisor image built from this tree (cached), loaded into every node."""
    info = cli_image.build_supervisor_image(
        docker_client=docker_client, project_root=PROJECT_ROOT, tag=SUPERVISOR_TAG
    )
    return swarm_lab.load_image(info.tag)


PLACED = {"gw-a": "n2", "gw-b": "n3", BROKER_GATEWAY: "n1"}


def fleet_data(
    fleet: str, sim_image_id: str, *, storage: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The fleet file: two gateways of one account, the pinger on gw-a failing over to gw-b."""

    def gateway(name: str, start: int, constraint: str) -> dict[str, Any]:
        return {
            "name": name,
            "mode": "paper",
            "account": "DU7000001",
            "username": {"file": f"{SECRETS}/user-{name}"},
            "password": {"file": f"{SECRETS}/pass-{name}"},
            "api_port": 4100 + start,
            "memory_limit": "384m",
            "client_ids": {"start": start, "end": start + 48},
            "placement": {"constraints": [f"node.labels.ibfleet.zone{constraint}"]},
        }

    return {
        "fleet": fleet,
        "timezone": "UTC",
        "runtime": {"kind": "swarm", "network": f"ibfleet-{fleet}"},
        "simulator": {"enabled": True, "image": sim_image_id},
        "gateways": [gateway("gw-a", 1, "!=a"), gateway("gw-b", 50, "==c")],
        "strategies": [
            {
                "name": "pinger",
                "plugin": "pinger",
                "gateways": ["gw-a", "gw-b"],
                "client_id": 10,
                "safe_state": {"on_disconnect": "cancel", "grace": f"{GRACE_S:g}s"},
                # An order rests 4 s, then the next tick cancels it and the one after places.
                "params": {"interval_seconds": 4, "offset": 0.05},
            }
        ],
        "alerts": {"routes": [{"urls": ["console://"], "min_severity": "info"}]},
        "api": {"listen": "0.0.0.0:8710", "token": {"file": f"{SECRETS}/api-token"}},
        "storage": storage or {"path": "/var/lib/ibfleet/journal.sqlite"},
        "health": {"heartbeat_every": "500ms", "heartbeat_deadline": "1s"},
    }


class Fleet:
    """What one test made on the lab, and how to read the broker's record."""

    def __init__(self, lab: SwarmLab, name: str) -> None:
        self.lab = lab
        self.name = name
        self.made_services: list[str] = []
        self.made_secrets: list[str] = []
        self.made_configs: list[str] = []
        self._passwords: dict[str, str] = {}

    def password(self, gateway: str) -> str:
        """The simulated gateway's made-up password (the same for every supervisor)."""
        return self._passwords.setdefault(gateway, uuid.uuid4().hex)

    @property
    def client(self) -> docker.DockerClient:
        return self.lab.manager

    def service(self, gateway: str) -> str:
        """The gateway's service (its name carries a suffix; its labels say whose it is)."""
        labels = [f"{LABEL_FLEET}={self.name}", f"{LABEL_GATEWAY}={gateway}"]
        found = self.client.api.services(filters={"label": labels})
        if not found:
            raise docker.errors.NotFound(f"no service of {gateway} in fleet {self.name}")
        return str(found[0]["Spec"]["Name"])

    def node_of(self, service: str) -> str:
        tasks = self.lab.running_tasks(service)
        assert tasks, f"{service} runs no task"
        return self.lab.node_by_id(tasks[0]["NodeID"]).key

    def broker_orders(self) -> list[dict[str, Any]]:
        """The broker's orders, read inside its task (its control API is bound to loopback)."""
        task = self.lab.running_tasks(self.service(BROKER_GATEWAY))[0]
        node = self.lab.node_by_id(task["NodeID"])
        container = node.client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
        script = (
            "import urllib.request,sys;sys.stdout.write(urllib.request.urlopen("
            f"'http://127.0.0.1:{BROKER_CONTROL_PORT}/orders',timeout=5).read().decode())"
        )
        out = container.exec_run(["python3", "-c", script])
        assert out.exit_code == 0, out.output.decode()[-2000:]
        rows: list[dict[str, Any]] = json.loads(out.output)
        return rows

    def remove(self) -> None:
        api = self.client.api
        labelled = {"label": f"{LABEL_FLEET}={self.name}"}
        # The supervisors first, and gone, so that none recreates a gateway removed under it.
        made_ids = set()
        for name in self.made_services:
            with contextlib.suppress(docker.errors.NotFound):
                made_ids.add(api.inspect_service(name)["ID"])
                api.remove_service(name)

        def tasks_gone() -> bool:
            return not any(
                t
                for t in api.tasks()
                if t["ServiceID"] in made_ids
                and t["Status"]["State"]
                in ("running", "starting", "preparing", "assigned", "accepted", "pending")
            )

        with contextlib.suppress(AssertionError):
            wait_until(tasks_gone, 90, what="the supervisors' tasks gone", step=0.5)
        for item in api.services(filters={"label": f"{LABEL_FLEET}={self.name}"}):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_service(item["ID"])

        def no_services() -> bool:
            return not api.services(filters={"name": f"ibfleet-{self.name}-"})

        with contextlib.suppress(AssertionError):
            wait_until(no_services, 60, what="the fleet's services gone", step=0.5)
        # A secret, config or network in use by a task still stopping refuses removal: retry.
        gone = [(api.remove_secret, item["ID"]) for item in api.secrets(filters=labelled)]
        gone += [(api.remove_secret, ident) for ident in self.made_secrets]
        gone += [(api.remove_config, ident) for ident in self.made_configs]
        gone += [(api.remove_network, n["Id"]) for n in api.networks(names=[self.network])]
        for remove, ident in gone:
            with contextlib.suppress(AssertionError):
                wait_until(partial(_removed, remove, ident), 60, what=f"{ident} gone", step=1)

    @property
    def network(self) -> str:
        return f"ibfleet-{self.name}"


def _removed(remove: Any, ident: str) -> bool:
    try:
        remove(ident)
    except docker.errors.NotFound:
        return True
    except docker.errors.APIError:
        return False
    return True


@contextlib.contextmanager
def made_fleet(swarm_lab: SwarmLab) -> Iterator[Fleet]:
    """A uniquely named fleet; at the end the killed nodes are back and all it made is gone."""
    made = Fleet(swarm_lab, f"sf{uuid.uuid4().hex[:8]}")
    try:
        yield made
    finally:
        for node in swarm_lab.nodes:
            if not node.alive:
                swarm_lab.restart(node)
        made.remove()


def ballast(made: Fleet, node: LabNode, replicas: int, image: str) -> None:
    """Idle tasks on ``node``: Swarm's scheduler places an unconstrained task where fewest run."""
    name = f"ballast-{made.name}-{node.key}"
    made.client.api.create_service(
        docker.types.TaskTemplate(
            container_spec=docker.types.ContainerSpec(image, ["sleep", "infinity"]),
            placement=Placement(constraints=[f"node.hostname=={node.name}"]),
            restart_policy=docker.types.RestartPolicy(condition="none"),
        ),
        name=name,
        mode=docker.types.ServiceMode("replicated", replicas=replicas),
    )
    made.made_services.append(name)
    wait_until(
        lambda: len(made.lab.running_tasks(name)) == replicas, 90, what=f"{name} running", step=0.5
    )


def prepare(made: Fleet) -> None:
    """The fleet's plain overlay network, labelled for adoption, and the scheduler's ballast."""
    made.client.api.create_network(
        f"ibfleet-{made.name}",
        driver="overlay",
        labels={LABEL_FLEET: made.name},
        attachable=False,
        scope="swarm",
    )
    ballast(made, made.lab.node("n2"), 2, made.lab.sim_image_id)
    ballast(made, made.lab.node("n3"), 4, made.lab.sim_image_id)


@dataclass
class SupervisorService:
    """One ``ibfleet run`` service pinned to a node, its API reached from the host."""

    made: Fleet
    name: str
    node: LabNode
    url: str
    token: str

    def logs(self) -> str:
        with contextlib.suppress(Exception):
            raw = self.made.client.api.service_logs(self.name, stdout=True, stderr=True, tail=300)
            return b"".join(raw).decode(errors="replace")
        return ""

    def health(self) -> dict[str, Any] | None:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            reply = httpx.get(f"{self.url}/healthz", timeout=2)
            if reply.status_code == 200:
                body: dict[str, Any] = reply.json()
                return body
        return None

    def role(self) -> str | None:
        return str((self.health() or {}).get("role")) if self.health() else None

    def ready(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/readyz", timeout=3).status_code == 200
        return False

    def wait(self, condition: Any, timeout: float, what: str) -> Any:
        """wait_until, with the service's log in the failure."""
        try:
            return wait_until(condition, timeout, what=f"{self.name}: {what}", step=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()[-8000:]}") from None

    def task_container(self) -> Any:
        """The container of its running task, on its node's engine."""
        task = self.made.lab.running_tasks(self.name)[0]
        node = self.made.lab.node_by_id(task["NodeID"])
        return node.client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])


def start_supervisor(
    made: Fleet,
    data: dict[str, Any],
    image_id: str,
    *,
    node: LabNode,
    port: int,
    token: str,
    role: str = "sup",
    extra_secrets: dict[str, str] | None = None,
) -> SupervisorService:
    """``ibfleet run`` as a one-task service on ``node`` (API published on ``port`` there)."""
    api = made.client.api
    prefix = f"{role}-{made.name}"
    values = {"api-token": token, **(extra_secrets or {})}
    for gw in ("gw-a", "gw-b"):
        values |= {f"user-{gw}": f"swarm-{gw}", f"pass-{gw}": made.password(gw)}
    secrets = []
    for key, value in values.items():
        ident = api.create_secret(f"{prefix}-{key}", value.encode())["ID"]
        made.made_secrets.append(ident)
        secrets.append(
            SecretReference(ident, f"{prefix}-{key}", f"ibfleet/{key}", uid="10001", gid="10001")
        )
    config_name = f"{prefix}-fleet"
    config_id = api.create_config(config_name, yaml.safe_dump(data).encode())["ID"]
    made.made_configs.append(config_id)
    # The socket's group, as deploy/swarm/stack.yml's DOCKER_GID.
    gid = node.container.exec_run(["stat", "-c", "%g", "/var/run/docker.sock"]).output.decode()
    api.create_service(
        docker.types.TaskTemplate(
            container_spec=docker.types.ContainerSpec(
                image_id,
                user="10001:10001",
                groups=[gid.strip()],
                mounts=[Mount("/var/run/docker.sock", "/var/run/docker.sock", type="bind")],
                secrets=secrets,
                configs=[
                    ConfigReference(
                        config_id, config_name, "/etc/ibfleet/fleet.yaml", uid="10001", gid="10001"
                    )
                ],
                stop_grace_period=60 * 10**9,
            ),
            placement=Placement(constraints=[f"node.hostname=={node.name}"]),
            restart_policy=docker.types.RestartPolicy(condition="none"),
            networks=[f"ibfleet-{made.name}"],
        ),
        name=prefix,
        labels={LABEL_SUPERVISOR_OF: made.name},
        endpoint_spec=EndpointSpec(mode="dnsrr", ports={port: (8710, "tcp", "host")}),
    )
    made.made_services.append(prefix)
    return SupervisorService(made, prefix, node, f"http://{node.ip}:{port}", token)


def placed(made: Fleet) -> dict[str, str] | None:
    """Where the broker and the gateways run (node keys), once all three run."""
    found = {}
    for gw in PLACED:
        with contextlib.suppress(docker.errors.NotFound):
            tasks = made.lab.running_tasks(made.service(gw))
            if tasks:
                found[gw] = made.lab.node_by_id(tasks[0]["NodeID"]).key
    return found if len(found) == len(PLACED) else None


def fresh_resting_order(made: Fleet, gateway: str, *, younger_than: float = 1.5) -> Any:
    """A working order of the pinger's on ``gateway`` placed less than ``younger_than`` ago."""
    for row in made.broker_orders():
        age = time.time() - created(row)
        working = row["status"] in ("Submitted", "PreSubmitted")
        if row["gateway"] == gateway and working and age < younger_than:
            return row
    return None


def created(row: dict[str, Any]) -> float:
    return datetime.fromisoformat(row["created_at"]).timestamp()


def at(change: dict[str, Any]) -> float:
    return datetime.fromisoformat(change["at"]).timestamp()


def refs_twice(orders: list[dict[str, Any]]) -> list[str]:
    refs = [row["order_ref"] for row in orders]
    return sorted({ref for ref in refs if refs.count(ref) > 1})
