"""The supervisor end to end on real parts: simulated gateways (in-process runtime) over real TCP
probed by the real ib_async client, a real SMTP server behind an apprise mailto:// route, a real
json:// webhook, the real journal and HTTP API. Docker is the only thing swapped out here."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ibsim.port import Fault, FaultEvent
from ibsim.runtime import InProcessRuntime
from supervisor.settings import FleetSettings, load_text
from supervisor.wiring import Running, desired_specs, resolve_credentials, start_supervisor
from tests.integration.smtp import SmtpSink, WebhookSink
from tests.net import free_port
from tests.waiting import until

NY = dt.timezone(dt.timedelta(hours=-5))  # winter New York, enough for picking test instants


def shifted_clock(target: dt.datetime) -> Callable[[], dt.datetime]:
    """Real time, moved so that 'now' starts at ``target`` and keeps flowing."""
    offset = target - dt.datetime.now(dt.UTC)
    return lambda: dt.datetime.now(dt.UTC) + offset


#: A Wednesday at noon in New York: no reset window in any region.
MIDDAY = dt.datetime(2026, 11, 18, 12, 0, tzinfo=NY)
#: The same Wednesday at 00:10 in New York: inside North America's nightly reset window.
IN_WINDOW = dt.datetime(2026, 11, 18, 0, 10, tzinfo=NY)


@dataclass
class Fleet:
    settings: FleetSettings
    environ: dict[str, str]
    runtime: InProcessRuntime
    smtp: SmtpSink
    hook: WebhookSink
    workdir: Path
    running: Running | None = None

    def user(self, gateway: str) -> str:
        return self.environ[f"{gateway.upper().replace('-', '_')}_USER"]

    async def start(self, clock: Callable[[], dt.datetime]) -> Running:
        credentials = resolve_credentials(self.settings, self.environ)
        specs = desired_specs(self.settings, credentials, fingerprint_key=b"k" * 32)
        self.running = await start_supervisor(
            self.settings,
            environ=self.environ,
            runtime=self.runtime,
            specs=specs,
            clock=clock,
            api_port=0,
            supervisor_options={"reconcile_interval": 2.0, "tick_every": 0.2},
        )
        return self.running

    async def api(self, path: str) -> httpx.Response:
        assert self.running is not None
        async with httpx.AsyncClient(base_url=self.running.api_url, timeout=5) as client:
            return await client.get(path)

    def fault(self, gateway: str, kind: Fault, active: bool, value: float = 0.0) -> None:
        self.runtime.broker_service.push_fault(
            FaultEvent(gateway=gateway, fault=kind, active=active, value=value)
        )

    async def mail(self, predicate: Callable[[Any], bool], timeout: float = 30.0) -> Any:
        return await asyncio.to_thread(self.smtp.wait_for, predicate, timeout)

    def mails(self, text: str) -> list[Any]:
        return [m for m in self.smtp.messages if text in m.subject + m.text]


def fleet_file(
    workdir: Path, *, smtp: SmtpSink, hook: WebhookSink, strategies: list[dict[str, Any]]
) -> tuple[str, dict[str, str]]:
    environ = {"IBFLEET_API_TOKEN": secrets.token_urlsafe(16)}
    gateways = []
    for index, name in enumerate(("gw-a", "gw-b")):
        var = name.upper().replace("-", "_")
        environ[f"{var}_USER"] = f"user-{name}"
        environ[f"{var}_PASSWORD"] = f"pw-{secrets.token_hex(8)}"
        gateways.append(
            {
                "name": name,
                "mode": "paper",
                "account": "DU1000001",
                "username": {"env": f"{var}_USER"},
                "password": {"env": f"{var}_PASSWORD"},
                "api_port": free_port(),
                "client_ids": {"start": 1 + 50 * index, "end": 49 + 50 * index},
            }
        )
    data = {
        "fleet": f"e2e-{secrets.token_hex(3)}",
        "runtime": {"kind": "in-process"},
        "simulator": {"enabled": True},
        "gateways": gateways,
        "alerts": {
            "routes": [
                {"urls": [smtp.mailto_url()], "min_severity": "warning"},
                {"urls": [hook.url], "min_severity": "warning"},
            ]
        },
        "api": {"listen": "127.0.0.1:8710", "token": {"env": "IBFLEET_API_TOKEN"}},
        "storage": {"path": str(workdir / "journal.sqlite")},
        "health": {"heartbeat_every": "250ms", "heartbeat_deadline": "500ms"},
        "strategies": strategies,
    }
    return yaml.safe_dump(data, sort_keys=False), environ


@pytest.fixture
async def make_fleet(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[Fleet] = []

    async def make(
        *, twofa: tuple[str, ...] = (), strategies: list[dict[str, Any]] | None = None
    ) -> Fleet:
        smtp = SmtpSink().start()
        hook = WebhookSink().__enter__()
        text, environ = fleet_file(tmp_path, smtp=smtp, hook=hook, strategies=strategies or [])
        settings = load_text(text, environ={}).settings
        users = {environ[f"{g.upper().replace('-', '_')}_USER"] for g in twofa}
        runtime = InProcessRuntime(twofa_users=users)
        await runtime.__aenter__()
        fleet = Fleet(settings, environ, runtime, smtp, hook, tmp_path)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        if fleet.running is not None:
            await fleet.running.close()
        await fleet.runtime.close()
        fleet.smtp.stop()
        fleet.hook.__exit__()


async def ready(fleet: Fleet, timeout: float = 30.0) -> None:
    async def check() -> bool:
        return (await fleet.api("/readyz")).status_code == 200

    await until(check, timeout, what="the supervisor's /readyz answering 200", step=0.1)


async def test_2fa_prompt_is_mailed_and_posted_then_resolved_after_approval(make_fleet) -> None:
    fleet = await make_fleet(twofa=("gw-a",))
    await fleet.start(shifted_clock(MIDDAY))
    user = fleet.user("gw-a")
    prompt = await fleet.mail(lambda m: "approve the IB Key" in m.subject)
    assert "gw-a" in prompt.text and user in prompt.text
    await asyncio.to_thread(
        fleet.hook.wait_for, lambda b: "approve the IB Key" in b.get("title", "")
    )
    readyz = await fleet.api("/readyz")
    assert readyz.status_code == 503 and "gw-a" in readyz.json()["not_ready"]

    control = await fleet.runtime.start_control(0)
    async with httpx.AsyncClient(base_url=control, timeout=5) as client:
        assert (await client.post(f"/2fa/{user}/approve")).status_code == 200

    resolved = await fleet.mail(lambda m: "Resolved" in m.subject and "IB Key" in m.subject)
    assert "gw-a" in resolved.text
    await asyncio.to_thread(fleet.hook.wait_for, lambda b: "Resolved" in b.get("title", ""))
    await ready(fleet)
    view = (await fleet.api("/api/v1/gateways/gw-a")).json()
    assert view["state"] == "API_READY" and view["open_alerts"] == []
    # No secret ever reaches a mail.
    for mail in fleet.smtp.messages:
        for key, value in fleet.environ.items():
            if "PASSWORD" in key or key == "IBFLEET_API_TOKEN":
                assert value not in mail.text + mail.subject


async def test_stalled_gateway_is_detected_and_alerted(make_fleet) -> None:
    fleet = await make_fleet()
    running = await fleet.start(shifted_clock(MIDDAY))
    await ready(fleet)
    fleet.fault("gw-b", Fault.STALL, True)
    # One page per problem: the gateway's incident opens once; its text names the stall.
    stalled = await fleet.mail(lambda m: "gw-b" in m.subject and "Resolved" not in m.subject)
    assert "stall" in stalled.text.lower() or "heartbeat" in stalled.text, stalled.text
    assert running.supervisor.controllers["gw-b"].status.state.name == "DEGRADED"
    fleet.fault("gw-b", Fault.STALL, False)
    await fleet.mail(lambda m: "Resolved" in m.subject and "gw-b" in m.subject)
    await ready(fleet)


async def test_link_loss_outside_the_reset_window_pages(make_fleet) -> None:
    fleet = await make_fleet()
    await fleet.start(shifted_clock(MIDDAY))
    await ready(fleet)
    fleet.fault("gw-a", Fault.LINK, True)
    page = await fleet.mail(lambda m: "gw-a" in m.subject)
    assert "1100" in page.text


async def test_link_loss_inside_the_reset_window_pages_nobody(make_fleet) -> None:
    fleet = await make_fleet()
    running = await fleet.start(shifted_clock(IN_WINDOW))
    controller = running.supervisor.controllers["gw-a"]
    await until(lambda: controller.status.api_connected, timeout=30, what="probe connected")
    fleet.fault("gw-a", Fault.LINK, True)
    await until(
        lambda: controller.status.state.name == "RESET_WINDOW",
        what=f"in reset window (state {controller.status.state.name}: {controller.status.reason})",
    )
    # The expected outage is handled: the state says so, and the alert book stays empty.
    fleet.fault("gw-a", Fault.LINK, False, 1102)
    await until(lambda: controller.status.api_connected, what="probe still connected")
    await controller.drain()
    await running.dispatcher.wait_idle(10)
    assert fleet.smtp.messages == []
    assert fleet.hook.bodies == []


async def test_restarted_supervisor_does_not_page_again(make_fleet) -> None:
    fleet = await make_fleet(twofa=("gw-a",))
    first = await fleet.start(shifted_clock(MIDDAY))
    await fleet.mail(lambda m: "approve the IB Key" in m.subject)
    await first.dispatcher.wait_idle(10)
    await first.close()
    fleet.running = None

    second = await fleet.start(shifted_clock(MIDDAY))
    controller = second.supervisor.controllers["gw-a"]
    assert controller.restored and controller.status.state.name == "AWAITING_2FA"
    # Let the new supervisor run its ticks and probes, then check nothing was sent again.
    processed = controller.processed
    await until(lambda: controller.processed >= processed + 10, what="ticks handled")
    await controller.drain()
    await second.dispatcher.wait_idle(10)
    assert len(fleet.mails("approve the IB Key")) == 1

    fleet.runtime.broker_service.approve_2fa(fleet.user("gw-a"))
    await fleet.mail(lambda m: "Resolved" in m.subject and "IB Key" in m.subject)
    await ready(fleet)


# -- hosted strategies ------------------------------------------------------------------------


async def strategy_fleet(make_fleet, tmp_path: Path) -> Fleet:
    pinger = {
        "name": "pinger",
        "plugin": "pinger",
        "gateways": ["gw-a", "gw-b"],
        "client_id": 10,
        "safe_state": {"on_disconnect": "cancel", "grace": "1s"},
        "params": {"interval_seconds": 0.3, "offset": 0.05},
    }
    return await make_fleet(strategies=[pinger])


async def api_post(fleet: Fleet, path: str, body: dict[str, Any]) -> httpx.Response:
    assert fleet.running is not None
    headers = {"Authorization": f"Bearer {fleet.environ['IBFLEET_API_TOKEN']}"}
    async with httpx.AsyncClient(base_url=fleet.running.api_url, timeout=30) as client:
        return await client.post(path, json=body, headers=headers)


def open_at_broker(fleet: Fleet, gateway: str | None = None) -> list[Any]:
    return [
        o
        for o in fleet.runtime.broker_service.broker.orders.values()
        if not o.is_done and (gateway is None or o.gateway == gateway)
    ]


async def test_strategy_runs_is_killed_and_resumed_through_the_api(make_fleet, tmp_path) -> None:
    fleet = await strategy_fleet(make_fleet, tmp_path)
    running = await fleet.start(shifted_clock(MIDDAY))
    await ready(fleet)

    async def strategy() -> dict[str, Any]:
        rows = (await fleet.api("/api/v1/strategies")).json()
        return next(r for r in rows if r["name"] == "pinger")

    async def two_orders_sent() -> bool:
        return bool((await strategy())["orders_sent"] >= 2)

    await until(two_orders_sent, 30, what="the pinger's first two orders", step=0.1)
    row = await strategy()
    assert row["state"] == "RUNNING" and row["gateway"] == "gw-a"

    killed = await api_post(fleet, "/api/v1/kill", {"strategy": "pinger"})
    assert killed.status_code == 200, killed.text
    (run,) = killed.json()["runs"]
    assert run["ok"] and run["still_live"] == []
    assert (await strategy())["state"] == "HALTED"
    assert open_at_broker(fleet) == []

    resumed = await api_post(fleet, "/api/v1/strategies/pinger/resume", {})
    assert resumed.status_code == 200 and resumed.json()["state"] == "RUNNING"
    refs = [o.order_ref for o in fleet.runtime.broker_service.broker.orders.values()]
    assert len(refs) == len(set(refs)), "an intent reached the broker twice"
    assert running.host is not None


async def test_lost_gateway_cancels_then_fails_over_without_duplicates(
    make_fleet, tmp_path
) -> None:
    fleet = await strategy_fleet(make_fleet, tmp_path)
    running = await fleet.start(shifted_clock(MIDDAY))
    await ready(fleet)
    host = running.host
    assert host is not None
    runner = host.runners["pinger"]
    await until(lambda: runner.status().orders_sent >= 2, what="pinger trading on gw-a")
    # The order is counted when sent; the broker holds it a moment later (through socat).
    await until(lambda: open_at_broker(fleet, "gw-a"), what="the pinger's resting order on gw-a")

    fleet.fault("gw-a", Fault.CRASH, True)
    await until(
        lambda: open_at_broker(fleet, "gw-a") == [], timeout=30, what="gw-a orders cancelled"
    )
    await until(
        lambda: runner.status().gateway == "gw-b" and runner.status().state.name == "RUNNING",
        timeout=30,
        what="pinger resumed on gw-b",
    )
    sent_before = runner.status().orders_sent
    await until(lambda: runner.status().orders_sent > sent_before, what="trading on gw-b")
    refs = [o.order_ref for o in fleet.runtime.broker_service.broker.orders.values()]
    assert len(refs) == len(set(refs)), "an intent reached the broker twice"
