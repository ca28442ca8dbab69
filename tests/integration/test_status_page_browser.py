"""The status page in a real browser: Debian's chromium, headless, driven by Playwright (the
system's chromium, no browser download) against a real supervisor on the in-process simulator.

The page must show both gateways with their states, show a stall injected through the
simulator's control API within 3 s, run under its strict Content-Security-Policy without a
violation, and insert untrusted text as text. Screenshots are kept in
``$IBFLEET_TEST_ARTIFACTS`` (else the test's tmp_path) and their paths printed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ibsim.runtime import InProcessRuntime
from supervisor.api import ApiServer, create_app
from supervisor.api_views import GatewayView
from supervisor.demo import demo_fleet
from supervisor.settings import FleetSettings
from supervisor.wiring import desired_specs, resolve_credentials, start_supervisor
from tests.unit.fake_status import FakeStatusFleet
from tests.waiting import until

if os.environ.get("CI"):
    import playwright.async_api as playwright_api  # the test extra has it: fail, never skip
else:
    playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI needs Debian's chromium for the status page test (see .ci/run)")
    pytest.skip("no chromium on this machine", allow_module_level=True)

NY = dt.timezone(dt.timedelta(hours=-5))
#: A Wednesday at noon in New York: no reset window, so a stall is DEGRADED (not expected).
MIDDAY = dt.datetime(2026, 11, 18, 12, 0, tzinfo=NY)


def two_free_ports() -> int:
    """A free port whose next one is free too (the demo's gateways take base and base + 1)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", base + 1))
            return base


def artifacts(tmp_path: Path) -> Path:
    root = os.environ.get("IBFLEET_TEST_ARTIFACTS")
    where = Path(root) / "status-page" if root else tmp_path / "artifacts"
    where.mkdir(parents=True, exist_ok=True)
    return where


def page_fleet(workdir: Path) -> tuple[FleetSettings, dict[str, str]]:
    """The demo's fleet (two paper gateways, the pinger strategy on demo-b then demo-a)."""
    settings, environ = demo_fleet(
        workdir=workdir, api_port=0, base_port=two_free_ports(), control_port=8780
    )
    # A stall is seen within heartbeat_every + heartbeat_deadline (1 s here), the page polls
    # once a second: 3 s leaves room for a loaded machine.
    health = settings.health.model_copy(update={"heartbeat_deadline": dt.timedelta(seconds=0.5)})
    return settings.model_copy(update={"health": health}), environ


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()


class PageLog:
    """Console messages and script errors of a page: a CSP violation shows up here."""

    def __init__(self, page: Any) -> None:
        self.lines: list[str] = []
        page.on("console", lambda m: self.lines.append(f"console.{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.lines.append(f"pageerror: {e}"))

    def problems(self) -> list[str]:
        return [
            line
            for line in self.lines
            if line.startswith("pageerror") or "Content Security Policy" in line
        ]


ROW_STATE = """([name, state]) => {
  const row = document.querySelector(`tr[data-gateway="${name}"]`);
  return row !== null && row.dataset.state === state;
}"""


@pytest.mark.slow  # about 20 s: the simulated logins, then the stall's page
async def test_status_page_shows_the_fleet_and_a_stall_within_3s(
    tmp_path: Path, browser: Any
) -> None:
    settings, environ = page_fleet(tmp_path)
    offset = MIDDAY - dt.datetime.now(dt.UTC)
    runtime = InProcessRuntime(twofa_users=set())
    out = artifacts(tmp_path)
    async with runtime:
        control = await runtime.start_control(0)
        credentials = resolve_credentials(settings, environ)
        running = await start_supervisor(
            settings,
            environ=environ,
            runtime=runtime,
            specs=desired_specs(settings, credentials, fingerprint_key=b"k" * 32),
            clock=lambda: dt.datetime.now(dt.UTC) + offset,
            api_port=0,
            supervisor_options={"reconcile_interval": 2.0, "tick_every": 0.2},
        )
        try:

            async def ready() -> bool:
                async with httpx.AsyncClient(base_url=running.api_url, timeout=5) as client:
                    return (await client.get("/readyz")).status_code == 200

            await until(ready, 60, what="both gateways API_READY", step=0.2)
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            log = PageLog(page)
            # No token anywhere: the page only reads.
            await page.goto(f"{running.api_url}/")
            for name in ("demo-a", "demo-b"):
                await page.wait_for_function(ROW_STATE, arg=[name, "API_READY"], timeout=10_000)
            # Heartbeats reach the sparkline; the schedule and the strategy are listed.
            await page.wait_for_function(
                "() => [...document.querySelectorAll('tr[data-gateway] .spark')]"
                ".every(s => Number(s.dataset.samples) >= 2)",
                timeout=10_000,
            )
            kinds = await page.eval_on_selector_all(
                "#schedule tbody tr", "rows => rows.map(r => r.dataset.kind)"
            )
            assert {"daily_restart", "weekly_reauth", "reset_window"} <= set(kinds)
            await page.wait_for_selector('tr[data-strategy="pinger"]', timeout=10_000)
            assert await page.text_content("#conn") == "live"
            shot = out / "status-page-ready.png"
            await page.screenshot(path=str(shot), full_page=True)
            print(f"\nstatus page screenshot (ready): {shot}")

            async with httpx.AsyncClient(base_url=control, timeout=5) as client:
                started = time.monotonic()
                reply = await client.post("/gateways/demo-b/faults/stall", json={"active": True})
            assert reply.status_code < 300, reply.text
            await page.wait_for_function(ROW_STATE, arg=["demo-b", "DEGRADED"], timeout=3_000)
            seen = time.monotonic() - started
            print(f"stall on demo-b shown on the page after {seen:.2f} s")
            reason = await page.text_content('tr[data-gateway="demo-b"] .reason')
            assert reason is not None and "stall" in reason, reason
            assert await page.get_attribute('tr[data-gateway="demo-a"]', "data-state") == (
                "API_READY"
            )
            await page.wait_for_function(
                "() => Number(document.querySelector("
                "'tr[data-gateway=\"demo-b\"] .spark').dataset.missed) >= 1",
                timeout=3_000,
            )
            # The stall's alert opens once the lifecycle decides to page (its own delay).
            await page.wait_for_selector('#alerts li[data-key*="demo-b"]', timeout=30_000)
            shot = out / "status-page-stall.png"
            await page.screenshot(path=str(shot), full_page=True)
            print(f"status page screenshot (demo-b stalled): {shot}")
            assert log.problems() == [], log.lines
            await page.close()
        finally:
            await running.close()


async def test_untrusted_text_is_shown_as_text_never_as_html(tmp_path: Path, browser: Any) -> None:
    hostile = '<img src="/x" onerror="document.title=\'owned\'"><b>bold</b>'
    fleet = FakeStatusFleet()
    fleet.views["paper-b"] = GatewayView(
        **{**fleet.views["paper-b"].model_dump(), "reason": hostile}
    )
    fleet.alert_title = f"paper-b: {hostile}"
    server = ApiServer(create_app(fleet, token=None), host="127.0.0.1", port=0)
    await server.start()
    try:
        page = await browser.new_page()
        log = PageLog(page)
        await page.goto(f"http://127.0.0.1:{server.port}/")
        await page.wait_for_selector('tr[data-gateway="paper-b"]', timeout=10_000)
        await page.wait_for_selector("#alerts li", timeout=10_000)
        reason = await page.text_content('tr[data-gateway="paper-b"] .reason')
        assert reason == hostile
        title = await page.text_content("#alerts li .title")
        assert title == f"paper-b: {hostile}"
        assert await page.eval_on_selector_all("main img, main b", "n => n.length") == 0
        assert await page.title() == "ibfleet status"
        shot = artifacts(tmp_path) / "status-page-untrusted-text.png"
        await page.screenshot(path=str(shot), full_page=True)
        print(f"\nstatus page screenshot (untrusted text): {shot}")
        assert log.problems() == [], log.lines
        await page.close()
    finally:
        await server.stop()
