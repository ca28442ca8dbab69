"""The simulator on the Swarm lab: the broker and two gateways of one account as services.

As the one-engine tests run it (tests/integration/test_container_sim.py), but every part is a
replicated service with one task on the lab's attachable overlay: the broker pinned to zone a
(n1, never killed here), the primary gateway on zone b or c, the failover on the other. The
password is a Swarm secret mounted where the image's ``TWS_PASSWORD_FILE`` points, so it is in
neither the service spec nor ``docker service inspect``.

Ports: the kernel has no IPVS (no routing mesh), so each service publishes in ``host`` mode
with an endpoint of ``dnsrr``; the host reaches a gateway on ``<its task's node IP>:<port>``,
and each service has its own published port so a rescheduled task may share a node.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field

import docker.errors
import httpx
from docker.types import EndpointSpec, RestartPolicy, SecretReference
from ib_async import IB, MarketOrder, Stock

from ibsim.settings import SOCAT_PAPER_PORT, image_env, sim_env
from tests.swarm.lab import ZONE_LABEL, LabNode, SwarmLab
from tests.waiting import until, wait_until

PASSWORD = "sim-password"  # the simulator's fixed test password, never a real one
ACCOUNT = "DU1000001"
LINK_PORT = 7470
CONTROL_PORT = 7471
SECRET_FILE = "/run/secrets/tws_password"
SIM_UID = "10001"  # the simulator image's user


@dataclass
class SwarmSimFleet:
    """Create with :meth:`start`, remove with :meth:`close`; names are unique per fleet."""

    lab: SwarmLab
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    control_port: int = 17471
    api_ports: dict[str, int] = field(default_factory=lambda: {"primary": 14004, "failover": 14005})
    _secret_id: str = ""

    def service(self, role: str) -> str:
        """The service name of ``broker``, ``primary`` or ``failover``."""
        return f"sim-{role}-{self.suffix}"

    @property
    def control_url(self) -> str:
        return f"http://{self.lab.node_in_zone('a').ip}:{self.control_port}"

    def start(self, *, timeout: float = 120.0) -> SwarmSimFleet:
        manager = self.lab.manager
        secret = manager.secrets.create(
            name=f"sim-password-{self.suffix}", data=PASSWORD.encode(), labels={"ibfleet": "lab"}
        )
        self._secret_id = secret.id
        self._create(
            "broker",
            args=_broker_args(),
            zone_rule=f"node.labels.{ZONE_LABEL}==a",
            ports={self.control_port: (CONTROL_PORT, "tcp", "host")},
        )
        wait_until(self._broker_healthy, timeout=timeout, what="the broker service's control API")
        self._create("primary", zone_rule=f"node.labels.{ZONE_LABEL}!=a")
        primary = self.lab.wait_task_running(self.service("primary"), timeout=timeout)
        other = "c" if primary.zone == "b" else "b"
        self._create("failover", zone_rule=f"node.labels.{ZONE_LABEL}=={other}")
        self.lab.wait_task_running(self.service("failover"), timeout=timeout)
        return self

    def _create(
        self,
        role: str,
        *,
        zone_rule: str,
        args: list[str] | None = None,
        ports: dict[int, tuple[int, str, str]] | None = None,
    ) -> None:
        env: dict[str, str] = {}
        secrets: list[SecretReference] = []
        if role != "broker":
            env = {
                **image_env(username=role, password_file=SECRET_FILE),
                **sim_env(broker=(self.service("broker"), LINK_PORT), gateway_name=f"gw-{role}"),
            }
            ports = {self.api_ports[role]: (SOCAT_PAPER_PORT, "tcp", "host")}
            secrets = [
                SecretReference(
                    self._secret_id,
                    f"sim-password-{self.suffix}",
                    filename="tws_password",
                    uid=SIM_UID,
                    gid=SIM_UID,
                    mode=0o400,
                )
            ]
        self.lab.manager.services.create(
            self.lab.sim_image_id,
            name=self.service(role),
            args=args or ["gateway"],
            env=[f"{k}={v}" for k, v in env.items()],
            constraints=[zone_rule],
            networks=[self.lab.overlay],
            endpoint_spec=EndpointSpec(mode="dnsrr", ports=ports),
            secrets=secrets,
            # Swarm's default waits 5 s before restarting a task, also one lost with its node.
            restart_policy=RestartPolicy(condition="any", delay=0),
            labels={"ibfleet": "lab"},
        )

    def _broker_healthy(self) -> bool:
        try:
            return httpx.get(f"{self.control_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def gateway_node(self, role: str, *, not_on: tuple[LabNode, ...] = ()) -> LabNode:
        return self.lab.wait_task_running(self.service(role), not_on=not_on, timeout=60)

    def endpoint(self, role: str) -> tuple[str, int]:
        """(host, port) of the gateway's API as the host reaches it now."""
        return self.gateway_node(role).ip, self.api_ports[role]

    def orders(self, order_ref: str) -> list[dict[str, object]]:
        """The broker's record of the orders with this orderRef."""
        reply = httpx.get(f"{self.control_url}/orders", params={"order_ref": order_ref}, timeout=5)
        reply.raise_for_status()
        rows: list[dict[str, object]] = reply.json()
        return rows

    def close(self) -> None:
        """Remove the services and the secret (tasks on dead nodes go with their node)."""
        manager = self.lab.manager
        for role in ("primary", "failover", "broker"):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                manager.services.get(self.service(role)).remove()
        if not self._secret_id:
            return

        def secret_removed() -> bool:
            try:
                manager.secrets.get(self._secret_id).remove()
            except docker.errors.NotFound:
                return True
            except docker.errors.APIError:
                return False  # still used by a task that is shutting down
            return True

        # A leftover secret holds no state a later fleet reads (names are unique): not fatal.
        with contextlib.suppress(AssertionError):
            wait_until(secret_removed, timeout=30, what="the fleet's secret removed", step=0.5)


def _broker_args() -> list[str]:
    args = ["broker", "--host", "0.0.0.0", "--link-port", str(LINK_PORT)]
    args += ["--control-port", str(CONTROL_PORT)]
    for user in ("primary", "failover"):
        args += ["--user", f"{user}:{PASSWORD}:{ACCOUNT}"]
    return args


async def connect(endpoint: tuple[str, int], *, client_id: int, timeout: float) -> IB:
    """Connect the real ib_async client as soon as the gateway's API accepts (login may lag)."""

    async def attempt() -> IB | None:
        ib = IB()
        try:
            await ib.connectAsync(*endpoint, clientId=client_id, timeout=5)
        except (OSError, TimeoutError, ConnectionError):
            ib.disconnect()
            return None
        return ib

    ib: IB = await until(attempt, timeout, what=f"the API at {endpoint[0]}:{endpoint[1]}", step=1)
    return ib


async def buy(ib: IB, order_ref: str, *, timeout: float = 30.0) -> None:
    """A market BUY of one AAPL share with this orderRef; returns when it is filled."""
    contract = Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(contract)
    order = MarketOrder("BUY", 1)
    order.orderRef = order_ref
    trade = ib.placeOrder(contract, order)
    await until(lambda: trade.orderStatus.status == "Filled", timeout, what=f"{order_ref} filled")
