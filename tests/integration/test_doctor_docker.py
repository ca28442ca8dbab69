"""``ibfleet doctor`` as an operator runs it, on the real engine: fit, engine down, port taken."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import docker
import pytest
import yaml

from tests.unit import fleetfiles as ff

pytestmark = pytest.mark.docker
EXE = str(Path(sys.executable).with_name("ibfleet"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fleet_file(tmp_path: Path, image: str) -> Path:
    data = ff.fleet(
        api={"listen": f"127.0.0.1:{free_port()}"},
        runtime={"image": image},
        storage={"path": str(tmp_path / "journal.sqlite")},
    )
    data["gateways"][0]["api_port"] = free_port()
    data["gateways"][1]["api_port"] = free_port()
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def doctor(path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, "doctor", "-c", str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250", **env},
    )


def row(out: str, check: str) -> str:
    """Status, detail and fix of ``check`` in ``doctor --json``'s output, as one line."""
    (found,) = [c for c in json.loads(out)["checks"] if c["check"] == check]
    return f"{found['status']} {found['detail']} {found['fix']}"


@pytest.fixture
def present_image(docker_client: docker.DockerClient) -> str:
    tags = [tag for image in docker_client.images.list() for tag in image.tags]
    if not tags:
        pytest.skip("the engine holds no tagged image")
    return tags[0]


def test_doctor_on_a_fit_host_exits_0(tmp_path: Path, present_image: str) -> None:
    path = fleet_file(tmp_path, present_image)
    result = doctor(path, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert row(result.stdout, "docker").startswith("ok engine ")
    table = doctor(path)
    assert table.returncode == 0 and "fit to run" in table.stdout
    assert "Traceback" not in result.stderr


def test_doctor_reports_a_dead_engine_with_how_to_start_it(
    tmp_path: Path, present_image: str
) -> None:
    dead = tmp_path / "no-engine.sock"
    result = doctor(fleet_file(tmp_path, present_image), "--json", DOCKER_HOST=f"unix://{dead}")
    assert result.returncode == 1, result.stdout
    line = row(result.stdout, "docker")
    assert "FAIL" in line and str(dead) in line
    assert "systemctl start docker" in line
    assert "Traceback" not in result.stderr


def test_doctor_reports_an_occupied_port_with_the_setting_to_change(
    tmp_path: Path, present_image: str
) -> None:
    path = fleet_file(tmp_path, present_image)
    port = yaml.safe_load(path.read_text())["gateways"][1]["api_port"]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = doctor(path, "--json")
    assert result.returncode == 1, result.stdout
    line = row(result.stdout, f"port 127.0.0.1:{port}")
    assert "FAIL" in line and "another process" in line
    assert f"sport = :{port}" in line and "gateways[1].api_port" in line


def test_doctor_reports_a_missing_image_with_how_to_get_it(tmp_path: Path) -> None:
    result = doctor(fleet_file(tmp_path, "ibfleet-absent/never:built"), "--json")
    assert result.returncode == 1
    assert "docker pull ibfleet-absent/never:built" in row(
        result.stdout, "image ibfleet-absent/never:built"
    )
