"""The simulator on three Swarm nodes: two gateways of one account answer the real ib_async
client on different nodes, and after the primary's node is killed the failover still trades
and Swarm reschedules the primary elsewhere."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.swarm.lab import SwarmLab
from tests.swarm.simfleet import ACCOUNT, SwarmSimFleet, buy, connect

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.swarm]

log = logging.getLogger("tests.swarm")

#: Login of a fresh simulated gateway plus a task start, on two shared cores.
GATEWAY_UP_S = 90.0
#: ~3-5 s on a quiet host (benchmarks/bench_node_loss.py); 30 s seen at a load of 11.
RESCHEDULE_S = 60.0


@pytest.fixture(scope="module")
def fleet(swarm_lab: SwarmLab) -> Iterator[SwarmSimFleet]:
    sims = SwarmSimFleet(swarm_lab)
    try:
        yield sims.start()
    finally:
        sims.close()


async def test_each_gateway_answers_on_its_own_node(fleet: SwarmSimFleet) -> None:
    primary, failover = fleet.gateway_node("primary"), fleet.gateway_node("failover")
    assert primary is not failover and "a" not in (primary.zone, failover.zone)
    for client_id, role in enumerate(("primary", "failover"), start=1):
        ib = await connect(fleet.endpoint(role), client_id=client_id, timeout=GATEWAY_UP_S)
        try:
            assert ACCOUNT in ib.managedAccounts()
            assert (await ib.reqCurrentTimeAsync()).year >= 2024
            ref = f"lab-{role}-{uuid.uuid4().hex[:6]}"
            await buy(ib, ref)
            positions = await ib.reqPositionsAsync()
            assert {p.account for p in positions} == {ACCOUNT}
            assert any(p.contract.symbol == "AAPL" and p.position >= 1 for p in positions)
            rows = await asyncio.to_thread(fleet.orders, ref)
            assert [r["gateway"] for r in rows] == [f"gw-{role}"]
        finally:
            ib.disconnect()


async def test_killing_the_primarys_node_leaves_the_failover_trading(
    swarm_lab: SwarmLab, fleet: SwarmSimFleet
) -> None:
    primary_node = fleet.gateway_node("primary")
    failover = await connect(fleet.endpoint("failover"), client_id=7, timeout=GATEWAY_UP_S)
    try:
        killed = swarm_lab.kill(primary_node)
        try:
            ref = f"lab-after-kill-{uuid.uuid4().hex[:6]}"
            await buy(failover, ref)
            traded_s = time.monotonic() - killed
            assert (await failover.reqCurrentTimeAsync()).year >= 2024
            moved = await asyncio.to_thread(fleet.gateway_node, "primary", not_on=(primary_node,))
            rescheduled_s = time.monotonic() - killed
            assert moved is not primary_node
            again = await connect(
                (moved.ip, fleet.api_ports["primary"]), client_id=8, timeout=GATEWAY_UP_S
            )
            answered_s = time.monotonic() - killed
            try:
                assert ACCOUNT in again.managedAccounts()
            finally:
                again.disconnect()
            rows = await asyncio.to_thread(fleet.orders, ref)
            assert len(rows) == 1 and rows[0]["gateway"] == "gw-failover"
            log.info(
                "swarm_node_loss traded_s=%.1f rescheduled_s=%.1f primary_answers_s=%.1f",
                traded_s,
                rescheduled_s,
                answered_s,
            )
            print(
                f"node killed -> failover filled {traded_s:.1f} s, primary's task running "
                f"elsewhere {rescheduled_s:.1f} s, primary answering again {answered_s:.1f} s"
            )
            assert rescheduled_s < RESCHEDULE_S
        finally:
            await asyncio.to_thread(swarm_lab.restart, primary_node)
    finally:
        failover.disconnect()
