"""The chaos runs use the integration tests' Docker engine and simulator image fixtures."""

from tests.integration.conftest import docker_client, sim_image, sim_image_info

__all__ = ["docker_client", "sim_image", "sim_image_info"]
