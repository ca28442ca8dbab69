"""``ibfleet fleet down``'s pure parts and its refusals, without Docker: what it plans to remove,
the journal lock it holds, and that it stops before the engine while a supervisor runs."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.runtime import ContainerState, ObservedContainer
from gateway.spec import LABEL_FLEET
from supervisor.cli import app
from supervisor.cli_fleet import journal_lock, plan_down


def observed(name: str, *, fleet: str | None) -> ObservedContainer:
    labels = {LABEL_FLEET: fleet} if fleet is not None else {}
    return ObservedContainer(
        id=f"id-{name}", name=name, state=ContainerState.RUNNING, labels=labels
    )


def test_the_plan_removes_only_what_carries_the_fleets_label() -> None:
    plan = plan_down(
        "prod",
        [
            observed("ibfleet-prod-b", fleet="prod"),
            observed("ibfleet-prod-squatter", fleet=None),
            observed("ibfleet-prod-a", fleet="prod"),
        ],
        networks=["ibfleet"],
        chains=["IBFLEET-1-F", "IBFLEET-1-O"],
    )
    assert [c.name for c in plan.containers] == ["ibfleet-prod-a", "ibfleet-prod-b"]
    assert [c.name for c in plan.foreign] == ["ibfleet-prod-squatter"]
    assert plan.lines() == [
        "container ibfleet-prod-a (running)",
        "container ibfleet-prod-b (running)",
        "network ibfleet",
        "iptables chain IBFLEET-1-F",
        "iptables chain IBFLEET-1-O",
    ]
    assert not plan.empty


def test_a_fleet_with_only_a_squatter_has_nothing_to_take_down() -> None:
    plan = plan_down("prod", [observed("ibfleet-prod-x", fleet=None)], networks=[], chains=[])
    assert plan.empty


@pytest.fixture
def held_journal(tmp_path: Path) -> Iterator[Path]:
    """A journal whose lock another open file holds, as a running supervisor's would be."""
    journal = tmp_path / "j.sqlite"
    fd = os.open(tmp_path / "j.sqlite.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, b"4242\n", 0)
    yield journal
    os.close(fd)


def test_a_containerised_supervisors_firewall_helper_is_part_of_the_plan() -> None:
    helper = ("c0ffee", "ibfleet_firewall_sup")
    plan = plan_down("prod", [], networks=[], chains=[], helpers=[helper])
    assert not plan.empty  # a helper left alone would keep NET_ADMIN on the host's network
    assert plan.lines() == ["firewall helper container ibfleet_firewall_sup"]


def test_a_held_journal_lock_names_the_supervisors_pid(held_journal: Path) -> None:
    with journal_lock(held_journal) as held:
        assert held == f"a supervisor (pid 4242) holds the journal {held_journal}"


def test_a_free_journal_lock_is_held_for_the_duration_and_released(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    with journal_lock(journal) as held:
        assert held is None  # no lock file: no supervisor ever ran here
    (tmp_path / "j.sqlite.lock").write_text("")
    with journal_lock(journal) as held:
        assert held is None
        with journal_lock(journal) as again:
            assert again is not None and "holds the journal" in again
    with journal_lock(journal) as held:
        assert held is None


def fleet_file(tmp_path: Path, *, journal: Path, runtime: str = "docker") -> Path:
    path = tmp_path / "fleet.yaml"
    extra = "simulator:\n  enabled: true\n" if runtime == "in-process" else ""
    path.write_text(
        "fleet: prod\ngateways: []\n"
        f"runtime:\n  kind: {runtime}\n{extra}"
        f"storage:\n  path: {journal}\n"
        "api:\n  listen: 127.0.0.1:1\n"
    )
    return path


def test_fleet_down_is_refused_while_a_supervisor_holds_the_journal(
    held_journal: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app, ["fleet", "down", "--yes", "-c", str(fleet_file(tmp_path, journal=held_journal))]
    )
    assert result.exit_code == 1
    assert "refused: a supervisor (pid 4242) holds the journal" in result.output
    assert "removed" not in result.output


def test_fleet_down_of_an_in_process_fleet_has_nothing_to_remove(tmp_path: Path) -> None:
    path = fleet_file(tmp_path, journal=tmp_path / "j.sqlite", runtime="in-process")
    result = CliRunner().invoke(app, ["fleet", "down", "--yes", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert "in-process" in result.output


def test_fleet_down_with_a_broken_fleet_file_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("fleet: prod\ngateways: 3\n")
    result = CliRunner().invoke(app, ["fleet", "down", "--yes", "-c", str(path)])
    assert result.exit_code == 2
    assert "gateways" in result.output
