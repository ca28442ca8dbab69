"""Each kind of outage against the simulator over real TCP: a planned restart or reset window
holds (orders stay at IB, no safe state, no failover), a planned outage that outlasts its bound
is a lost gateway, shutdown follows ``safe_state.on_shutdown`` (``hold`` survives a host
restart), and a strategy starts on its primary when both gateways come up together."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.outage import Gate, OutageKind
from ibsim.broker import OrderState
from ibsim.port import Fault
from plugins import api
from plugins.config import SafeStateAction
from plugins.host import HostSettings, SafeStatePath, SafeStateTrigger, StrategyState
from tests.integration.plugins.helpers import (
    ACCOUNT,
    RecordingMetrics,
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
BUYER = "tests.integration.plugins.strategies:Buyer"
AAPL = api.Instrument("AAPL")
AAPL_CON_ID = 265598
GRACE = 0.3
OPEN = Gate(open=True)


def planned(bound: timedelta = timedelta(seconds=60)) -> Gate:
    return Gate(
        open=False, kind=OutageKind.PLANNED_RESTART, reason="IBC daily restart", bound=bound
    )


def states_at_broker(sim: object, refs: set[str]) -> dict[str, OrderState]:
    broker = sim.broker  # type: ignore[attr-defined]
    return {o.order_ref: o.status for o in broker.orders.values() if o.order_ref in refs}


# -- planned outages hold ---------------------------------------------------------------------


@pytest.mark.parametrize("gate_first", [True, False], ids=["gate-then-drop", "drop-then-gate"])
async def test_planned_restart_holds_orders_at_ib_and_resumes_on_the_same_gateway(
    tmp_path: Path, gate_first: bool
) -> None:
    journal = open_journal(tmp_path)
    metrics = RecordingMetrics()
    async with two_gateways() as sim:
        host = make_host(sim, journal, [strategy("daily", RESTING, grace=GRACE)], metrics=metrics)
        host.on_gate("gw-a", OPEN)
        host.on_gate("gw-b", OPEN)
        await host.start()
        try:
            runner = host.runners["daily"]
            await wait_for(
                lambda: len(open_at_broker(sim.broker, "daily-")) == 3, timeout=5, what="orders"
            )
            before = set(open_at_broker(sim.broker, "daily-"))
            old = runner.session
            client_id = host.strategies()[0].client_id
            if gate_first:
                host.on_gate("gw-a", planned())
            # IBC relaunches the Gateway: every API socket drops, it logs in again.
            restart = asyncio.create_task(sim.frontend("gw-a").soft_restart())
            if not gate_first:
                # The socket drop reaches the host before the lifecycle's gate does.
                await wait_for(lambda: old is not None and old.closed, timeout=5, what="drop")
                host.on_gate("gw-a", planned())
            await restart
            # The outage outlasts the grace several times over: that is what is tested.
            await asyncio.sleep(5 * GRACE)
            assert host.safe_state_runs("daily") == []
            assert states_at_broker(sim, before) == dict.fromkeys(before, OrderState.SUBMITTED)
            status = host.strategies()[0]
            assert (status.state, status.gateway) == (StrategyState.RUNNING, "gw-a")
            with pytest.raises(api.OrderRefused, match="planned restart"):
                await runner.place(api.OrderSpec(AAPL, api.Side.BUY, 1, 1.0))
            await wait_for(
                lambda: any(
                    isinstance(e, api.GatewayChange) and e.kind is OutageKind.PLANNED_RESTART
                    for e in runner.strategy.events  # type: ignore[union-attr]
                ),
                timeout=5,
                what="the strategy told it is a planned restart",
            )
            host.on_gate("gw-a", OPEN)
            await wait_for(
                lambda: (
                    runner.trading
                    and runner.session is not None
                    and runner.session is not old
                    and not runner.session.closed
                ),
                timeout=5,
                what="trading again on a new session to gw-a",
            )
            status = host.strategies()[0]
            assert (status.gateway, status.client_id) == ("gw-a", client_id)
            # Reconciled: it tracks the same three orders and neither re-sent nor added one.
            assert {o.key for o in runner.ctx.open_orders()} == before
            assert set(order_refs(sim.broker, "daily-")) == before
        finally:
            await host.stop()
        assert metrics.failovers == []
        assert max(order_refs(sim.broker, "daily-").values()) == 1
    journal.close()


async def test_reset_window_holds_on_the_open_session_and_trades_when_it_ends(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path)
    async with two_gateways() as sim:
        host = make_host(sim, journal, [strategy("window", RESTING, grace=GRACE)])
        host.on_gate("gw-a", OPEN)
        await host.start()
        try:
            runner = host.runners["window"]
            await wait_for(
                lambda: len(open_at_broker(sim.broker, "window-")) == 3, timeout=5, what="orders"
            )
            before = set(open_at_broker(sim.broker, "window-"))
            session = runner.session
            host.on_gate(
                "gw-a",
                Gate(
                    open=False,
                    kind=OutageKind.RESET_WINDOW,
                    reason="IB reset window: 1100",
                    bound=timedelta(minutes=30),
                ),
            )
            await asyncio.sleep(5 * GRACE)  # longer than the grace: nothing may happen
            assert host.safe_state_runs("window") == []
            assert runner.session is session and session is not None and not session.closed
            with pytest.raises(api.OrderRefused, match="reset window") as refused:
                await runner.place(api.OrderSpec(AAPL, api.Side.BUY, 1, 1.0))
            assert refused.value.reason is api.RefusalReason.NOT_TRADING
            assert set(order_refs(sim.broker, "window-")) == before
            host.on_gate("gw-a", OPEN)
            await wait_for(lambda: runner.trading, timeout=5, what="trading again")
            assert runner.session is session  # reconciled on the session that stayed up
            placed = await runner.place(api.OrderSpec(AAPL, api.Side.BUY, 1, 1.0))
            await wait_for(
                lambda: placed.key in order_refs(sim.broker, "window-"),
                timeout=5,
                what="the new order at the broker",
            )
        finally:
            await host.stop()
    journal.close()


async def test_a_planned_restart_that_outlasts_its_bound_is_a_lost_gateway(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path)
    bound = timedelta(seconds=1.0)
    async with two_gateways() as sim:
        host = make_host(sim, journal, [strategy("long", RESTING, grace=GRACE)])
        await host.start()
        try:
            await wait_for(
                lambda: len(open_at_broker(sim.broker, "long-")) == 3, timeout=5, what="orders"
            )
            on_a = set(open_at_broker(sim.broker, "long-"))
            t0 = time.monotonic()
            host.on_gate("gw-a", planned(bound))
            sim.fault(0, Fault.CRASH, active=True)  # and it never comes back
            await wait_for(
                lambda: not on_a & set(open_at_broker(sim.broker, "long-")),
                timeout=5,
                what="gw-a's orders cancelled through gw-b once the bound passed",
            )
            assert time.monotonic() - t0 >= bound.total_seconds()
            await wait_for(
                lambda: (
                    host.strategies()[0].gateway == "gw-b"
                    and host.strategies()[0].state is StrategyState.RUNNING
                ),
                timeout=5,
                what="failed over to gw-b",
            )
            (run,) = host.safe_state_runs("long")
            assert (run.trigger, run.path) == (
                SafeStateTrigger.GATEWAY_LOST,
                SafeStatePath.FAILOVER_GATEWAY,
            )
        finally:
            await host.stop()
        assert max(order_refs(sim.broker, "long-").values()) == 1
    journal.close()


async def test_a_planned_restart_the_lifecycle_then_calls_lost_safe_states_at_once(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path)
    async with two_gateways() as sim:
        host = make_host(sim, journal, [strategy("turn", RESTING, grace=GRACE)])
        await host.start()
        try:
            await wait_for(
                lambda: len(open_at_broker(sim.broker, "turn-")) == 3, timeout=5, what="orders"
            )
            on_a = set(open_at_broker(sim.broker, "turn-"))
            host.on_gate("gw-a", planned())  # expected back within a minute
            sim.fault(0, Fault.CRASH, active=True)
            await asyncio.sleep(2 * GRACE)  # held past the grace: a planned outage may be
            assert host.safe_state_runs("turn") == []
            # The relaunch failed (say, its login): the outage has lasted past the grace
            # already, so safe state is due now, not a grace later or at the planned bound.
            t0 = time.monotonic()
            host.on_gate("gw-a", Gate(open=False, kind=OutageKind.LOST, reason="login failed"))
            await wait_for(
                lambda: not on_a & set(open_at_broker(sim.broker, "turn-")),
                timeout=5,
                what="gw-a's orders cancelled through gw-b",
            )
            assert time.monotonic() - t0 < GRACE + 1.0
            await wait_for(
                lambda: host.strategies()[0].gateway == "gw-b", timeout=5, what="failed over"
            )
            (run,) = host.safe_state_runs("turn")
            assert run.path is SafeStatePath.FAILOVER_GATEWAY
        finally:
            await host.stop()
    journal.close()


# -- shutdown is its own policy ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_shutdown", "after_stop"),
    [("hold", OrderState.SUBMITTED), ("cancel", OrderState.CANCELLED)],
)
async def test_on_shutdown_decides_the_resting_orders_and_the_next_start_reconciles(
    tmp_path: Path, on_shutdown: str, after_stop: OrderState
) -> None:
    journal = open_journal(tmp_path)
    # on_disconnect is the other action each time: only on_shutdown may decide here.
    other = "cancel" if on_shutdown == "hold" else "hold"
    cfg = strategy("keep", RESTING, action=other, on_shutdown=on_shutdown)
    async with two_gateways() as sim:
        host = make_host(sim, journal, [cfg])
        await host.start()
        try:
            await wait_for(
                lambda: len(open_at_broker(sim.broker, "keep-")) == 3, timeout=5, what="orders"
            )
            before = set(open_at_broker(sim.broker, "keep-"))
        finally:
            await host.stop()
        (run,) = host.safe_state_runs("keep")
        assert (run.trigger, run.action) == (
            SafeStateTrigger.SHUTDOWN,
            SafeStateAction(on_shutdown),
        )
        assert states_at_broker(sim, before) == dict.fromkeys(before, after_stop)

        again = make_host(sim, journal, [cfg])
        await again.start()
        try:
            runner = again.runners["keep"]
            await wait_for(
                lambda: runner.state is StrategyState.RUNNING, timeout=5, what="running again"
            )
            if on_shutdown == "hold":
                # The journal's intents were matched at IB: the same orders, nothing re-sent.
                assert {o.key for o in runner.ctx.open_orders()} == before
                assert set(order_refs(sim.broker, "keep-")) == before
                assert again.strategies()[0].unknown_intents == 0
            else:
                assert not before & {o.key for o in runner.ctx.open_orders()}
                assert journal.intents_maybe_live("keep") == [] or not before & {
                    i.key for i in journal.intents_maybe_live("keep")
                }
        finally:
            await again.stop()
        assert max(order_refs(sim.broker, "keep-").values()) == 1
    journal.close()


async def test_on_shutdown_flatten_closes_the_position_at_ib(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    cfg = strategy("flat", BUYER, action="hold", on_shutdown="flatten", quantity=3)
    async with two_gateways() as sim:
        host = make_host(sim, journal, [cfg])
        await host.start()
        try:
            await wait_for(
                lambda: host.runners["flat"].position_of(AAPL) == 3, timeout=5, what="bought"
            )
        finally:
            await host.stop()
        (run,) = host.safe_state_runs("flat")
        assert (run.action, run.ok, len(run.closing_orders)) == (SafeStateAction.FLATTEN, True, 1)
        position = sim.broker.accounts[ACCOUNT].positions.get(AAPL_CON_ID)
        assert position is not None and position.quantity == 0
    journal.close()


async def test_a_shutdown_gate_runs_on_shutdown_through_the_same_gateway_once(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path)
    metrics = RecordingMetrics()
    async with two_gateways() as sim:
        host = make_host(sim, journal, [strategy("bye", RESTING, grace=GRACE)], metrics=metrics)
        host.on_gate("gw-a", OPEN)
        host.on_gate("gw-b", OPEN)
        await host.start()
        try:
            await wait_for(
                lambda: len(open_at_broker(sim.broker, "bye-")) == 3, timeout=5, what="orders"
            )
            before = set(open_at_broker(sim.broker, "bye-"))
            shutdown = Gate(open=False, kind=OutageKind.SHUTDOWN, reason="supervisor stopping")
            host.on_gate("gw-a", shutdown)
            host.on_gate("gw-b", shutdown)
            await wait_for(
                lambda: bool(host.safe_state_runs("bye")), timeout=5, what="on_shutdown ran"
            )
            assert states_at_broker(sim, before) == dict.fromkeys(before, OrderState.CANCELLED)
        finally:
            await host.stop()
        (run,) = host.safe_state_runs("bye")  # stop() did not run it a second time
        assert (run.trigger, run.path, run.gateway) == (
            SafeStateTrigger.SHUTDOWN,
            SafeStatePath.SAME_GATEWAY,
            "gw-a",
        )
        assert metrics.failovers == []
    journal.close()


# -- a strategy starts on its primary ---------------------------------------------------------

PATIENT = HostSettings(connect_timeout=1.0, request_timeout=2.0, primary_patience=1.0)


async def _fleet_down(sim: object, host: object) -> None:
    """Both gateways down and gated closed, as when the supervisor starts with the fleet."""
    for index, name in enumerate(("gw-a", "gw-b")):
        sim.fault(index, Fault.CRASH, active=True)  # type: ignore[attr-defined]
        host.on_gate(  # type: ignore[attr-defined]
            name, Gate(open=False, kind=OutageKind.LOST, reason="not logged in yet")
        )
    await wait_for(
        lambda: not any(f.ready.is_set() for f in sim.frontends),  # type: ignore[attr-defined]
        timeout=5,
        what="both gateways down",
    )


async def test_a_strategy_starts_on_its_primary_when_both_gateways_come_up_together(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path)
    async with two_gateways() as sim:
        host = make_host(sim, journal, [strategy("first", RESTING, grace=GRACE)], settings=PATIENT)
        await _fleet_down(sim, host)
        await host.start()
        try:
            assert host.strategies()[0].state is StrategyState.LOADED
            # The fleet takes longer to log in than the patience, as containers do: the
            # patience counts from a failover gateway being up, not from the host's start.
            await asyncio.sleep(1.5 * PATIENT.primary_patience)
            await asyncio.gather(sim.login(0), sim.login(1))
            host.on_gate("gw-b", OPEN)
            await asyncio.sleep(0.2)  # the primary's gate opens in the same second
            host.on_gate("gw-a", OPEN)
            await wait_for(
                lambda: host.strategies()[0].state is StrategyState.RUNNING,
                timeout=5,
                what="running",
            )
            status = host.strategies()[0]
            assert (status.gateway, status.failovers) == ("gw-a", 0)
            await wait_for(
                lambda: len(open_at_broker(sim.broker, "first-")) == 3, timeout=5, what="orders"
            )
            assert {o.gateway for o in sim.broker.orders.values()} == {"gw-a"}
        finally:
            await host.stop()
    journal.close()


async def test_a_strategy_starts_on_the_failover_gateway_when_the_primary_stays_down(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path)
    async with two_gateways() as sim:
        host = make_host(sim, journal, [strategy("second", RESTING, grace=GRACE)], settings=PATIENT)
        await _fleet_down(sim, host)
        await host.start()
        try:
            await sim.login(1)
            opened = time.monotonic()
            host.on_gate("gw-b", OPEN)
            await wait_for(
                lambda: host.strategies()[0].state is StrategyState.RUNNING,
                timeout=5,
                what="running",
            )
            assert time.monotonic() - opened >= PATIENT.primary_patience
            assert host.strategies()[0].gateway == "gw-b"
        finally:
            await host.stop()
    journal.close()
