"""The simulator image: builds with no registry, rebuilds from cache, runs as a non-root user."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import docker
import pytest

from ibsim import image as sim_image_mod

pytestmark = pytest.mark.docker

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SECRET_WORDS = re.compile(r"passw|secret|token|api[_-]?key|credential", re.IGNORECASE)


def _project_version() -> str:
    data = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return str(data["project"]["version"])


def _step_is_cached(log: tuple[str, ...], step_fragment: str) -> bool:
    """True when the build step whose instruction contains `step_fragment` used the cache."""
    for index, line in enumerate(log):
        if line.startswith("Step ") and step_fragment in line:
            following = log[index + 1] if index + 1 < len(log) else ""
            return "Using cache" in following
    raise AssertionError(f"no build step containing {step_fragment!r} in the log")


def _run_to_exit(containers, image: str, command: list[str], **kwargs) -> tuple[int, str]:
    container = containers.run(image, command, **kwargs)
    status = containers.wait_exit(container, timeout=60)
    return status, containers.logs(container)


def test_image_builds_without_a_registry(
    docker_client: docker.DockerClient, sim_image_info: sim_image_mod.ImageInfo
) -> None:
    image = docker_client.images.get(sim_image_info.tag)
    labels = image.labels
    assert labels["io.ibfleet.component"] == "sim"
    assert labels["io.ibfleet.version"] == _project_version()
    assert image.attrs["Config"]["Entrypoint"] == ["/opt/ibfleet/bin/ibfleet", "sim"]
    assert image.attrs["Config"]["Cmd"] == ["gateway"]
    assert {"4003/tcp", "4004/tcp", "7462/tcp"} <= set(image.attrs["Config"]["ExposedPorts"])
    # The base is the one the build reports, whether pulled or made locally with debootstrap.
    assert docker_client.images.get(sim_image_info.base).id == sim_image_info.base_id


def test_second_build_reuses_base_and_dependency_layers(
    docker_client: docker.DockerClient, sim_image_info: sim_image_mod.ImageInfo
) -> None:
    again = sim_image_mod.build_sim_image(
        docker_client=docker_client,
        project_root=PROJECT_ROOT,
        tag=sim_image_info.tag,
    )
    assert again.base_id == sim_image_info.base_id
    assert again.base_source is not sim_image_mod.BaseSource.LOCAL_BUILT
    assert again.deps_wheels_cached
    assert _step_is_cached(again.build_log, "--find-links /wheels/deps")
    assert _step_is_cached(again.build_log, "COPY --from=deps /opt/ibfleet /opt/ibfleet")
    assert again.steps_cached >= 5


def test_help_runs_in_the_container(containers, sim_image: str) -> None:
    status, output = _run_to_exit(containers, sim_image, ["--help"])
    assert status == 0, output
    assert "Usage" in output
    assert "gateway" in output
    assert "broker" in output


def test_container_runs_as_non_root(
    containers, docker_client: docker.DockerClient, sim_image: str
) -> None:
    assert docker_client.images.get(sim_image).attrs["Config"]["User"] == "10001:10001"
    status, output = _run_to_exit(containers, sim_image, ["-u"], entrypoint=["id"])
    assert status == 0, output
    assert output.strip() == "10001"


def test_image_has_no_secrets_baked_in(
    containers, docker_client: docker.DockerClient, sim_image: str
) -> None:
    image = docker_client.images.get(sim_image)
    env_names = [entry.split("=", 1)[0] for entry in image.attrs["Config"]["Env"] or []]
    assert not [name for name in env_names if SECRET_WORDS.search(name)], env_names
    assert not [name for name in env_names if name.startswith("PIP_")], env_names
    for layer in image.history():
        assert not SECRET_WORDS.search(layer.get("CreatedBy") or ""), layer["CreatedBy"]
    # No package-index credentials or configuration from the build host came along.
    probe = (
        "find / -xdev \\( -name .netrc -o -name pip.conf -o -name pip.ini -o -name .pypirc "
        "-o -name .git-credentials -o -path '*/.docker/config.json' -o -name 'id_rsa*' "
        "-o -name '*.key' \\) -print 2>/dev/null; true"
    )
    status, output = _run_to_exit(containers, sim_image, ["-c", probe], entrypoint=["sh"])
    assert status == 0, output
    assert output.strip() == ""
