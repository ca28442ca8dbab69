"""The host dies in the middle of placing orders; a new host on the same journal reconciles
every intent and sends none of them twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from ib_async import IB, Contract, Order

from plugins.host import StrategyState
from plugins.intents import IntentState
from supervisor.journal import IntentStatus
from tests.integration.plugins.helpers import (
    ACCOUNT,
    RecordingAlerts,
    make_host,
    open_journal,
    order_refs,
    strategy,
    two_gateways,
)
from tests.waiting import until as wait_for

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[3]
RESTING = "tests.integration.plugins.strategies:Resting"


async def test_host_sigkilled_while_placing_orders_restarts_without_duplicates(
    tmp_path: Path,
) -> None:
    journal_path = tmp_path / "journal.sqlite"
    async with two_gateways(tick_rate=50.0) as sim:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.plugins.host_proc",
            str(sim.ports[0]),
            str(sim.ports[1]),
            str(journal_path),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert line.strip() == b"ready", line
            # Kill it in the middle of its burst of 40 orders.
            await wait_for(
                lambda: len(order_refs(sim.broker, "burst-")) >= 8,
                timeout=10,
                what="the burst under way",
            )
            proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(proc.wait(), 10)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        before = order_refs(sim.broker, "burst-")
        journal = open_journal(tmp_path)
        try:
            # The intent is written before the send: every order at IB has its intent.
            assert all(journal.intent(ref) is not None for ref in before)
            maybe_live = {i.key for i in journal.intents_maybe_live("burst")}
            alerts = RecordingAlerts()
            host = make_host(sim, journal, [strategy("burst", RESTING, count=0)], alerts=alerts)
            await host.start()
            try:
                await wait_for(
                    lambda: host.runners["burst"].state is StrategyState.RUNNING,
                    timeout=10,
                    what="the restarted strategy reconciled and running",
                )
                # Every intent that may have been live is now resolved or reported UNKNOWN.
                for key in maybe_live:
                    record = journal.intent(key)
                    assert record is not None
                    at_ib = [o for o in sim.broker.orders.values() if o.order_ref == key]
                    if at_ib:
                        assert record.status is not IntentStatus.UNKNOWN, key
                        assert record.perm_id == at_ib[0].perm_id
                    else:
                        assert record.status is IntentStatus.UNKNOWN, key
                        assert any(key in body for _, _, _, body in alerts.raised)
            finally:
                await host.stop()
            after = order_refs(sim.broker, "burst-")
            assert max(after.values()) == 1, after
            assert set(after) == set(before), "the restarted host re-sent an intent"
        finally:
            journal.close()
    print(f"orders before kill={len(before)} maybe_live={len(maybe_live)}")


async def test_intent_journalled_but_not_sent_is_reported_unknown_and_never_resent(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path)
    async with two_gateways() as sim:
        now = __import__("datetime").datetime.now(__import__("datetime").UTC)
        contract = {
            "conId": 265598,
            "symbol": "AAPL",
            "secType": "STK",
            "exchange": "SMART",
            "currency": "USD",
        }
        order = {"action": "BUY", "totalQuantity": 1, "orderType": "LMT", "lmtPrice": 100.0}
        # Died after the journal write, before placeOrder.
        journal.record_intent(
            key="solo-0000000000000001",
            strategy="solo",
            gateway="gw-a",
            account=ACCOUNT,
            client_id=11,
            contract=contract,
            order=order,
            now=now,
            order_id=1,
        )
        # Died after placeOrder, before mark_sent: the order is at IB.
        journal.record_intent(
            key="solo-0000000000000002",
            strategy="solo",
            gateway="gw-a",
            account=ACCOUNT,
            client_id=11,
            contract=contract,
            order=order,
            now=now,
            order_id=2,
        )
        ib = IB()
        await ib.connectAsync("127.0.0.1", sim.ports[0], clientId=11, timeout=5)
        ib.placeOrder(
            Contract(conId=265598, exchange="SMART"),
            Order(
                orderId=2,
                action="BUY",
                totalQuantity=1,
                orderType="LMT",
                lmtPrice=100.0,
                orderRef="solo-0000000000000002",
                account=ACCOUNT,
            ),
        )
        await wait_for(
            lambda: bool(order_refs(sim.broker, "solo-")), timeout=5, what="the order at IB"
        )
        ib.disconnect()
        alerts = RecordingAlerts()
        host = make_host(sim, journal, [strategy("solo", RESTING, count=0)], alerts=alerts)
        await host.start()
        try:
            runner = host.runners["solo"]
            await wait_for(lambda: runner.state is StrategyState.RUNNING, timeout=5, what="running")
            lost = journal.intent("solo-0000000000000001")
            sent = journal.intent("solo-0000000000000002")
            assert lost is not None and lost.status is IntentStatus.UNKNOWN
            assert sent is not None and sent.status is IntentStatus.ACKED and sent.perm_id
            assert host.strategies()[0].unknown_intents == 1
            assert any("solo-0000000000000001" in b for _, _, _, b in alerts.raised)
            await wait_for(
                lambda: any(
                    getattr(e, "status", None) is IntentState.UNKNOWN
                    for e in runner.strategy.events  # type: ignore[union-attr]
                ),
                timeout=5,
                what="the strategy told about the unknown intent",
            )
        finally:
            await host.stop()
        assert dict(order_refs(sim.broker, "solo-")) == {"solo-0000000000000002": 1}
    journal.close()
