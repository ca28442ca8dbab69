"""Which networks a fleet adopts, which published ports it refuses, and how its rules follow
its containers: on inspect dictionaries and a hand-written engine, without Docker."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.docker_isolation import (
    ICC_OPTION,
    FleetIsolation,
    binding_problem,
    guarded_gateway,
    network_problem,
)
from gateway.firewall import FirewallError, FleetGuard
from gateway.runtime import RuntimeFailure
from gateway.spec import LABEL_FLEET, LABEL_GATEWAY, LABEL_PEER_PORTS, LABEL_TRUSTED, PortBinding


def network(**over: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "Labels": {LABEL_FLEET: "f"},
        "Options": {ICC_OPTION: "false"},
        "EnableIPv6": False,
        "IPAM": {"Config": [{"Subnet": "172.30.0.0/16", "Gateway": "172.30.0.1"}]},
    }
    attrs.update(over)
    return attrs


class TestAdoptingANetwork:
    def test_the_fleets_own_isolated_ipv4_network_is_adopted(self) -> None:
        assert network_problem(network(), fleet="f", isolate=True) is None

    @pytest.mark.parametrize("labels", [{}, {LABEL_FLEET: "other"}])
    def test_a_network_without_the_fleets_label_is_refused(self, labels: dict[str, str]) -> None:
        problem = network_problem(network(Labels=labels), fleet="f", isolate=True)
        assert problem is not None and "refusing to adopt" in problem

    def test_a_network_with_inter_container_traffic_is_refused_when_isolating(self) -> None:
        attrs = network(Options={})
        assert "traffic between its containers" in str(
            network_problem(attrs, fleet="f", isolate=True)
        )
        assert network_problem(attrs, fleet="f", isolate=False) is None

    def test_a_network_with_ipv6_enabled_is_refused_when_isolating(self) -> None:
        attrs = network(EnableIPv6=True)
        assert "IPv6 enabled (EnableIPv6)" in str(network_problem(attrs, fleet="f", isolate=True))
        assert network_problem(attrs, fleet="f", isolate=False) is None

    def test_an_ipv6_subnet_is_refused_even_if_the_flag_says_otherwise(self) -> None:
        configs = [{"Subnet": "172.30.0.0/16"}, {"Subnet": "fd00:1::/64"}]
        problem = network_problem(network(IPAM={"Config": configs}), fleet="f", isolate=True)
        assert problem is not None and "fd00:1::/64" in problem and "docker network rm" in problem


class TestPublishedPorts:
    @pytest.mark.parametrize("host_ip", ["127.0.0.1", "0.0.0.0", "10.1.2.3"])
    def test_an_ipv4_host_address_passes(self, host_ip: str) -> None:
        assert binding_problem(PortBinding(host_ip, 4001, 4004)) is None

    @pytest.mark.parametrize("host_ip", ["::1", "::", "fd00::7"])
    def test_an_ipv6_host_address_is_refused_because_the_proxy_would_admit_everyone(
        self, host_ip: str
    ) -> None:
        problem = binding_problem(PortBinding(host_ip, 4001, 4004))
        assert problem is not None
        assert "IPv6" in problem and "127.0.0.1" in problem and "4001" in problem

    def test_a_host_address_that_is_no_address_is_refused(self) -> None:
        assert "not an IP address" in str(binding_problem(PortBinding("localhost", 4001, 4004)))


def container(name: str, *, host_port: int, trusted: str = "", peers: str = "") -> dict[str, Any]:
    labels = {LABEL_FLEET: "f", LABEL_GATEWAY: name}
    if trusted:
        labels[LABEL_TRUSTED] = trusted
    if peers:
        labels[LABEL_PEER_PORTS] = peers
    return {
        "Id": f"id-{name}",
        "Name": f"/ibfleet-f-{name}",
        "Config": {"Labels": labels},
        "HostConfig": {
            "NetworkMode": "net",
            "PortBindings": {"4004/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}]},
        },
    }


def test_a_gateways_rules_come_from_its_labels_and_bindings() -> None:
    peers: set[int] = set()
    found = guarded_gateway(
        container("gw", host_port=4101, trusted="10.0.0.0/8", peers="7470"), peers
    )
    assert (found.name, found.host_ports, found.container_port) == ("gw", (4101,), 4004)
    assert found.trusted == ("10.0.0.0/8",)
    assert peers == {7470}


class FakeEngine:
    """The few engine calls the isolation makes, over a dict of containers and networks."""

    def __init__(self) -> None:
        self.containers_by_id: dict[str, dict[str, Any]] = {}
        self.network_names: set[str] = {"net"}
        self.inspected_networks: list[str] = []

    def containers(self, *, all: bool, filters: dict[str, str]) -> list[dict[str, Any]]:
        key, _, value = filters["label"].partition("=")
        return [
            {"Id": c["Id"]}
            for c in self.containers_by_id.values()
            if c["Config"]["Labels"].get(key) == value
        ]

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        return self.containers_by_id[container_id]

    def inspect_network(self, name: str) -> dict[str, Any]:
        self.inspected_networks.append(name)
        return network()

    def networks(self, *, names: list[str]) -> list[dict[str, str]]:
        return [{"Name": n} for n in names if n in self.network_names]


class FakeFirewall:
    def __init__(self, *, fail: bool = False) -> None:
        self.applied: dict[str, FleetGuard] = {}
        self.fail = fail

    def apply(self, guard: FleetGuard) -> None:
        if self.fail:
            raise FirewallError("iptables-restore: exit 4: Permission denied")
        self.applied[guard.fleet] = guard

    def remove(self, fleet: str) -> None:
        self.applied.pop(fleet, None)

    def fleets(self) -> dict[str, str]:
        return {fleet: guard.network for fleet, guard in self.applied.items()}


def isolation(engine: FakeEngine, firewall: FakeFirewall) -> FleetIsolation:
    return FleetIsolation(engine, firewall, host_uids=(0, 1000))  # type: ignore[arg-type]


class TestRulesFollowTheContainers:
    def test_every_fleet_container_is_in_the_rules_with_the_supervisors_sources(self) -> None:
        engine, firewall = FakeEngine(), FakeFirewall()
        for name, port in (("a", 4101), ("b", 4102)):
            engine.containers_by_id[f"id-{name}"] = container(name, host_port=port)
        isolation(engine, firewall).guard(
            "f", "net", subnets=("172.30.0.0/16",), supervisor_sources=("172.30.0.9",)
        )
        guard = firewall.applied["f"]
        assert [g.name for g in guard.gateways] == ["a", "b"]
        assert guard.supervisor_sources == ("172.30.0.9",)
        assert guard.host_uids == (0, 1000)
        assert engine.inspected_networks == []  # the subnets were given

    def test_unknown_subnets_are_read_from_the_network(self) -> None:
        engine, firewall = FakeEngine(), FakeFirewall()
        engine.containers_by_id["id-a"] = container("a", host_port=4101)
        isolation(engine, firewall).guard("f", "net", subnets=None, supervisor_sources=())
        assert firewall.applied["f"].subnets == ("172.30.0.0/16",)
        assert engine.inspected_networks == ["net"]

    def test_the_last_container_gone_takes_the_rules_along(self) -> None:
        engine, firewall = FakeEngine(), FakeFirewall()
        engine.containers_by_id["id-a"] = container("a", host_port=4101)
        iso = isolation(engine, firewall)
        iso.guard("f", "net", subnets=None, supervisor_sources=())
        engine.containers_by_id.clear()
        iso.guard("f", "net", subnets=None, supervisor_sources=())
        assert firewall.applied == {}

    def test_rules_that_cannot_be_applied_are_a_runtime_failure_naming_the_fleet(self) -> None:
        engine, firewall = FakeEngine(), FakeFirewall(fail=True)
        engine.containers_by_id["id-a"] = container("a", host_port=4101)
        with pytest.raises(RuntimeFailure, match=r"isolate fleet f: .*Permission denied"):
            isolation(engine, firewall).guard("f", "net", subnets=None, supervisor_sources=())

    def test_a_fleet_whose_network_is_gone_is_swept(self) -> None:
        engine, firewall = FakeEngine(), FakeFirewall()
        engine.containers_by_id["id-a"] = container("a", host_port=4101)
        iso = isolation(engine, firewall)
        iso.guard("f", "net", subnets=None, supervisor_sources=())
        assert iso.sweep() == ()
        engine.network_names.clear()
        assert iso.sweep() == ("f",)
        assert firewall.applied == {}
