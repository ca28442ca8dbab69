"""Placement on a Swarm: the fleet file's placement fields, and what ``ibfleet check`` warns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway import swarm_placement as sp
from supervisor.lint import lint
from supervisor.settings import ConfigError, ConfigProblem, RuntimeKind, load_text
from tests.unit import fleetfiles as ff


def problems_of(data: dict[str, Any]) -> list[ConfigProblem]:
    loaded = load_text(ff.dump(data), source="f.yaml", environ={})
    return lint(loaded, environ=ff.env_for(data), file_exists=lambda p: p == Path("/exists"))


def warnings(data: dict[str, Any]) -> dict[str, str]:
    return {p.path: p.message for p in problems_of(data) if p.severity == "warning"}


def swarm_fleet(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    data = ff.fleet(strategies=[ff.strategy("meanrev", gateways=["paper-a", "paper-b"])])
    data["runtime"] = {"kind": "swarm"}
    for gw, placement in zip(data["gateways"], (a, b), strict=True):
        if placement is not None:
            gw["placement"] = placement
    return data


def test_runtime_kind_swarm_is_accepted_and_docker_stays_the_default() -> None:
    assert load_text(ff.dump(ff.fleet())).settings.runtime.kind is RuntimeKind.DOCKER
    data = swarm_fleet(None, None)
    assert load_text(ff.dump(data)).settings.runtime.kind is RuntimeKind.SWARM


def test_placement_is_parsed_into_constraints_and_spread_labels() -> None:
    data = swarm_fleet(
        {"constraints": ["node.labels.zone == a"], "preferences": ["spread=node.labels.rack"]},
        None,
    )
    gw = load_text(ff.dump(data)).settings.gateways[0]
    assert gw.placement is not None
    assert gw.placement.constraints == ["node.labels.zone==a"]
    assert gw.placement.spread == ["node.labels.rack"]


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("constraints", "zone==a", "is not a node attribute"),
        ("constraints", "node.labels.zone=a", "has no == or !="),
        ("constraints", "node.labels.zone==", "is not one value"),
        ("constraints", "node.role==boss", "manager or worker"),
        ("preferences", "binpack=node.labels.zone", "spread=node.labels.NAME"),
    ],
)
def test_a_bad_placement_is_an_error_naming_the_field(field: str, value: str, words: str) -> None:
    data = swarm_fleet({field: [value]}, None)
    with pytest.raises(ConfigError) as caught:
        load_text(ff.dump(data), source="f.yaml")
    paths = {p.path: p.message for p in caught.value.problems}
    assert f"gateways[0].placement.{field}" in paths, paths
    assert words in paths[f"gateways[0].placement.{field}"]
    assert f"{field}[0]" in paths[f"gateways[0].placement.{field}"]


def test_check_warns_when_primary_and_failover_have_no_placement() -> None:
    found = warnings(swarm_fleet(None, None))
    message = found["strategies[0].gateways[1]"]
    assert "'paper-a'" in message and "'paper-b'" in message
    assert "neither has placement constraints" in message


def test_check_warns_when_constraints_do_not_exclude_each_other() -> None:
    data = swarm_fleet(
        {"constraints": ["node.labels.zone==a"], "preferences": ["spread=node.labels.zone"]},
        {"constraints": ["node.labels.disk==ssd"], "preferences": ["spread=node.labels.zone"]},
    )
    message = warnings(data)["strategies[0].gateways[1]"]
    assert "do not exclude each other" in message


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (["node.labels.zone==a"], ["node.labels.zone==b"]),
        (["node.labels.zone==a"], ["node.labels.zone!=a"]),
        (["node.hostname==n1", "node.role==worker"], ["node.hostname==n2"]),
    ],
)
def test_constraints_that_exclude_each_other_pass(a: list[str], b: list[str]) -> None:
    data = swarm_fleet({"constraints": a}, {"constraints": b})
    assert "strategies[0].gateways[1]" not in warnings(data)


def test_one_engine_warns_that_placement_is_ignored_and_not_about_nodes() -> None:
    data = swarm_fleet({"constraints": ["node.labels.zone==a"]}, None)
    data["runtime"] = {"kind": "docker"}
    found = warnings(data)
    assert "runtime.kind swarm only" in found["gateways[0].placement"]
    assert "strategies[0].gateways[1]" not in found


def test_swarm_warns_about_a_published_port_and_trusted_ips() -> None:
    data = swarm_fleet(
        {"constraints": ["node.labels.zone==a"]}, {"constraints": ["node.labels.zone==b"]}
    )
    data["gateways"][0]["bind"] = "10.0.0.5"
    data["gateways"][0]["trusted_ips"] = ["10.0.0.0/24"]
    found = warnings(data)
    assert "every interface of the node" in found["gateways[0].bind"]
    assert "not enforced on Swarm" in found["gateways[0].trusted_ips"]
    assert "gateways[1].bind" not in found


def test_may_share_node_is_symmetric_and_conservative() -> None:
    a = [sp.parse_constraint("node.labels.zone==a")]
    b = [sp.parse_constraint("node.labels.zone!=b")]
    assert sp.may_share_node(a, b) and sp.may_share_node(b, a)
    assert sp.may_share_node([], a)
    c = [sp.parse_constraint("node.labels.zone!=a")]
    assert not sp.may_share_node(a, c) and not sp.may_share_node(c, a)
    assert sp.may_share_node(c, [sp.parse_constraint("node.labels.zone!=b")])


def test_a_live_gateway_on_swarm_is_an_error_without_consent() -> None:
    data = swarm_fleet(
        {"constraints": ["node.labels.zone==a"]}, {"constraints": ["node.labels.zone==b"]}
    )
    data["gateways"][0].update(mode="live", account="U1234567", allow_live=True)
    data["strategies"] = []
    found = {p.path: p.message for p in problems_of(data) if p.severity == "error"}
    assert "cannot keep other services" in found["gateways[0].mode"]
    data["runtime"]["unprotected_live"] = True
    assert not [p for p in problems_of(data) if p.severity == "error"]
