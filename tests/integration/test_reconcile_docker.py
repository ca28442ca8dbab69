"""The orchestrator against the real engine: bring-up, kill, drift, adoption, foreign names."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import docker
import docker.errors
import pytest

from gateway.docker_runtime import DockerRuntime
from gateway.runtime import RuntimeEvent
from gateway.spec import ContainerSpec
from supervisor.budget import BackoffPolicy
from supervisor.orchestrator import (
    Orchestrator,
    OrchestratorEvent,
    OrchestratorEventKind,
    RestartPolicy,
)
from tests.integration.test_docker_runtime import (
    api_answers,
    fleet,
    gateway_spec,
    runtime,
    sim_fleet,
    until,
)

pytestmark = pytest.mark.docker
__all__ = ["fleet", "runtime"]  # fixtures shared with the adapter tests

POLICY = RestartPolicy(
    backoff=BackoffPolicy(base=timedelta(seconds=1), cap=timedelta(seconds=5)),
    budget=5,
    budget_window=timedelta(minutes=10),
)


class Running:
    """An orchestrator running its loop in a task, and what it published."""

    def __init__(self, runtime: DockerRuntime, fleet: str, desired: list[ContainerSpec]) -> None:
        self.published: list[RuntimeEvent | OrchestratorEvent] = []
        self.orch = Orchestrator(
            runtime=runtime,
            fleet=fleet,
            desired=desired,
            publish=self.published.append,
            interval=5.0,
            policy=POLICY,
            stop_timeout=2.0,
            action_timeout=60.0,
        )
        self.task = asyncio.create_task(self.orch.run())

    def done(self, kind: OrchestratorEventKind) -> list[OrchestratorEvent]:
        return [e for e in self.published if isinstance(e, OrchestratorEvent) and e.kind is kind]

    async def stop(self) -> None:
        await self.orch.close()
        await asyncio.wait_for(self.task, 30)


@pytest.fixture
async def running() -> AsyncIterator[list[Running]]:
    made: list[Running] = []
    yield made
    for item in made:
        if not item.task.done():
            await item.stop()


def state(client: docker.DockerClient, name: str) -> dict[str, object] | None:
    found = client.api.containers(all=True, filters={"name": f"^/{name}$"})
    if not found:
        return None
    try:
        attrs: dict[str, object] = client.api.inspect_container(found[0]["Id"])
    except docker.errors.NotFound:
        return None  # replaced between listing and inspecting: not there right now
    return attrs


def is_running(client: docker.DockerClient, name: str) -> bool:
    attrs = state(client, name)
    return attrs is not None and attrs["State"]["Status"] == "running"  # type: ignore[index]


async def bring_up(
    client: docker.DockerClient,
    runtime: DockerRuntime,
    fleet: str,
    desired: list[ContainerSpec],
    running: list[Running],
) -> Running:
    item = Running(runtime, fleet, desired)
    running.append(item)
    for spec in desired:
        await until(lambda s=spec: is_running(client, s.name), timeout=60, what=f"{spec.name}")
    return item


async def test_two_gateway_fleet_comes_up_and_a_killed_gateway_answers_again(
    docker_client: docker.DockerClient,
    runtime: DockerRuntime,
    fleet: str,
    sim_image: str,
    running: list[Running],
) -> None:
    desired = sim_fleet(fleet, image=sim_image)
    broker, gateways = desired[0], desired[1:]
    item = await bring_up(docker_client, runtime, fleet, desired, running)
    assert broker.gateway == "sim-broker"
    for spec in gateways:
        attrs = state(docker_client, spec.name)
        assert attrs is not None
        labels = attrs["Config"]["Labels"]  # type: ignore[index]
        assert labels["io.ibfleet.fleet"] == fleet
        assert labels["io.ibfleet.spec-hash"] == spec.spec_hash
        ports = await until(
            lambda s=spec: state(docker_client, s.name)["NetworkSettings"]["Ports"].get(  # type: ignore[index]
                "4004/tcp"
            ),
            timeout=20,
            what="ports",
        )
        assert [p["HostIp"] for p in ports] == ["127.0.0.1"]
        # Ready means logged in at the broker and answering the TWS API, not "running".
        await until(
            lambda s=spec: api_answers(s.ports[0].host_port),
            timeout=90,
            what=f"{spec.gateway} to answer the API",
        )
    killed = gateways[0]
    before = state(docker_client, killed.name)
    assert before is not None
    docker_client.api.kill(before["Id"])

    def restarted() -> bool:
        now = state(docker_client, killed.name)
        return (
            now is not None
            and now["State"]["Status"] == "running"  # type: ignore[index]
            and now["State"]["StartedAt"] != before["State"]["StartedAt"]  # type: ignore[index]
        )

    await until(restarted, timeout=60, what="the killed gateway to run again")
    await until(
        lambda: api_answers(killed.ports[0].host_port, client_id=991),
        timeout=90,
        what="the killed gateway to answer the API again",
    )
    after = state(docker_client, killed.name)
    assert after is not None and after["Id"] == before["Id"]  # started again, not recreated
    assert any(
        isinstance(e, RuntimeEvent) and e.kind.value == "die" and e.exit_code == 137
        for e in item.published
    )
    assert is_running(docker_client, broker.name)  # the broker was not touched


async def test_changed_spec_recreates_only_that_gateway(
    docker_client: docker.DockerClient,
    runtime: DockerRuntime,
    fleet: str,
    sim_image: str,
    running: list[Running],
) -> None:
    a = gateway_spec("a", fleet=fleet, image=sim_image)
    b = gateway_spec("b", fleet=fleet, image=sim_image)
    item = await bring_up(docker_client, runtime, fleet, [a, b], running)
    ids = {s.name: state(docker_client, s.name)["Id"] for s in (a, b)}  # type: ignore[index]
    b_new = gateway_spec("b", fleet=fleet, image=sim_image, read_only=True)
    item.orch.set_desired([a, b_new])

    def b_recreated() -> bool:
        now = state(docker_client, b.name)
        return (
            now is not None and now["Id"] != ids[b.name] and now["State"]["Status"] == "running"  # type: ignore[index]
        )

    await until(b_recreated, timeout=60, what="b to be recreated")
    now_b = state(docker_client, b.name)
    assert now_b["Config"]["Labels"]["io.ibfleet.spec-hash"] == b_new.spec_hash  # type: ignore[index]
    assert state(docker_client, a.name)["Id"] == ids[a.name]  # type: ignore[index]


async def test_restarted_orchestrator_adopts_the_running_containers(
    docker_client: docker.DockerClient,
    runtime: DockerRuntime,
    fleet: str,
    sim_image: str,
    running: list[Running],
) -> None:
    desired = [gateway_spec(n, fleet=fleet, image=sim_image) for n in ("a", "b")]
    first = await bring_up(docker_client, runtime, fleet, desired, running)
    before = {s.name: state(docker_client, s.name) for s in desired}
    await first.stop()
    assert all(is_running(docker_client, s.name) for s in desired)  # shutdown left them up

    second = Running(runtime, fleet, desired)
    running.append(second)
    await until(lambda: second.orch.passes >= 1, timeout=60, what="a reconcile pass")
    for spec in desired:
        after = state(docker_client, spec.name)
        assert after is not None
        assert after["Id"] == before[spec.name]["Id"]  # type: ignore[index]
        assert after["State"]["StartedAt"] == before[spec.name]["State"]["StartedAt"]  # type: ignore[index]
    adopted = second.done(OrchestratorEventKind.ADOPTED)
    assert sorted(e.gateway for e in adopted) == ["a", "b"]
    assert second.done(OrchestratorEventKind.ACTION_DONE) == []


async def test_container_without_the_fleet_label_is_left_alone(
    docker_client: docker.DockerClient,
    runtime: DockerRuntime,
    fleet: str,
    sim_image: str,
    running: list[Running],
) -> None:
    a = gateway_spec("a", fleet=fleet, image=sim_image)
    b = gateway_spec("b", fleet=fleet, image=sim_image)
    squatter = docker_client.api.create_container(
        sim_image, name=a.name, labels={"io.ibfleet.test": "1"}
    )["Id"]
    item = Running(runtime, fleet, [a, b])
    running.append(item)
    await until(lambda: is_running(docker_client, b.name), timeout=60, what="b running")
    await until(
        lambda: item.done(OrchestratorEventKind.CONFLICT), timeout=30, what="a conflict event"
    )
    attrs = docker_client.api.inspect_container(squatter)
    assert attrs["State"]["Status"] == "created"  # never started, stopped nor removed
    assert "io.ibfleet.fleet" not in attrs["Config"]["Labels"]
    (conflict,) = item.done(OrchestratorEventKind.CONFLICT)
    assert conflict.container_id == squatter
