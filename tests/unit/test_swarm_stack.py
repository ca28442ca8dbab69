"""deploy/swarm/stack.yml checked offline: what the stack runs (and what it leaves to ibfleet),
where each part may run, and that its example fleet file passes ``check``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway import swarm_placement
from gateway.swarm_runtime import LABEL_SUPERVISOR_OF
from supervisor.lint import lint
from supervisor.settings import RuntimeKind, load_text

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "swarm"
_VARIABLE = re.compile(r"\$\{([A-Z_]+)(?::-([^}]*))?\}")


def with_defaults(text: str) -> str:
    """What ``docker stack deploy`` reads when no variable is exported: each default."""
    return _VARIABLE.sub(lambda m: m.group(2) or "", text)


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    raw = (DEPLOY / "stack.yml").read_text()
    # Every variable has a default, so a deploy with none exported still parses.
    assert all(m.group(2) is not None for m in _VARIABLE.finditer(raw)), "a variable lacks :-"
    data = yaml.safe_load(with_defaults(raw))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def fleet() -> Any:
    return load_text((DEPLOY / "fleet.yaml").read_text(), source="fleet.yaml", environ={})


def constraints(service: dict[str, Any]) -> list[swarm_placement.Constraint]:
    texts = service["deploy"]["placement"]["constraints"]
    return [swarm_placement.parse_constraint(t.replace(" ", "")) for t in texts]


def test_the_stack_runs_the_supervisors_and_the_journal_but_no_gateway(
    stack: dict[str, Any],
) -> None:
    assert set(stack["services"]) == {"supervisor", "standby", "journal"}
    assert float(stack["version"]) >= 3.8
    for service in stack["services"].values():
        assert "ib-gateway" not in service["image"] and "ibfleet-sim" not in service["image"]


def test_leader_and_standby_run_on_managers_that_exclude_each_other(stack: dict[str, Any]) -> None:
    leader, standby = stack["services"]["supervisor"], stack["services"]["standby"]
    for service in (leader, standby):
        assert swarm_placement.parse_constraint("node.role==manager") in constraints(service)
        assert "/var/run/docker.sock:/var/run/docker.sock" in service["volumes"]
        assert service["command"] == ["ibfleet", "run"]
        assert set(service["networks"]) == {"fleet", "journal"}
        assert service["deploy"]["replicas"] == 1
    assert not swarm_placement.may_share_node(constraints(leader), constraints(standby))


def test_supervisors_carry_the_supervisor_label_never_the_fleet_label(
    stack: dict[str, Any], fleet: Any
) -> None:
    """The fleet label would make a supervisor an orphan container of the fleet, removed."""
    for name in ("supervisor", "standby"):
        labels = stack["services"][name]["deploy"]["labels"]
        assert labels == {LABEL_SUPERVISOR_OF: fleet.settings.fleet}
        assert not any(
            k.startswith("io.ibfleet.fleet") for k in stack["services"][name].get("labels", {})
        )


def test_the_fleet_network_is_the_encrypted_overlay_the_runtime_adopts(
    stack: dict[str, Any], fleet: Any
) -> None:
    network = stack["networks"]["fleet"]
    assert network["name"] == fleet.settings.runtime.network
    assert network["driver"] == "overlay"
    assert "encrypted" in network["driver_opts"]
    assert network["labels"] == {"io.ibfleet.fleet": fleet.settings.fleet}
    assert not network.get("attachable", False)


def test_the_journal_is_pinned_unpublished_and_off_the_fleet_network(
    stack: dict[str, Any], fleet: Any
) -> None:
    journal = stack["services"]["journal"]
    assert journal["networks"] == ["journal"]
    assert "ports" not in journal
    assert journal["environment"]["POSTGRES_PASSWORD_FILE"].startswith("/run/secrets/")
    assert "POSTGRES_PASSWORD" not in journal["environment"]
    assert constraints(journal) == [
        swarm_placement.parse_constraint("node.labels.ibfleet.journal==true")
    ]
    url = urlsplit(fleet.settings.storage.url)
    assert (url.hostname, url.port, url.path.strip("/")) == (
        "journal",
        5432,
        journal["environment"]["POSTGRES_DB"],
    )
    assert url.username == journal["environment"]["POSTGRES_USER"]


def test_every_secret_and_config_a_service_names_is_declared(stack: dict[str, Any]) -> None:
    for service in stack["services"].values():
        for ref in service.get("secrets", []):
            name = ref["source"] if isinstance(ref, dict) else ref
            assert name in stack["secrets"], name
        for ref in service.get("configs", []):
            assert ref["source"] in stack["configs"]
    for item in [*stack["secrets"].values(), *stack["configs"].values()]:
        assert item["file"].startswith("./")


def test_the_fleet_files_secrets_are_where_the_stack_mounts_them(
    stack: dict[str, Any], fleet: Any
) -> None:
    mounted = {
        "/run/secrets/" + ref["target"] for ref in stack["services"]["supervisor"]["secrets"]
    }
    settings = fleet.settings
    refs = [gw.username for gw in settings.gateways] + [gw.password for gw in settings.gateways]
    refs += [settings.api.token, settings.storage.password]
    assert {str(ref.file) for ref in refs if ref is not None} <= mounted


def test_the_example_fleet_passes_check_with_no_placement_warning(fleet: Any) -> None:
    assert fleet.settings.runtime.kind is RuntimeKind.SWARM
    problems = lint(fleet, environ={}, file_exists=lambda p: True, read_file=lambda p: "x")
    assert [p for p in problems if p.severity == "error"] == []
    assert not [p for p in problems if p.path.startswith("strategies")], problems
