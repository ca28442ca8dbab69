"""The paths a lost gateway can take: back within grace, stalled, or nowhere to go."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.outage import Gate, OutageKind
from ibsim.port import Fault
from plugins.host import SafeStatePath, SafeStateTrigger, StrategyState
from tests.integration.plugins.helpers import (
    RecordingAlerts,
    make_host,
    open_at_broker,
    open_journal,
    order_refs,
    strategy,
    two_gateways,
)
from tests.waiting import until as wait_for

pytestmark = pytest.mark.timeout(60)
RESTING = "tests.integration.plugins.strategies:Resting"


async def test_dropped_session_back_within_grace_reconciles_without_safe_state(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path)
    async with two_gateways() as sim:
        host = make_host(sim, journal, [strategy("drop", RESTING, grace=3.0)])
        await host.start()
        try:
            await wait_for(
                lambda: len(open_at_broker(sim.broker, "drop-")) == 3, timeout=5, what="orders"
            )
            before = set(open_at_broker(sim.broker, "drop-"))
            old_client = host.strategies()[0].client_id
            old_session = host.runners["drop"].session
            sim.fault(0, Fault.DROP_CLIENTS, active=True)
            await wait_for(
                lambda: (
                    # A new session: the old one passing this check proves no reconnect.
                    host.runners["drop"].session is not old_session
                    and host.runners["drop"].session is not None
                    and host.runners["drop"].session.closed is False
                    and host.strategies()[0].state is StrategyState.RUNNING
                    and host.runners["drop"].session.broker.is_connected()
                ),
                timeout=5,
                what="reconnected on gw-a",
            )
            assert old_session is not None and old_session.closed
            status = host.strategies()[0]
            assert (status.gateway, status.client_id) == ("gw-a", old_client)
            assert host.safe_state_runs("drop") == []
            # The orders rested at IB through the drop and the host still tracks them.
            assert set(open_at_broker(sim.broker, "drop-")) == before
            assert {o.key for o in host.runners["drop"].ctx.open_orders()} == before
        finally:
            await host.stop()
        assert max(order_refs(sim.broker, "drop-").values()) == 1
    journal.close()


async def test_stalled_gateway_is_bypassed_through_the_failover_gateway(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    async with two_gateways() as sim:
        host = make_host(sim, journal, [strategy("stall", RESTING, grace=0.3)])
        await host.start()
        try:
            await wait_for(
                lambda: len(open_at_broker(sim.broker, "stall-")) == 3, timeout=5, what="orders"
            )
            on_a = set(open_at_broker(sim.broker, "stall-"))
            # The socket stays open but nothing answers: only the supervisor's probe sees it.
            sim.fault(0, Fault.STALL, active=True)
            host.on_gate(
                "gw-a", Gate(open=False, kind=OutageKind.STALLED, reason="heartbeat timed out")
            )
            await wait_for(
                lambda: not on_a & set(open_at_broker(sim.broker, "stall-")),
                timeout=3,
                what="gw-a's orders cancelled through gw-b",
            )
            await wait_for(
                lambda: (
                    host.strategies()[0].gateway == "gw-b"
                    and host.strategies()[0].state is StrategyState.RUNNING
                ),
                timeout=5,
                what="running on gw-b",
            )
            assert host.safe_state_runs("stall")[0].path is SafeStatePath.FAILOVER_GATEWAY
            # gw-a answers again: the strategy stays on gw-b until an operator moves it back.
            sim.fault(0, Fault.STALL, active=False)
            host.on_gate("gw-a", Gate(open=True))
            assert host.strategies()[0].gateway == "gw-b"
            status = await host.resume("stall", gateway="gw-a")
            assert (status.gateway, status.state) == ("gw-a", StrategyState.RUNNING)
            await wait_for(
                lambda: any(
                    o.gateway == "gw-a" and not o.is_done and o.order_ref.startswith("stall-")
                    for o in sim.broker.orders.values()
                ),
                timeout=5,
                what="orders placed through gw-a again",
            )
        finally:
            sim.fault(0, Fault.STALL, active=False)
            await host.stop()
        assert max(order_refs(sim.broker, "stall-").values()) == 1
    journal.close()


async def test_no_path_left_raises_a_critical_alert_listing_orders_maybe_live(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path)
    alerts = RecordingAlerts()
    async with two_gateways() as sim:
        host = make_host(
            sim, journal, [strategy("alone", RESTING, grace=0.3, gateways=("gw-a",))], alerts=alerts
        )
        await host.start()
        try:
            await wait_for(
                lambda: len(open_at_broker(sim.broker, "alone-")) == 3, timeout=5, what="orders"
            )
            live = set(open_at_broker(sim.broker, "alone-"))
            sim.fault(0, Fault.CRASH, active=True)
            host.on_gate("gw-a", Gate(open=False, kind=OutageKind.LOST, reason="crashed"))
            await wait_for(
                lambda: bool(host.safe_state_runs("alone")), timeout=3, what="safe state ran"
            )
            run = host.safe_state_runs("alone")[0]
            assert (run.trigger, run.path, run.ok) == (
                SafeStateTrigger.GATEWAY_LOST,
                SafeStatePath.ALERT_ONLY,
                False,
            )
            assert set(run.still_live) == live
            (alert,) = [a for a in alerts.raised if a[0] == "strategy:alone:maybe-live"]
            assert alert[1] == "critical"
            assert all(key in alert[3] for key in live)
            assert host.strategies()[0].state is StrategyState.SAFE_STATE
            events = journal.events(limit=50)
            assert any(e.kind == "strategy.safe_state" and e.strategy == "alone" for e in events)
        finally:
            await host.stop()
    journal.close()


async def test_a_strategy_left_without_gateway_resumes_when_its_gateway_is_back(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path)
    async with two_gateways() as sim:
        host = make_host(sim, journal, [strategy("back", RESTING, grace=0.2, gateways=("gw-a",))])
        await host.start()
        try:
            await wait_for(
                lambda: len(open_at_broker(sim.broker, "back-")) == 3, timeout=5, what="orders"
            )
            resting = set(open_at_broker(sim.broker, "back-"))
            host.on_gate("gw-a", Gate(open=False, kind=OutageKind.LOST, reason="login lost"))
            await wait_for(
                lambda: bool(host.safe_state_runs("back")) and host.runners["back"].session is None,
                timeout=3,
                what="safe state done and no session",
            )
            assert host.strategies()[0].state is StrategyState.SAFE_STATE
            host.on_gate("gw-a", Gate(open=True))
            await wait_for(
                lambda: host.strategies()[0].state is StrategyState.RUNNING,
                timeout=5,
                what="running again on gw-a",
            )
            # Reconciliation found the orders that rested at IB meanwhile; none was re-sent.
            assert {o.key for o in host.runners["back"].ctx.open_orders()} == resting
        finally:
            await host.stop()
        assert max(order_refs(sim.broker, "back-").values()) == 1
    journal.close()
