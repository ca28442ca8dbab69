"""Random fault schedules while a strategy trades: no orderRef ever reaches IB twice, every
order at IB has its journalled intent, and nothing of the strategy is left open at the end.

Reproducible: the seed is printed; rerun one with IBFLEET_TEST_SEED=<seed>.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest

from gateway.outage import Gate, OutageKind
from ibsim.port import Fault
from plugins.host import StrategyState
from tests.integration.plugins.helpers import (
    make_host,
    open_at_broker,
    open_journal,
    order_refs,
    strategy,
    two_gateways,
)
from tests.waiting import until as wait_for

pytestmark = pytest.mark.timeout(120)
RESTING = "tests.integration.plugins.strategies:Resting"
BASE_SEED = int(os.environ.get("IBFLEET_TEST_SEED", random.SystemRandom().randrange(1 << 30)))


@pytest.mark.parametrize("offset", range(3))
async def test_random_fault_schedule_never_duplicates_an_order(tmp_path: Path, offset: int) -> None:
    seed = BASE_SEED + offset
    print(f"fault schedule seed={seed} (IBFLEET_TEST_SEED={seed} to replay)")
    rng = random.Random(seed)
    journal = open_journal(tmp_path)
    async with two_gateways(tick_rate=50.0) as sim:
        host = make_host(sim, journal, [strategy("chaos", RESTING, grace=0.3, count=4)])
        await host.start()
        crashed: set[int] = set()
        try:
            await wait_for(
                lambda: len(open_at_broker(sim.broker, "chaos-")) >= 2,
                timeout=5,
                what=f"orders at IB (seed {seed})",
            )
            for _ in range(6):
                status = host.strategies()[0]
                index = 0 if status.gateway == "gw-a" else 1
                name = ("gw-a", "gw-b")[index]
                choice = rng.choice(["drop", "flap", "link", "crash", "calm"])
                if index in crashed:
                    # A crashed gateway stays down: nothing more to inject there.
                    choice = "calm"
                if choice == "crash" and not crashed and index == 0:
                    crashed.add(index)
                    sim.fault(index, Fault.CRASH, active=True)
                    host.on_gate(name, Gate(open=False, kind=OutageKind.LOST, reason="crashed"))
                elif choice == "drop":
                    sim.fault(index, Fault.DROP_CLIENTS, active=True)
                elif choice == "flap":
                    host.on_gate(
                        name, Gate(open=False, kind=OutageKind.STALLED, reason="probe late")
                    )
                    await asyncio.sleep(rng.uniform(0.0, 0.2))
                    host.on_gate(name, Gate(open=True))
                elif choice == "link":
                    sim.link_lost(index)
                    await asyncio.sleep(rng.uniform(0.0, 0.2))
                    sim.link_restored(index)
                # Let it trade between faults (a random amount of time is the point here).
                await asyncio.sleep(rng.uniform(0.05, 0.5))
            await wait_for(
                lambda: host.strategies()[0].state is StrategyState.RUNNING,
                timeout=10,
                what=f"the strategy running again (seed {seed})",
            )
        finally:
            await host.stop()
        refs = order_refs(sim.broker, "chaos-")
        assert refs, f"seed {seed}: nothing traded"
        assert max(refs.values()) == 1, f"seed {seed}: duplicated orderRef {refs.most_common(3)}"
        assert all(journal.intent(ref) is not None for ref in refs), f"seed {seed}"
        assert open_at_broker(sim.broker, "chaos-") == [], f"seed {seed}: left open at IB"
    journal.close()
