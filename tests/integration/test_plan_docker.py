"""``ibfleet plan`` against the real engine: a simulator fleet brought up from one fleet file, then
planned with a changed one. It lists exactly the changed gateways, names the changed parts, says
which need 2FA, exits 1, and changes nothing; the unchanged file plans nothing and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from gateway.docker_runtime import DockerRuntime
from gateway.secret_files import load_or_create_fingerprint_key
from gateway.spec import LABEL_FLEET
from supervisor import settings as settings_mod
from supervisor import wiring
from supervisor.orchestrator import Orchestrator
from tests.net import free_port

pytestmark = pytest.mark.docker


def fleet_file(
    tmp: Path, *, fleet: str, image: str, gw2_image: str, gw3_env: str, ports: list[int]
) -> str:
    return f"""fleet: {fleet}
timezone: UTC
runtime:
  network: ibfleet-{fleet}
simulator:
  enabled: true
  image: {image}
  control_port: {ports[3]}
  twofa_gateways: [gw2]
storage:
  path: {tmp}/journal.sqlite
api:
  listen: 127.0.0.1:{ports[4]}
gateways:
  - {{name: gw1, mode: paper, account: DU900001, username: {{env: U1}}, password: {{env: P1}},
      api_port: {ports[0]}, memory_limit: 256m}}
  - {{name: gw2, mode: paper, account: DU900002, username: {{env: U2}}, password: {{env: P2}},
      api_port: {ports[1]}, memory_limit: 256m, image: "{gw2_image}"}}
  - {{name: gw3, mode: paper, account: DU900003, username: {{env: U3}}, password: {{env: P3}},
      api_port: {ports[2]}, memory_limit: 256m, env: {{JAVA_HEAP_SIZE: "{gw3_env}"}}}}
"""


@pytest.fixture
def fleet(docker_client: docker.DockerClient) -> Iterator[str]:
    name = f"p{uuid.uuid4().hex[:10]}"
    yield name
    for item in docker_client.api.containers(all=True, filters={"label": f"{LABEL_FLEET}={name}"}):
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.api.remove_container(item["Id"], force=True, v=True)
    for net in docker_client.api.networks(names=[f"ibfleet-{name}"]):
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.api.remove_network(net["Id"])


ENV = {f"U{i}": f"plan-user-{i}" for i in (1, 2, 3)} | {
    f"P{i}": f"secret-pw-{i}" for i in (1, 2, 3)
}


def run_plan(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("ibfleet")), "plan", "-c", str(path), "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=60,
        check=False,
    )


async def test_plan_lists_exactly_the_changed_gateways_and_which_need_2fa(
    docker_client: docker.DockerClient, sim_image: str, fleet: str, tmp_path: Path
) -> None:
    # A second tag of the same image: a new image name for gw2, nothing to build.
    repo, _, _tag = sim_image.rpartition(":")
    upgraded = f"{repo}:plan-{fleet}"
    docker_client.images.get(sim_image).tag(repo, f"plan-{fleet}")
    ports = [free_port() for _ in range(5)]
    before = tmp_path / "before.yaml"
    after = tmp_path / "after.yaml"
    before.write_text(
        fleet_file(
            tmp_path, fleet=fleet, image=sim_image, gw2_image=sim_image, gw3_env="256m", ports=ports
        )
    )
    after.write_text(
        fleet_file(
            tmp_path, fleet=fleet, image=sim_image, gw2_image=upgraded, gw3_env="384m", ports=ports
        )
    )
    settings = settings_mod.load_settings(before, environ=ENV).settings
    key = load_or_create_fingerprint_key(wiring.fingerprint_key_path(settings))
    desired = wiring.desired_specs(
        settings, wiring.resolve_credentials(settings, ENV), fingerprint_key=key
    )
    runtime = DockerRuntime(docker_client, call_timeout=60.0)
    try:
        orch = Orchestrator(runtime=runtime, fleet=fleet, desired=desired, publish=lambda e: None)
        await orch.reconcile_once()
        ids_before = {c.gateway: c.id for c in await runtime.list(fleet=fleet) if c.is_alive}
        assert set(ids_before) == {"sim-broker", "gw1", "gw2", "gw3"}

        same = await asyncio.to_thread(run_plan, before)
        assert same.returncode == 0, same.stderr
        assert not json.loads(same.stdout)["changes"]

        changed = await asyncio.to_thread(run_plan, after)
        assert changed.returncode == 1, changed.stderr
        body = json.loads(changed.stdout)
        lines = {g["gateway"]: g for g in body["gateways"]}
        touched = {name for name, g in lines.items() if g["change"] != "none"}
        assert touched == {"gw2", "gw3"}, lines
        assert lines["sim-broker"]["change"] == "none"
        gw2, gw3 = lines["gw2"], lines["gw3"]
        assert (gw2["change"], gw2["recreate"], gw2["full_login"]) == ("recreate", True, True)
        assert [p for p, v in gw2["changed"].items() if v] == ["image"]
        assert [p for p, v in gw3["changed"].items() if v] == ["env"]
        assert (gw2["needs_2fa"], gw3["needs_2fa"]) == (True, False)
        assert gw2["when"] == gw3["when"] == "now"
        assert body["supervisor"] is None  # none runs: compared with the engine only
        assert "secret-pw" not in changed.stdout  # no value printed

        # Planning changed nothing.
        ids_after = {c.gateway: c.id for c in await runtime.list(fleet=fleet) if c.is_alive}
        assert ids_after == ids_before
    finally:
        runtime.close()
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(upgraded)
