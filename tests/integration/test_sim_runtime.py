"""The in-process simulator runtime through the Runtime protocol only, with the real ib_async
client on the published loopback port. No Docker: simulated gateways run in the test's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from ib_async import IB
from pydantic import SecretStr

from gateway import authlog, ibc
from gateway.config import GatewayConfig
from gateway.runtime import ContainerGone, ContainerState, EventKind, Runtime, RuntimeEvent
from gateway.spec import ContainerSpec, GatewaySecrets
from gateway.spec_render import render_spec
from ibsim import auth
from ibsim.port import Fault, FaultEvent
from ibsim.runtime import InProcessRuntime
from supervisor.budget import BackoffPolicy
from supervisor.orchestrator import Orchestrator, RestartPolicy
from tests.net import free_port
from tests.waiting import until

PASSWORD = "in-process-pw"
KEY = b"sim-runtime-key-" * 2


def spec_for(
    name: str,
    *,
    fleet: str = "simrt",
    username: str | None = None,
    account: str = "DU2000001",
    port: int | None = None,
    **overrides: Any,
) -> ContainerSpec:
    data: dict[str, Any] = {
        "name": name,
        "mode": "paper",
        "account": account,
        "username": {"env": "U"},
        "password": {"env": "P"},
        "api_port": port or free_port(),
        "memory_limit": "256m",
    }
    data.update(overrides)
    return render_spec(
        GatewayConfig.model_validate(data),
        fleet=fleet,
        network=f"ibfleet-{fleet}",
        image="ibfleet-sim:inprocess",
        timezone="UTC",
        secrets=GatewaySecrets(
            username=SecretStr(username or f"user-{name}"), password=SecretStr(PASSWORD)
        ),
        fingerprint_key=KEY,
    )


async def api_answers(port: int, *, client_id: int = 901) -> bool:
    ib = IB()
    try:
        await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=2)
        return bool(ib.isConnected() and ib.managedAccounts())
    except (OSError, TimeoutError, ConnectionError):
        return False
    finally:
        ib.disconnect()


async def port_closed(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


async def runtime_started_at(runtime: InProcessRuntime, name: str) -> Any:
    (container,) = [c for c in await runtime.list(fleet="simrt") if c.name == name]
    return container.started_at


async def runtime_restarted(runtime: InProcessRuntime, name: str, before: Any) -> bool:
    return await runtime_started_at(runtime, name) != before


class Recorder:
    """Follows a runtime's event stream in a task."""

    def __init__(self, runtime: Runtime, fleet: str) -> None:
        self.events: list[RuntimeEvent] = []
        self._runtime = runtime
        self._fleet = fleet
        self.task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        async for event in self._runtime.events(fleet=self._fleet):
            self.events.append(event)

    def of(self, kind: EventKind) -> list[RuntimeEvent]:
        return [e for e in self.events if e.kind is kind]

    async def close(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def runtime() -> AsyncIterator[InProcessRuntime]:
    rt = InProcessRuntime(
        twofa_users={"phone-user"},
        auth_config=auth.AuthorityConfig(twofa_timeout=timedelta(seconds=1)),
    )
    async with rt:
        yield rt


@pytest.fixture
async def recorder(runtime: InProcessRuntime) -> AsyncIterator[Recorder]:
    rec = Recorder(runtime, "simrt")
    await asyncio.sleep(0)  # subscribed before anything happens
    yield rec
    await rec.close()


async def started(runtime: Runtime, spec: ContainerSpec) -> str:
    container_id = await runtime.create(spec)
    await runtime.start(container_id)
    return container_id


async def lines_until(
    runtime: Runtime, container_id: str, text: str, *, timeout: float, nth: int = 1
) -> list[str]:
    """Follow the logs until the ``nth`` line containing ``text``; returns every line read."""
    seen: list[str] = []

    async def read() -> list[str]:
        async for line in runtime.follow_logs(container_id):
            seen.append(line)
            if sum(text in item for item in seen) >= nth:
                return seen
        raise AssertionError(f"log stream ended before {text!r}: {seen}")

    return await asyncio.wait_for(read(), timeout)


async def test_started_gateway_logs_in_and_answers_ib_async_on_its_published_port(
    runtime: InProcessRuntime, recorder: Recorder
) -> None:
    spec = spec_for("a")
    container_id = await started(runtime, spec)
    lines = await lines_until(runtime, container_id, "Login has completed", timeout=10)
    assert await api_answers(spec.ports[0].host_port)
    # Docker's RFC 3339 prefix, so the same parser reads both runtimes' lines.
    events = [authlog.parse_line(line) for line in lines]
    logged_in = [e for e in events if isinstance(e, authlog.LoggedIn)]
    assert logged_in and logged_in[0].at is not None and logged_in[0].at.tzinfo is not None
    observed = await runtime.inspect(container_id)
    assert observed.state is ContainerState.RUNNING
    assert observed.gateway == "a" and observed.fleet == "simrt"
    assert observed.spec_hash == spec.spec_hash
    starts = await until(lambda: recorder.of(EventKind.START), timeout=5, what="a start event")
    assert [e.container_id for e in starts] == [container_id]
    assert [c.id for c in await runtime.list(fleet="simrt")] == [container_id]
    assert await runtime.list(fleet="other") == []


async def test_command_server_restart_soft_restarts_without_a_new_process(
    runtime: InProcessRuntime, recorder: Recorder
) -> None:
    spec = spec_for("a")
    container_id = await started(runtime, spec)
    started_at = (await runtime.inspect(container_id)).started_at
    address = await until(
        lambda: runtime.command_address(container_id), timeout=10, what="the command server"
    )
    host, port = address
    assert host == "127.0.0.1"
    # The command server is up from IBC's start; RESTART a Gateway that has logged in.
    await lines_until(runtime, container_id, "Login has completed", timeout=10)
    reply = await ibc.send("RESTART", host=host, port=port, timeout=5)
    assert reply.text == "RESTART in progress"
    # IBC moves the Gateway's restart to the next minute: bring the gateway's clock there.
    runtime.broker_service.push_fault(
        FaultEvent(gateway="a", fault=Fault.CLOCK, active=True, value=61)
    )
    lines = await lines_until(runtime, container_id, "Re-starting session", timeout=10)
    assert sum("Login has completed" in line for line in lines) == 1
    assert any("IBC returned exit status 0" in line for line in lines)
    # The JVM relaunched inside the same container with its autorestart token: no 2FA.
    lines = await lines_until(runtime, container_id, "Login has completed", timeout=10, nth=2)
    assert not any("Second Factor" in line for line in lines)
    await until(
        lambda: api_answers(spec.ports[0].host_port), timeout=10, what="the API after RESTART"
    )
    assert recorder.of(EventKind.DIE) == []  # a relaunch inside the container is no exit
    assert len(recorder.of(EventKind.START)) == 1
    assert (await runtime.inspect(container_id)).started_at == started_at


async def test_stop_exits_zero_closes_the_port_and_the_command_server(
    runtime: InProcessRuntime, recorder: Recorder
) -> None:
    spec = spec_for("a")
    container_id = await started(runtime, spec)
    await until(lambda: runtime.command_address(container_id), timeout=10, what="logged in")
    await runtime.stop(container_id, timeout=5)
    observed = await runtime.inspect(container_id)
    assert observed.state is ContainerState.EXITED and observed.exit_code == 0
    assert await port_closed(spec.ports[0].host_port)
    assert await runtime.command_address(container_id) is None
    (die,) = await until(lambda: recorder.of(EventKind.DIE), timeout=5, what="a die event")
    assert die.exit_code == 0 and die.gateway == "a"


async def test_crash_fault_is_a_die_with_a_nonzero_exit_code(
    runtime: InProcessRuntime, recorder: Recorder
) -> None:
    container_id = await started(runtime, spec_for("a"))
    await until(lambda: runtime.command_address(container_id), timeout=10, what="logged in")
    runtime.broker_service.push_fault(FaultEvent(gateway="a", fault=Fault.CRASH, active=True))
    die = await until(lambda: recorder.of(EventKind.DIE), timeout=10, what="a die event")
    assert die[0].exit_code == 70
    assert (await runtime.inspect(container_id)).state is ContainerState.EXITED


async def test_restart_is_a_new_process_that_needs_2fa_again(
    runtime: InProcessRuntime, recorder: Recorder
) -> None:
    spec = spec_for("a", username="phone-user")
    container_id = await started(runtime, spec)
    service = runtime.broker_service
    await until(
        lambda: service.authority.pending_2fa("phone-user"), timeout=10, what="a 2FA prompt"
    )
    service.approve_2fa("phone-user")
    await until(lambda: runtime.command_address(container_id), timeout=10, what="logged in")
    await runtime.restart(container_id, timeout=5)
    await until(
        lambda: service.authority.pending_2fa("phone-user"),
        timeout=10,
        what="a new 2FA prompt after the restart",
    )
    lines = await lines_until(runtime, container_id, "Second Factor Authentication", timeout=5)
    assert not any("Login has completed" in line for line in lines)  # the new run's lines only
    await until(lambda: len(recorder.of(EventKind.START)) == 2, timeout=5, what="two starts")
    assert [e.exit_code for e in recorder.of(EventKind.DIE)] == [0]


async def test_remove_destroys_and_the_container_is_gone(
    runtime: InProcessRuntime, recorder: Recorder
) -> None:
    spec = spec_for("a")
    container_id = await started(runtime, spec)
    await until(lambda: runtime.command_address(container_id), timeout=10, what="logged in")
    await runtime.remove(container_id)
    destroyed = await until(lambda: recorder.of(EventKind.DESTROY), timeout=5, what="destroy")
    assert destroyed[0].container_id == container_id
    assert [e.exit_code for e in recorder.of(EventKind.DIE)] == [137]
    with pytest.raises(ContainerGone):
        await runtime.inspect(container_id)
    assert await port_closed(spec.ports[0].host_port)
    # The name is free again, and the username can log in again.
    again = await started(runtime, spec)
    await until(lambda: runtime.command_address(again), timeout=10, what="logged in again")


async def test_create_refuses_a_name_in_use_and_a_spec_without_credentials(
    runtime: InProcessRuntime,
) -> None:
    spec = spec_for("a")
    await runtime.create(spec)
    with pytest.raises(Exception, match="name is in use"):
        await runtime.create(spec)
    stripped = spec_for("b")
    bare = type(stripped)(**{**_fields(stripped), "files": ()})
    with pytest.raises(Exception, match="no username file"):
        await runtime.create(bare)


def _fields(spec: ContainerSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in spec.__dataclass_fields__}


async def test_orchestrator_brings_a_fleet_up_and_back_after_a_crash(
    runtime: InProcessRuntime,
) -> None:
    desired = [spec_for(name, account=f"DU30000{i}") for i, name in enumerate(("a", "b"))]
    orch = Orchestrator(
        runtime=runtime,
        fleet="simrt",
        desired=desired,
        publish=lambda event: None,
        interval=5.0,
        policy=RestartPolicy(
            backoff=BackoffPolicy(base=timedelta(milliseconds=10), cap=timedelta(milliseconds=20))
        ),
    )
    task = asyncio.create_task(orch.run())
    try:
        for spec in desired:
            await until(
                lambda s=spec: api_answers(s.ports[0].host_port),
                timeout=15,
                what=f"{spec.gateway} to answer",
            )
        before = await runtime_started_at(runtime, desired[0].name)
        runtime.broker_service.push_fault(FaultEvent(gateway="a", fault=Fault.CRASH, active=True))
        # socat keeps the port open across JVMs: the crash shows as a new container start.
        await until(
            lambda: runtime_restarted(runtime, desired[0].name, before),
            timeout=10,
            what="the container restarted after its crash",
        )
        await until(
            lambda: api_answers(desired[0].ports[0].host_port),
            timeout=15,
            what="a to answer again after its crash",
        )
    finally:
        await orch.close()
        await asyncio.wait_for(task, 10)
