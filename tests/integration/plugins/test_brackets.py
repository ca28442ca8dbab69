"""A bracket placed through the host survives a primary-gateway kill: no leg reaches the broker
twice, none is left working without its group (in-process simulator, two gateways, one
account). Needs the simulator's parent/child, OCA and stop orders (ibsim.broker)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.outage import Gate, OutageKind
from ibsim.broker import Broker
from ibsim.port import Fault
from plugins.host import SafeStatePath, StrategyState
from tests.integration.plugins.helpers import (
    RecordingAlerts,
    make_host,
    open_at_broker,
    open_journal,
    order_refs,
    strategy,
    two_gateways,
)
from tests.waiting import until

BRACKET = "tests.integration.plugins.strategies:BracketOnce"
pytestmark = pytest.mark.timeout(60)


def legs_at(broker: Broker, keys: list[str]) -> dict[str, str]:
    return {o.order_ref: o.status.value for o in broker.orders.values() if o.order_ref in keys}


async def test_a_held_bracket_survives_a_primary_kill_and_closes_by_oca_on_the_secondary(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path)
    alerts = RecordingAlerts()
    async with two_gateways() as sim:
        host = make_host(sim, journal, [strategy("brk", BRACKET, action="hold")], alerts=alerts)
        await host.start()
        try:
            keys = await until(
                lambda: journal.kv_get("brk", "bracket"), timeout=10, what="a bracket placed"
            )
            await until(
                lambda: len(open_at_broker(sim.broker, "brk-")) == 3,
                timeout=5,
                what="three legs working at the broker",
            )
            t0 = time.perf_counter()
            sim.fault(0, Fault.CRASH, active=True)
            host.on_gate("gw-a", Gate(open=False, kind=OutageKind.LOST, reason="crashed"))
            await until(
                lambda: (
                    host.strategies()[0].state is StrategyState.RUNNING
                    and host.strategies()[0].gateway == "gw-b"
                ),
                timeout=10,
                what="the strategy running on gw-b",
            )
            moved_after = time.perf_counter() - t0
            [run] = host.safe_state_runs("brk")
            assert run.path is SafeStatePath.NOTHING  # hold: the bracket stays at IB
            assert sorted(open_at_broker(sim.broker, "brk-")) == sorted(keys)
            assert not [a for a in alerts.raised if ":bracket:" in a[0]]
            # The market comes down to the entry, then up through the take-profit.
            entry, take_profit, _ = journal.kv_get("brk", "prices")
            sim.set_price("AAPL", round(entry * 0.99, 2))
            sim.set_price("AAPL", round(take_profit * 1.01, 2))
            await until(
                lambda: not open_at_broker(sim.broker, "brk-"), timeout=5, what="bracket closed"
            )
            status = legs_at(sim.broker, keys)
            assert [status[k] for k in keys] == ["Filled", "Filled", "Cancelled"]
            assert all(n == 1 for n in order_refs(sim.broker, "brk-").values())
            assert set(order_refs(sim.broker, "brk-")) == set(keys)
            print(f"\nbracket held through a primary kill: on gw-b in {moved_after:.2f}s")
        finally:
            await host.stop()
            journal.close()


async def test_a_bracket_of_a_killed_primary_is_cancelled_leg_by_leg_from_the_secondary(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path)
    async with two_gateways() as sim:
        host = make_host(sim, journal, [strategy("brk", BRACKET, grace=0.2)])
        await host.start()
        try:
            keys = await until(
                lambda: journal.kv_get("brk", "bracket"), timeout=10, what="a bracket placed"
            )
            await until(
                lambda: len(open_at_broker(sim.broker, "brk-")) == 3, timeout=5, what="3 legs"
            )
            sim.fault(0, Fault.CRASH, active=True)
            host.on_gate("gw-a", Gate(open=False, kind=OutageKind.LOST, reason="crashed"))
            await until(
                lambda: not open_at_broker(sim.broker, "brk-"), timeout=5, what="legs cancelled"
            )
            [run] = await until(lambda: host.safe_state_runs("brk"), timeout=5, what="the run")
            assert run.path is SafeStatePath.FAILOVER_GATEWAY and set(run.cancelled) == set(keys)
            assert [legs_at(sim.broker, keys)[k] for k in keys] == ["Cancelled"] * 3
            assert all(n == 1 for n in order_refs(sim.broker, "brk-").values())
        finally:
            await host.stop()
            journal.close()
