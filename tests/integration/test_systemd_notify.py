"""``ibfleet run`` under a ``Type=notify`` unit, against a real ``NOTIFY_SOCKET`` listener.

The supervisor's own wiring on the in-process simulator: READY=1 only once the running
containers are adopted, WATCHDOG=1 from the event loop (none while the loop is blocked), a
STATUS line, STOPPING=1 on stop; then the real ``ibfleet run`` process with an abstract socket,
frozen with SIGSTOP (no pings) and stopped with SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.secret_files import load_or_create_fingerprint_key
from ibsim.runtime import InProcessRuntime
from supervisor.settings import load_text
from supervisor.wiring import desired_specs, fingerprint_key_path, resolve_credentials, serve
from tests.integration.notify_listener import NotifyListener
from tests.integration.sim_fleet_file import sim_fleet, terminate
from tests.waiting import until

EXE = str(Path(sys.executable).with_name("ibfleet"))
TOKEN = "token-for-the-notify-test"


def sim_fleet_text(tmp_path: Path) -> tuple[str, int]:
    data, api = sim_fleet(tmp_path)
    data["fleet"] = f"notify-{os.getpid()}"
    return yaml.safe_dump(data), api


class GatedRuntime:
    """The simulator's runtime, whose first ``list`` (the adoption at start) waits for the test."""

    def __init__(self, inner: InProcessRuntime) -> None:
        self.inner = inner
        self.listing = asyncio.Event()
        self.release = asyncio.Event()
        self.listed_at: float | None = None

    async def list(self, *, fleet: str) -> Any:
        self.listing.set()
        await self.release.wait()
        found = await self.inner.list(fleet=fleet)
        self.listed_at = time.monotonic()
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def gaps(times: list[float], start: float, end: float) -> list[float]:
    return [t for t in times if start < t < end]


async def test_ready_after_adoption_then_watchdog_from_the_loop_and_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, api = sim_fleet_text(tmp_path)
    settings = load_text(text, environ={}).settings
    environ = {"IBFLEET_API_TOKEN": TOKEN}
    inner = InProcessRuntime()
    await inner.__aenter__()
    # Two gateways already running when the supervisor starts: the ones it must adopt.
    key = load_or_create_fingerprint_key(fingerprint_key_path(settings))
    credentials = resolve_credentials(settings, environ)
    for spec in desired_specs(settings, credentials, fingerprint_key=key):
        await inner.start(await inner.create(spec))
    runtime = GatedRuntime(inner)
    stop = asyncio.Event()
    with NotifyListener(tmp_path) as listener:
        monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
        monkeypatch.setenv("WATCHDOG_USEC", "200000")  # pings every 0.1 s
        environ.update(NOTIFY_SOCKET=listener.address, WATCHDOG_USEC="200000")
        task = asyncio.create_task(
            serve(settings, environ=environ, stop=stop, runtime=runtime)  # type: ignore[arg-type]
        )
        try:
            await until(runtime.listing.is_set, 30, what="the adoption's container listing")
            assert listener.times("READY=1") == [], "READY before the fleet was adopted"
            runtime.release.set()
            await until(lambda: listener.times("READY=1"), 30, what="READY=1")
            ready_at = listener.times("READY=1")[0]
            assert runtime.listed_at is not None and ready_at > runtime.listed_at
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api}", timeout=5) as c:
                # READY means the API serves and every running container was taken over.
                rows = (await c.get("/api/v1/gateways")).json()
            assert {r["name"] for r in rows} == {"sim-a", "sim-b"}
            assert all(r["container_id"] for r in rows), rows
            assert any("gateways ready" in s for s in listener.values("STATUS"))

            await until(lambda: len(listener.times("WATCHDOG=1")) >= 4, 10, what="pings")
            # Block the event loop itself: the pings must stop with it.
            blocked_from = time.monotonic()
            time.sleep(1.5)  # the point: a wedged loop
            blocked_to = time.monotonic()
            await until(
                lambda: any(t > blocked_to for t in listener.times("WATCHDOG=1")),
                10,
                what="pings after the loop is free again",
            )
            pings = listener.times("WATCHDOG=1")
            # A ping sent just before the block may be read a little late; none while blocked.
            assert gaps(pings, blocked_from + 0.3, blocked_to) == [], pings
            assert len(gaps(pings, ready_at, blocked_from)) >= 4

            await until(
                lambda: "2/2 gateways ready" in listener.values("STATUS"), 30, what="all ready"
            )
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
            await inner.close()
        stopping = listener.times("STOPPING=1")
        assert len(stopping) == 1 and stopping[0] > ready_at
        assert listener.values("STATUS")[-1].startswith("stopping")


def test_ibfleet_run_notifies_an_abstract_socket_and_freezes_its_watchdog(
    tmp_path: Path,
) -> None:
    text, api = sim_fleet_text(tmp_path)
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    with NotifyListener() as listener:
        env = {
            **os.environ,
            "IBFLEET_API_TOKEN": TOKEN,
            "NOTIFY_SOCKET": listener.address,
            "WATCHDOG_USEC": "300000",
        }
        proc = subprocess.Popen(
            [EXE, "run", "-c", str(path)], env=env, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 60
            while not listener.times("READY=1"):
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
                assert time.monotonic() < deadline, "no READY=1 from ibfleet run"
                time.sleep(0.05)
            assert httpx.get(f"http://127.0.0.1:{api}/healthz", timeout=5).status_code == 200
            deadline = time.monotonic() + 10
            while len(listener.times("WATCHDOG=1")) < 3:
                assert time.monotonic() < deadline, "no watchdog pings"
                time.sleep(0.05)
            proc.send_signal(signal.SIGSTOP)
            frozen_from = time.monotonic()
            time.sleep(1.5)  # the window in which a frozen supervisor must not ping
            frozen_to = time.monotonic()
            proc.send_signal(signal.SIGCONT)
            deadline = time.monotonic() + 10
            while not any(t > frozen_to for t in listener.times("WATCHDOG=1")):
                assert time.monotonic() < deadline, "no pings after SIGCONT"
                time.sleep(0.05)
            pings = listener.times("WATCHDOG=1")
            assert gaps(pings, frozen_from + 0.3, frozen_to) == [], pings
        finally:
            stderr = terminate(proc)
        assert proc.returncode == 0, stderr
        assert listener.times("STOPPING=1"), listener.snapshot()
        assert "sd_notify_failed" not in stderr
