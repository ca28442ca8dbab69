"""One definition per concept: an enum shared by two layers is defined once, in the lower one,
and the fleet file's spelling of it is read into that one type."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import (
    ExistingSessionAction,
    MarketDataEntitlement,
    TradingMode,
    TwoFactorTimeoutAction,
)
from ibsim import auth
from ibsim.settings import image_env, read_settings
from plugins.intents import IntentState
from supervisor import alertpolicy, metrics
from supervisor import lifecycle as lc
from supervisor.fleet_settings import AlertRoute, AlertSettings
from supervisor.journal import IntentStatus

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "ibsim", "plugins", "supervisor")


def _enums() -> list[tuple[str, str, frozenset[str]]]:
    """Every enum class in the packages: (name, file, the names of its members)."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.ClassDef) and any(
                    "Enum" in ast.unparse(base) for base in node.bases
                ):
                    members = frozenset(
                        target.id
                        for statement in node.body
                        if isinstance(statement, ast.Assign)
                        for target in statement.targets
                        if isinstance(target, ast.Name)
                    )
                    found.append((node.name, str(path.relative_to(ROOT)), members))
    return found


def test_no_enum_is_defined_twice_across_the_packages() -> None:
    by_name: dict[str, list[str]] = defaultdict(list)
    for name, path, _ in _enums():
        by_name[name].append(path)
    twice = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert not twice, f"enums defined more than once: {twice}"


def test_no_two_enums_have_the_same_members_under_other_names() -> None:
    # A copy renamed on the way (the simulator's MarketData beside the fleet file's
    # MarketDataExpectation, the broker port's LoginKind beside the login server's StepKind).
    by_members: dict[frozenset[str], list[str]] = defaultdict(list)
    for name, path, members in _enums():
        by_members[members].append(f"{path}:{name}")
    alike = [places for places in by_members.values() if len(places) > 1]
    assert not alike, f"enums with the same members: {alike}"


def test_the_simulator_speaks_the_gateways_enums() -> None:
    env = image_env(
        username="u", password="p", trading_mode="live", existing_session_action="bogus"
    )
    env["TWOFA_TIMEOUT_ACTION"] = "restart"
    settings = read_settings(env, read_file=lambda path: b"", need_broker=False)
    assert settings.on_2fa_timeout is TwoFactorTimeoutAction.RESTART
    assert settings.ibc_mode is TradingMode.LIVE and settings.socat_mode is TradingMode.LIVE
    # IBC's lenient reading: an unknown ExistingSessionDetectedAction means secondary.
    assert settings.existing_session_action is ExistingSessionAction.SECONDARY
    user = auth.User(username="u", password="p", accounts=("DU1",))
    assert user.mode is TradingMode.PAPER
    assert user.market_data is MarketDataEntitlement.REALTIME


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
