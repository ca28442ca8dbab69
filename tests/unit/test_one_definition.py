"""One definition per concept: an enum shared by two layers is defined once, in the lower one,
and the fleet file's spelling of it is read into that one type."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest
from pydantic import ValidationError

from plugins.intents import IntentState
from supervisor import alertpolicy, metrics
from supervisor import lifecycle as lc
from supervisor.fleet_settings import AlertRoute, AlertSettings
from supervisor.journal import IntentStatus

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "ibsim", "plugins", "supervisor")
# Enum names defined twice today, each with the change that removes the copy (see issue 10).
KNOWN_COPIES = {
    # ibsim/auth.py mirrors gateway.config's; it should import it and keep only IBC's lenient
    # parse (an unknown value means secondary) as a function.
    "ExistingSessionAction",
}


def _enum_classes() -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.ClassDef) and any(
                    "Enum" in ast.unparse(base) for base in node.bases
                ):
                    found[node.name].append(str(path.relative_to(ROOT)))
    return found


def test_no_enum_is_defined_twice_across_the_packages() -> None:
    twice = {name: paths for name, paths in _enum_classes().items() if len(paths) > 1}
    assert set(twice) == KNOWN_COPIES, f"enums defined more than once: {twice}"


def test_the_lifecycle_and_the_metrics_share_the_alert_severity_and_restart_kind() -> None:
    assert lc.Severity is alertpolicy.Severity
    assert metrics.RestartKind is lc.RestartKind


def test_the_journal_stores_the_strategy_hosts_intent_state() -> None:
    assert IntentStatus is IntentState


def test_the_fleet_files_severity_names_read_into_the_alert_policys_severity() -> None:
    route = AlertRoute(urls=["console://"], min_severity="critical")
    assert route.min_severity is alertpolicy.Severity.CRITICAL
    assert AlertRoute(urls=["console://"]).min_severity is alertpolicy.Severity.WARNING
    alerts = AlertSettings(gateway_severity={"paper-a": "Info"})
    assert alerts.gateway_severity == {"paper-a": alertpolicy.Severity.INFO}
    # Written back in the fleet file's spelling.
    assert route.model_dump(mode="json")["min_severity"] == "critical"


@pytest.mark.parametrize("value", ["urgent", 20])
def test_a_severity_that_is_no_name_is_refused_naming_the_allowed_ones(value: object) -> None:
    with pytest.raises(ValidationError, match="expected one of info, warning, critical"):
        AlertRoute(urls=["console://"], min_severity=value)


def test_the_metrics_know_every_lifecycle_and_strategy_host_state_by_default() -> None:
    from plugins.host import StrategyState

    assert tuple(s.name for s in lc.State) == metrics.DEFAULT_GATEWAY_STATES
    fleet = metrics.FleetMetrics(version="test")  # the defaults, not the states passed in
    for state in StrategyState:
        fleet.set_strategy_state("s1", state)
    for gateway_state in lc.State:
        fleet.set_gateway_state("gw", gateway_state)
