"""deploy/compose: the file validates (``docker-compose config``, Debian's docker-compose), every
file it mounts exists, Prometheus accepts its scrape config with ibfleet's rules, and the
supervisor service, started from the compose definition with the Docker SDK and the locally
built image, runs the example simulator fleet."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest
import yaml

from tests.integration.conftest import PROJECT_ROOT, Containers
from tests.integration.test_supervisor_image import SOCKET, fleet, supervisor_image  # noqa: F401
from tests.net import free_port
from tests.waiting import until

COMPOSE = PROJECT_ROOT / "deploy" / "compose"
# Mounted from the operator's own secrets directory: not in the repository.
OPERATOR_FILES = {COMPOSE / "secrets" / "grafana-admin-password"}


def resolved(env: dict[str, str] | None = None) -> dict[str, Any]:
    """``docker-compose config``: the file validated and resolved (paths absolute)."""
    tool = shutil.which("docker-compose")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but docker-compose (Debian's package) is not installed")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    done = subprocess.run(
        [tool, "-f", str(COMPOSE / "compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = yaml.safe_load(done.stdout)
    return data


def binds(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    out = []
    for item in service.get("volumes", []):
        source, target, *mode = str(item).split(":")
        out.append((source, target, mode[0] if mode else "rw"))
    return out


def test_the_compose_file_validates_and_mounts_only_files_that_exist() -> None:
    data = resolved()
    services = data["services"]
    assert set(services) == {"supervisor", "prometheus", "alertmanager", "grafana"}
    for name, service in services.items():
        for source, _target, _mode in binds(service):
            if source.startswith("/") and source != SOCKET:
                path = Path(source)
                assert path.exists() or path in OPERATOR_FILES, f"{name} mounts missing {source}"
    supervisor = {target: (source, mode) for source, target, mode in binds(services["supervisor"])}
    assert supervisor["/etc/ibfleet/fleet.yaml"][1] == "ro"
    assert supervisor["/run/secrets/ibfleet"][1] == "ro"
    assert supervisor["/var/lib/ibfleet"][0] == "journal"
    prometheus = {target: source for source, target, _ in binds(services["prometheus"])}
    rules = Path(prometheus["/etc/prometheus/ibfleet-rules.yml"])
    assert rules == PROJECT_ROOT / "deploy" / "prometheus" / "ibfleet-rules.yml"
    grafana = {target: source for source, target, _ in binds(services["grafana"])}
    dashboard = Path(grafana["/var/lib/grafana/dashboards/ibfleet.json"])
    assert dashboard == PROJECT_ROOT / "deploy" / "grafana" / "ibfleet.json"
    provider = yaml.safe_load((COMPOSE / "grafana/provisioning/dashboards/ibfleet.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_prometheus_accepts_the_scrape_config_with_ibfleets_rules(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's prometheus package)")
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    assert [job["job_name"] for job in config["scrape_configs"]] == ["ibfleet"]
    # The rules at the path the container sees them, here: the repository's file.
    config["rule_files"] = [str(PROJECT_ROOT / "deploy" / "prometheus" / "ibfleet-rules.yml")]
    target = tmp_path / "prometheus.yml"
    target.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [promtool, "check", "config", str(target)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.docker
@pytest.mark.slow
async def test_the_compose_supervisor_service_runs_the_example_simulator_fleet(
    docker_client: docker.DockerClient,
    containers: Containers,
    supervisor_image: str,  # noqa: F811
    sim_image: str,
    fleet: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    gid = str(os.stat(SOCKET).st_gid)
    service = resolved({"DOCKER_GID": gid, "IBFLEET_IMAGE": supervisor_image})["services"][
        "supervisor"
    ]
    # The example fleet file, made unique beside other tests' fleets.
    example = yaml.safe_load((COMPOSE / "fleet.yaml").read_text())
    example["fleet"] = fleet
    example["runtime"]["network"] = f"ibfleet-{fleet}"
    example["simulator"].update(image=sim_image, control_port=free_port())
    for gw in example["gateways"]:
        gw["api_port"] = free_port()
    config = tmp_path / "fleet.yaml"
    config.write_text(yaml.safe_dump(example))
    config.chmod(0o644)
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o755)
    token = uuid.uuid4().hex
    for name in ("sim-a-username", "sim-a-password", "sim-b-username", "sim-b-password"):
        (secrets / name).write_text(f"{name}-{fleet}\n")
    (secrets / "api-token").write_text(token)
    for path in secrets.iterdir():
        path.chmod(0o644)
    secrets.chmod(0o755)

    api_port = free_port()
    journal = docker_client.volumes.create(f"ibfleet-test-journal-{fleet}")
    monitoring = containers.network()
    mounts = {}
    for source, target, mode in binds(service):
        if target == "/etc/ibfleet/fleet.yaml":
            source = str(config)
        elif target == "/run/secrets/ibfleet":
            source = str(secrets)
        elif target == "/var/lib/ibfleet":
            source = journal.name
        mounts[source] = {"bind": target, "mode": mode}
    try:
        supervisor = containers.run(
            service["image"],
            name=f"ibfleet-test-sup-{fleet}",
            group_add=service["group_add"],
            volumes=mounts,
            # The compose file publishes 127.0.0.1:8710; a free fixed port here, beside other
            # tests (an ephemeral one moves when the supervisor joins the fleet network).
            ports={"8710/tcp": ("127.0.0.1", api_port)},
            network=monitoring.name,
            networking_config={
                monitoring.name: docker_client.api.create_endpoint_config(aliases=["supervisor"])
            },
            stop_signal="SIGTERM",
        )
        assert service["group_add"] == [gid]
        port = api_port
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
            last: list[str] = []

            async def ready() -> bool:
                supervisor.reload()
                if supervisor.status in ("exited", "dead"):
                    raise AssertionError(containers.logs(supervisor)[-4000:])
                try:
                    reply = await api.get("/readyz")
                except httpx.HTTPError as exc:
                    last[:] = [repr(exc)]
                    return False
                last[:] = [reply.text]
                return reply.status_code == 200

            try:
                await until(ready, 180, what="the compose supervisor's /readyz", step=0.5)
            except AssertionError as exc:
                tail = containers.logs(supervisor)[-2000:]
                raise AssertionError(f"{exc} (port {port}: {last})\n{tail}") from None
            # Prometheus scrapes it by its service name, which api.allowed_hosts admits.
            scrape = await api.get("/metrics", headers={"Host": "supervisor:8710"})
            assert scrape.status_code == 200 and "ibfleet_gateway_ready" in scrape.text
        supervisor.stop(timeout=60)
    finally:
        containers.cleanup()
        with contextlib.suppress(docker.errors.NotFound):
            journal.remove(force=True)
