"""No unfiltered IPv6 path to a gateway, against the real engine: the fleet's rules are IPv4, so
a fleet network with IPv6 and a port published on an IPv6 address are refused, and a fleet
container has no IPv6 address at all."""

from __future__ import annotations

import secrets

import docker
import pytest

from gateway.docker_isolation import ICC_OPTION
from gateway.docker_runtime import DockerRuntime
from gateway.runtime import RuntimeFailure
from gateway.spec import LABEL_FLEET
from tests.integration import test_isolation_docker as isolation
from tests.integration.test_docker_runtime import gateway_spec
from tests.integration.test_isolation_docker import probe_from_host, running_gateway

pytestmark = pytest.mark.docker

# The isolation tests' fixtures; their fleet's finalizer also checks that its rules are gone.
fleet = isolation.fleet
runtime = isolation.runtime


def fleet_containers(client: docker.DockerClient, fleet: str) -> list[object]:
    return list(client.api.containers(all=True, filters={"label": f"{LABEL_FLEET}={fleet}"}))


async def test_a_fleet_network_with_ipv6_is_refused_and_no_container_is_created(
    runtime: DockerRuntime, docker_client: docker.DockerClient, fleet: str, sim_image: str
) -> None:
    # The fleet's own label and no inter-container traffic: only IPv6 is wrong with it.
    docker_client.api.create_network(
        f"ibfleet-{fleet}",
        driver="bridge",
        labels={LABEL_FLEET: fleet},
        options={ICC_OPTION: "false"},
        enable_ipv6=True,
        ipam=docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet=f"fd{secrets.token_hex(1)}:7::/64")]
        ),
    )
    spec = gateway_spec("a", fleet=fleet, image=sim_image)
    with pytest.raises(RuntimeFailure, match="has IPv6 enabled"):
        await runtime.create(spec)
    assert fleet_containers(docker_client, fleet) == []


async def test_a_port_published_on_an_ipv6_address_is_refused_before_anything_exists(
    runtime: DockerRuntime, docker_client: docker.DockerClient, fleet: str, sim_image: str
) -> None:
    spec = gateway_spec("a", fleet=fleet, image=sim_image, bind="::1")
    with pytest.raises(RuntimeFailure, match=r"IPv6 address ::1.*127\.0\.0\.1"):
        await runtime.create(spec)
    assert fleet_containers(docker_client, fleet) == []
    assert docker_client.api.networks(names=[f"ibfleet-{fleet}"]) == []


async def test_a_gateway_has_no_ipv6_address_and_its_port_none_on_ipv6(
    runtime: DockerRuntime, docker_client: docker.DockerClient, fleet: str, sim_image: str
) -> None:
    spec, container_id, _ip = await running_gateway(runtime, fleet, sim_image)
    network = docker_client.api.inspect_network(spec.network)
    assert network["EnableIPv6"] is False
    # No address of any scope (not even link-local): nothing for an IPv6 client to aim at.
    container = docker_client.containers.get(container_id)
    code, out = container.exec_run(["cat", "/proc/net/if_inet6"])
    assert code == 0 and out.decode().strip() == ""
    port = spec.ports[0].host_port
    assert probe_from_host("::1", port, as_nobody=False) == "refused"
    assert probe_from_host("::1", port, as_nobody=True) == "refused"
