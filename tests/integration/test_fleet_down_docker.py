"""``ibfleet fleet down`` against the real engine: the fleet's containers, network and iptables
chains are gone afterwards, a container only named like the fleet's is left, and nothing is
removed while a supervisor's API answers or the operator declines."""

from __future__ import annotations

import contextlib
import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from gateway.docker_runtime import DockerRuntime
from gateway.firewall import chain_names
from gateway.firewall_helper import LABEL_HELPER_FLEET
from gateway.spec import LABEL_FLEET
from tests.integration import test_isolation_docker as isolation
from tests.integration.test_docker_runtime import free_port
from tests.integration.test_isolation_docker import iptables_dump, running_gateway

pytestmark = pytest.mark.docker

# The isolation tests' fixtures; their fleet's finalizer also checks that its rules are gone.
fleet = isolation.fleet
runtime = isolation.runtime


def fleet_file(tmp_path: Path, fleet: str, *, api_port: int) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(
        f"fleet: {fleet}\ngateways: []\n"
        f"runtime:\n  network: ibfleet-{fleet}\n"
        f"storage:\n  path: {tmp_path / 'journal.sqlite'}\n"
        f"api:\n  listen: 127.0.0.1:{api_port}\n"
    )
    return path


def ibfleet(*args: str, answer: str | None = None) -> subprocess.CompletedProcess[str]:
    """The installed command, as an operator runs it (stdout and stderr together)."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "ibfleet"), *args],
        input=answer,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,
        check=False,
    )


def labelled(client: docker.DockerClient, fleet: str) -> list[str]:
    found = client.api.containers(all=True, filters={"label": f"{LABEL_FLEET}={fleet}"})
    return sorted(str(c["Names"][0]).lstrip("/") for c in found)


async def test_fleet_down_removes_containers_network_and_chains_and_leaves_a_squatter(
    runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fleet: str,
    sim_image: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    spec, _cid, _ip = await running_gateway(runtime, fleet, sim_image)
    squatter = docker_client.containers.create(
        sim_image, name=f"ibfleet-{fleet}-squatter", entrypoint=["sleep", "60"]
    )
    # A stopped containerised supervisor's firewall helper (the label is all fleet down reads):
    # it serves nobody now and goes with the fleet; another fleet's stays.
    helper = docker_client.containers.create(
        sim_image,
        name=f"ibfleet_firewall_sup-{fleet}",
        entrypoint=["sleep", "60"],
        labels={LABEL_HELPER_FLEET: fleet},
    )
    other_helper = docker_client.containers.create(
        sim_image,
        name=f"ibfleet_firewall_other-{fleet}",
        entrypoint=["sleep", "60"],
        labels={LABEL_HELPER_FLEET: f"{fleet}-other"},
    )

    def remove_helpers() -> None:
        for name in (helper.name, other_helper.name):
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.api.remove_container(name, force=True)

    request.addfinalizer(remove_helpers)  # also when an assertion below fails
    forward, output = chain_names(fleet)
    assert forward in iptables_dump() and output in iptables_dump()
    path = fleet_file(tmp_path, fleet, api_port=free_port())

    result = ibfleet("fleet", "down", "--yes", "--timeout", "5", "-c", str(path))

    assert result.returncode == 0, result.stdout
    assert f"removed container {spec.name}" in result.stdout
    assert f"removed network ibfleet-{fleet}" in result.stdout
    assert f"removed iptables chain {forward}" in result.stdout
    assert f"left alone: container ibfleet-{fleet}-squatter" in result.stdout
    assert f"removed firewall helper container {helper.name}" in result.stdout
    with pytest.raises(docker.errors.NotFound):
        helper.reload()
    other_helper.reload()  # another fleet's: left alone
    assert labelled(docker_client, fleet) == []
    assert docker_client.api.networks(names=[f"ibfleet-{fleet}"]) == []
    left = iptables_dump()
    assert forward not in left and output not in left
    assert f"ibfleet fleet={fleet} " not in left
    squatter.reload()  # still there: not the fleet's to remove
    assert squatter.name == f"ibfleet-{fleet}-squatter"


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"status":"ok"}')

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def answering_api() -> Iterator[int]:
    """Something answering on the fleet's API port, as a running supervisor would."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


async def test_fleet_down_is_refused_while_the_fleets_api_answers_and_removes_nothing(
    runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fleet: str,
    sim_image: str,
    tmp_path: Path,
    answering_api: int,
) -> None:
    spec, _cid, _ip = await running_gateway(runtime, fleet, sim_image)
    path = fleet_file(tmp_path, fleet, api_port=answering_api)
    result = ibfleet("fleet", "down", "--yes", "-c", str(path))
    assert result.returncode == 1
    assert f"refused: a supervisor answers at http://127.0.0.1:{answering_api}" in result.stdout
    assert labelled(docker_client, fleet) == [spec.name]
    assert chain_names(fleet)[0] in iptables_dump()


async def test_fleet_down_declined_at_the_prompt_removes_nothing(
    runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    fleet: str,
    sim_image: str,
    tmp_path: Path,
) -> None:
    spec, _cid, _ip = await running_gateway(runtime, fleet, sim_image)
    path = fleet_file(tmp_path, fleet, api_port=free_port())
    result = ibfleet("fleet", "down", "-c", str(path), answer="n\n")
    assert result.returncode == 1
    assert f"container {spec.name} (running)" in result.stdout
    assert "nothing removed" in result.stdout
    assert labelled(docker_client, fleet) == [spec.name]
