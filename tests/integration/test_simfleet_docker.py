"""A simulator fleet on the real engine: broker + two gateways from a fleet file, reconciled by
the orchestrator; real logins at the broker container, the real ib_async client on the
published loopback ports, and an external ``docker kill`` healed back to a working API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import docker
import docker.errors
import httpx
import pytest
from ib_async import IB

from gateway import ibc
from gateway.docker_runtime import DockerRuntime
from gateway.spec import LABEL_FLEET, GatewaySecrets
from supervisor import settings as settings_mod
from supervisor import simfleet
from supervisor.budget import BackoffPolicy
from supervisor.orchestrator import Orchestrator, OrchestratorEvent, RestartPolicy
from tests.net import free_port
from tests.waiting import until

pytestmark = pytest.mark.docker

KEY = b"simfleet-test-key" * 2


def fleet_text(*, fleet: str, network: str, image: str, ports: list[int]) -> str:
    gateways = "\n".join(
        f"""  - name: gw{i + 1}
    mode: paper
    account: DU90000{i + 1}
    username: {{env: SIM_USER_{i + 1}}}
    password: {{env: SIM_PASS_{i + 1}}}
    api_port: {port}
    memory_limit: 256m"""
        for i, port in enumerate(ports)
    )
    return f"""fleet: {fleet}
timezone: UTC
runtime:
  network: {network}
simulator:
  enabled: true
  image: {image}
gateways:
{gateways}
"""


@pytest.fixture
def names(docker_client: docker.DockerClient) -> Iterator[tuple[str, str]]:
    fleet = f"s{uuid.uuid4().hex[:10]}"
    network = f"ibfleet-{fleet}"
    yield fleet, network
    for filters in ({"label": f"{LABEL_FLEET}={fleet}"}, {"name": f"ibfleet-{fleet}-"}):
        for item in docker_client.api.containers(all=True, filters=filters):
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.api.remove_container(item["Id"], force=True, v=True)
    for net in docker_client.api.networks(names=[network]):
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.api.remove_network(net["Id"])


@pytest.fixture
async def runtime(docker_client: docker.DockerClient) -> AsyncIterator[DockerRuntime]:
    rt = DockerRuntime(docker_client, call_timeout=60.0)
    yield rt
    rt.close()


async def answers(port: int, *, client_id: int) -> list[str] | None:
    """The accounts the gateway's API reports, or None while it does not answer."""
    ib = IB()
    try:
        await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=3)
        accounts = ib.managedAccounts()
        return accounts or None
    except (OSError, TimeoutError, ConnectionError):
        return None
    finally:
        ib.disconnect()


async def test_simulator_fleet_logs_in_answers_hides_passwords_and_heals_a_kill(
    docker_client: docker.DockerClient,
    runtime: DockerRuntime,
    sim_image: str,
    names: tuple[str, str],
) -> None:
    fleet, network = names
    ports = [free_port(), free_port()]
    control_port = free_port()
    passwords = {i: f"pw-{uuid.uuid4().hex}" for i in (1, 2)}
    environ = {f"SIM_USER_{i}": f"simfleet-user-{i}" for i in (1, 2)}
    environ.update({f"SIM_PASS_{i}": pw for i, pw in passwords.items()})
    loaded = settings_mod.load_text(
        fleet_text(fleet=fleet, network=network, image=sim_image, ports=ports)
    )
    settings = loaded.settings
    assert settings.simulator.enabled
    secrets = {
        gw.name: GatewaySecrets(
            username=gw.username.resolve(environ=environ),
            password=gw.password.resolve(environ=environ),
        )
        for gw in settings.gateways
    }
    desired = simfleet.render_sim_fleet(
        settings.gateways,
        fleet=settings.fleet,
        network=settings.runtime.network,
        image=settings.simulator.image,
        timezone=settings.timezone,
        secrets=secrets,
        fingerprint_key=KEY,
        control_port=control_port,
    )
    assert [s.gateway for s in desired] == ["sim-broker", "gw1", "gw2"]
    published: list[object] = []
    orch = Orchestrator(
        runtime=runtime,
        fleet=fleet,
        desired=desired,
        publish=published.append,
        interval=5.0,
        policy=RestartPolicy(
            backoff=BackoffPolicy(base=timedelta(milliseconds=10), cap=timedelta(seconds=1))
        ),
        stop_timeout=2.0,
    )
    task = asyncio.create_task(orch.run())
    try:
        # Both gateways log in at the broker container and answer the real client.
        for i, port in enumerate(ports, start=1):
            accounts = await until(
                lambda p=port, c=i: answers(p, client_id=900 + c),
                timeout=90,
                what=f"gw{i} to answer on 127.0.0.1:{port}",
            )
            assert accounts == [f"DU90000{i}"]
        control = f"http://127.0.0.1:{control_port}"
        async with httpx.AsyncClient(timeout=5) as client:
            listed = (await client.get(f"{control}/gateways")).json()
        logged_in = {row["name"] for row in listed if row.get("logged_in")}
        assert logged_in == {"gw1", "gw2"}

        # No password shows anywhere in inspect, of the gateways nor of the broker.
        ids = {
            item["Labels"]["io.ibfleet.gateway"]: item["Id"]
            for item in docker_client.api.containers(
                all=True, filters={"label": f"{LABEL_FLEET}={fleet}"}
            )
        }
        assert set(ids) == {"sim-broker", "gw1", "gw2"}
        for container_id in ids.values():
            text = json.dumps(docker_client.api.inspect_container(container_id))
            for password in passwords.values():
                assert password not in text

        # The supervisor reaches gw1's IBC command server on the fleet network.
        address = await runtime.command_address(ids["gw1"])
        assert address is not None
        reply = await ibc.send("RECONNECTDATA", host=address[0], port=address[1], timeout=10)
        assert reply.status is ibc.ReplyStatus.OK

        # An external kill: the orchestrator starts it again and the API answers again.
        before = docker_client.api.inspect_container(ids["gw1"])["State"]["StartedAt"]
        docker_client.api.kill(ids["gw1"])
        await until(
            lambda: docker_client.api.inspect_container(ids["gw1"])["State"]["StartedAt"] != before,
            timeout=60,
            what="gw1 to be started again",
        )
        accounts = await until(
            lambda: answers(ports[0], client_id=950),
            timeout=90,
            what="gw1 to answer again after the kill",
        )
        assert accounts == ["DU900001"]
        dies = [e for e in published if getattr(e, "exit_code", None) == 137]
        assert dies, "the die event of the kill reached the orchestrator"
        assert not [
            e
            for e in published
            if isinstance(e, OrchestratorEvent) and e.kind.value == "action_failed"
        ]
    finally:
        await orch.close()
        await asyncio.wait_for(task, 30)
