"""The Swarm runtime over a fake manager: what each runtime call does to a service, the secrets,
the supervisor's address in ControlFrom, adoption by labels, events and logs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import SecretStr

from gateway import javaprops
from gateway.config import GatewayConfig
from gateway.runtime import ContainerGone, ContainerState, EventKind, RuntimeEvent, RuntimeFailure
from gateway.spec import LABEL_FLEET, ContainerSpec, GatewaySecrets
from gateway.spec_render import render_spec
from gateway.swarm_runtime import LABEL_SUPERVISOR_OF, SwarmRuntime
from gateway.swarm_spec import LABEL_NAME
from tests.unit.fake_swarm import FakeSwarm
from tests.waiting import until

PASSWORD = "s3cret-Pa55word"
KEY = b"k" * 32


def spec_of(name: str = "paper-1", password: str = PASSWORD) -> ContainerSpec:
    gw = GatewayConfig.model_validate(
        {
            "name": name,
            "mode": "paper",
            "account": "DU1234567",
            "username": {"env": "IB_USER"},
            "password": {"env": "IB_PASS"},
            "api_port": 4102,
        }
    )
    return render_spec(
        gw,
        fleet="prod",
        network="ibfleet",
        image="ibfleet-sim:test",
        timezone="America/New_York",
        secrets=GatewaySecrets(username=SecretStr("user-" + name), password=SecretStr(password)),
        fingerprint_key=KEY,
    )


@pytest.fixture
def swarm() -> FakeSwarm:
    fake = FakeSwarm()
    fake.images["ibfleet-sim:test"] = {"Config": {"User": "1000:1000"}}
    return fake


@pytest.fixture
async def runtime(swarm: FakeSwarm) -> Any:
    rt = SwarmRuntime(swarm, secret_key=KEY, control_sources=("10.0.9.250",), stop_settle=2.0)
    yield rt
    rt.close()


async def test_create_makes_network_secrets_and_a_stopped_service(
    swarm: FakeSwarm, runtime: SwarmRuntime
) -> None:
    service_id = await runtime.create(spec_of())
    net = swarm.network_store["ibfleet"]
    assert (net["Driver"], net["Scope"], net["Labels"]) == (
        "overlay",
        "swarm",
        {LABEL_FLEET: "prod"},
    )
    assert "encrypted" in net["Options"] and net["Attachable"] is False
    assert swarm.tasks_of(service_id) == []
    seen = await runtime.inspect(service_id)
    assert seen.state is ContainerState.CREATED
    assert seen.name == "ibfleet-prod-paper-1" and seen.spec_hash == spec_of().spec_hash
    assert len(swarm.secret_store) == 3


async def test_no_credential_is_in_what_service_inspect_shows(
    swarm: FakeSwarm, runtime: SwarmRuntime
) -> None:
    service_id = await runtime.create(spec_of())
    shown = json.dumps(swarm.inspect_service(service_id))
    assert PASSWORD not in shown and "user-paper-1" not in shown
    config = next(
        data
        for sid, data in swarm.secret_data.items()
        if swarm.secret_store[sid]["Spec"]["Name"].startswith(
            swarm.inspect_service(service_id)["Spec"]["Name"] + "-config.ini"
        )
    )
    settings = javaprops.load(config, source="config.ini")
    assert settings["IbPassword"] == PASSWORD


async def test_control_from_admits_this_supervisor_and_the_fleets_supervisor_tasks(
    swarm: FakeSwarm, runtime: SwarmRuntime
) -> None:
    await runtime.create(spec_of("broker-stub"))  # makes the network
    standby = swarm.create_service(
        {"ContainerSpec": {"Image": "ibfleet:1"}, "Networks": [{"Target": "ibfleet"}]},
        name="ibfleet_standby",
        labels={LABEL_SUPERVISOR_OF: "prod"},
        mode={"Replicated": {"Replicas": 1}},
    )
    standby_ip = swarm.live_task(standby["ID"])["NetworksAttachments"][0]["Addresses"][0]
    service_id = await runtime.create(spec_of())
    name = swarm.inspect_service(service_id)["Spec"]["Name"]
    config = next(
        data
        for sid, data in swarm.secret_data.items()
        if swarm.secret_store[sid]["Spec"]["Name"].startswith(name + "-config.ini")
    )
    allowed = javaprops.load(config, source="config.ini")["ControlFrom"].split(",")
    assert allowed == ["10.0.9.250", standby_ip.split("/")[0]]
    # The standby is no container of the fleet: never listed, so never removed as an orphan.
    assert {c.id for c in await runtime.list(fleet="prod")} == {
        s for s in swarm.services_by_id if s != standby["ID"]
    }


async def test_start_runs_one_task_and_list_adopts_it_by_labels(
    swarm: FakeSwarm, runtime: SwarmRuntime
) -> None:
    service_id = await runtime.create(spec_of())
    await runtime.start(service_id)
    [seen] = await runtime.list(fleet="prod")
    assert seen.id == service_id and seen.state is ContainerState.RUNNING and seen.is_alive
    assert seen.gateway == "paper-1" and seen.started_at is not None
    await runtime.start(service_id)  # already running: nothing new
    assert len(swarm.tasks_of(service_id)) == 1
    address = await runtime.command_address(service_id)
    assert address is not None and address[1] == 7462 and address[0].startswith("10.0.9.")


async def test_a_task_that_exited_stays_down_until_started_again(
    swarm: FakeSwarm, runtime: SwarmRuntime
) -> None:
    service_id = await runtime.create(spec_of())
    await runtime.start(service_id)
    swarm.exit_task(service_id, 1)
    seen = await runtime.inspect(service_id)
    assert seen.state is ContainerState.EXITED and seen.exit_code == 1
    assert await runtime.command_address(service_id) is None
    await runtime.start(service_id)  # the lifecycle decided: a new task
    assert (await runtime.inspect(service_id)).state is ContainerState.RUNNING
    assert len(swarm.tasks_of(service_id)) == 2


async def test_a_lost_node_makes_the_gateway_exited_and_a_start_places_it_elsewhere(
    swarm: FakeSwarm, runtime: SwarmRuntime
) -> None:
    service_id = await runtime.create(spec_of())
    await runtime.start(service_id)
    node = swarm.live_task(service_id)["NodeID"]
    swarm.node_down(node)
    assert (await runtime.inspect(service_id)).state is ContainerState.EXITED
    await runtime.start(service_id)
    assert swarm.live_task(service_id)["NodeID"] != node
    assert (await runtime.inspect(service_id)).state is ContainerState.RUNNING


async def test_stop_scales_to_zero_with_the_grace_and_waits_for_the_task(
    swarm: FakeSwarm, runtime: SwarmRuntime
) -> None:
    service_id = await runtime.create(spec_of())
    await runtime.start(service_id)
    swarm.stop_slowly = True
    stopping = asyncio.create_task(runtime.stop(service_id, timeout=7))
    await until(
        lambda: swarm.inspect_service(service_id)["Spec"]["Mode"]["Replicated"]["Replicas"] == 0
    )
    assert not stopping.done()  # the old session may still be logged in
    assert (
        swarm.inspect_service(service_id)["Spec"]["TaskTemplate"]["ContainerSpec"][
            "StopGracePeriod"
        ]
        == 7_000_000_000
    )
    swarm.settle()
    await asyncio.wait_for(stopping, 5)
    seen = await runtime.inspect(service_id)
    assert seen.state is ContainerState.EXITED and seen.labels[LABEL_FLEET] == "prod"


async def test_a_stop_that_never_ends_fails_after_its_deadline(
    swarm: FakeSwarm, runtime: SwarmRuntime
) -> None:
    service_id = await runtime.create(spec_of())
    await runtime.start(service_id)
    swarm.stop_slowly = True
    with pytest.raises(RuntimeFailure, match="still runs"):
        await runtime.stop(service_id, timeout=0.1)


async def test_restart_replaces_the_task(swarm: FakeSwarm, runtime: SwarmRuntime) -> None:
    service_id = await runtime.create(spec_of())
    await runtime.start(service_id)
    first = swarm.live_task(service_id)["ID"]
    await runtime.restart(service_id, timeout=5)
    assert swarm.live_task(service_id)["ID"] != first
    assert swarm.inspect_service(service_id)["Spec"]["TaskTemplate"]["ForceUpdate"] == 1


async def test_rename_changes_the_name_label_only(swarm: FakeSwarm, runtime: SwarmRuntime) -> None:
    service_id = await runtime.create(spec_of())
    await runtime.start(service_id)
    task = swarm.live_task(service_id)["ID"]
    await runtime.rename(service_id, "ibfleet-prod-paper-1-previous")
    seen = await runtime.inspect(service_id)
    assert seen.name == "ibfleet-prod-paper-1-previous"
    assert swarm.inspect_service(service_id)["Spec"]["Labels"][LABEL_NAME] == seen.name
    assert swarm.live_task(service_id)["ID"] == task  # the gateway kept running


async def test_a_rollouts_new_service_lives_beside_the_previous(
    swarm: FakeSwarm, runtime: SwarmRuntime
) -> None:
    old = await runtime.create(spec_of())
    await runtime.rename(old, "ibfleet-prod-paper-1-previous")
    new = await runtime.create(spec_of(password="changed-Pa55"))
    assert old != new
    names = sorted(c.name for c in await runtime.list(fleet="prod"))
    assert names == ["ibfleet-prod-paper-1", "ibfleet-prod-paper-1-previous"]


async def test_remove_takes_the_service_and_its_unused_secrets(
    swarm: FakeSwarm, runtime: SwarmRuntime
) -> None:
    keep = await runtime.create(spec_of("paper-2"))
    gone = await runtime.create(spec_of())
    await runtime.start(gone)
    swarm.calls.clear()
    await runtime.remove(gone)
    assert gone not in swarm.services_by_id
    # Scaled to 0 and its task waited for while the manager still lists it, then removed:
    # a task still stopping would hold the username's session past the removal.
    assert swarm.calls.index("update_service") < swarm.calls.index("remove_service")
    assert "tasks" in swarm.calls[: swarm.calls.index("remove_service")]
    assert len(swarm.secret_store) == 3  # paper-2's, still in use
    used = {
        r["SecretID"]
        for r in swarm.inspect_service(keep)["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
    }
    assert set(swarm.secret_store) == used
    with pytest.raises(ContainerGone):
        await runtime.inspect(gone)


async def test_a_failed_create_leaves_no_secret(swarm: FakeSwarm, runtime: SwarmRuntime) -> None:
    swarm.network_store.clear()
    await runtime.create(spec_of("paper-2"))  # network ready, cached
    before = set(swarm.secret_store)
    swarm.network_store.clear()  # the network vanished: the manager refuses the service
    with pytest.raises(RuntimeFailure, match="engine refused"):
        await runtime.create(spec_of())
    assert set(swarm.secret_store) == before


async def test_an_unlabelled_network_of_that_name_is_refused(swarm: FakeSwarm) -> None:
    swarm.create_network("ibfleet", driver="overlay", scope="swarm", labels={})
    runtime = SwarmRuntime(swarm, secret_key=KEY)
    with pytest.raises(RuntimeFailure, match="not this fleet's"):
        await runtime.create(spec_of())
    runtime.close()


async def test_events_report_start_and_die_from_task_changes(swarm: FakeSwarm) -> None:
    runtime = SwarmRuntime(swarm, secret_key=KEY, poll_interval=0.02)
    service_id = await runtime.create(spec_of())
    seen: list[RuntimeEvent] = []

    async def follow() -> None:
        async for event in runtime.events(fleet="prod"):
            seen.append(event)

    task = asyncio.create_task(follow())
    try:
        await until(lambda: "tasks" in swarm.calls)
        await runtime.start(service_id)
        await until(lambda: [e.kind for e in seen] == [EventKind.START])
        swarm.exit_task(service_id, 3)
        await until(lambda: [e.kind for e in seen] == [EventKind.START, EventKind.DIE])
        assert seen[1].exit_code == 3 and seen[1].gateway == "paper-1"
        assert seen[1].container_id == service_id
        await runtime.start(service_id)
        await until(lambda: len(seen) == 3 and seen[2].kind is EventKind.START)
        swarm.node_down(swarm.live_task(service_id)["NodeID"])
        await until(lambda: len(seen) == 4 and seen[3].kind is EventKind.DIE)
        await runtime.remove(service_id)
        await until(lambda: seen[-1].kind is EventKind.DESTROY)
    finally:
        task.cancel()
        runtime.close()


async def test_logs_are_the_current_tasks_since_it_started(
    swarm: FakeSwarm, runtime: SwarmRuntime
) -> None:
    service_id = await runtime.create(spec_of())
    await runtime.start(service_id)
    await runtime.restart(service_id, timeout=1)
    tasks = sorted(swarm.tasks_of(service_id), key=lambda t: t["CreatedAt"])
    old, new = tasks[0]["ID"], tasks[1]["ID"]
    started = tasks[1]["Status"]["Timestamp"]

    def line(stamp: str, task_id: str, text: str) -> bytes:
        details = f"com.docker.swarm.node.id=n1,com.docker.swarm.task.id={task_id}"
        return f"{stamp} {details} {text}\n".encode()

    swarm.log_lines[service_id] = [
        line("2026-12-01T11:00:00.000000000Z", new, "long ago"),
        line(started, old, "the old task's last words"),
        line(started, new, "IBC: Login has completed"),
    ]
    lines = [item async for item in runtime.follow_logs(service_id)]
    assert lines == [f"{started} IBC: Login has completed"]


async def test_fleet_down_takes_services_secrets_and_the_network(
    swarm: FakeSwarm, runtime: SwarmRuntime
) -> None:
    service_id = await runtime.create(spec_of())
    await runtime.start(service_id)
    assert await runtime.fleet_networks(fleet="prod") == ("ibfleet",)
    with pytest.raises(RuntimeFailure, match="in use"):
        await runtime.remove_network("ibfleet")
    await runtime.stop(service_id, timeout=1)
    await runtime.remove(service_id)
    await runtime.teardown("prod")
    await runtime.remove_network("ibfleet")
    assert swarm.secret_store == {} and swarm.network_store == {}


async def test_a_local_network_of_that_name_is_refused(swarm: FakeSwarm) -> None:
    swarm.create_network("ibfleet", driver="bridge", labels={LABEL_FLEET: "prod"})
    runtime = SwarmRuntime(swarm, secret_key=KEY)
    with pytest.raises(RuntimeFailure, match="needs an overlay network"):
        await runtime.create(spec_of())
    runtime.close()


async def test_ibfleet_fleet_down_plans_and_takes_down_a_swarm_fleet(
    swarm: FakeSwarm, runtime: SwarmRuntime
) -> None:
    from supervisor import cli_fleet

    service_id = await runtime.create(spec_of())
    await runtime.start(service_id)
    plan = await cli_fleet._plan(runtime, "prod", None)
    assert plan.lines() == ["container ibfleet-prod-paper-1 (running)", "network ibfleet"]
    assert await cli_fleet._execute(runtime, plan, timeout=1) == []
    assert swarm.services_by_id == {} and swarm.secret_store == {} and swarm.network_store == {}


def test_fleet_down_on_a_swarm_sees_a_supervisor_running_on_another_node(
    swarm: FakeSwarm,
) -> None:
    from gateway.swarm_api import LABEL_SUPERVISOR_OF
    from supervisor.cli_fleet import _swarm_supervisors

    swarm.create_network("ibfleet-sup", driver="overlay", scope="swarm")
    template = {"ContainerSpec": {"Image": "ibfleet:1"}, "Networks": [{"Target": "ibfleet-sup"}]}
    created = swarm.create_service(
        template,
        name="ibfleet-prod-supervisor",
        labels={LABEL_SUPERVISOR_OF: "prod"},
        mode={"Replicated": {"Replicas": 1}},
    )
    swarm.create_service(
        template,
        name="other-supervisor",
        labels={LABEL_SUPERVISOR_OF: "other"},
        mode={"Replicated": {"Replicas": 1}},
    )
    assert _swarm_supervisors(swarm, "prod") == ["ibfleet-prod-supervisor"]
    service = swarm.inspect_service(created["ID"])
    spec = service["Spec"]
    swarm.update_service(
        created["ID"],
        service["Version"]["Index"],
        task_template=spec["TaskTemplate"],
        name=spec["Name"],
        labels=spec["Labels"],
        mode={"Replicated": {"Replicas": 0}},
    )
    assert _swarm_supervisors(swarm, "prod") == []  # scaled to 0: fleet down may go ahead
