"""The reconcile loop on a hand-written fake runtime, with a fake clock."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from gateway.config import GatewayConfig
from gateway.runtime import ContainerState, EventKind, RuntimeEvent
from gateway.spec import LABEL_FLEET, ContainerSpec, GatewaySecrets
from gateway.spec_render import render_spec
from supervisor.budget import BackoffPolicy
from supervisor.orchestrator import (
    Orchestrator,
    OrchestratorEvent,
    OrchestratorEventKind,
    RestartPolicy,
)
from supervisor.reconcile import ActionKind
from supervisor.rolling import ContainerRunning
from tests.unit.fake_runtime import FakeRuntime
from tests.waiting import until as wait_for

FLEET = "unit"
T0 = datetime(2024, 6, 3, 14, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class MaxRandom(random.Random):
    """Full jitter at its ceiling, so backoff delays are exact in tests."""

    def uniform(self, a: float, b: float) -> float:
        return b


def spec(name: str, *, port: int = 4100) -> ContainerSpec:
    gw = GatewayConfig.model_validate(
        {
            "name": name,
            "mode": "paper",
            "account": "DU1234567",
            "username": {"env": "U"},
            "password": {"env": "P"},
            "api_port": port,
        }
    )
    return render_spec(
        gw,
        fleet=FLEET,
        network="ibfleet-unit",
        image="ibfleet-sim:test",
        timezone="UTC",
        secrets=GatewaySecrets(username=SecretStr("u"), password=SecretStr("pw")),
        fingerprint_key=b"k" * 32,
    )


class Kit:
    def __init__(self, *, budget: int = 3, **kwargs: Any) -> None:
        self.clock = Clock()
        self.runtime = FakeRuntime(clock=self.clock)
        self.published: list[RuntimeEvent | OrchestratorEvent] = []
        self.policy = RestartPolicy(
            backoff=BackoffPolicy(base=timedelta(seconds=10), cap=timedelta(seconds=60)),
            budget=budget,
            budget_window=timedelta(hours=1),
            stable_after=timedelta(minutes=5),
        )
        self.kwargs = kwargs

    def orchestrator(self, desired: list[ContainerSpec]) -> Orchestrator:
        params: dict[str, Any] = {
            "runtime": self.runtime,
            "fleet": FLEET,
            "desired": desired,
            "publish": self.published.append,
            "clock": self.clock,
            "interval": 3600.0,
            "policy": self.policy,
            "rng": MaxRandom(),
            "action_timeout": 5.0,
            "event_retry": 0.01,
            "hooks": ContainerRunning(self.runtime, settle=0.0),
        }
        params.update(self.kwargs)
        return Orchestrator(**params)

    def events(self, kind: OrchestratorEventKind) -> list[OrchestratorEvent]:
        return [e for e in self.published if isinstance(e, OrchestratorEvent) and e.kind is kind]


@pytest.fixture
def kit() -> Kit:
    return Kit()


class TestStartup:
    async def test_fleet_comes_up_with_one_create_and_start_per_gateway(self, kit: Kit) -> None:
        orch = kit.orchestrator([spec("a"), spec("b", port=4101)])
        await orch.reconcile_once()
        assert sorted(kit.runtime.operations("create")) == ["ibfleet-unit-a", "ibfleet-unit-b"]
        assert sorted(kit.runtime.operations("start")) == ["ibfleet-unit-a", "ibfleet-unit-b"]
        assert all(c.state is ContainerState.RUNNING for c in kit.runtime.containers.values())
        done = kit.events(OrchestratorEventKind.ACTION_DONE)
        assert sorted((e.gateway, e.action) for e in done) == [
            ("a", ActionKind.CREATE),
            ("b", ActionKind.CREATE),
        ]

    async def test_second_orchestrator_adopts_without_touching(self, kit: Kit) -> None:
        desired = [spec("a"), spec("b", port=4101)]
        await kit.orchestrator(desired).reconcile_once()
        ids = {c.name: c.id for c in kit.runtime.containers.values()}
        kit.runtime.calls.clear()
        kit.published.clear()
        await kit.orchestrator(desired).reconcile_once()
        assert [op for op, _ in kit.runtime.calls] == ["list"]
        assert {c.name: c.id for c in kit.runtime.containers.values()} == ids
        assert sorted(e.gateway for e in kit.events(OrchestratorEventKind.ADOPTED)) == ["a", "b"]

    async def test_unreachable_runtime_is_reported_not_raised(self, kit: Kit) -> None:
        kit.runtime.list_fails = True
        assert await kit.orchestrator([spec("a")]).reconcile_once() == []
        (event,) = kit.events(OrchestratorEventKind.RECONCILE_FAILED)
        assert "engine unreachable" in event.detail


class TestIsolation:
    async def test_failing_gateway_does_not_stop_the_others(self, kit: Kit) -> None:
        kit.runtime.fail["create"] = {"ibfleet-unit-b"}
        await kit.orchestrator([spec("a"), spec("b", port=4101)]).reconcile_once()
        assert kit.runtime.by_name("ibfleet-unit-a").state is ContainerState.RUNNING
        (failed,) = kit.events(OrchestratorEventKind.ACTION_FAILED)
        assert (failed.gateway, failed.action) == ("b", ActionKind.CREATE)
        assert "injected failure" in failed.detail

    async def test_hung_call_times_out_while_others_proceed(self) -> None:
        kit = Kit(action_timeout=0.2)
        kit.runtime.hang["start"] = {"ibfleet-unit-b"}
        await kit.orchestrator([spec("a"), spec("b", port=4101)]).reconcile_once()
        assert kit.runtime.by_name("ibfleet-unit-a").state is ContainerState.RUNNING
        (failed,) = kit.events(OrchestratorEventKind.ACTION_FAILED)
        assert failed.gateway == "b"
        assert "TimeoutError" in failed.detail

    async def test_foreign_container_with_our_name_is_reported_and_left_alone(
        self, kit: Kit
    ) -> None:
        squatter = kit.runtime.add_foreign(name="ibfleet-unit-a", labels={"owner": "someone"})
        await kit.orchestrator([spec("a"), spec("b", port=4101)]).reconcile_once()
        assert kit.runtime.containers[squatter.id].state is ContainerState.RUNNING
        assert "ibfleet-unit-a" not in {name for _, name in kit.runtime.calls if _ != "list"}
        (conflict,) = kit.events(OrchestratorEventKind.CONFLICT)
        assert conflict.container_id == squatter.id
        assert kit.runtime.by_name("ibfleet-unit-b").state is ContainerState.RUNNING

    async def test_other_fleets_orphans_are_not_removed(self, kit: Kit) -> None:
        other = kit.runtime.add_foreign(name="ibfleet-other-x", labels={LABEL_FLEET: "other"})
        await kit.orchestrator([]).reconcile_once()
        assert other.id in kit.runtime.containers


class TestRestarts:
    async def test_killed_gateway_runs_again_after_the_die_event(self, kit: Kit) -> None:
        orch = kit.orchestrator([spec("a")])
        task = asyncio.create_task(orch.run())
        await wait_for(lambda: orch.passes >= 1)
        await wait_for(lambda: bool(kit.runtime._subscribers))
        kit.runtime.kill("ibfleet-unit-a")
        await wait_for(lambda: kit.runtime.by_name("ibfleet-unit-a").starts == 2)
        die = [e for e in kit.published if isinstance(e, RuntimeEvent) and e.kind is EventKind.DIE]
        assert die and die[0].exit_code == 137
        await orch.close()
        await asyncio.wait_for(task, 5)

    async def test_repeated_failures_back_off_exponentially(self, kit: Kit) -> None:
        orch = kit.orchestrator([spec("a")])
        await orch.reconcile_once()  # created: a first creation is not a restart
        kit.runtime.kill("ibfleet-unit-a")
        await orch.reconcile_once()  # first restart: at once
        assert kit.runtime.by_name("ibfleet-unit-a").starts == 2
        kit.runtime.kill("ibfleet-unit-a")
        await orch.reconcile_once()  # deferred: 10 s backoff
        assert kit.runtime.by_name("ibfleet-unit-a").starts == 2
        (backoff,) = kit.events(OrchestratorEventKind.BACKOFF)
        assert backoff.retry_at == T0 + timedelta(seconds=10)
        kit.clock.advance(seconds=10)
        await orch.reconcile_once()
        assert kit.runtime.by_name("ibfleet-unit-a").starts == 3
        kit.runtime.kill("ibfleet-unit-a")
        await orch.reconcile_once()
        assert kit.events(OrchestratorEventKind.BACKOFF)[-1].retry_at == kit.clock.now + timedelta(
            seconds=20
        )

    async def test_spent_budget_holds_the_gateway_until_an_operator_starts_it(self) -> None:
        kit = Kit(budget=2)
        orch = kit.orchestrator([spec("a")])
        await orch.reconcile_once()
        for _ in range(2):
            kit.runtime.kill("ibfleet-unit-a")
            kit.clock.advance(minutes=2)
            await orch.reconcile_once()
        assert kit.runtime.by_name("ibfleet-unit-a").starts == 3
        kit.runtime.kill("ibfleet-unit-a")
        kit.clock.advance(minutes=2)
        await orch.reconcile_once()
        kit.clock.advance(minutes=10)
        await orch.reconcile_once()
        assert kit.runtime.by_name("ibfleet-unit-a").starts == 3
        (spent,) = kit.events(OrchestratorEventKind.BUDGET_EXHAUSTED)
        assert spent.gateway == "a"
        orch.operator_start("a")
        await orch.reconcile_once()
        assert kit.runtime.by_name("ibfleet-unit-a").state is ContainerState.RUNNING

    async def test_a_stable_run_resets_the_backoff(self, kit: Kit) -> None:
        orch = kit.orchestrator([spec("a")])
        await orch.reconcile_once()
        kit.runtime.kill("ibfleet-unit-a")
        await orch.reconcile_once()  # attempt 1, next not before +10 s
        kit.clock.advance(minutes=6)  # ran long enough to count as healthy
        await orch.reconcile_once()
        kit.runtime.kill("ibfleet-unit-a")
        await orch.reconcile_once()
        assert kit.runtime.by_name("ibfleet-unit-a").starts == 3
        assert kit.events(OrchestratorEventKind.BACKOFF) == []

    async def test_destroyed_gateway_is_created_again(self, kit: Kit) -> None:
        orch = kit.orchestrator([spec("a")])
        await orch.reconcile_once()
        kit.runtime.destroy("ibfleet-unit-a")
        await orch.reconcile_once()
        assert kit.runtime.by_name("ibfleet-unit-a").state is ContainerState.RUNNING
        assert kit.runtime.operations("create") == ["ibfleet-unit-a", "ibfleet-unit-a"]


class TestOperator:
    async def test_operator_stopped_gateway_is_not_restarted(self, kit: Kit) -> None:
        orch = kit.orchestrator([spec("a")])
        await orch.reconcile_once()
        await orch.operator_stop("a")
        kit.clock.advance(hours=2)
        await orch.reconcile_once()
        assert kit.runtime.by_name("ibfleet-unit-a").state is ContainerState.EXITED
        assert orch.operator_stopped == frozenset({"a"})
        orch.operator_start("a")
        await orch.reconcile_once()
        assert kit.runtime.by_name("ibfleet-unit-a").state is ContainerState.RUNNING


class TestDriftAndShutdown:
    async def test_changed_spec_recreates_only_that_gateway(self, kit: Kit) -> None:
        orch = kit.orchestrator([spec("a"), spec("b", port=4101)])
        await orch.reconcile_once()
        a_id = kit.runtime.by_name("ibfleet-unit-a").id
        b_id = kit.runtime.by_name("ibfleet-unit-b").id
        orch.set_desired([spec("a"), spec("b", port=4200)])
        await orch.reconcile_once()
        await orch.wait_rollout()  # a running gateway's new spec is rolled out
        assert kit.runtime.by_name("ibfleet-unit-a").id == a_id
        assert kit.runtime.by_name("ibfleet-unit-b").id != b_id
        assert kit.events(OrchestratorEventKind.BACKOFF) == []

    async def test_close_leaves_containers_running(self, kit: Kit) -> None:
        orch = kit.orchestrator([spec("a")])
        task = asyncio.create_task(orch.run())
        await wait_for(lambda: orch.passes >= 1)
        await orch.close()
        await asyncio.wait_for(task, 5)
        assert kit.runtime.operations("stop") == []
        assert kit.runtime.operations("remove") == []
        assert kit.runtime.by_name("ibfleet-unit-a").state is ContainerState.RUNNING

    async def test_broken_event_stream_is_followed_again(self, kit: Kit) -> None:
        orch = kit.orchestrator([spec("a")])
        task = asyncio.create_task(orch.run())
        await wait_for(lambda: bool(kit.runtime._subscribers))
        kit.runtime.end_event_streams()
        passes = orch.passes
        await wait_for(lambda: orch.passes > passes)  # the gap is covered by a reconcile
        await wait_for(lambda: bool(kit.runtime._subscribers))
        kit.runtime.kill("ibfleet-unit-a")
        await wait_for(lambda: kit.runtime.by_name("ibfleet-unit-a").starts == 2)
        await orch.close()
        await asyncio.wait_for(task, 5)

    async def test_a_failing_subscriber_does_not_stop_the_loop(self, kit: Kit) -> None:
        def explode(event: object) -> None:
            raise ValueError("subscriber bug")

        orch = Orchestrator(
            runtime=kit.runtime,
            fleet=FLEET,
            desired=[spec("a")],
            publish=explode,
            clock=kit.clock,
        )
        await orch.reconcile_once()
        assert kit.runtime.by_name("ibfleet-unit-a").state is ContainerState.RUNNING


class TestLifecycleOwnsRestarts:
    """decides_restarts=False: the supervisor's lifecycle decides, the orchestrator executes."""

    async def test_a_killed_container_stays_down_until_the_lifecycle_asks(self) -> None:
        kit = Kit(decides_restarts=False)
        orch = kit.orchestrator([spec("a")])
        await orch.reconcile_once()  # the first bring-up is the fleet file's
        kit.runtime.kill("ibfleet-unit-a")
        for _ in range(3):
            kit.clock.advance(minutes=5)
            await orch.reconcile_once()
        assert kit.runtime.by_name("ibfleet-unit-a").starts == 1
        await orch.restart("a")  # the lifecycle's HardRestart
        await orch.reconcile_once()
        assert kit.runtime.by_name("ibfleet-unit-a").starts == 2
        assert kit.events(OrchestratorEventKind.BACKOFF) == []

    async def test_restart_of_a_running_container_restarts_it_once_in_place(self) -> None:
        kit = Kit(decides_restarts=False)
        orch = kit.orchestrator([spec("a")])
        await orch.reconcile_once()
        before = kit.runtime.by_name("ibfleet-unit-a").id
        await orch.restart("a")
        await orch.reconcile_once()
        container = kit.runtime.by_name("ibfleet-unit-a")
        assert (container.id, container.starts) == (before, 2)

    async def test_held_gateways_are_not_brought_up_at_start(self) -> None:
        kit = Kit(decides_restarts=False, held={"a"})
        orch = kit.orchestrator([spec("a"), spec("b", port=4101)])
        await orch.reconcile_once()
        assert kit.runtime.operations("create") == ["ibfleet-unit-b"]
        orch.start("a")
        await orch.reconcile_once()
        assert kit.runtime.by_name("ibfleet-unit-a").state is ContainerState.RUNNING

    async def test_a_stopped_container_of_an_unheld_gateway_is_started_at_first_sight(
        self,
    ) -> None:
        kit = Kit(decides_restarts=False)
        first = kit.orchestrator([spec("a")])
        await first.reconcile_once()
        kit.runtime.kill("ibfleet-unit-a")  # it died while no supervisor watched
        second = kit.orchestrator([spec("a")])
        await second.reconcile_once()
        assert kit.runtime.by_name("ibfleet-unit-a").starts == 2

    async def test_a_destroyed_container_is_recreated_only_on_request(self) -> None:
        kit = Kit(decides_restarts=False)
        orch = kit.orchestrator([spec("a")])
        await orch.reconcile_once()
        kit.runtime.destroy("ibfleet-unit-a")
        await orch.reconcile_once()
        assert kit.runtime.operations("create") == ["ibfleet-unit-a"]
        orch.start("a")  # the lifecycle's StartContainer after ContainerDestroyed
        await orch.reconcile_once()
        assert kit.runtime.operations("create") == ["ibfleet-unit-a", "ibfleet-unit-a"]
