"""deploy/sim.yaml made runnable beside other tests: free ports, a journal in the test's
directory, no 2FA; and stopping an ``ibfleet run`` process as systemd would (SIGTERM)."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sim_fleet(tmp_path: Path) -> tuple[dict[str, Any], int]:
    """The fleet file's data and its API port."""
    data = yaml.safe_load((REPO / "deploy" / "sim.yaml").read_text())
    api = free_port()
    data["api"]["listen"] = f"127.0.0.1:{api}"
    data["simulator"]["control_port"] = free_port()
    data["simulator"]["twofa_gateways"] = []
    for gw in data["gateways"]:
        gw["api_port"] = free_port()
    data["storage"]["path"] = str(tmp_path / "journal.sqlite")
    return data, api


def terminate(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """SIGTERM, wait (kill past ``timeout``), and return what it wrote on stderr."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise
    return proc.stderr.read() if proc.stderr else ""
