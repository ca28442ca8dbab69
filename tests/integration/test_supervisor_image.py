"""The supervisor image for real: built here (cached like the simulator image), it supervises a
simulator fleet from inside its container with the fleet file and secrets mounted read-only and
the Docker socket mounted; a soft restart reaches IBC's command server through ControlFrom (the
container's own address), a `docker kill` is healed, the HEALTHCHECK turns healthy, and nothing
is left behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest

from gateway.docker_runtime import DockerRuntime
from gateway.firewall import chain_names
from gateway.firewall_helper import LABEL_HELPER_OF
from gateway.spec import LABEL_FLEET
from ibsim import image as pipeline
from supervisor import cli_image
from tests.integration.conftest import PROJECT_ROOT, TEST_IMAGE_TAG, Containers
from tests.net import free_port
from tests.waiting import until

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# One supervisor image per working copy, like the simulator's (IBFLEET_TEST_IMAGE_TAG's suffix).
SUPERVISOR_TAG = os.environ.get(
    "IBFLEET_TEST_SUPERVISOR_TAG", f"ibfleet:{TEST_IMAGE_TAG.rpartition(':')[2] or 'test'}"
)
SOCKET = "/var/run/docker.sock"
SECRETS = "/run/secrets/ibfleet"


@pytest.fixture(scope="session")
def supervisor_image(docker_client: docker.DockerClient) -> str:
    try:
        info = cli_image.build_supervisor_image(
            docker_client=docker_client, project_root=PROJECT_ROOT, tag=SUPERVISOR_TAG
        )
    except pipeline.ImageBuildError as exc:
        pytest.fail(f"cannot build the supervisor image: {exc}", pytrace=False)
    return info.tag


def fleet_file(fleet: str, sim_image: str, control_port: int) -> str:
    gateways = "\n".join(
        f"""  - {{name: gw-{x}, mode: paper, account: DU7000001,
      username: {{file: {SECRETS}/user-{x}}}, password: {{file: {SECRETS}/pass-{x}}},
      api_port: {free_port()}, memory_limit: 256m, client_ids: {{start: {s}, end: {s + 48}}}}}"""
        for x, s in (("a", 1), ("b", 50))
    )
    return f"""fleet: {fleet}
timezone: UTC
runtime: {{network: ibfleet-{fleet}}}
simulator: {{enabled: true, image: {sim_image}, control_port: {control_port}}}
gateways:
{gateways}
alerts:
  routes:
    - {{urls: ["console://"], min_severity: info}}
api: {{listen: "0.0.0.0:8710", token: {{file: {SECRETS}/api-token}}}}
storage: {{path: /var/lib/ibfleet/journal.sqlite}}
health: {{heartbeat_every: 500ms, heartbeat_deadline: 1s}}
"""


@pytest.fixture
def fleet(docker_client: docker.DockerClient) -> Iterator[str]:
    """A unique fleet; its containers, network, rules and the firewall helper go at the end."""
    name = f"i{uuid.uuid4().hex[:10]}"
    yield name
    for filters in ({"label": f"{LABEL_FLEET}={name}"}, {"name": f"ibfleet-{name}-"}):
        for item in docker_client.api.containers(all=True, filters=filters):
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.api.remove_container(item["Id"], force=True, v=True)
    helpers = {"label": f"{LABEL_HELPER_OF}=ibfleet-test-sup-{name}"}
    for item in docker_client.api.containers(all=True, filters=helpers):
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.api.remove_container(item["Id"], force=True)
    for net in docker_client.api.networks(names=[f"ibfleet-{name}"]):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            docker_client.api.remove_network(net["Id"])
    runtime = DockerRuntime(docker_client)
    try:
        asyncio.run(runtime.teardown(name))
    finally:
        runtime.close()


def secrets_dir(tmp_path: Path, token: str) -> Path:
    folder = tmp_path / "secrets"
    folder.mkdir()
    values = {"user-a": "image-user-a", "pass-a": uuid.uuid4().hex}
    values |= {"user-b": "image-user-b", "pass-b": uuid.uuid4().hex, "api-token": token}
    for name, value in values.items():
        path = folder / name
        path.write_text(value + "\n")
        path.chmod(0o644)  # read by the image's uid 10001, through a read-only mount
    folder.chmod(0o755)
    return folder


def restarts(metrics: str, gateway: str, kind: str) -> float:
    pattern = (
        rf'^ibfleet_gateway_restarts_total\{{[^}}]*gateway="{gateway}"[^}}]*kind="{kind}"'
        rf"[^}}]*\}} ([0-9.e+]+)$"
    )
    match = re.search(pattern, metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_the_image_supervises_a_simulator_fleet_from_inside_its_container(
    docker_client: docker.DockerClient,
    containers: Containers,
    supervisor_image: str,
    sim_image: str,
    fleet: str,
    tmp_path: Path,
) -> None:
    token = uuid.uuid4().hex
    config = tmp_path / "fleet.yaml"
    control_port = free_port()
    config.write_text(fleet_file(fleet, sim_image, control_port))
    config.chmod(0o644)
    secrets = secrets_dir(tmp_path, token)
    journal = docker_client.volumes.create(f"ibfleet-test-journal-{fleet}")
    api_port = free_port()
    try:
        supervisor = containers.run(
            supervisor_image,
            name=f"ibfleet-test-sup-{fleet}",
            group_add=[str(os.stat(SOCKET).st_gid)],
            volumes={
                SOCKET: {"bind": SOCKET, "mode": "rw"},
                str(config): {"bind": "/etc/ibfleet/fleet.yaml", "mode": "ro"},
                str(secrets): {"bind": SECRETS, "mode": "ro"},
                journal.name: {"bind": "/var/lib/ibfleet", "mode": "rw"},
            },
            # A fixed port: an ephemeral one may move when the supervisor joins the fleet network.
            ports={"8710/tcp": ("127.0.0.1", api_port)},
        )
        assert supervisor.attrs["Config"]["User"] == "10001:10001"
        port = api_port
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {token}"}

        async with httpx.AsyncClient(base_url=base, timeout=10) as api:

            async def ready() -> bool:
                supervisor.reload()
                if supervisor.status in ("exited", "dead"):
                    raise AssertionError(containers.logs(supervisor)[-4000:])
                with contextlib.suppress(httpx.HTTPError):
                    return (await api.get("/readyz")).status_code == 200
                return False

            await until(ready, 180, what="the containerised supervisor's /readyz", step=0.5)
            logs = containers.logs(supervisor)
            assert "supervisor_in_container" in logs, logs[-3000:]
            assert "isolation_not_enforced" not in logs, logs[-3000:]

            # It joined the fleet network, and ControlFrom names its address there.
            supervisor.reload()
            own = supervisor.attrs["NetworkSettings"]["Networks"][f"ibfleet-{fleet}"]["IPAddress"]
            gw_a = docker_client.containers.get(f"ibfleet-{fleet}-gw-a")
            ini = gw_a.exec_run(["/bin/cat", f"{SECRETS}/config.ini"]).output.decode()
            assert f"ControlFrom={own}" in ini.splitlines()
            # The host's rules admit it (installed through the helper, in the host's table).
            forward, _output = chain_names(fleet)
            helper = docker_client.containers.get(f"ibfleet_firewall_ibfleet-test-sup-{fleet}")
            rules = helper.exec_run(["iptables", "-w", "-S", forward], user="0:0")
            assert f"-A {forward} -s {own}/32" in rules.output.decode(), rules.output.decode()

            # A soft restart: IBC's command server accepts the supervisor's connection.
            before = gw_a.id
            reply = await api.post("/api/v1/gateways/gw-a/restart", headers=auth)
            assert reply.status_code == 200, reply.text
            await until(
                lambda: f"CommandServer accepted connection from: /{own}" in containers.logs(gw_a),
                60,
                what="IBC's command server to accept the supervisor",
            )
            assert "CommandServer denied access" not in containers.logs(gw_a)
            # IBC's RestartTask: the Gateway relaunches at the next minute, in this container.
            assert "Auto restart time changed" in containers.logs(gw_a)
            # That minute brought here through the simulator's clock fault, not waited for.
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{control_port}", timeout=10
            ) as control:
                moved = await control.post(
                    "/gateways/gw-a/faults/clock", json={"active": True, "value": 61}
                )
                assert moved.status_code == 200, moved.text
            await until(
                lambda: "Re-starting session" in containers.logs(gw_a),
                60,
                what="gw-a relaunched with its token",
            )
            await until(ready, 180, what="gw-a ready after its soft restart", step=0.5)
            metrics = (await api.get("/metrics")).text
            assert restarts(metrics, "gw-a", "soft") >= 1
            assert restarts(metrics, "gw-a", "hard") == 0
            assert docker_client.containers.get(f"ibfleet-{fleet}-gw-a").id == before

            # A killed gateway is healed.
            docker_client.containers.get(f"ibfleet-{fleet}-gw-b").kill()

            async def gw_b_down() -> bool:
                view = (await api.get("/api/v1/gateways/gw-b")).json()
                return not view["ready"]

            await until(gw_b_down, 30, what="the supervisor to see gw-b killed", step=0.2)
            await until(ready, 180, what="gw-b healed after docker kill", step=0.5)

        # The image's HEALTHCHECK on /healthz.
        def healthy() -> bool:
            supervisor.reload()
            return supervisor.attrs["State"].get("Health", {}).get("Status") == "healthy"

        await until(healthy, 60, what="the HEALTHCHECK to report healthy", step=1.0)

        # SIGTERM stops supervising and leaves the gateways running for the next start.
        supervisor.stop(timeout=60)
        assert supervisor.wait(timeout=60)["StatusCode"] == 0, containers.logs(supervisor)[-3000:]
        assert docker_client.containers.get(f"ibfleet-{fleet}-gw-a").status == "running"
    finally:
        containers.cleanup()
        with contextlib.suppress(docker.errors.NotFound):
            journal.remove(force=True)
