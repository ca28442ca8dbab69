"""Rolling replacement on the fake runtime: one at a time, canary first, rollback, windows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway.runtime import ContainerState
from gateway.spec import ContainerSpec
from gateway.spec_render import render_container
from supervisor.fleet_settings import UpdateWindow
from supervisor.orchestrator import Orchestrator, OrchestratorEventKind
from supervisor.reconcile import previous_name
from supervisor.rolling import Outcome, Replacement
from supervisor.rollout import GatewayFacts
from tests.unit.fake_runtime import FakeRuntime
from tests.unit.test_orchestrator import FLEET, Kit
from tests.unit.test_orchestrator import spec as base_spec


def spec(name: str, *, image: str = "ibfleet-sim:test", port: int = 4100) -> ContainerSpec:
    s = base_spec(name, port=port)
    if image == s.image:
        return s
    # The same gateway on another image: re-rendered so the hash and parts labels follow.
    return render_container(
        fleet=s.fleet,
        gateway=s.gateway,
        component="gateway",
        image=image,
        env=s.env_map,
        files=s.files,
        ports=s.ports,
        network=s.network,
        memory=s.memory_bytes,
        fingerprint_key=b"k" * 32,
    )


class FakeHooks:
    """Readiness per gateway (default ready), and a log of who was down when."""

    def __init__(self, runtime: FakeRuntime) -> None:
        self.runtime = runtime
        self.not_ready: set[str] = set()
        self.down: set[str] = set()
        self.most_down = 0
        self.calls: list[tuple[str, str]] = []
        self.results: list[Replacement] = []
        self.announced: list[tuple[str, dt.datetime]] = []
        self.bounds: list[float] = []
        self.held: set[str] = set()

    async def keeps_down(self, gateway: str) -> bool:
        return gateway in self.held

    async def before_replace(self, gateway: str, *, bound: float) -> None:
        self.calls.append(("before", gateway))
        self.bounds.append(bound)
        self.down.add(gateway)
        self.most_down = max(self.most_down, len(self.down))

    async def wait_ready(self, gateway: str, container_id: str, *, timeout: float) -> bool:
        self.calls.append(("wait", gateway))
        container = self.runtime.containers.get(container_id)
        running = container is not None and container.state is ContainerState.RUNNING
        return running and gateway not in self.not_ready

    async def after_replace(self, result: Replacement) -> None:
        self.calls.append(("after", result.gateway))
        self.results.append(result)
        self.down.discard(result.gateway)

    async def announce(self, gateway: str, at: dt.datetime) -> None:
        self.announced.append((gateway, at))


def setup(
    names: list[str], *, facts: dict[str, GatewayFacts] | None = None, **kw: Any
) -> tuple[Kit, FakeHooks, Orchestrator]:
    kit = Kit()
    hooks = FakeHooks(kit.runtime)
    kit.kwargs.update(hooks=hooks, facts=facts or {}, **kw)
    orch = kit.orchestrator([spec(n, port=4100 + i) for i, n in enumerate(names)])
    return kit, hooks, orch


async def upgrade(orch: Orchestrator, names: list[str]) -> None:
    orch.set_desired([spec(n, image="sim:2", port=4100 + i) for i, n in enumerate(names)])
    await orch.reconcile_once()
    await orch.wait_rollout()


def image_of(kit: Kit, gateway: str) -> str:
    container = kit.runtime.by_name(f"ibfleet-{FLEET}-{gateway}")
    assert container.spec is not None
    return container.spec.image


STRATEGY_FACTS = {
    "primary": GatewayFacts(name="primary", primary_for=("s",), used_by=("s",)),
    "backup": GatewayFacts(name="backup", used_by=("s",)),
}


class TestOneAtATime:
    async def test_every_gateway_is_replaced_one_after_the_other(self) -> None:
        kit, hooks, orch = setup(["primary", "backup"], facts=STRATEGY_FACTS)
        await orch.reconcile_once()
        await upgrade(orch, ["primary", "backup"])
        assert hooks.most_down == 1
        # The failover first (the canary), then the primary: the strategy moves once.
        assert [r.gateway for r in hooks.results] == ["backup", "primary"]
        assert [r.canary for r in hooks.results] == [True, False]
        assert all(r.outcome is Outcome.REPLACED for r in hooks.results)
        assert hooks.calls == [
            ("before", "backup"),
            ("wait", "backup"),
            ("after", "backup"),
            ("before", "primary"),
            ("wait", "primary"),
            ("after", "primary"),
        ]
        assert image_of(kit, "primary") == image_of(kit, "backup") == "sim:2"
        assert len(kit.events(OrchestratorEventKind.REPLACED)) == 2

    async def test_the_pass_that_sees_the_change_recreates_nothing_itself(self) -> None:
        kit, _hooks, orch = setup(["a"])
        await orch.reconcile_once()
        creates = len(kit.runtime.operations("create"))
        orch.set_desired([spec("a", image="sim:2")])
        actions = await orch.reconcile_once()
        assert any(a.gateway == "a" for a in actions)
        await orch.wait_rollout()
        assert len(kit.runtime.operations("create")) == creates + 1  # the rollout's, once

    async def test_previous_container_is_removed_once_the_new_one_is_ready(self) -> None:
        kit, _, orch = setup(["a"])
        await orch.reconcile_once()
        await upgrade(orch, ["a"])
        names = {c.name for c in kit.runtime.containers.values()}
        assert names == {f"ibfleet-{FLEET}-a"}

    async def test_stopped_or_missing_gateway_is_not_rolled(self) -> None:
        kit, hooks, orch = setup(["a"])
        await orch.reconcile_once()
        kit.runtime.kill(f"ibfleet-{FLEET}-a")
        orch.set_desired([spec("a", image="sim:2")])
        await orch.reconcile_once()
        await orch.wait_rollout()
        assert hooks.calls == []  # nothing running to protect: not a rolling replacement


class TestCanary:
    async def test_canary_not_ready_is_rolled_back_and_the_rest_untouched(self) -> None:
        kit, hooks, orch = setup(["a", "b"])
        await orch.reconcile_once()
        before = {c.name: c.id for c in kit.runtime.containers.values()}
        hooks.not_ready.add("a")
        await upgrade(orch, ["a", "b"])
        (result,) = hooks.results
        assert (result.gateway, result.outcome, result.canary) == ("a", Outcome.ROLLED_BACK, True)
        after = {c.name: c.id for c in kit.runtime.containers.values()}
        assert after == before  # the very same containers, a back on its previous one
        assert image_of(kit, "a") == image_of(kit, "b") == "ibfleet-sim:test"
        assert kit.runtime.by_name(f"ibfleet-{FLEET}-a").state is ContainerState.RUNNING
        assert len(kit.events(OrchestratorEventKind.ROLLED_BACK)) == 1
        assert orch.blocked is not None

    async def test_rollback_of_a_held_gateway_restores_it_stopped(self) -> None:
        kit, hooks, orch = setup(["a", "b"])
        await orch.reconcile_once()
        old = kit.runtime.by_name(f"ibfleet-{FLEET}-a").id
        hooks.not_ready.add("a")
        hooks.held.add("a")  # an operator stopped it (or FATAL) during the replacement
        await upgrade(orch, ["a", "b"])
        (result,) = hooks.results
        assert result.outcome is Outcome.ROLLED_BACK
        assert result.container_id == old
        assert "left stopped" in result.detail
        restored = kit.runtime.by_name(f"ibfleet-{FLEET}-a")
        assert restored.id == old
        assert restored.state is not ContainerState.RUNNING

    async def test_replacement_bound_covers_the_deadline_and_the_rollback(self) -> None:
        _, hooks, orch = setup(["a"], replace_deadline=50.0)
        await orch.reconcile_once()
        await upgrade(orch, ["a"])
        (bound,) = hooks.bounds
        assert bound > 50.0
        (result,) = hooks.results
        assert result.container_id is not None and result.outcome is Outcome.REPLACED

    async def test_failed_canary_blocks_until_apply(self) -> None:
        kit, hooks, orch = setup(["a", "b"])
        await orch.reconcile_once()
        hooks.not_ready.add("a")
        await upgrade(orch, ["a", "b"])
        for _ in range(3):
            await orch.reconcile_once()
            await orch.wait_rollout()
        assert len(hooks.results) == 1  # not tried again by itself
        assert len(kit.events(OrchestratorEventKind.ROLLOUT_BLOCKED)) == 1
        hooks.not_ready.clear()
        orch.apply()
        await orch.reconcile_once()
        await orch.wait_rollout()
        assert [r.outcome for r in hooks.results[1:]] == [Outcome.REPLACED, Outcome.REPLACED]
        assert image_of(kit, "a") == image_of(kit, "b") == "sim:2"

    async def test_a_new_container_that_cannot_be_created_is_rolled_back(self) -> None:
        kit, hooks, orch = setup(["a"])
        await orch.reconcile_once()
        kit.runtime.fail["create"] = {f"ibfleet-{FLEET}-a"}
        await upgrade(orch, ["a"])
        (result,) = hooks.results
        assert result.outcome is Outcome.ROLLED_BACK
        assert "injected failure" in result.detail
        assert kit.runtime.by_name(f"ibfleet-{FLEET}-a").state is ContainerState.RUNNING

    async def test_leftover_previous_copy_is_removed_when_the_gateway_runs_matching(self) -> None:
        kit, _, orch = setup(["a"])
        await orch.reconcile_once()
        # A copy left by a supervisor that died mid-rollout, stopped.
        copy = kit.runtime.add_foreign(
            name=previous_name(f"ibfleet-{FLEET}-a"),
            labels=kit.runtime.by_name(f"ibfleet-{FLEET}-a").labels,
        )
        copy.state = ContainerState.EXITED
        await orch.reconcile_once()
        assert copy.id not in kit.runtime.containers


class TestWindow:
    WINDOW = UpdateWindow(days=["sat"], start="02:00", length="2h")

    async def test_outside_the_window_the_change_waits_and_is_announced(self) -> None:
        facts = {"a": GatewayFacts(name="a", live=True, second_factor=True)}
        _kit, hooks, orch = setup(["a"], facts=facts, window=self.WINDOW, tz=dt.UTC)
        await orch.reconcile_once()
        await upgrade(orch, ["a"])
        await orch.reconcile_once()
        assert hooks.results == []
        assert orch.plan is not None and [g.gateway for g in orch.plan.waiting] == ["a"]
        # Announced once, for the window's opening (2024-06-08 is a Saturday).
        assert hooks.announced == [("a", dt.datetime(2024, 6, 8, 2, 0, tzinfo=dt.UTC))]

    async def test_apply_now_rolls_out_a_waiting_change(self) -> None:
        kit, hooks, orch = setup(["a", "b"], window=self.WINDOW, tz=dt.UTC)
        await orch.reconcile_once()
        await upgrade(orch, ["a", "b"])
        orch.apply(["b"])
        await orch.reconcile_once()
        await orch.wait_rollout()
        assert [r.gateway for r in hooks.results] == ["b"]
        assert (image_of(kit, "a"), image_of(kit, "b")) == ("ibfleet-sim:test", "sim:2")

    async def test_inside_the_window_it_rolls_by_itself(self) -> None:
        kit, hooks, orch = setup(["a"], window=self.WINDOW, tz=dt.UTC)
        kit.clock.now = dt.datetime(2024, 6, 8, 2, 30, tzinfo=dt.UTC)
        await orch.reconcile_once()
        await upgrade(orch, ["a"])
        assert [r.outcome for r in hooks.results] == [Outcome.REPLACED]


@pytest.mark.parametrize("names", [["a"], ["a", "b", "c"]])
async def test_each_gateway_is_replaced_exactly_once(names: list[str]) -> None:
    _kit, hooks, orch = setup(names)
    await orch.reconcile_once()
    await upgrade(orch, names)
    await orch.reconcile_once()
    await orch.wait_rollout()
    assert sorted(r.gateway for r in hooks.results) == sorted(names)
