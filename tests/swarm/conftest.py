"""The Swarm lab fixture: one three-node cluster per test session, the simulator loaded.

Reuses the integration tests' engine and simulator-image fixtures (the image is built from this
tree, tagged ``IBFLEET_TEST_IMAGE_TAG``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import docker
import pytest

from tests.integration.conftest import docker_client, sim_image, sim_image_info
from tests.swarm.lab import SwarmLab, sweep_leftovers

__all__ = ["docker_client", "sim_image", "sim_image_info", "swarm_lab"]

log = logging.getLogger("tests.swarm")


@pytest.fixture(scope="session")
def swarm_lab(docker_client: docker.DockerClient, sim_image: str) -> Iterator[SwarmLab]:
    """A started three-node Swarm lab holding the simulator image; removed after the session."""
    sweep_leftovers(docker_client)
    lab = SwarmLab(docker_client)
    started = time.monotonic()
    try:
        lab.start()
        lab.sim_image = sim_image
        lab.sim_image_id = lab.load_image(sim_image)
        log.info("swarm_lab_ready run=%s seconds=%.1f", lab.run_id, time.monotonic() - started)
        yield lab
    finally:
        lab.close()
