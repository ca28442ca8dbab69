"""Where the supervisor runs (on the engine's host, or in one of its containers) and the Docker
runtime that fits.

On the host the runtime is as it always was: the fleet network's gateway IP is the supervisor's
source address (ControlFrom, the firewall's rules), the host's iptables hold the rules, and
gateways are dialled on their published ports. In a container (found by
:mod:`gateway.docker_self`, or named by ``IBFLEET_SUPERVISOR_CONTAINER``) the supervisor joins
the fleet network, and its own address there is what ControlFrom and the rules admit; the rules
go into the host's table through a helper container (:mod:`gateway.firewall_helper`); gateways
are dialled by container name on the fleet network. If the helper cannot manage the rules, the
supervisor says so at start, runs paper gateways without them, and refuses live ones unless
the fleet file sets ``runtime.unprotected_live``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import docker
import docker.errors

from gateway import api_endpoint, docker_self, firewall
from gateway.config import TradingMode
from gateway.docker_runtime import DockerRuntime
from gateway.firewall_helper import HelperRunner
from gateway.runtime import Runtime
from gateway.swarm_runtime import SwarmRuntime
from supervisor.settings import FleetSettings

__all__ = [
    "ENV_CONTAINER",
    "SWARM_LIMIT",
    "Placement",
    "StartupRefused",
    "docker_runtime_for",
    "find_placement",
    "swarm_runtime_for",
]

log = logging.getLogger(__name__)

#: Unset or empty: find the container by itself; ``none``: run as on the host; else its name/id.
ENV_CONTAINER = "IBFLEET_SUPERVISOR_CONTAINER"


class StartupRefused(Exception):
    """The supervisor must not start here; the message says why and what to change."""


@dataclasses.dataclass(frozen=True, slots=True)
class Placement:
    """The supervisor's own container on the engine."""

    container_id: str
    name: str
    image_id: str


def find_placement(api: Any, environ: Mapping[str, str]) -> Placement | None:
    """The supervisor's container, or None when it runs on the engine's host."""
    wanted = environ.get(ENV_CONTAINER, "").strip()
    if wanted.lower() == "none":
        return None
    if wanted:
        try:
            attrs: dict[str, Any] | None = api.inspect_container(wanted)
        except docker.errors.NotFound:
            raise StartupRefused(
                f"{ENV_CONTAINER}={wanted!r} names no container on this engine"
            ) from None
    else:
        attrs = docker_self.read_own_container(api)
    if attrs is None:
        return None
    return Placement(
        container_id=str(attrs["Id"]),
        name=str(attrs.get("Name") or attrs["Id"]).lstrip("/"),
        image_id=str(attrs.get("Image") or ""),
    )


@dataclasses.dataclass(slots=True)
class DockerSetup:
    """The runtime, why isolation cannot be enforced (empty: it can), and how to dial gateways."""

    runtime: Runtime
    limits: list[str]
    endpoint: api_endpoint.ApiEndpoint
    placement: Placement | None = None


def docker_runtime_for(
    client: docker.DockerClient, settings: FleetSettings, *, environ: Mapping[str, str]
) -> DockerSetup:
    """The Docker runtime for where this process runs (blocking: engine calls, iptables)."""
    limits = firewall.isolation_limits(client.info())
    placement = find_placement(client.api, environ)
    if placement is None:
        return DockerSetup(DockerRuntime(client), limits, api_endpoint.from_host)
    log.info(
        "supervisor_in_container container=%s id=%s", placement.name, placement.container_id[:12]
    )
    helper = HelperRunner(
        client.api,
        image=placement.image_id,
        supervisor_name=placement.name,
        fleet=settings.fleet,
    )
    rules = firewall.Iptables(helper)
    problem = helper.problem() or rules.problem()
    endpoint = api_endpoint.from_fleet_network(settings.fleet)
    if problem is None:
        # Root only on the host's side: the engine's port proxy. The supervisor's own traffic
        # comes from its container address, which the forward chain admits.
        runtime = DockerRuntime(
            client, firewall=rules, supervisor_container=placement.container_id, host_uids=(0,)
        )
        return DockerSetup(runtime, limits, endpoint, placement)
    limit = (
        f"the supervisor runs in container {placement.name} and cannot install the host's "
        f"firewall rules through its helper ({problem})"
    )
    live = [gw.name for gw in settings.gateways if gw.mode is TradingMode.LIVE]
    if live and not settings.runtime.unprotected_live:
        raise StartupRefused(
            f"{limit}; refusing to run live gateways ({', '.join(live)}) unprotected. Let the "
            "engine run the helper (a container with --network host and NET_ADMIN), run the "
            "supervisor on the host, or set runtime.unprotected_live: true to accept it"
        )
    runtime = DockerRuntime(client, isolate=False, supervisor_container=placement.container_id)
    return DockerSetup(runtime, [*limits, limit], endpoint, placement)


#: What ibfleet cannot enforce on a Swarm (reported at start, as an engine's limits are).
SWARM_LIMIT = (
    "on Swarm ibfleet installs no firewall rules: any service attached to the fleet's overlay "
    "network reaches the gateways' API ports (IBC's ControlFrom still guards the command "
    "server), and a port a gateway publishes is open on every interface of its node"
)


def swarm_runtime_for(
    client: docker.DockerClient,
    settings: FleetSettings,
    *,
    environ: Mapping[str, str],
    secret_key: bytes,
) -> DockerSetup:
    """The Swarm runtime, for a supervisor that runs as a service on the fleet's overlay
    network of a manager node (blocking: engine calls). Anywhere else it could reach neither
    a gateway's API nor its command server, so it refuses to start."""
    swarm = client.info().get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active":
        raise StartupRefused(
            "runtime.kind is swarm but this Docker engine is in no Swarm; run the supervisor "
            "on a manager node of the Swarm (deploy/swarm/stack.yml), or set runtime.kind: docker"
        )
    if not swarm.get("ControlAvailable"):
        raise StartupRefused(
            "this Docker engine is a Swarm worker; the supervisor needs a manager's engine "
            "(placement constraint node.role==manager in deploy/swarm/stack.yml)"
        )
    network = settings.runtime.network
    placement = find_placement(client.api, environ)
    address = ""
    if placement is not None:
        attrs = client.api.inspect_container(placement.container_id)
        endpoint = ((attrs.get("NetworkSettings") or {}).get("Networks") or {}).get(network)
        address = str((endpoint or {}).get("IPAddress") or "")
    if not address:
        raise StartupRefused(
            f"runtime.kind swarm: the supervisor must run in a service attached to the overlay "
            f"network {network} (deploy/swarm/stack.yml), the only way to a gateway's API port "
            "and IBC's command server; this process is "
            + ("on no container" if placement is None else f"in {placement.name}, not on it")
        )
    live = [gw.name for gw in settings.gateways if gw.mode is TradingMode.LIVE]
    if live and not settings.runtime.unprotected_live:
        raise StartupRefused(
            f"{SWARM_LIMIT}; refusing to run live gateways ({', '.join(live)}) so. Keep other "
            "services off the fleet's network and set runtime.unprotected_live: true to accept it"
        )
    log.info("supervisor_on_swarm container=%s address=%s", placement and placement.name, address)
    runtime = SwarmRuntime(client.api, secret_key=secret_key, control_sources=(address,))
    endpoint_of = api_endpoint.from_fleet_network(settings.fleet)
    return DockerSetup(runtime, [SWARM_LIMIT], endpoint_of, placement)
