"""The Docker adapter against the real engine: secrets, ports, labels, logs and events.

Most gateways here run the simulator image with a stand-in entrypoint (a tiny TCP listener on
the gnzsnz API port that logs one line per start with a nonce): the adapter's own behaviour is
clearer against it. Tests that need a gateway that logs in and answers the TWS API use
:func:`sim_fleet`: the simulator's broker container and real simulated gateways.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import docker
import docker.errors
import pytest
from pydantic import SecretStr

from gateway.config import GatewayConfig
from gateway.docker_replies import parse_docker_time_ns
from gateway.docker_runtime import DockerRuntime
from gateway.runtime import ContainerState, EventKind, RuntimeEvent
from gateway.spec import LABEL_FLEET, ContainerSpec, GatewaySecrets
from gateway.spec_render import render_spec
from tests.net import free_port
from tests.waiting import until

pytestmark = pytest.mark.docker

# Logs one line per start with a nonce (so runs are told apart) and whether IBC's config.ini (which
# carries the password) is readable by the container's user, then accepts and closes TCP
# connections on the API port.
STANDIN = (
    "import os, signal, socket, sys\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "port = 4003 if os.environ.get('TRADING_MODE') == 'live' else 4004\n"
    "ok = os.access(os.environ['IBC_INI'], os.R_OK)\n"
    "print(f'standin start run={os.urandom(6).hex()} config_ini_readable={ok}', flush=True)\n"
    "s = socket.socket()\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', port))\n"
    "s.listen()\n"
    "while True:\n"
    "    s.accept()[0].close()\n"
)
STANDIN_ENTRYPOINT = ("/opt/ibfleet/bin/python", "-c", STANDIN)
PASSWORD = "Zq7-integration-pw-" + uuid.uuid4().hex[:8]
KEY = b"integration-key-" * 2


def unique_fleet() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def gateway_spec(
    name: str,
    *,
    fleet: str,
    image: str,
    port: int | None = None,
    password: str = PASSWORD,
    **overrides: Any,
) -> ContainerSpec:
    data: dict[str, Any] = {
        "name": name,
        "mode": "paper",
        "account": "DU1234567",
        "username": {"env": "U"},
        "password": {"env": "P"},
        "api_port": port or free_port(),
        "memory_limit": "256m",
    }
    data.update(overrides)
    return render_spec(
        GatewayConfig.model_validate(data),
        fleet=fleet,
        network=f"ibfleet-{fleet}",
        image=image,
        timezone="UTC",
        secrets=GatewaySecrets(username=SecretStr("simuser"), password=SecretStr(password)),
        fingerprint_key=KEY,
        entrypoint=STANDIN_ENTRYPOINT,
    )


def sim_fleet(
    fleet: str,
    *,
    image: str,
    names: tuple[str, ...] = ("a", "b"),
    ports: list[int] | None = None,
    control_port: int | None = None,
) -> list[ContainerSpec]:
    """A simulator fleet: the broker container first, then gateways that log in to it."""
    from supervisor import simfleet

    gateways = [
        GatewayConfig.model_validate(
            {
                "name": name,
                "mode": "paper",
                "account": f"DU{5000001 + i}",
                "username": {"env": "U"},
                "password": {"env": "P"},
                "api_port": ports[i] if ports else free_port(),
                "memory_limit": "256m",
            }
        )
        for i, name in enumerate(names)
    ]
    secrets = {
        gw.name: GatewaySecrets(
            username=SecretStr(f"{fleet}-{gw.name}"), password=SecretStr(PASSWORD)
        )
        for gw in gateways
    }
    return simfleet.render_sim_fleet(
        gateways,
        fleet=fleet,
        network=f"ibfleet-{fleet}",
        image=image,
        timezone="UTC",
        secrets=secrets,
        fingerprint_key=KEY,
        control_port=control_port or free_port(),
    )


async def api_answers(port: int, *, client_id: int = 990) -> bool:
    """True once the real ib_async client connects and sees the gateway's account."""
    from ib_async import IB

    ib = IB()
    try:
        await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=3)
        return bool(ib.managedAccounts())
    except (OSError, TimeoutError, ConnectionError):
        return False
    finally:
        ib.disconnect()


def remove_fleet(client: docker.DockerClient, fleet: str) -> None:
    """Finalizer: everything labelled with the fleet, named after it, and its network."""
    for item in client.api.containers(all=True, filters={"label": f"{LABEL_FLEET}={fleet}"}):
        _force_remove(client, item["Id"])
    for item in client.api.containers(all=True, filters={"name": f"ibfleet-{fleet}-"}):
        _force_remove(client, item["Id"])
    for net in client.api.networks(names=[f"ibfleet-{fleet}"]):
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_network(net["Id"])


def _force_remove(client: docker.DockerClient, container_id: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        client.api.remove_container(container_id, force=True, v=True)


@pytest.fixture
def fleet(docker_client: docker.DockerClient) -> Iterator[str]:
    name = unique_fleet()
    yield name
    remove_fleet(docker_client, name)


@pytest.fixture
async def runtime(docker_client: docker.DockerClient) -> AsyncIterator[DockerRuntime]:
    rt = DockerRuntime(docker_client, call_timeout=60.0)
    yield rt
    rt.close()


async def started(runtime: DockerRuntime, spec: ContainerSpec) -> str:
    container_id = await runtime.create(spec)
    await runtime.start(container_id)
    return container_id


async def first_line(runtime: DockerRuntime, container_id: str, *, timeout: float) -> str:
    async def read() -> str:
        async for line in runtime.follow_logs(container_id):
            return line
        raise AssertionError("log stream ended without a line")

    return await asyncio.wait_for(read(), timeout)


async def test_created_gateway_has_labels_network_memory_and_a_loopback_port(
    runtime: DockerRuntime, docker_client: docker.DockerClient, fleet: str, sim_image: str
) -> None:
    spec = gateway_spec("a", fleet=fleet, image=sim_image)
    container_id = await started(runtime, spec)
    attrs = docker_client.api.inspect_container(container_id)
    assert attrs["Name"] == f"/ibfleet-{fleet}-a"
    assert attrs["Config"]["Labels"]["io.ibfleet.fleet"] == fleet
    assert attrs["Config"]["Labels"]["io.ibfleet.gateway"] == "a"
    assert attrs["Config"]["Labels"]["io.ibfleet.spec-hash"] == spec.spec_hash
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert attrs["HostConfig"]["Memory"] == 256 * 1024**2
    assert list(attrs["NetworkSettings"]["Networks"]) == [f"ibfleet-{fleet}"]
    (network,) = docker_client.api.networks(names=[f"ibfleet-{fleet}"])
    assert network["Labels"][LABEL_FLEET] == fleet
    port = spec.ports[0].host_port
    bindings = await until(
        lambda: docker_client.api.inspect_container(container_id)["NetworkSettings"]["Ports"].get(
            "4004/tcp"
        ),
        timeout=20,
        what="the published port",
    )
    assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    line = await first_line(runtime, container_id, timeout=30)
    assert "standin start" in line

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    await until(answers, timeout=20, what="the API port to accept on 127.0.0.1")


async def test_password_is_nowhere_in_inspect_nor_in_the_environment(
    runtime: DockerRuntime, docker_client: docker.DockerClient, fleet: str, sim_image: str
) -> None:
    container_id = await started(runtime, gateway_spec("a", fleet=fleet, image=sim_image))
    line = await first_line(runtime, container_id, timeout=30)
    # The file is there and readable by the image's (non-root) user...
    assert "config_ini_readable=True" in line
    # ...but its value shows in no part of inspect (env, labels, mounts, args) nor in env.
    assert PASSWORD not in json.dumps(docker_client.api.inspect_container(container_id))
    container = docker_client.containers.get(container_id)
    env_out = container.exec_run(["/usr/bin/env"]).output.decode()
    assert "IBC_INI=/run/secrets/ibfleet/config.ini" in env_out
    assert PASSWORD not in env_out
    proc_env = container.exec_run(["/bin/cat", "/proc/1/environ"]).output.decode()
    assert PASSWORD not in proc_env
    mode = container.exec_run(["/usr/bin/stat", "-c", "%a %u", "/run/secrets/ibfleet/config.ini"])
    assert mode.output.decode().split() == ["400", "10001"]


async def test_logs_are_followed_from_the_current_start_only(
    runtime: DockerRuntime, docker_client: docker.DockerClient, fleet: str, sim_image: str
) -> None:
    container_id = await started(runtime, gateway_spec("a", fleet=fleet, image=sim_image))
    old = await first_line(runtime, container_id, timeout=30)
    docker_client.api.kill(container_id)
    await until(
        lambda: docker_client.api.inspect_container(container_id)["State"]["Status"] == "exited",
        timeout=20,
        what="the container to exit",
    )
    await runtime.start(container_id)
    new = await first_line(runtime, container_id, timeout=30)
    assert new != old
    started_ns = parse_docker_time_ns(
        docker_client.api.inspect_container(container_id)["State"]["StartedAt"]
    )
    new_ns = parse_docker_time_ns(new.split(" ", 1)[0])
    assert started_ns is not None and new_ns is not None and new_ns >= started_ns
    history = docker_client.api.logs(container_id).decode()
    assert history.count("standin start") == 2  # the old line exists, it just is not followed


async def test_events_report_start_and_die_with_the_exit_code(
    runtime: DockerRuntime, docker_client: docker.DockerClient, fleet: str, sim_image: str
) -> None:
    seen: list[RuntimeEvent] = []

    async def follow() -> None:
        async for event in runtime.events(fleet=fleet):
            seen.append(event)

    task = asyncio.create_task(follow())
    try:
        await asyncio.sleep(0)  # let the stream thread subscribe before anything happens
        container_id = await started(runtime, gateway_spec("a", fleet=fleet, image=sim_image))
        await until(
            lambda: any(e.kind is EventKind.START for e in seen), timeout=20, what="start event"
        )
        docker_client.api.kill(container_id)
        die = await until(
            lambda: next((e for e in seen if e.kind is EventKind.DIE), None),
            timeout=20,
            what="die event",
        )
        assert die.exit_code == 137
        assert die.gateway == "a"
        assert die.container_id == container_id
        observed = await runtime.inspect(container_id)
        assert observed.state is ContainerState.EXITED
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_list_finds_a_container_claiming_the_fleet_name_without_its_label(
    runtime: DockerRuntime, docker_client: docker.DockerClient, fleet: str, sim_image: str
) -> None:
    ours = await started(runtime, gateway_spec("a", fleet=fleet, image=sim_image))
    squatter = docker_client.api.create_container(
        sim_image, name=f"ibfleet-{fleet}-b", labels={"io.ibfleet.test": "1"}
    )["Id"]
    found = {c.id: c for c in await runtime.list(fleet=fleet)}
    assert set(found) == {ours, squatter}
    assert found[squatter].fleet is None
    assert found[ours].gateway == "a"


# Listens on IBC's command port and answers each connection with the peer's address and the
# ControlFrom line of the config.ini the runtime placed in the container.
PEER_ECHO = (
    "import socket\n"
    "ini = open('/run/secrets/ibfleet/config.ini').read().splitlines()\n"
    "allowed = next(l for l in ini if l.startswith('ControlFrom='))\n"
    "print('echo ready', flush=True)\n"
    "s = socket.socket()\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 7462))\n"
    "s.listen()\n"
    "while True:\n"
    "    c, peer = s.accept()\n"
    "    c.sendall(f'{peer[0]} {allowed}\\n'.encode())\n"
    "    c.close()\n"
)


async def test_command_address_is_reachable_and_control_from_allows_the_supervisor(
    runtime: DockerRuntime, docker_client: docker.DockerClient, fleet: str, sim_image: str
) -> None:
    spec = dataclasses.replace(
        gateway_spec("a", fleet=fleet, image=sim_image),
        entrypoint=("/opt/ibfleet/bin/python", "-c", PEER_ECHO),
    )
    container_id = await runtime.create(spec)
    assert await runtime.command_address(container_id) is None  # created, not running
    await runtime.start(container_id)
    await first_line(runtime, container_id, timeout=30)
    address = await runtime.command_address(container_id)
    assert address is not None
    host, port = address
    assert port == 7462
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
    reply = (await asyncio.wait_for(reader.readline(), 10)).decode().split()
    writer.close()
    peer, allowed = reply
    # Our connection arrives from the fleet network's gateway IP, which ControlFrom lists.
    assert allowed.removeprefix("ControlFrom=").split(",") == [peer]
    (network,) = docker_client.api.networks(names=[f"ibfleet-{fleet}"])
    gateways = [
        c["Gateway"] for c in docker_client.api.inspect_network(network["Id"])["IPAM"]["Config"]
    ]
    assert peer in gateways
