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
from supervisor.run import Running, start_supervisor
from supervisor.settings import FleetSettings, load_text
from tests.integration.smtp import SmtpSink, WebhookSink
from tests.integration.test_docker_runtime import free_port
from tests.integration.test_supervisor_e2e import MIDDAY, shifted_clock

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
    fleet: str, image: str, tmp: Path, smtp: SmtpSink, hook: WebhookSink
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
  twofa_gateways: [gw-a]
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
"""
    return load_text(text, environ={}).settings, environ


@pytest.fixture
async def runtime(docker_client: docker.DockerClient) -> AsyncIterator[DockerRuntime]:
    rt = DockerRuntime(docker_client, call_timeout=60.0)
    yield rt
    rt.close()


async def mail(smtp: SmtpSink, text: str, timeout: float = 120.0):
    return await asyncio.to_thread(smtp.wait_for, lambda m: text in m.subject, timeout)


async def until_ready(running: Running, timeout: float = 120.0) -> None:
    async with asyncio.timeout(timeout), httpx.AsyncClient(base_url=running.api_url) as client:
        while (await client.get("/readyz")).status_code != 200:
            await asyncio.sleep(0.25)


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
        alert = await mail(smtp, "gw-b: API stalled", timeout=60)
        assert "heartbeat" in alert.text
        async with httpx.AsyncClient(base_url=control, timeout=10) as client:
            await client.post("/gateways/gw-b/faults/stall", json={"active": False})
        await until_ready(running)
        await mail(smtp, "Resolved: gw-b: API stalled", timeout=30)
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
    finally:
        await again.close()
