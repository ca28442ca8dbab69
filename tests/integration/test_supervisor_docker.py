"""The supervisor end to end with simulator containers on the real Docker engine: a gateway that
needs 2FA pages by mail (a real SMTP server, apprise mailto://) and a json:// webhook; approving
through the simulator's control API resolves it and the gateway turns ready; a stall is caught
and alerted; restarting the supervisor adopts the containers and pages nobody again."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest

from gateway.docker_runtime import DockerRuntime
from gateway.spec import LABEL_FLEET
from supervisor.api_views import Action
from supervisor.settings import FleetSettings, load_text
from supervisor.wiring import Running, start_supervisor
from tests.integration.smtp import SmtpSink, WebhookSink
from tests.integration.test_supervisor_e2e import IN_WINDOW, MIDDAY, shifted_clock
from tests.net import free_port
from tests.waiting import until

pytestmark = pytest.mark.docker


@pytest.fixture
def fleet_name(docker_client: docker.DockerClient) -> Iterator[str]:
    fleet = f"e{uuid.uuid4().hex[:10]}"
    yield fleet
    for filters in ({"label": f"{LABEL_FLEET}={fleet}"}, {"name": f"ibfleet-{fleet}-"}):
        for item in docker_client.api.containers(all=True, filters=filters):
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.api.remove_container(item["Id"], force=True, v=True)
    for net in docker_client.api.networks(names=[f"ibfleet-{fleet}"]):
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.api.remove_network(net["Id"])


@pytest.fixture
def sinks() -> Iterator[tuple[SmtpSink, WebhookSink]]:
    with SmtpSink() as smtp, WebhookSink() as hook:
        yield smtp, hook


def settings_for(
    fleet: str,
    image: str,
    tmp: Path,
    smtp: SmtpSink,
    hook: WebhookSink,
    *,
    twofa: bool = True,
    strategies: str = "",
) -> tuple[FleetSettings, dict[str, str]]:
    environ = {
        "IBFLEET_API_TOKEN": uuid.uuid4().hex,
        "U_A": "phone-user",
        "P_A": uuid.uuid4().hex,
        "U_B": "plain-user",
        "P_B": uuid.uuid4().hex,
    }
    text = f"""
fleet: {fleet}
timezone: UTC
runtime: {{network: ibfleet-{fleet}}}
simulator:
  enabled: true
  image: {image}
  control_port: {free_port()}
  twofa_gateways: {"[gw-a]" if twofa else "[]"}
gateways:
  - {{name: gw-a, mode: paper, account: DU7000001, username: {{env: U_A}},
      password: {{env: P_A}}, api_port: {free_port()}, memory_limit: 256m,
      client_ids: {{start: 1, end: 49}}}}
  - {{name: gw-b, mode: paper, account: DU7000001, username: {{env: U_B}},
      password: {{env: P_B}}, api_port: {free_port()}, memory_limit: 256m,
      client_ids: {{start: 50, end: 99}}}}
alerts:
  routes:
    - {{urls: ["{smtp.mailto_url()}"], min_severity: warning}}
    - {{urls: ["{hook.url}"], min_severity: warning}}
api: {{listen: "127.0.0.1:8710", token: {{env: IBFLEET_API_TOKEN}}}}
storage: {{path: {tmp / "journal.sqlite"}}}
health: {{heartbeat_every: 500ms, heartbeat_deadline: 1s}}
{strategies}"""
    return load_text(text, environ={}).settings, environ


@pytest.fixture
async def runtime(docker_client: docker.DockerClient) -> AsyncIterator[DockerRuntime]:
    rt = DockerRuntime(docker_client, call_timeout=60.0)
    yield rt
    rt.close()


async def mail(smtp: SmtpSink, text: str, timeout: float = 120.0):
    return await asyncio.to_thread(smtp.wait_for, lambda m: text in m.subject, timeout)


async def until_ready(running: Running, timeout: float = 120.0) -> None:
    async with httpx.AsyncClient(base_url=running.api_url) as client:

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await until(ready, timeout, what="the supervisor's /readyz answering 200", step=0.25)


async def test_2fa_stall_and_restart_with_simulator_containers(
    fleet_name: str,
    sim_image: str,
    tmp_path: Path,
    sinks: tuple[SmtpSink, WebhookSink],
    runtime: DockerRuntime,
) -> None:
    smtp, hook = sinks
    settings, environ = settings_for(fleet_name, sim_image, tmp_path, smtp, hook)
    # Outside every reset window, whatever the time of the run: outages page.
    clock = shifted_clock(MIDDAY)
    running = await start_supervisor(
        settings, environ=environ, runtime=runtime, api_port=0, clock=clock
    )
    try:
        prompt = await mail(smtp, "approve the IB Key")
        assert "gw-a" in prompt.text and "phone-user" in prompt.text
        await asyncio.to_thread(
            hook.wait_for, lambda b: "approve the IB Key" in b.get("title", ""), 30
        )
        control = f"http://127.0.0.1:{settings.simulator.control_port}"
        async with httpx.AsyncClient(base_url=control, timeout=10) as client:
            approved = await client.post("/2fa/phone-user/approve")
            assert approved.status_code == 200, approved.text
        await mail(smtp, "Resolved")
        await until_ready(running)

        async with httpx.AsyncClient(base_url=control, timeout=10) as client:
            stalled = await client.post("/gateways/gw-b/faults/stall", json={"active": True})
            assert stalled.status_code == 200, stalled.text
        # One page per problem: gw-b's incident opens once and its text names the stall.
        alert = await asyncio.to_thread(
            smtp.wait_for,
            lambda m: "gw-b" in m.subject and "Resolved" not in m.subject and "heartbeat" in m.text,
            60,
        )
        assert "Resolved" not in alert.subject
        async with httpx.AsyncClient(base_url=control, timeout=10) as client:
            await client.post("/gateways/gw-b/faults/stall", json={"active": False})
        await until_ready(running)
        await asyncio.to_thread(
            smtp.wait_for,
            lambda m: "Resolved: gw-b" in m.subject and "API stalled" in m.subject + m.text,
            30,
        )
        await running.dispatcher.wait_idle(30)
        ids = {
            name: c.container.id if c.container else None
            for name, c in running.supervisor.controllers.items()
        }
    finally:
        await running.close()

    sent = len(smtp.messages)
    again = await start_supervisor(
        settings, environ=environ, runtime=runtime, api_port=0, clock=clock
    )
    try:
        await until_ready(again)
        for name, controller in again.supervisor.controllers.items():
            assert controller.container is not None and controller.container.id == ids[name]
        await again.dispatcher.wait_idle(30)
        assert len(smtp.messages) == sent, [m.subject for m in smtp.messages[sent:]]

        # IB link lost (1100) outside a reset window: paged.
        async with httpx.AsyncClient(base_url=control, timeout=10) as client:
            lost = await client.post("/gateways/gw-a/link", json={"up": False})
            assert lost.status_code == 200, lost.text
        page = await mail(smtp, "gw-a: degraded", timeout=60)
        assert "1100" in page.text
        async with httpx.AsyncClient(base_url=control, timeout=10) as client:
            await client.post("/gateways/gw-a/link", json={"up": True})
        await mail(smtp, "Resolved: gw-a: degraded", timeout=60)
        await until_ready(again)
        await again.dispatcher.wait_idle(30)
    finally:
        await again.close()

    # The same outage inside North America's nightly reset window pages nobody.
    quiet = await start_supervisor(
        settings, environ=environ, runtime=runtime, api_port=0, clock=shifted_clock(IN_WINDOW)
    )
    try:
        controller = quiet.supervisor.controllers["gw-b"]
        await until_state(controller, "API_READY", "RESET_WINDOW")
        sent = len(smtp.messages)
        async with httpx.AsyncClient(base_url=control, timeout=10) as client:
            await client.post("/gateways/gw-b/link", json={"up": False})
        await until_state(controller, "RESET_WINDOW")
        async with httpx.AsyncClient(base_url=control, timeout=10) as client:
            await client.post("/gateways/gw-b/link", json={"up": True})
        await until_state(controller, "API_READY")
        await controller.drain()
        await quiet.dispatcher.wait_idle(30)
        assert len(smtp.messages) == sent, [m.subject for m in smtp.messages[sent:]]
    finally:
        await quiet.close()


async def until_state(controller, *states: str, timeout: float = 60.0) -> None:
    await until(
        lambda: controller.status.state.name in states,
        timeout,
        what=f"{controller.gw.name} in {' or '.join(states)}",
        step=0.1,
    )


PINGER = """strategies:
  - name: pinger
    plugin: pinger
    gateways: [gw-a, gw-b]
    client_id: 10
    safe_state: {on_disconnect: cancel, grace: 2s}
    params: {interval_seconds: 0.5, offset: 0.05}
"""


async def test_strategy_fails_over_when_its_gateway_container_is_lost(
    fleet_name: str,
    sim_image: str,
    tmp_path: Path,
    sinks: tuple[SmtpSink, WebhookSink],
    runtime: DockerRuntime,
    docker_client: docker.DockerClient,
) -> None:
    smtp, hook = sinks
    settings, environ = settings_for(
        fleet_name, sim_image, tmp_path, smtp, hook, twofa=False, strategies=PINGER
    )
    running = await start_supervisor(
        settings, environ=environ, runtime=runtime, api_port=0, clock=shifted_clock(MIDDAY)
    )
    control = f"http://127.0.0.1:{settings.simulator.control_port}"

    async def broker_orders() -> list[dict]:
        async with httpx.AsyncClient(base_url=control, timeout=10) as client:
            return (await client.get("/orders")).json()

    def working(orders: list[dict], gateway: str) -> list[dict]:
        done = {"Filled", "Cancelled", "ApiCancelled", "Inactive"}
        return [o for o in orders if o["gateway"] == gateway and o["status"] not in done]

    try:
        await until_ready(running)
        host = running.host
        assert host is not None
        runner = host.runners["pinger"]
        # It starts on its primary, or on the other gateway if the primary was slow to come
        # up; either way the gateway it trades on is the one lost below.
        await until(
            lambda: runner.status().gateway and runner.status().orders_sent >= 2,
            60,
            what="the pinger trading",
        )
        first = runner.status().gateway
        other = "gw-b" if first == "gw-a" else "gw-a"

        async def working_on(gateway: str) -> list[dict]:
            return working(await broker_orders(), gateway)

        await until(lambda: working_on(first), 60, what=f"a working order on {first}", step=0.05)

        # That gateway's container is lost for good: an operator stop, as after a host failure.
        lost_at = asyncio.get_running_loop().time()
        await running.supervisor.command(first, Action.STOP)

        async def none_working() -> bool:
            return not await working_on(first)

        await until(none_working, 30, what=f"{first}'s working orders cancelled", step=0.1)
        cancelled_after = asyncio.get_running_loop().time() - lost_at
        # Within the grace period plus a small bound.
        assert cancelled_after <= 2.0 + 5.0, cancelled_after
        await until(lambda: working_on(other), 60, what=f"trading resumed on {other}")
        assert runner.status().gateway == other
        refs = [o["order_ref"] for o in await broker_orders()]
        assert len(refs) == len(set(refs)), "an intent reached the broker twice"
    finally:
        await running.close()
