"""The host against the simulator: crash isolation, kill switch, flatten, examples, refusals."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gateway.outage import Gate, OutageKind
from plugins import api
from plugins.host import SafeStatePath, SafeStateTrigger, StrategyState
from tests.integration.plugins.helpers import (
    ACCOUNT,
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
AAPL_CON_ID = 265598
MOD = "tests.integration.plugins.strategies"


async def test_a_crashing_strategy_is_halted_alone_with_its_orders_cancelled(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path)
    alerts = RecordingAlerts()
    async with two_gateways() as sim:
        host = make_host(
            sim,
            journal,
            [
                strategy("boom", f"{MOD}:Boom", client_id=12),
                strategy("calm", f"{MOD}:Resting", client_id=13),
            ],
            alerts=alerts,
        )
        await host.start()
        try:
            await wait_for(
                lambda: host.runners["boom"].state is StrategyState.CRASHED,
                timeout=5,
                what="boom crashed",
            )
            assert open_at_broker(sim.broker, "boom-") == []
            assert order_refs(sim.broker, "boom-"), "boom placed its order before crashing"
            run = host.safe_state_runs("boom")[-1]
            assert run.trigger is SafeStateTrigger.CRASH
            assert run.path is SafeStatePath.SAME_GATEWAY
            assert any(
                k == "strategy:boom:crashed" and s == "critical" for k, s, _, _ in alerts.raised
            )
            assert "RuntimeError: strategy bug" in (host.runners["boom"].last_error or "")
            await wait_for(
                lambda: len(open_at_broker(sim.broker, "calm-")) == 3,
                timeout=5,
                what="the other strategy still trading",
            )
            assert host.runners["calm"].state is StrategyState.RUNNING
        finally:
            await host.stop()
    journal.close()


async def test_kill_with_flatten_cancels_orders_and_closes_the_position(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    async with two_gateways() as sim:
        host = make_host(sim, journal, [strategy("buyer", f"{MOD}:Buyer", quantity=3)])
        await host.start()
        try:
            runner = host.runners["buyer"]
            await wait_for(
                lambda: runner.position_of(api.Instrument("AAPL")) == 3,
                timeout=5,
                what="the buy filled",
            )
            runs = await host.kill("buyer", flatten=True)
            assert runs[0].ok and runs[0].path is SafeStatePath.SAME_GATEWAY
            assert len(runs[0].closing_orders) == 1
            assert runner.position_of(api.Instrument("AAPL")) == 0
            at_broker = sim.broker.accounts[ACCOUNT].positions.get(AAPL_CON_ID)
            assert at_broker is not None and at_broker.quantity == 0
            assert host.strategies()[0].state is StrategyState.HALTED
            with pytest.raises(api.OrderRefused, match="HALTED"):
                await runner.place(api.OrderSpec(api.Instrument("AAPL"), api.Side.BUY, 1, 1.0))
        finally:
            await host.stop()
        assert max(order_refs(sim.broker, "buyer-").values()) == 1
    journal.close()


async def test_risk_limits_refuse_before_anything_is_journalled(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    async with two_gateways() as sim:
        cfg = strategy("risky", f"{MOD}:Resting", count=0)
        host = make_host(sim, journal, [cfg])
        await host.start()
        try:
            runner = host.runners["risky"]
            await wait_for(lambda: runner.state is StrategyState.RUNNING, timeout=5, what="running")
            with pytest.raises(api.OrderRefused, match="max_order_qty") as refused:
                await runner.place(api.OrderSpec(api.Instrument("AAPL"), api.Side.BUY, 1000, 1.0))
            assert refused.value.reason is api.RefusalReason.RISK
            host.on_gate(
                "gw-a",
                Gate(open=False, kind=OutageKind.RESET_WINDOW, bound=dt.timedelta(minutes=5)),
            )
            with pytest.raises(api.OrderRefused, match="reset window"):
                await runner.place(api.OrderSpec(api.Instrument("AAPL"), api.Side.BUY, 1, 1.0))
            assert journal.intents_maybe_live("risky") == []
            assert order_refs(sim.broker, "risky-") == {}
        finally:
            await host.stop()
    journal.close()


async def test_example_strategies_trade_the_simulator(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    async with two_gateways(tick_rate=50.0) as sim:
        host = make_host(
            sim,
            journal,
            [
                strategy("pinger", "plugins.examples.pinger:Pinger", interval_seconds=0.1),
                strategy(
                    "meanrev",
                    "plugins.examples.meanrev:MeanReversion",
                    client_id=14,
                    window=5,
                    band=0.0005,
                    min_move=0.00001,
                ),
            ],
        )
        await host.start()
        try:
            await wait_for(
                lambda: any(
                    o.is_done and o.status.value == "Cancelled"
                    for o in sim.broker.orders.values()
                    if o.order_ref.startswith("pinger-")
                ),
                timeout=10,
                what="pinger placed and cancelled an order",
            )
            await wait_for(
                lambda: (
                    len(order_refs(sim.broker, "meanrev-")) >= 2
                    and any(
                        any(h.note == "modified" for h in o.history)
                        for o in sim.broker.orders.values()
                        if o.order_ref.startswith("meanrev-")
                    )
                ),
                timeout=15,
                what="meanrev quoted both sides and moved a quote",
            )
        finally:
            await host.stop()
        for prefix in ("pinger-", "meanrev-"):
            assert max(order_refs(sim.broker, prefix).values()) == 1
            assert open_at_broker(sim.broker, prefix) == []
    journal.close()


async def test_whatif_margin_check_refuses_an_order_the_account_cannot_carry(
    tmp_path: Path,
) -> None:
    from ibsim.broker import BrokerConfig
    from plugins.config import StrategyConfig

    journal = open_journal(tmp_path)
    async with two_gateways(broker_config=BrokerConfig(start_cash=10_000.0)) as sim:
        base = strategy("margin", f"{MOD}:Resting", count=0)
        limits = base.limits.model_copy(
            update={
                "whatif_margin_check": True,
                "max_notional": 1e9,
                "max_position": 1e6,
                "max_order_qty": 1e4,
            }
        )
        cfg = StrategyConfig.model_validate({**base.model_dump(), "limits": limits.model_dump()})
        host = make_host(sim, journal, [cfg])
        await host.start()
        try:
            runner = host.runners["margin"]
            await wait_for(lambda: runner.state is StrategyState.RUNNING, timeout=5, what="running")
            aapl = api.Instrument("AAPL")
            small = await runner.place(api.OrderSpec(aapl, api.Side.BUY, 1, 1.0))
            assert small.key.startswith("margin-")
            # What-if margin uses the broker price (~185 for AAPL), not the far limit price:
            # 400 x 185 x 25 % is above the 10 000 of equity.
            with pytest.raises(api.OrderRefused, match="margin") as refused:
                await runner.place(api.OrderSpec(aapl, api.Side.BUY, 400, 1.0))
            assert refused.value.reason is api.RefusalReason.MARGIN
            assert set(order_refs(sim.broker, "margin-")) == {small.key}
        finally:
            await host.stop()
    journal.close()
