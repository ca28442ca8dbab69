"""Two ``ibfleet run`` processes on one PostgreSQL journal and one fleet of simulator containers:
what the standby test and benchmarks/bench_takeover.py share.

Each process stands for a host of its own: its own working directory (so its own spec-key
file) and its own API port; everything else in the fleet file is the same.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.net import free_port
from tests.waiting import wait_until

EXE = str(Path(sys.executable).with_name("ibfleet"))

PINGER = {
    "name": "pinger",
    "plugin": "pinger",
    "gateways": ["gw-a"],
    "client_id": 10,
    "safe_state": {"on_disconnect": "cancel", "grace": "2s"},
    "params": {"interval_seconds": 0.5, "offset": 0.05},
}


def fleet_data(
    *, fleet: str, image: str, pg_url: str, hook_url: str, twofa: bool = True
) -> dict[str, Any]:
    """The fleet file both supervisors read (api.listen is set per process)."""
    return {
        "fleet": fleet,
        "timezone": "UTC",
        "runtime": {"kind": "docker", "network": f"ibfleet-{fleet}"},
        "simulator": {
            "enabled": True,
            "image": image,
            "control_port": free_port(),
            "twofa_gateways": ["gw-b"] if twofa else [],
        },
        "gateways": [
            {
                "name": name,
                "mode": "paper",
                "account": "DU7000001",
                "username": {"env": f"U_{tag}"},
                "password": {"env": f"P_{tag}"},
                "api_port": free_port(),
                "memory_limit": "256m",
                "client_ids": {"start": start, "end": start + 48},
            }
            for name, tag, start in (("gw-a", "A", 1), ("gw-b", "B", 50))
        ],
        "alerts": {"routes": [{"urls": [hook_url], "min_severity": "warning"}]},
        "api": {"token": {"env": "IBFLEET_API_TOKEN"}},
        "storage": {"url": pg_url, "password": {"env": "IBFLEET_PG_PASSWORD"}},
        "health": {"heartbeat_every": "500ms", "heartbeat_deadline": "1s"},
        "strategies": [PINGER],
    }


@dataclass
class Supervisor:
    """One ``ibfleet run`` process (a "host")."""

    name: str
    config: Path
    url: str
    environ: dict[str, str]
    proc: subprocess.Popen[str] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.config.with_suffix(".log")

    def start(self) -> None:
        handle = self.log.open("a")
        self.proc = subprocess.Popen(
            [EXE, "run", "-c", str(self.config)],
            env=self.environ,
            cwd=self.config.parent,
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
        handle.close()

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM (SIGCONT first: a frozen process cannot stop), then SIGKILL past timeout."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def health(self) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"{self.url}/healthz", timeout=2)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def role(self) -> str | None:
        health = self.health()
        return None if health is None else str(health["role"])

    def wait_role(self, role: str, timeout: float, step: float = 0.05) -> None:
        def holds() -> bool:
            assert self.proc is not None and self.proc.poll() is None, (
                f"{self.name} exited:\n{self.output()[-4000:]}"
            )
            return self.role() == role

        wait_until(holds, timeout, what=f"{self.name} in role {role}", step=step)

    def get(self, path: str) -> Any:
        r = httpx.get(f"{self.url}{path}", timeout=5)
        r.raise_for_status()
        return r.json()

    def pinger(self) -> dict[str, Any] | None:
        try:
            rows = self.get("/api/v1/strategies")
        except httpx.HTTPError:
            return None
        return next((row for row in rows if row["name"] == "pinger"), None)


def make_pair(
    workdir: Path, *, image: str, pg_url: str, pg_password: str, hook_url: str, twofa: bool = True
) -> tuple[dict[str, Any], list[Supervisor]]:
    """The fleet data and two supervisors ("host-1", "host-2"), not started."""
    fleet = f"s{uuid.uuid4().hex[:10]}"
    data = fleet_data(fleet=fleet, image=image, pg_url=pg_url, hook_url=hook_url, twofa=twofa)
    environ = {
        **os.environ,
        "IBFLEET_API_TOKEN": uuid.uuid4().hex,
        "IBFLEET_PG_PASSWORD": pg_password,
        "U_A": "plain-user",
        "P_A": uuid.uuid4().hex,
        "U_B": "phone-user",
        "P_B": uuid.uuid4().hex,
    }
    out = []
    for name in ("host-1", "host-2", "host-3"):
        home = workdir / name
        home.mkdir()
        port = free_port()
        mine = {**data, "api": {**data["api"], "listen": f"127.0.0.1:{port}"}}
        config = home / "fleet.yaml"
        config.write_text(yaml.safe_dump(mine))
        out.append(Supervisor(name, config, f"http://127.0.0.1:{port}", environ))
    return data, out


def broker_orders(data: dict[str, Any]) -> list[dict[str, Any]]:
    port = data["simulator"]["control_port"]
    rows: list[dict[str, Any]] = httpx.get(f"http://127.0.0.1:{port}/orders", timeout=10).json()
    return rows


def monotonic() -> float:
    return time.monotonic()
