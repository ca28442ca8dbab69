"""The fleet's isolation on a Docker engine: which networks it adopts and its firewall rules.

:func:`network_problem` decides whether a network may be the fleet's (its label, inter-container
traffic off, no IPv6); :func:`binding_problem` refuses a published port the rules cannot filter.
:class:`FleetIsolation` keeps the fleet's iptables rules (:mod:`gateway.firewall`) in step with
its containers: every create and remove rebuilds them from the containers' labels and port
bindings, so they survive supervisor restarts, and the fleet's last container takes them along.

IPv6 is refused rather than filtered: the rules are IPv4. A fleet network with IPv6 would give
every container addresses no rule covers, and a port published on an IPv6 host address is
relayed by the engine's proxy (running as root, so the local-user rule admits it) to the
container: either would be an unfiltered path to the API port or the command server.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from typing import Any, Protocol

import docker
import docker.errors

from gateway.firewall import FirewallError, FleetGuard, GuardedGateway
from gateway.runtime import RuntimeFailure
from gateway.spec import LABEL_FLEET, LABEL_GATEWAY, LABEL_PEER_PORTS, LABEL_TRUSTED, PortBinding

__all__ = [
    "ICC_OPTION",
    "Firewall",
    "FleetIsolation",
    "binding_problem",
    "guarded_gateway",
    "network_problem",
]

log = logging.getLogger(__name__)

# The fleet network's bridge option that turns inter-container traffic off.
ICC_OPTION = "com.docker.network.bridge.enable_icc"


class Firewall(Protocol):
    """Applies and removes a fleet's isolation rules (:class:`gateway.firewall.Iptables`)."""

    def apply(self, guard: FleetGuard) -> None: ...

    def remove(self, fleet: str) -> None: ...

    def fleets(self) -> dict[str, str]: ...


def network_problem(attrs: dict[str, Any], *, fleet: str, isolate: bool) -> str | None:
    """Why an existing network cannot be the fleet's, or None: never adopt someone else's."""
    labels = attrs.get("Labels") or {}
    if labels.get(LABEL_FLEET) != fleet:
        owner = labels.get(LABEL_FLEET) or "no ibfleet label"
        return (
            f"exists but is not this fleet's ({LABEL_FLEET}: {owner}); refusing to adopt it. "
            "Remove it or set runtime.network to another name"
        )
    if isolate and str((attrs.get("Options") or {}).get(ICC_OPTION, "true")) != "false":
        return (
            "allows traffic between its containers (created before ibfleet isolated fleets); "
            "stop the fleet, remove the network with docker network rm, and start again"
        )
    configs = (attrs.get("IPAM") or {}).get("Config") or []
    v6 = [str(c["Subnet"]) for c in configs if ":" in str(c.get("Subnet") or "")]
    if isolate and (attrs.get("EnableIPv6") or v6):
        return (
            f"has IPv6 enabled ({', '.join(v6) or 'EnableIPv6'}), which ibfleet's IPv4 rules "
            "do not filter; stop the fleet, remove the network with docker network rm (ibfleet "
            "creates it IPv4-only), and start again"
        )
    return None


def binding_problem(binding: PortBinding) -> str | None:
    """Why a published port would bypass the fleet's rules, or None (IPv4 host addresses pass)."""
    try:
        address = ipaddress.ip_address(binding.host_ip)
    except ValueError:
        return f"host address {binding.host_ip!r} is not an IP address"
    if address.version == 6:
        return (
            f"port {binding.host_port} would be published on the IPv6 address {address}, which "
            "ibfleet's IPv4 rules do not filter (the engine's proxy would admit every local "
            "user and every remote source); bind to an IPv4 address such as 127.0.0.1"
        )
    return None


def guarded_gateway(attrs: dict[str, Any], peer_ports: set[int]) -> GuardedGateway:
    """A container's published ports and trusted sources, from its inspect (labels, bindings)."""
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    bindings = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    host_ports: list[int] = []
    container_port = 0
    for key, published in bindings.items():
        port, _, proto = str(key).partition("/")
        if proto != "tcp" or not port.isdigit():
            continue
        container_port = int(port)
        for binding in published or []:
            text = str((binding or {}).get("HostPort") or "")
            if text.isdigit():
                host_ports.append(int(text))
    for text in str(labels.get(LABEL_PEER_PORTS, "")).split(","):
        if text.strip().isdigit():
            peer_ports.add(int(text))
    trusted = tuple(t for t in str(labels.get(LABEL_TRUSTED, "")).split(",") if t)
    return GuardedGateway(
        name=str(labels.get(LABEL_GATEWAY, attrs.get("Name", ""))),
        host_ports=tuple(sorted(set(host_ports))),
        container_port=container_port,
        trusted=trusted,
    )


class FleetIsolation:
    """The fleet's firewall rules kept in step with its containers.

    Every method blocks (engine calls, iptables): the runtime calls them from its worker threads.
    """

    def __init__(
        self, api: docker.APIClient, firewall: Firewall, *, host_uids: tuple[int, ...]
    ) -> None:
        self._api = api
        self._firewall = firewall
        self._host_uids = host_uids
        # One rules update at a time: each rebuilds the fleet's chains from the containers it
        # lists, so two at once could leave the older listing's rules in place.
        self._lock = threading.Lock()

    def guard(
        self,
        fleet: str,
        network: str,
        *,
        subnets: tuple[str, ...] | None,
        supervisor_sources: tuple[str, ...],
    ) -> None:
        """Rebuild the fleet's rules from its containers; none left: remove them.

        ``subnets`` are the network's (read from the engine when None); ``supervisor_sources``
        are the supervisor's own container addresses on it, admitted to every guarded port.
        """
        with self._lock:
            self._sweep_locked()
            items = self._api.containers(all=True, filters={"label": f"{LABEL_FLEET}={fleet}"})
            if not items:
                self._firewall.remove(fleet)
                log.info("runtime_firewall_removed fleet=%s", fleet)
                return
            peer_ports: set[int] = set()
            gateways = [
                found
                for found in (self._guarded_or_none(item["Id"], peer_ports) for item in items)
                if found is not None
            ]
            if subnets is None:
                attrs = self._api.inspect_network(network)
                configs = (attrs.get("IPAM") or {}).get("Config") or []
                subnets = tuple(str(c["Subnet"]) for c in configs if c.get("Subnet"))
            guard = FleetGuard(
                fleet=fleet,
                network=network,
                subnets=subnets,
                host_uids=self._host_uids,
                supervisor_sources=supervisor_sources,
                gateways=tuple(gateways),
                peer_ports=tuple(sorted(peer_ports)),
            )
            try:
                self._firewall.apply(guard)
            except FirewallError as exc:
                raise RuntimeFailure(
                    f"isolate fleet {fleet}: {exc}", operation="firewall", container=network
                ) from None

    def _guarded_or_none(self, container_id: str, peer_ports: set[int]) -> GuardedGateway | None:
        try:
            return guarded_gateway(self._api.inspect_container(container_id), peer_ports)
        except docker.errors.NotFound:
            return None  # removed meanwhile: nothing of it to admit

    def remove(self, fleet: str) -> None:
        """Remove the fleet's rules whatever its containers; idempotent."""
        with self._lock:
            self._firewall.remove(fleet)

    def sweep(self) -> tuple[str, ...]:
        """Remove the rules of every fleet whose network is gone; the fleets swept."""
        with self._lock:
            return self._sweep_locked()

    def _sweep_locked(self) -> tuple[str, ...]:
        # A gone fleet's rules would apply to whatever network reuses its subnet: drop them.
        gone = [
            fleet
            for fleet, network in self._firewall.fleets().items()
            if not [n for n in self._api.networks(names=[network]) if n.get("Name") == network]
        ]
        for fleet in gone:
            self._firewall.remove(fleet)
            log.info("runtime_firewall_swept fleet=%s", fleet)
        return tuple(gone)
