"""Where the supervisor and its strategies dial a gateway's API: the host's published port, or
the container's own port on the fleet network when the supervisor runs in a container there.

Pure. On the host the published port (``bind``:``api_port``) is the way in; from a container the
host's loopback is not reachable, but the gateway is, by its container name on the fleet
network (the engine's DNS) and the image's own API port (4003 live, 4004 paper).
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.config import GatewayConfig, TradingMode
from gateway.spec import API_PORT_LIVE, API_PORT_PAPER, container_name

__all__ = ["ApiEndpoint", "from_fleet_network", "from_host"]

#: (host, port) to dial for a gateway's API.
ApiEndpoint = Callable[[GatewayConfig], tuple[str, int]]


def from_host(gw: GatewayConfig) -> tuple[str, int]:
    """The published port, as a client on the engine's host reaches it."""
    return gw.local_host, gw.api_port


def from_fleet_network(fleet: str) -> ApiEndpoint:
    """The container's API port by its name, for a supervisor on the fleet network."""

    def endpoint(gw: GatewayConfig) -> tuple[str, int]:
        port = API_PORT_LIVE if gw.mode is TradingMode.LIVE else API_PORT_PAPER
        return container_name(fleet=fleet, gateway=gw.name), port

    return endpoint
