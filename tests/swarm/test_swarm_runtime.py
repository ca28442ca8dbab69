"""ibfleet's Swarm runtime on a real three-node Swarm (the lab of tests/swarm): a simulator
broker and gateway created as services, adopted by labels, drift seen by the spec hash, the
credentials absent from ``docker service inspect``, the gateway's log followed, stop, start and
remove, and the events those make."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import docker
import pytest
from pydantic import SecretStr

from gateway.config import GatewayConfig
from gateway.runtime import ContainerState, EventKind, RuntimeEvent
from gateway.spec import ContainerSpec, GatewaySecrets
from gateway.swarm_runtime import SwarmRuntime
from supervisor import reconcile
from supervisor.simfleet import BROKER_GATEWAY, render_sim_fleet
from tests.waiting import until

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.swarm]


PASSWORD = "swarm-sim-password"  # the simulator's made-up credentials, never a real one
KEY = b"s" * 32


def gateway_config(name: str, zone: str, *, memory: str = "1536m") -> GatewayConfig:
    """A simulated paper gateway; ``zone`` is a constraint's right side (``==b``, ``!=a``)."""
    return GatewayConfig.model_validate(
        {
            "name": name,
            "mode": "paper",
            "account": "DU1000001",
            "username": {"env": "SIM_USER"},
            "password": {"env": "SIM_PASS"},
            "api_port": 4102,
            "memory_limit": memory,
            "placement": {"constraints": [f"node.labels.ibfleet.zone{zone}"]},
        }
    )


def specs_for(
    fleet: str, network: str, image: str, *, memory: str = "1536m", zone: str = "==b"
) -> list[ContainerSpec]:
    gw = gateway_config("sim-a", zone, memory=memory)
    secrets = {
        "sim-a": GatewaySecrets(username=SecretStr("swarmuser"), password=SecretStr(PASSWORD))
    }
    return render_sim_fleet(
        [gw],
        fleet=fleet,
        network=network,
        image=image,
        timezone="America/New_York",
        secrets=secrets,
        fingerprint_key=KEY,
    )


@pytest.fixture
async def on_swarm(
    swarm_lab: Any,
) -> AsyncIterator[tuple[SwarmRuntime, docker.APIClient, str, str]]:
    api = docker.APIClient(base_url=swarm_lab.manager_url, version="1.41", timeout=60)
    # Unencrypted: the lab's nodes share this host's kernel, whose IPsec the test does not need.
    runtime = SwarmRuntime(api, secret_key=KEY, encrypted=False, poll_interval=0.5)
    fleet = f"swt{uuid.uuid4().hex[:6]}"
    network = f"ibfleet-{fleet}"
    try:
        yield runtime, api, fleet, network
    finally:
        for container in await runtime.list(fleet=fleet):
            await runtime.remove(container.id)
        await runtime.sweep_secrets(fleet)
        for name in await runtime.fleet_networks(fleet=fleet):
            api.remove_network(name)
        runtime.close()


async def test_a_simulator_fleet_runs_as_services_and_is_adopted_by_labels(
    on_swarm: tuple[SwarmRuntime, docker.APIClient, str, str], swarm_lab: Any
) -> None:
    runtime, api, fleet, network = on_swarm
    desired = specs_for(fleet, network, swarm_lab.sim_image_id)
    events: list[RuntimeEvent] = []

    async def follow() -> None:
        async for event in runtime.events(fleet=fleet):
            events.append(event)

    follower = asyncio.create_task(follow())
    try:
        ids = {}
        for spec in desired:
            ids[spec.gateway] = await runtime.create(spec)
            await runtime.start(ids[spec.gateway])

        async def both_running() -> bool:
            seen = await runtime.list(fleet=fleet)
            return len(seen) == 2 and all(c.state is ContainerState.RUNNING for c in seen)

        await until(both_running, timeout=120, what="broker and gateway tasks running")
        gateway_id = ids["sim-a"]

        # Placement: the gateway's task is on zone b's node.
        tasks = api.tasks(filters={"service": gateway_id, "desired-state": "running"})
        assert swarm_lab.node_by_id(tasks[0]["NodeID"]).zone == "b"

        # The credentials are Swarm secrets: nowhere in what service inspect shows.
        for service_id in ids.values():
            shown = json.dumps(api.inspect_service(service_id))
            assert PASSWORD not in shown and "swarmuser" not in shown
            assert "_FILE" not in shown
        names = {
            s["Spec"]["Name"] for s in api.secrets(filters={"label": f"io.ibfleet.fleet={fleet}"})
        }
        assert any("config.ini" in name for name in names)

        # Adoption and drift: the planner adopts both, and sees a changed spec as drift.
        observed = await runtime.list(fleet=fleet)
        plan = reconcile.plan(desired, observed, fleet=fleet)
        assert {(a.kind, a.gateway) for a in plan} == {
            (reconcile.ActionKind.ADOPT, "sim-a"),
            (reconcile.ActionKind.ADOPT, BROKER_GATEWAY),
        }
        changed = specs_for(fleet, network, swarm_lab.sim_image_id, memory="1024m")
        plan = reconcile.plan(changed, observed, fleet=fleet)
        assert (reconcile.ActionKind.RECREATE, "sim-a") in {(a.kind, a.gateway) for a in plan}

        # The log follower reads the current task's lines: the simulated login completes.
        async def first_login() -> bool:
            async for line in runtime.follow_logs(gateway_id):
                if "Login has completed" in line:
                    return True
            return False

        assert await asyncio.wait_for(first_login(), timeout=90)

        address = await runtime.command_address(gateway_id)
        assert address is not None and address[1] == 7462

        # Stop and start: one service throughout, its task replaced (the events poller has its
        # baseline by now: the first snapshot was taken while the services were created).
        await runtime.stop(gateway_id, timeout=10)
        assert (await runtime.inspect(gateway_id)).state is ContainerState.EXITED
        await until(
            lambda: any(e.kind is EventKind.DIE and e.gateway == "sim-a" for e in events),
            timeout=30,
            what="the gateway's die event",
        )
        await runtime.start(gateway_id)

        async def running_again() -> bool:
            return (await runtime.inspect(gateway_id)).state is ContainerState.RUNNING

        await until(running_again, timeout=90, what="the gateway running again")
        await until(
            lambda: [e.kind for e in events if e.gateway == "sim-a"][-1:] == [EventKind.START],
            timeout=30,
            what="the gateway's start event after the stop",
        )

        await runtime.remove(gateway_id)
        left = await runtime.list(fleet=fleet)
        assert [c.gateway for c in left] == [BROKER_GATEWAY]
        # The gateway's secrets went with it; the broker's stay while it runs.
        after = {
            s["Spec"]["Name"] for s in api.secrets(filters={"label": f"io.ibfleet.fleet={fleet}"})
        }
        assert after and not any("sim-a" in name for name in after)
    finally:
        follower.cancel()


async def test_a_gateway_whose_node_dies_is_placed_on_another_by_a_start(
    on_swarm: tuple[SwarmRuntime, docker.APIClient, str, str], swarm_lab: Any
) -> None:
    """Swarm restarts nothing by itself (restart condition none): the node's loss is a die
    event, and the start the lifecycle then asks for puts a task on a node still up."""
    runtime, api, fleet, network = on_swarm
    # The broker stays on zone a (never killed here); the gateway may run on b or c.
    broker, gateway = specs_for(fleet, network, swarm_lab.sim_image_id, zone="!=a")
    broker = dataclasses.replace(broker, constraints=("node.labels.ibfleet.zone==a",))
    events: list[RuntimeEvent] = []

    async def follow() -> None:
        async for event in runtime.events(fleet=fleet):
            events.append(event)

    follower = asyncio.create_task(follow())
    killed = None
    try:
        for spec in (broker, gateway):
            await runtime.start(await runtime.create(spec))
        gateway_id = next(c.id for c in await runtime.list(fleet=fleet) if c.gateway == "sim-a")

        def node_of_task() -> Any:
            tasks = api.tasks(filters={"service": gateway_id, "desired-state": "running"})
            running = [t for t in tasks if t["Status"]["State"] == "running"]
            return swarm_lab.node_by_id(running[0]["NodeID"]) if running else None

        first = await until(node_of_task, timeout=120, what="the gateway's first task")
        assert first.zone in ("b", "c")
        await until(
            lambda: any(e.kind is EventKind.START and e.gateway == "sim-a" for e in events),
            timeout=30,
            what="the gateway's start event",
        )
        swarm_lab.kill(first)
        killed = first

        async def exited() -> bool:
            return (await runtime.inspect(gateway_id)).state is ContainerState.EXITED

        await until(exited, timeout=30, what="the gateway seen exited with its node")
        await until(
            lambda: any(e.kind is EventKind.DIE and e.gateway == "sim-a" for e in events),
            timeout=10,
            what="the die event of the lost node's gateway",
        )
        # Nothing replaces it by itself (the lifecycle owns restarts) ...
        assert node_of_task() in (None, first)
        await runtime.start(gateway_id)

        def moved() -> Any:
            node = node_of_task()
            return node if node is not None and node is not first else None

        second = await until(moved, timeout=90, what="a task on a node still up")
        assert second.zone in ("b", "c") and second.zone != first.zone

        async def running() -> bool:
            return (await runtime.inspect(gateway_id)).state is ContainerState.RUNNING

        await until(running, timeout=60, what="the gateway running on its new node")
    finally:
        follower.cancel()
        if killed is not None:
            await asyncio.to_thread(swarm_lab.restart, killed)
