"""``ibfleet check``, ``--help`` and ``--version`` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from supervisor.cli import app
from tests.unit import fleetfiles as ff

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``check`` asks the engine about isolation when one answers; these tests have none."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")


def run_check(path: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["check", "-c", str(path)], env=env or {}, catch_exceptions=False)
    return result.exit_code, result.output


def test_check_passes_clean_file_with_exit_0(tmp_path: Path) -> None:
    data = ff.fleet()
    path = tmp_path / "fleet.yaml"
    path.write_text(ff.dump(data))
    code, out = run_check(path, ff.env_for(data))
    assert code == 0, out
    assert "0 errors, 0 warnings" in out


def test_check_lists_every_error_with_location_and_hint_and_exits_1(tmp_path: Path) -> None:
    data = ff.fleet(strategies=[ff.strategy("a", gateways=["nope"]), ff.strategy("a")])
    data["gateways"][1]["api_port"] = 4002
    path = tmp_path / "fleet.yaml"
    path.write_text(ff.dump(data))
    code, out = run_check(path, ff.env_for(data))
    assert code == 1
    assert "gateways[1].api_port" in out
    assert "strategies[0].gateways[0]" in out
    assert "strategies[1].name" in out
    assert out.count("hint:") >= 3
    assert f"{path}:" in out


def test_check_reports_cross_field_problems_next_to_structural_ones(tmp_path: Path) -> None:
    data = ff.fleet(strategies=[ff.strategy("a", gateways=["nope"])])
    data["gateways"][1]["typo_key"] = 1
    data["gateways"].append(ff.gateway("paper-c", api_port=4002))
    path = tmp_path / "fleet.yaml"
    path.write_text(ff.dump(data))
    code, out = run_check(path, ff.env_for(data))
    assert code == 1
    assert "gateways[1].typo_key: unknown key" in out
    assert "gateways[2].api_port: host port 4002 is already used by gateways[0].api_port" in out
    assert "strategies[0].gateways[0]: strategy 'a' names unknown gateway 'nope'" in out


def test_check_exits_2_with_line_and_column_on_a_parse_error(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("fleet: x\ngateways:\n  - name: a\n   mode: paper\n")
    code, out = run_check(path)
    assert code == 2
    assert f"{path}:4:" in out
    assert "Traceback" not in out


def test_check_exits_2_when_the_file_is_missing(tmp_path: Path) -> None:
    code, out = run_check(tmp_path / "absent.yaml")
    assert code == 2
    assert "does not exist" in out


def test_check_warnings_alone_exit_0(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(ff.dump(ff.fleet()))
    code, out = run_check(path, {})
    assert code == 0
    assert "warning" in out and "is not set" in out


def test_check_never_prints_a_literal_secret(tmp_path: Path) -> None:
    data = ff.fleet()
    data["gateways"][0]["password"] = "s3cr3t-literal"
    data["gateways"][0]["api_port"] = "bad"
    path = tmp_path / "fleet.yaml"
    path.write_text(ff.dump(data))
    code, out = run_check(path)
    assert code == 1
    assert "s3cr3t-literal" not in out


@pytest.mark.parametrize("example", sorted((REPO / "deploy").glob("*.yaml")), ids=lambda p: p.name)
def test_example_fleets_pass_check(example: Path) -> None:
    code, out = run_check(example)
    assert code == 0, out


def test_console_script_help_and_version() -> None:
    exe = Path(sys.executable).with_name("ibfleet")
    help_out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert "check" in help_out
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("ibfleet ")


def test_check_rejects_a_weekly_cold_restart_off_sunday_with_its_location(
    tmp_path: Path,
) -> None:
    data = ff.fleet(timezone="Pacific/Honolulu")
    data["gateways"][1]["restart"] = {"weekly_cold": "Sat 22:00"}
    path = tmp_path / "fleet.yaml"
    text = ff.dump(data)
    path.write_text(text)
    code, out = run_check(path, ff.env_for(data))
    assert code == 1, out
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "weekly_cold" in row)
    assert f"{path}:{line}:" in out
    assert "gateways[1].restart.weekly_cold" in out
    assert "only on Sunday" in " ".join(out.split())
    assert "hint:" in out


def test_check_rejects_a_password_file_ibc_cannot_pass_on_without_showing_it(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "password"
    secret.write_text("zq-first\nzq-second\n")
    data = ff.fleet()
    data["gateways"][0]["password"] = {"file": str(secret)}
    path = tmp_path / "fleet.yaml"
    path.write_text(ff.dump(data))
    code, out = run_check(path, ff.env_for(data))
    assert code == 1, out
    flat = " ".join(out.split())
    assert "gateways[0].password" in flat
    assert "the password of gateway 'paper-a'" in flat
    assert "control character" in flat
    assert "zq-" not in out
    assert f"{path}:" in out


def test_check_reports_each_seeded_problem_exactly_once(tmp_path: Path) -> None:
    data = ff.fleet(
        strategies=[
            ff.strategy("s1", gateways=["paper-a", "paper-b"]),
            ff.strategy("s2", gateways=["paper-b"], client_id=11),
        ]
    )
    data["gateways"][0]["restart"] = {"daily": "25:99"}
    data["gateways"][1]["tyop"] = 1
    path = tmp_path / "fleet.yaml"
    path.write_text(ff.dump(data))
    code, out = run_check(path, ff.env_for(data))
    assert code == 1, out
    assert out.count(": error ") == 2, out
    assert out.count("gateways[0].restart.daily:") == 1
    assert out.count("gateways[1].tyop:") == 1
    assert "unknown gateway" not in out
    assert f"{path}: 2 errors" in " ".join(out.split())


def test_logs_marks_parsed_auth_events_and_prints_gateway_text_as_text() -> None:
    import datetime as dt
    import io

    from rich.console import Console

    from supervisor.cli import _print_log_line

    buffer = io.StringIO()
    console = Console(file=buffer, width=300, color_system=None)
    _print_log_line(console, "2026-03-09 09:00:00:123 IBC: Login has completed", dt.UTC)
    _print_log_line(console, "2026-03-09 09:00:01:000 [bold]IBC[/bold]: [red]hello", dt.UTC)
    first, second = buffer.getvalue().splitlines()
    assert first.startswith(">> logged in: 2026-03-09 09:00:00:123 IBC: Login has completed")
    assert second == "   2026-03-09 09:00:01:000 [bold]IBC[/bold]: [red]hello"
