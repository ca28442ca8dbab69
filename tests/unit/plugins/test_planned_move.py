"""A rollout's planned move: off the gateway about to be replaced, no safe state, orders stay."""

from __future__ import annotations

from pathlib import Path

from gateway.outage import Gate, OutageKind
from plugins.host import StrategyState
from tests.unit.plugins.host_harness import Rig, buy, rig, strategy
from tests.waiting import until

PLANNED = Gate(open=False, kind=OutageKind.PLANNED_RESTART, reason="replacing")


async def started(r: Rig) -> None:
    await r.host.start()
    await until(lambda: r.runner().state is StrategyState.RUNNING, what="running")


async def test_strategy_moves_to_its_failover_keeping_its_orders(tmp_path: Path) -> None:
    async with rig(tmp_path, strategy()) as r:
        await started(r)
        runner = r.runner()
        key = (await runner.place(buy())).key
        moved = await r.host.move_off("gw-a")
        assert moved == {"s1": "gw-b"}
        assert runner.status().gateway == "gw-b"
        assert runner.state is StrategyState.RUNNING and runner.trading
        # No safe state: the order placed on gw-a is still working at IB.
        assert r.host.safe_state_runs("s1") == []
        assert key in r.ib.open_refs()
        # The replaced gateway's gate closing afterwards does not disturb it.
        r.host.on_gate("gw-a", PLANNED)
        assert runner.trading
        assert (await runner.place(buy())).key != key


async def test_a_strategy_on_another_gateway_is_not_moved(tmp_path: Path) -> None:
    async with rig(tmp_path, strategy()) as r:
        await started(r)
        assert await r.host.move_off("gw-b") == {}
        assert r.runner().status().gateway == "gw-a"


async def test_no_candidate_leaves_the_strategy_where_it_is(tmp_path: Path) -> None:
    async with rig(tmp_path, strategy()) as r:
        await started(r)
        r.ib.gateways["gw-b"].up = False
        assert await r.host.move_off("gw-a") == {"s1": None}
        assert r.runner().status().gateway == "gw-a"
        assert r.runner().trading
