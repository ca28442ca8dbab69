"""Integration fixtures: the Docker engine, the simulator image (built once), and containers.

Every container and network a test makes gets a unique name and is removed by a finalizer, so
test runs can share one engine and a failing test leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from docker.models.containers import Container
from docker.models.networks import Network

from ibsim import image as sim_image_mod
from tests.waiting import wait_until

log = logging.getLogger("tests.integration")

# Each working copy may set its own tag so parallel checkouts do not rebuild one another's image.
TEST_IMAGE_TAG = os.environ.get("IBFLEET_TEST_IMAGE_TAG", "ibfleet-sim:test")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _no_engine(why: str) -> None:
    # In CI a missing engine is a broken machine; locally it is a reason to skip.
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but no Docker engine answers ({why})", pytrace=False)
    pytest.skip(f"no Docker engine answers ({why}); CI runs these")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client for the local engine; skips (locally) or fails (CI) when none answers."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # any failure to reach the engine means "no engine"
        _no_engine(f"{type(exc).__name__}: {exc}")
        raise  # unreachable: _no_engine skips or fails
    yield client
    _sweep_firewall(client)
    client.close()


def _sweep_firewall(client: docker.DockerClient) -> None:
    """Tests remove fleets' containers and networks directly: drop the rules they leave."""
    import asyncio

    from gateway.docker_runtime import DockerRuntime

    runtime = DockerRuntime(client)
    try:
        asyncio.run(runtime.sweep())
    except Exception as exc:  # no iptables here: nothing was applied either
        log.warning("firewall_sweep_failed error=%s", type(exc).__name__)
    finally:
        runtime.close()


@pytest.fixture(scope="session")
def sim_image_info(docker_client: docker.DockerClient) -> sim_image_mod.ImageInfo:
    """Build (or refresh from cache) the simulator image once per session."""

    def progress(line: str) -> None:
        log.debug("sim_image_build line=%s", line)

    try:
        info = sim_image_mod.build_sim_image(
            docker_client=docker_client,
            project_root=PROJECT_ROOT,
            tag=TEST_IMAGE_TAG,
            progress=progress,
        )
    except sim_image_mod.ImageBuildError as exc:
        pytest.fail(f"cannot build the simulator image: {exc}", pytrace=False)
    log.info(
        "sim_image_built tag=%s base=%s base_source=%s seconds=%.1f",
        info.tag,
        info.base,
        info.base_source.value,
        info.duration_s,
    )
    return info


@pytest.fixture(scope="session")
def sim_image(sim_image_info: sim_image_mod.ImageInfo) -> str:
    """The simulator image's tag."""
    return sim_image_info.tag


def unique_name(prefix: str) -> str:
    """A name no other test run uses at the same time."""
    return f"ibfleet-test-{prefix}-{uuid.uuid4().hex[:10]}"


class Containers:
    """Makes containers and networks with unique names and removes them all at teardown."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self._containers: list[Container] = []
        self._networks: list[Network] = []

    # The one sync wait helper, reachable from the fixture the container tests already hold.
    wait_until = staticmethod(wait_until)

    def network(self) -> Network:
        net = self.client.networks.create(
            unique_name("net"), driver="bridge", labels={"io.ibfleet.test": "1"}
        )
        self._networks.append(net)
        return net

    def run(self, image: str, command: list[str] | None = None, **kwargs: Any) -> Container:
        """Create and start a detached container (never auto-removed: logs survive exit)."""
        kwargs.setdefault("name", unique_name("c"))
        labels = {"io.ibfleet.test": "1", **kwargs.pop("labels", {})}
        container = self.client.containers.create(image, command, labels=labels, **kwargs)
        self._containers.append(container)
        container.start()
        container.reload()
        return container

    def logs(self, container: Container) -> str:
        return container.logs(stdout=True, stderr=True).decode("utf-8", errors="replace")

    def wait_log(
        self, container: Container, pattern: str, *, timeout: float, after: int = 0
    ) -> re.Match[str]:
        """Wait for a log line matching `pattern` (case-insensitive) after offset `after`."""
        regex = re.compile(pattern, re.IGNORECASE)

        def found() -> re.Match[str] | None:
            match = regex.search(self.logs(container), after)
            if match is None:
                container.reload()
                if container.status in ("exited", "dead"):
                    raise AssertionError(
                        f"{container.name} exited before logging {pattern!r}:\n"
                        f"{self.logs(container)[-3000:]}"
                    )
            return match

        try:
            result: re.Match[str] = wait_until(
                found, timeout=timeout, what=f"{pattern!r} in {container.name}"
            )
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\n--- log tail ---\n{self.logs(container)[-3000:]}"
            ) from None
        return result

    def wait_exit(self, container: Container, *, timeout: float) -> int:
        """Wait for the container to exit and return its exit status."""
        result = container.wait(timeout=timeout)
        return int(result["StatusCode"])

    def host_port(self, container: Container, port: str, *, timeout: float = 20.0) -> int:
        """The ephemeral host port Docker chose for a published container port."""

        def bound() -> int | None:
            container.reload()
            ports = container.attrs["NetworkSettings"]["Ports"] or {}
            bindings = ports.get(port) or []
            return int(bindings[0]["HostPort"]) if bindings else None

        value: int = wait_until(bound, timeout=timeout, what=f"host port for {port}")
        return value

    def cleanup(self) -> None:
        for container in reversed(self._containers):
            try:
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                log.warning("test_cleanup_failed container=%s error=%s", container.name, exc)
        for net in reversed(self._networks):
            try:
                net.remove()
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                log.warning("test_cleanup_failed network=%s error=%s", net.name, exc)


@pytest.fixture
def containers(docker_client: docker.DockerClient, request: pytest.FixtureRequest) -> Containers:
    """Container/network factory for one test; everything it made is removed afterwards."""
    kit = Containers(docker_client)
    request.addfinalizer(kit.cleanup)
    return kit
