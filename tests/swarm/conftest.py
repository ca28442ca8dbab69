"""The Swarm lab fixture: one three-node cluster per test session, the simulator loaded.

Reuses the integration tests' engine and simulator-image fixtures (the image is built from this
tree, tagged ``IBFLEET_TEST_IMAGE_TAG``).
"""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from tests.integration.conftest import docker_client, sim_image, sim_image_info
from tests.swarm.lab import SwarmLab, shared_lab

__all__ = ["docker_client", "sim_image", "sim_image_info", "swarm_lab"]


@pytest.fixture(scope="session")
def swarm_lab(docker_client: docker.DockerClient, sim_image: str) -> Iterator[SwarmLab]:
    """A started three-node Swarm lab holding the simulator image; removed after the session."""
    with shared_lab(docker_client, sim_image) as lab:
        yield lab


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests that kill the Raft leader last (``@pytest.mark.swarm(kills_leader=True)``).

    After them a node other than n1 leads, and a later test that kills the leader's node would
    time an election on top of what it means to measure.
    """
    del config

    def kills_leader(item: pytest.Item) -> bool:
        marker = item.get_closest_marker("swarm")
        return bool(marker is not None and marker.kwargs.get("kills_leader"))

    items.sort(key=kills_leader)
