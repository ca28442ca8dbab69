"""``ibfleet check``'s rules about placement on a Swarm: pure, called by :mod:`supervisor.lint`.

On ``runtime.kind: swarm`` a strategy's primary and failover gateways are worth two only on
two nodes: each pair that the Swarm scheduler could put on one node (neither has constraints,
or their constraints do not exclude each other) is a warning at the strategy's failover
gateway. Placement on another runtime is ignored, and a published port on a Swarm node is not
filtered by ibfleet: both are warnings too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gateway import swarm_placement
from gateway.config import GatewayConfig, TradingMode
from supervisor.settings import LoadedFleet, RuntimeKind

__all__ = ["swarm_problems"]

#: (path, message, hint) -> None: the lint's warning collector.
Warn = Callable[[tuple[str | int, ...], str, str], None]


def swarm_problems(
    loaded: LoadedFleet, gateways: Mapping[str, GatewayConfig], warn: Warn, error: Warn
) -> None:
    """Warn about placement: gateways that may share a node, placement a runtime ignores; a
    live gateway on Swarm without ``runtime.unprotected_live`` is an error (run refuses it)."""
    settings = loaded.settings
    swarm = settings.runtime.kind is RuntimeKind.SWARM
    gw_at = list(zip(loaded.gateway_positions, settings.gateways, strict=True))
    for i, gw in gw_at:
        if gw.placement is not None and not swarm:
            warn(
                ("gateways", i, "placement"),
                f"placement applies to runtime.kind swarm only; with {settings.runtime.kind} "
                f"gateway {gw.name!r} runs on this host whatever it says",
                "remove placement, or set runtime.kind: swarm",
            )
        if not swarm:
            continue
        if gw.mode is TradingMode.LIVE and not settings.runtime.unprotected_live:
            error(
                ("gateways", i, "mode"),
                f"live gateway {gw.name!r} on Swarm: ibfleet cannot keep other services on the "
                "fleet's overlay network from its API port, so `ibfleet run` refuses it",
                "keep other services off the fleet's network and set runtime.unprotected_live: "
                "true to accept it, or run live gateways with runtime.kind: docker",
            )
        if not gw.bind.is_loopback:
            warn(
                ("gateways", i, "bind"),
                f"on Swarm the API port {gw.api_port} of gateway {gw.name!r} is published on "
                "every interface of the node that runs it, and no ibfleet firewall rule filters "
                "who connects (Swarm cannot bind one interface)",
                "keep bind: 127.0.0.1 (the gateway is then reached on the overlay network only) "
                "or filter the port on every node's own firewall",
            )
        if gw.trusted_ips:
            warn(
                ("gateways", i, "trusted_ips"),
                f"trusted_ips of gateway {gw.name!r} are not enforced on Swarm (ibfleet's "
                "iptables rules are one engine's)",
                "admit those sources with each node's own firewall",
            )
    if not swarm:
        return
    for s, strat in zip(loaded.strategy_positions, settings.strategies, strict=True):
        primary = gateways.get(strat.gateways[0]) if strat.gateways else None
        if primary is None:
            continue
        for g, name in enumerate(strat.gateways[1:], start=1):
            failover = gateways.get(name)
            if failover is None or failover.name == primary.name:
                continue
            first = primary.placement.parsed_constraints() if primary.placement else []
            second = failover.placement.parsed_constraints() if failover.placement else []
            if not swarm_placement.may_share_node(first, second):
                continue
            why = (
                "neither has placement constraints"
                if not first and not second
                else "their placement constraints do not exclude each other (a spread "
                "preference never keeps two services apart)"
            )
            warn(
                ("strategies", s, "gateways", g),
                f"strategy {strat.name!r}: primary gateway {primary.name!r} and failover gateway "
                f"{failover.name!r} could run on one Swarm node ({why}); losing that node would "
                "lose both",
                f"label the nodes (docker node update --label-add zone=a NODE) and give "
                f"{primary.name!r} placement.constraints [node.labels.zone==a] and "
                f"{failover.name!r} [node.labels.zone==b]",
            )
