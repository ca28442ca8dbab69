"""Two gateways on one account: losing the primary cancels the strategy's orders within the
grace period, moves it to the secondary, and no orderRef ever reaches the broker twice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.outage import Gate, OutageKind
from ibsim.port import Fault
from plugins.host import SafeStatePath, SafeStateTrigger, StrategyState
from tests.integration.plugins.helpers import (
    RecordingMetrics,
    make_host,
    open_at_broker,
    open_journal,
    order_refs,
    strategy,
    two_gateways,
)
from tests.waiting import until as wait_for

RESTING = "tests.integration.plugins.strategies:Resting"
pytestmark = pytest.mark.timeout(60)


async def test_primary_crash_cancels_orders_and_resumes_on_secondary(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    metrics = RecordingMetrics()
    async with two_gateways() as sim:
        host = make_host(sim, journal, [strategy("rest", RESTING, grace=0.5)], metrics=metrics)
        await host.start()
        try:
            await wait_for(
                lambda: len(open_at_broker(sim.broker, "rest-")) == 3,
                timeout=5,
                what="three resting orders at the broker",
            )
            placed_on_a = set(open_at_broker(sim.broker, "rest-"))
            t0 = time.perf_counter()
            sim.fault(0, Fault.CRASH, active=True)
            host.on_gate("gw-a", Gate(open=False, kind=OutageKind.LOST, reason="crashed"))
            await wait_for(
                lambda: not (placed_on_a & set(open_at_broker(sim.broker, "rest-"))),
                timeout=0.5 + 3,
                what="the primary's orders cancelled at the broker",
            )
            cancelled_after = time.perf_counter() - t0
            assert cancelled_after < 0.5 + 2.0
            await wait_for(
                lambda: (
                    host.strategies()[0].state is StrategyState.RUNNING
                    and host.strategies()[0].gateway == "gw-b"
                ),
                timeout=5,
                what="the strategy running on gw-b",
            )
            await wait_for(
                lambda: (
                    len(
                        [
                            o
                            for o in sim.broker.orders.values()
                            if o.gateway == "gw-b" and o.order_ref.startswith("rest-")
                        ]
                    )
                    >= 3
                ),
                timeout=5,
                what="new orders placed through gw-b",
            )
            run = host.safe_state_runs("rest")[0]
            assert run.trigger is SafeStateTrigger.GATEWAY_LOST
            assert run.path is SafeStatePath.FAILOVER_GATEWAY
            assert set(run.cancelled) == placed_on_a
            assert metrics.failovers == ["rest"]
            # gw-a coming back (logged in, its gate open) does not pull the strategy back (no
            # flapping): it keeps trading through gw-b; a cancelled order is topped up there.
            await sim.login(0)
            host.on_gate("gw-a", Gate(open=True))
            runner = host.runners["rest"]
            on_b = set(open_at_broker(sim.broker, "rest-"))
            await runner.cancel(next(iter(on_b)))
            await wait_for(
                lambda: set(open_at_broker(sim.broker, "rest-")) - on_b,
                timeout=5,
                what="an order topped up after gw-a came back",
            )
            assert host.strategies()[0].gateway == "gw-b"
            topped = set(open_at_broker(sim.broker, "rest-")) - on_b
            assert {o.gateway for o in sim.broker.orders.values() if o.order_ref in topped} == {
                "gw-b"
            }
        finally:
            await host.stop()
        refs = order_refs(sim.broker, "rest-")
        assert refs and max(refs.values()) == 1, refs
        assert open_at_broker(sim.broker, "rest-") == []
    journal.close()
