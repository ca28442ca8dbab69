"""``ibfleet run`` as a user runs it: a real process, the CLI against its API, SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.net import free_port
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).with_name("ibfleet"))


@pytest.fixture
def sim_fleet_file(tmp_path: Path) -> tuple[Path, dict[str, str], str]:
    data = yaml.safe_load((REPO / "deploy" / "sim.yaml").read_text())
    api = free_port()
    data["api"]["listen"] = f"127.0.0.1:{api}"
    data["simulator"]["control_port"] = free_port()
    data["simulator"]["twofa_gateways"] = []
    for gw in data["gateways"]:
        gw["api_port"] = free_port()
    data["storage"]["path"] = str(tmp_path / "journal.sqlite")
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "IBFLEET_API_TOKEN": "token-for-the-cli-test"}
    return path, env, f"http://127.0.0.1:{api}"


def wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    """Wait for ``ibfleet run``'s /readyz to answer 200; fail at once if the process exits."""

    def ready() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout, what=f"{url}/readyz to say ready", step=0.2)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, timeout=60)


def test_run_serves_status_and_commands_and_stops_cleanly_on_sigterm(sim_fleet_file) -> None:
    path, env, url = sim_fleet_file
    proc = subprocess.Popen(
        [EXE, "run", "-c", str(path)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_ready(url, proc)
        status = cli("status", "-c", str(path), "--json", env=env)
        assert status.returncode == 0, status.stderr
        rows = {row["name"]: row for row in json.loads(status.stdout)}
        assert rows["sim-a"]["state"] == "API_READY" and rows["sim-b"]["ready"] is True

        table = cli("status", "-c", str(path), env=env)
        assert "sim-a" in table.stdout and "API_READY" in table.stdout

        watched = cli(
            "status", "-c", str(path), "--watch", "--count", "2", "--every", "0.2", env=env
        )
        assert watched.returncode == 0, watched.stderr
        # The refreshed table carries the time of its refresh in its title.
        assert re.search(r"\(\d\d:\d\d:\d\d\)", watched.stdout), watched.stdout
        assert "sim-b" in watched.stdout

        in_process = cli("logs", "sim-a", "-c", str(path), env=env)
        assert in_process.returncode == 1 and "ibfleet events" in in_process.stderr

        restart = cli("gateway", "restart", "sim-b", "-c", str(path), env=env)
        assert restart.returncode == 0, restart.stderr
        events = cli("events", "-c", str(path), "--gateway", "sim-b", env=env)
        assert "operator restart" in events.stdout

        no_token = {k: v for k, v in env.items() if k != "IBFLEET_API_TOKEN"}
        refused = cli("gateway", "stop", "sim-a", "--url", url, env=no_token)
        assert refused.returncode == 1 and "401" in refused.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 0, stderr
    assert "supervisor_stopping" in stderr
    assert "Traceback" not in stderr
    for secret in ("sim-password-a", "sim-password-b", "token-for-the-cli-test"):
        assert secret not in stderr


def test_run_refuses_a_file_with_errors(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("fleet: x\ngateways:\n  - name: a\n    mode: paper\n")
    result = cli("run", "-c", str(path), env=dict(os.environ))
    assert result.returncode == 1
    assert "gateways[0].account" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_status_without_a_supervisor_says_so(tmp_path: Path) -> None:
    result = cli("status", "--url", f"http://127.0.0.1:{free_port()}", env=dict(os.environ))
    assert result.returncode == 3
    assert "cannot reach the supervisor" in result.stderr


def test_demo_runs_its_script_and_exits_cleanly(tmp_path: Path) -> None:
    """The README's run command: quiet before its banner, logs in the file it names, the 2FA
    prompt alerted, approved and resolved, the link loss detected, and a closing summary."""
    log_file = tmp_path / "demo.log"
    result = subprocess.run(
        [
            *(EXE, "demo", "--duration", "24", "--no-live", "--api-port", "0"),
            *("--runtime", "in-process", "--log-file", str(log_file)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.startswith("ibfleet demo: fleet 'demo-"), out[:500]
    assert f"logs      {log_file}" in out
    assert re.search(r"page      http://127\.0\.0\.1:\d+/ ", out), out[:1500]
    assert result.stderr == ""
    logged = log_file.read_text()
    assert " INFO " in logged and "gateway_state" in logged
    for level in ("WARNING", "ERROR", "INFO"):
        assert f" {level} " not in out
    assert "approve the IB Key" in out
    assert "Resolved: demo-a: approve the IB Key login" in out
    assert "ibfleet demo (final)" in out and "pinger" in out
    summary = out[out.index("What happened in ") :]
    assert "faults injected: 1" in summary
    assert re.search(
        r"t\+20s IB link lost on demo-b \(error 1100\): detected in \d+\.\d s", summary
    )
    pages = int(re.search(r"pages sent: (\d+)", summary).group(1))  # type: ignore[union-attr]
    assert pages >= 3  # 2FA prompt, its resolution, the link loss
    assert re.search(r"orders sent: pinger \d+; failovers: \d+", summary)
    assert "(stopped before t+30s" in summary


@pytest.mark.docker
def test_logs_marks_the_login_events_of_a_gateway_container(
    tmp_path: Path, docker_client, sim_image: str
) -> None:
    """``ibfleet logs``: the container's own lines, the ones ibfleet reads marked."""
    from tests.integration.conftest import unique_name

    data = yaml.safe_load((REPO / "deploy" / "sim.yaml").read_text())
    fleet = unique_name("logs").removeprefix("ibfleet-")
    api = free_port()
    data.update(fleet=fleet, api={"listen": f"127.0.0.1:{api}"})
    data["runtime"] = {"kind": "docker", "network": fleet}
    data["simulator"].update(image=sim_image, control_port=free_port(), twofa_gateways=[])
    data["gateways"] = data["gateways"][:1]
    data["gateways"][0]["api_port"] = free_port()
    data["gateways"][0]["probes"] = []
    data["storage"]["path"] = str(tmp_path / "journal.sqlite")
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(data))
    env = dict(os.environ)
    proc = subprocess.Popen(
        [EXE, "run", "-c", str(path)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_ready(f"http://127.0.0.1:{api}", proc, timeout=120)
        result = wait_until(
            lambda: (
                (r := cli("logs", "sim-a", "-c", str(path), env=env)).returncode == 0
                and ">> logged in:" in r.stdout
                and r
            ),
            timeout=30,
            what="a logged-in line in ibfleet logs",
        )
        marked = [line for line in result.stdout.splitlines() if line.startswith(">> ")]
        plain = [line for line in result.stdout.splitlines() if line.startswith("   ")]
        assert marked and plain
        assert any("IBC" in line for line in marked)
        recent = cli("logs", "sim-a", "-c", str(path), "--since", "1h", env=env)
        assert recent.returncode == 0 and ">> logged in:" in recent.stdout
        bad = cli("logs", "sim-a", "-c", str(path), "--since", "yesterday", env=env)
        assert bad.returncode == 2 and "--since" in bad.stderr
        unknown = cli("logs", "sim-z", "-c", str(path), env=env)
        assert unknown.returncode == 1 and "sim-a" in unknown.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        for container in docker_client.containers.list(
            all=True, filters={"label": f"io.ibfleet.fleet={fleet}"}
        ):
            container.remove(force=True)
        for network in docker_client.networks.list(names=[fleet]):
            network.remove()
