"""Network isolation against the real engine: only the supervisor and trusted sources reach a
gateway's API port and IBC's command server; an attacker container on the fleet network and an
unprivileged host user are refused. Hardening shows in ``docker inspect``.

The gateways run the simulator image with a stand-in that listens on 4004 and 7462 (as socat and
IBC do in the gnzsnz image) and answers each connection with one line.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import docker
import pytest

from gateway.docker_runtime import DockerRuntime
from gateway.firewall import Iptables, chain_names
from gateway.spec import ContainerSpec
from tests.integration.test_docker_runtime import gateway_spec, remove_fleet, unique_fleet
from tests.waiting import until

pytestmark = pytest.mark.docker

LISTENER = (
    "import socket, threading\n"
    "def serve(port):\n"
    "    s = socket.socket()\n"
    "    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "    s.bind(('0.0.0.0', port))\n"
    "    s.listen()\n"
    "    while True:\n"
    "        c, _ = s.accept()\n"
    "        c.sendall(b'hello %d\\n' % port)\n"
    "        c.close()\n"
    "threading.Thread(target=serve, args=(7462,), daemon=True).start()\n"
    "print('listening', flush=True)\n"
    "serve(4004)\n"
)
ENTRYPOINT = ("/opt/ibfleet/bin/python", "-c", LISTENER)

# One connection attempt: prints "open" when a line comes back, "refused" otherwise.
PROBE = (
    "import socket, sys\n"
    "try:\n"
    "    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)\n"
    "    print('open' if s.recv(64).startswith(b'hello') else 'refused')\n"
    "except OSError:\n"
    "    print('refused')\n"
)


def iptables_dump() -> str:
    return subprocess.run(["iptables", "-S"], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def fleet(docker_client: docker.DockerClient) -> Iterator[str]:
    name = unique_fleet()
    yield name
    remove_fleet(docker_client, name)
    Iptables().remove(name)
    forward, output = chain_names(name)
    left = iptables_dump()
    assert forward not in left and output not in left, "the fleet's rules were left behind"


@pytest.fixture
async def runtime(docker_client: docker.DockerClient) -> AsyncIterator[DockerRuntime]:
    rt = DockerRuntime(docker_client, call_timeout=60.0)
    yield rt
    rt.close()


def probe_from_host(host: str, port: int, *, as_nobody: bool) -> str:
    prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if as_nobody else []
    done = subprocess.run(
        [*prefix, sys.executable, "-c", PROBE, host, str(port)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return done.stdout.strip() or done.stderr.strip()


def probe_from_container(
    client: docker.DockerClient, image: str, network: str, host: str, port: int
) -> str:
    out = client.containers.run(
        image,
        entrypoint=["/opt/ibfleet/bin/python", "-c", PROBE, host, str(port)],
        network=network,
        remove=True,
        labels={"io.ibfleet.test": "attacker"},
    )
    return bytes(out).decode().strip()


async def running_gateway(
    runtime: DockerRuntime, fleet: str, image: str, **overrides: Any
) -> tuple[ContainerSpec, str, str]:
    spec = dataclasses.replace(
        gateway_spec("a", fleet=fleet, image=image, **overrides), entrypoint=ENTRYPOINT
    )
    container_id = await runtime.create(spec)
    await runtime.start(container_id)
    address = await until(
        lambda: runtime.command_address(container_id), timeout=20, what="a container address"
    )
    return spec, container_id, address[0]


async def test_attacker_container_and_host_user_are_refused_the_supervisor_is_not(
    runtime: DockerRuntime, docker_client: docker.DockerClient, fleet: str, sim_image: str
) -> None:
    spec, _container_id, ip = await running_gateway(runtime, fleet, sim_image)
    port = spec.ports[0].host_port
    # The supervisor (this process's uid) reaches the published port and both container ports.
    await until(
        lambda: probe_from_host("127.0.0.1", port, as_nobody=False) == "open",
        timeout=20,
        what="the published API port to answer the supervisor",
    )
    assert probe_from_host(ip, 4004, as_nobody=False) == "open"
    assert probe_from_host(ip, 7462, as_nobody=False) == "open"
    # An unprivileged local user: neither the published port nor the container address.
    assert probe_from_host("127.0.0.1", port, as_nobody=True) == "refused"
    assert probe_from_host(ip, 4004, as_nobody=True) == "refused"
    assert probe_from_host(ip, 7462, as_nobody=True) == "refused"
    # An attacker container on the fleet network: neither port.
    network = spec.network
    assert probe_from_container(docker_client, sim_image, network, ip, 4004) == "refused"
    assert probe_from_container(docker_client, sim_image, network, ip, 7462) == "refused"


async def test_a_loopback_trusted_ip_admits_local_users_to_the_api_port_only(
    runtime: DockerRuntime, fleet: str, sim_image: str
) -> None:
    spec, _cid, ip = await running_gateway(runtime, fleet, sim_image, trusted_ips=["127.0.0.1/32"])
    port = spec.ports[0].host_port
    await until(
        lambda: probe_from_host("127.0.0.1", port, as_nobody=True) == "open",
        timeout=20,
        what="a trusted local user to reach the published port",
    )
    assert probe_from_host(ip, 7462, as_nobody=True) == "refused"


async def test_a_supervisor_in_a_container_is_admitted_and_named_in_control_from(
    docker_client: docker.DockerClient, fleet: str, sim_image: str
) -> None:
    supervisor = docker_client.containers.run(
        sim_image,
        entrypoint=["/bin/sleep", "300"],
        name=f"ibfleet-{fleet}-fake-supervisor",
        detach=True,
        labels={"io.ibfleet.test": "supervisor"},
    )
    rt = DockerRuntime(docker_client, call_timeout=60.0, supervisor_container=supervisor.id)
    try:
        spec, container_id, ip = await running_gateway(rt, fleet, sim_image)
        supervisor.reload()
        own = supervisor.attrs["NetworkSettings"]["Networks"][spec.network]["IPAddress"]
        ini = docker_client.containers.get(container_id).exec_run(
            ["/bin/cat", "/run/secrets/ibfleet/config.ini"]
        )
        assert f"ControlFrom={own}" in ini.output.decode().splitlines()
        for port in (4004, 7462):
            reply = supervisor.exec_run(["/opt/ibfleet/bin/python", "-c", PROBE, ip, str(port)])
            assert reply.output.decode().strip() == "open"
        network = spec.network
        assert probe_from_container(docker_client, sim_image, network, ip, 7462) == "refused"
    finally:
        rt.close()
        supervisor.remove(force=True)


async def test_rules_go_with_the_last_container_and_a_foreign_network_is_refused(
    runtime: DockerRuntime, docker_client: docker.DockerClient, fleet: str, sim_image: str
) -> None:
    _spec, container_id, _ip = await running_gateway(runtime, fleet, sim_image)
    forward, output = chain_names(fleet)
    assert forward in iptables_dump() and output in iptables_dump()
    await runtime.remove(container_id)
    assert forward not in iptables_dump() and output not in iptables_dump()
    other = unique_fleet()
    net = docker_client.api.create_network(f"ibfleet-{other}", driver="bridge")
    try:
        spec = gateway_spec("a", fleet=other, image=sim_image)
        with pytest.raises(Exception, match="refusing to adopt"):
            await runtime.create(spec)
    finally:
        docker_client.api.remove_network(net["Id"])


async def test_hardening_shows_in_inspect(
    runtime: DockerRuntime, docker_client: docker.DockerClient, fleet: str, sim_image: str
) -> None:
    spec = dataclasses.replace(
        gateway_spec(
            "a",
            fleet=fleet,
            image=sim_image,
            resources={"cpus": 1.5, "pids": 256, "read_only_root": True, "log_max_files": 3},
        ),
        entrypoint=ENTRYPOINT,
    )
    container_id = await runtime.create(spec)
    await runtime.start(container_id)
    host = docker_client.api.inspect_container(container_id)["HostConfig"]
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["PidsLimit"] == 256
    assert host["NanoCpus"] == 1_500_000_000
    assert host["Memory"] == host["MemorySwap"] == 256 * 1024**2
    assert host["ReadonlyRootfs"] is True
    assert "/tmp" in host["Tmpfs"]
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "10m", "max-file": "3"},
    }
    (network,) = docker_client.api.networks(names=[spec.network])
    assert network["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    container = docker_client.containers.get(container_id)
    await until(lambda: b"listening" in container.logs(), timeout=20, what="the listener")
    secret = container.exec_run(["/usr/bin/stat", "-c", "%a", "/run/secrets/ibfleet/config.ini"])
    assert secret.output.decode().strip() == "400"
    assert container.exec_run(["/usr/bin/touch", "/etc/x"]).exit_code != 0
