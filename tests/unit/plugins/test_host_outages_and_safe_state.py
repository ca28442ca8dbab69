"""Safe state, failover, riding an outage and the runner's own duties, through the fake broker
with the host's clock moved by the test."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from gateway.outage import Gate, OutageKind
from plugins import api, outage
from plugins.host import SafeStatePath, SafeStateTrigger, StrategyState
from plugins.intents import IntentState
from tests.unit.plugins.host_harness import (
    MOD,
    OPEN,
    Interruptible,
    Rig,
    buy,
    rig,
    strategy,
)
from tests.waiting import until

LOST = Gate(open=False, kind=OutageKind.LOST, reason="crashed")


async def started(r: Rig, name: str = "s1") -> None:
    await r.host.start()
    runner = r.runner(name)
    await until(lambda: runner.state is StrategyState.RUNNING, what=f"{name} running")


def open_on(r: Rig, gateway: str) -> list[str]:
    return [
        t.order.orderRef
        for s in r.ib.sessions
        if s.gateway is not None and s.gateway.name == gateway
        for t in r.ib.trades.values()
        if t.orderStatus.status == "Submitted" and t.order.clientId == s.client_id
    ]


# -- safe state ------------------------------------------------------------------------------


async def test_kill_cancels_every_open_order_through_the_same_session(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await started(r)
        keys = {(await r.runner().place(buy(price=p))).key for p in (90.0, 91.0)}
        [run] = await r.host.kill("s1")
        assert (run.ok, run.path, run.trigger) == (
            True,
            SafeStatePath.SAME_GATEWAY,
            SafeStateTrigger.KILL,
        )
        assert set(run.cancelled) == keys and run.still_live == ()
        assert r.ib.open_refs() == []
        assert r.runner().state is StrategyState.HALTED


async def test_kill_with_flatten_closes_the_position_with_a_journalled_market_order(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await started(r)
        runner = r.runner()
        placed = await runner.place(buy(quantity=4))
        r.ib.fill(placed.key, price=100.0)
        [run] = await r.host.kill("s1", flatten=True)
        assert run.ok and len(run.closing_orders) == 1
        assert runner.position_of(api.Instrument("AAPL")) == 0
        closing = r.journal.intent(run.closing_orders[0])
        assert closing is not None and closing.order["purpose"] == "flatten"


async def test_a_lost_gateways_orders_are_cancelled_from_the_failover_gateway(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, strategy(grace=0)) as r:
        await started(r)
        runner = r.runner()
        key = (await runner.place(buy())).key
        r.ib.gateways["gw-a"].up = False
        r.ib.drop("gw-a")
        r.host.on_gate("gw-a", LOST)
        await until(lambda: r.host.safe_state_runs("s1"), what="safe state")
        [run] = r.host.safe_state_runs("s1")
        assert (run.path, run.gateway, run.cancelled) == (
            SafeStatePath.FAILOVER_GATEWAY,
            "gw-b",
            (key,),
        )
        assert r.ib.open_refs() == []
        # Then it trades on gw-b, with a leased id, after reconciling there.
        await until(lambda: runner.state is StrategyState.RUNNING, what="running on gw-b")
        assert runner.status().gateway == "gw-b" and runner.status().failovers == 1
        assert runner.status().client_id != 11


async def test_no_path_to_ib_pages_with_every_order_that_may_still_be_live(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, strategy(grace=0)) as r:
        await started(r)
        key = (await r.runner().place(buy())).key
        for gw in ("gw-a", "gw-b"):
            r.ib.gateways[gw].up = False
        r.ib.drop("gw-a")
        r.host.on_gate("gw-a", LOST)
        await until(lambda: r.host.safe_state_runs("s1"), what="safe state")
        [run] = r.host.safe_state_runs("s1")
        assert (run.ok, run.path, run.still_live) == (False, SafeStatePath.ALERT_ONLY, (key,))
        [(_, severity, _, body)] = [a for a in r.alerts.raised if a[0].endswith("maybe-live")]
        assert severity == "critical" and key in body
        assert r.runner().state is StrategyState.SAFE_STATE


async def test_a_session_on_another_account_is_never_used_for_safe_state(tmp_path: Path) -> None:
    async with rig(tmp_path, strategy(grace=0), accounts=("DU1", "DU2")) as r:
        await started(r)
        await r.runner().place(buy())
        r.ib.gateways["gw-a"].up = False
        r.ib.drop("gw-a")
        r.host.on_gate("gw-a", LOST)
        await until(lambda: r.host.safe_state_runs("s1"), what="safe state")
        assert r.host.safe_state_runs("s1")[0].path is SafeStatePath.ALERT_ONLY
        assert not [c for c in r.ib.connects if c[0] == "gw-b"]


# -- riding an outage ----------------------------------------------------------------------


async def test_a_planned_restart_within_its_bound_holds_orders_and_resumes_on_the_same_gateway(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, strategy(grace=1)) as r:
        await started(r)
        runner = r.runner()
        key = (await runner.place(buy())).key
        planned = Gate(
            open=False,
            kind=OutageKind.PLANNED_RESTART,
            reason="daily",
            bound=dt.timedelta(minutes=5),
        )
        r.host.on_gate("gw-a", planned)
        r.ib.drop("gw-a")
        r.clock.advance(60)  # far past the grace, well inside the bound
        r.host.on_gate("gw-a", planned)  # wakes the ride to look again
        look = await until(
            lambda: (seen := runner.outages.last_look) is not None and seen[2] >= 60 and seen,
            what="the ride looking again 60 s on",
        )
        assert look[:2] == (OutageKind.PLANNED_RESTART, outage.Step.HOLD)
        assert r.host.safe_state_runs("s1") == [] and r.ib.open_refs() == [key]
        assert runner.state is StrategyState.RUNNING and not runner.trading
        r.host.on_gate("gw-a", OPEN)
        await until(lambda: runner.trading, what="trading again")
        assert runner.status().gateway == "gw-a" and runner.status().failovers == 0
        assert {o.key for o in runner.ctx.open_orders()} == {key}


async def test_a_planned_restart_that_outlasts_its_bound_is_a_lost_gateway(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, strategy(grace=1)) as r:
        await started(r)
        await r.runner().place(buy())
        planned = Gate(open=False, kind=OutageKind.PLANNED_RESTART, bound=dt.timedelta(seconds=30))
        r.ib.gateways["gw-a"].up = False
        r.host.on_gate("gw-a", planned)
        r.ib.drop("gw-a")
        r.clock.advance(31)
        r.host.on_gate("gw-a", planned)
        await until(lambda: r.host.safe_state_runs("s1"), what="safe state")
        assert r.host.safe_state_runs("s1")[0].trigger is SafeStateTrigger.GATEWAY_LOST


async def test_a_dropped_session_within_the_grace_reconnects_to_the_same_gateway(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, strategy(grace=60)) as r:
        await started(r)
        runner = r.runner()
        key = (await runner.place(buy())).key
        old = runner.session
        r.ib.drop("gw-a")  # the gate stays open: the gateway itself is fine
        await until(
            lambda: runner.trading and runner.session is not old, what="back on a new session"
        )
        assert runner.status().gateway == "gw-a"
        assert r.host.safe_state_runs("s1") == [] and r.ib.open_refs() == [key]
        assert r.ib.refs_sent() == [key]


async def test_a_reconnect_that_lands_after_the_gate_closed_does_not_resume_trading(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, strategy(grace=1)) as r:
        await started(r)
        runner = r.runner()
        key = (await runner.place(buy())).key
        held = asyncio.Event()
        r.ib.gateways["gw-a"].hold_connects = held
        r.ib.drop("gw-a")  # the gate is still open: the ride reconnects at once
        await until(lambda: len(r.ib.connects) == 2, what="a reconnect in flight")
        planned = Gate(open=False, kind=OutageKind.PLANNED_RESTART, bound=dt.timedelta(minutes=5))
        r.host.on_gate("gw-a", planned)
        held.set()
        await until(
            lambda: r.ib.sessions[-1].connected is False and len(r.ib.sessions) == 2,
            what="the late session fenced",
        )
        r.clock.advance(10)
        r.host.on_gate("gw-a", planned)
        look = await until(
            lambda: (seen := runner.outages.last_look) is not None and seen[2] >= 10 and seen,
            what="the ride holding",
        )
        assert look[1] is outage.Step.HOLD and not runner.trading
        assert r.host.safe_state_runs("s1") == [] and r.ib.open_refs() == [key]
        r.ib.gateways["gw-a"].hold_connects = None
        r.host.on_gate("gw-a", OPEN)
        await until(lambda: runner.trading, what="trading once the gate opens")


async def test_a_lost_gateway_waits_out_its_grace_on_the_hosts_clock(tmp_path: Path) -> None:
    async with rig(tmp_path, strategy(grace=30)) as r:
        await started(r)
        runner = r.runner()
        r.ib.gateways["gw-a"].up = False
        r.ib.drop("gw-a")
        r.host.on_gate("gw-a", LOST)
        r.clock.advance(29)
        r.host.on_gate("gw-a", LOST)
        look = await until(
            lambda: (seen := runner.outages.last_look) is not None and seen[2] >= 29 and seen,
            what="the ride looking again 29 s on",
        )
        assert look[:2] == (OutageKind.LOST, outage.Step.WAIT)
        assert r.host.safe_state_runs("s1") == []
        r.clock.advance(2)
        r.host.on_gate("gw-a", LOST)
        await until(lambda: r.host.safe_state_runs("s1"), what="safe state after the grace")


# -- the runner ------------------------------------------------------------------------------


async def test_a_crashing_hook_runs_safe_state_and_leaves_the_strategy_crashed(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, strategy(plugin=f"{MOD}:Crashy")) as r:
        await started(r)
        runner = r.runner()
        placed = await runner.place(buy(quantity=2))
        await runner.place(buy(price=90.0))
        r.ib.fill(placed.key, price=100.0)
        await until(lambda: runner.state is StrategyState.CRASHED, what="crashed")
        assert "RuntimeError: strategy bug" in (runner.last_error or "")
        assert r.host.safe_state_runs("s1")[0].trigger is SafeStateTrigger.CRASH
        assert r.ib.open_refs() == []
        assert "strategy:s1:crashed" in r.alerts.raised_keys()
        crashed_at = r.alerts.raised_keys().index("strategy:s1:crashed")
        assert crashed_at == len(r.alerts.raised) - 1  # nothing raised since
        resolved_before = r.alerts.resolved.count("strategy:s1:crashed")
        # Resumed, it runs again: the crash's incident is resolved (the 1,000-event chaos run,
        # seed 4242: a crash left open was re-paged every 10 minutes for an hour).
        status = await r.host.resume("s1", gateway="gw-a")
        assert status.state is StrategyState.RUNNING
        assert r.alerts.resolved.count("strategy:s1:crashed") == resolved_before + 1


async def test_a_gateway_lost_under_on_start_is_an_outage_and_on_start_runs_again(
    tmp_path: Path,
) -> None:
    # The 1,000-event chaos run (seed 4242): a gateway killed while on_start's ctx.subscribe
    # looked the contract up raised ConnectionError into the strategy, and the host crashed it
    # (safe state, a critical page, an operator's resume). It is the gateway's outage.
    Interruptible.go, Interruptible.starts = asyncio.Event(), 0
    async with rig(tmp_path, strategy(plugin=f"{MOD}:Interruptible", grace=0)) as r:
        await r.host.start()
        runner = r.runner()
        await until(lambda: Interruptible.starts == 1, what="on_start under way on gw-a")
        r.ib.gateways["gw-a"].hang_requests = True
        Interruptible.go.set()
        gw_a = r.ib.gateways["gw-a"]
        await until(lambda: gw_a.hung == 1, what="its contract lookup waiting on gw-a")
        r.ib.gateways["gw-a"].up = False
        r.ib.drop("gw-a")
        r.host.on_gate("gw-a", LOST)
        await until(lambda: Interruptible.starts == 2, what="on_start again, on gw-b")
        await until(lambda: runner.state is StrategyState.RUNNING, what="running on gw-b")
        assert runner.status().gateway == "gw-b"
        assert "strategy:s1:crashed" not in r.alerts.raised_keys()
        assert runner.last_error is None


async def test_a_gateway_stalled_under_on_start_does_not_crash_and_on_start_runs_again(
    tmp_path: Path,
) -> None:
    # The 1,000-event chaos run (seed 4242): a paused gateway left on_start's contract lookup
    # unanswered; the host's TimeoutError crashed the strategy. The session is still up, so
    # on_start runs again after a pause, and succeeds once the gateway answers.
    Interruptible.go, Interruptible.starts = asyncio.Event(), 0
    async with rig(tmp_path, strategy(plugin=f"{MOD}:Interruptible", grace=0)) as r:
        await r.host.start()
        runner = r.runner()
        await until(lambda: Interruptible.starts == 1, what="on_start under way on gw-a")
        gw_a = r.ib.gateways["gw-a"]
        gw_a.hang_requests = True
        Interruptible.go.set()
        await until(lambda: gw_a.hung == 1, what="its contract lookup waiting on gw-a")
        await until(lambda: gw_a.hung == 0, what="the lookup timed out")
        gw_a.hang_requests = False
        await until(lambda: Interruptible.starts == 2, what="on_start again, on gw-a")
        await until(lambda: runner.run.started and runner.inbox.empty(), what="on_start done")
        assert runner.state is StrategyState.RUNNING and runner.status().gateway == "gw-a"
        assert api.Instrument("AAPL") in runner.data.qualified
        assert "strategy:s1:crashed" not in r.alerts.raised_keys()
        assert runner.last_error is None


async def test_halt_keeps_orders_at_ib_and_resume_reconciles_and_trades_again(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await started(r)
        runner = r.runner()
        key = (await runner.place(buy())).key
        status = await r.host.halt("s1")
        assert status.state is StrategyState.HALTED and r.ib.open_refs() == [key]
        status = await r.host.resume("s1", gateway="gw-b")
        assert (status.state, status.gateway) == (StrategyState.RUNNING, "gw-b")
        assert {o.key for o in runner.ctx.open_orders()} == {key}


async def test_a_strategy_whose_gateways_are_all_down_waits_without_safe_state_or_page(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        for gw in ("gw-a", "gw-b"):
            r.ib.gateways[gw].up = False
        await r.host.start()
        runner = r.runner()
        assert runner.state is StrategyState.LOADED and runner.outages.first_task is not None
        r.ib.gateways["gw-a"].up = True
        r.host.on_gate("gw-a", OPEN)
        await until(lambda: runner.state is StrategyState.RUNNING, what="started on gw-a")
        assert r.host.safe_state_runs("s1") == [] and r.alerts.raised == []


async def test_a_subscription_made_during_an_outage_opens_when_the_session_is_back(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, strategy(grace=5)) as r:
        await started(r)
        runner = r.runner()
        aapl = api.Instrument("AAPL")
        contract = await runner.data.qualify(aapl)
        stalled = Gate(open=False, kind=OutageKind.STALLED, reason="heartbeat missed")
        r.host.on_gate("gw-a", stalled)
        # A strategy subscribing now (as in on_start at a supervisor restart) is not refused.
        await runner.ctx.subscribe(aapl)
        assert contract.conId in runner.data.subscriptions
        runner.sessions.current.broker.subscribed.clear()  # nothing open at IB now
        r.host.on_gate("gw-a", OPEN)
        await until(lambda: runner.trading, what="trading again")
        await until(
            lambda: contract.conId in runner.sessions.current.broker.subscribed,
            what="the deferred line opened on the session",
        )
        assert runner.state is StrategyState.RUNNING


async def test_seed_1_a_strategy_not_yet_started_hears_of_no_gateway_only_after_on_start(
    tmp_path: Path,
) -> None:
    """Chaos seed 1 (``IBFLEET_CHAOS_SEED=1``): the supervisor came back while a one-gateway
    strategy's gateway was down, with an order of the earlier run maybe live. The outage's safe
    state found no path, and the failover told the strategy "no gateway" before its on_start
    had run: the strategy crashed on its own unset state and stayed CRASHED once healed. Its
    "safe state could not reach IB" incident was never resolved, even once it traded again."""
    config = strategy(grace=0, gateways=("gw-a",))
    async with rig(tmp_path, config) as r:
        await started(r)
        await r.runner().place(buy())
        held = dict(r.ib.trades)  # on_shutdown hold: the order stays working at IB
    async with rig(tmp_path, config) as r:
        r.ib.trades.update(held)
        r.ib.gateways["gw-a"].up = False
        r.host.on_gate("gw-a", LOST)
        await r.host.start()
        runner = r.runner()
        await until(lambda: r.host.safe_state_runs("s1"), what="safe state with no path")
        [run] = r.host.safe_state_runs("s1")
        assert run.path is SafeStatePath.ALERT_ONLY
        await runner.inbox.join()
        assert runner.state is not StrategyState.CRASHED, runner.run.last_error
        r.ib.gateways["gw-a"].up = True
        r.host.on_gate("gw-a", OPEN)
        await until(lambda: runner.state is StrategyState.RUNNING, what="started on gw-a")
        await runner.inbox.join()
        assert runner.strategy.events[0] == "start"
        # Back on IB with every intent matched: the "could not reach IB" page is resolved.
        assert "strategy:s1:maybe-live" in r.alerts.raised_keys()
        assert "strategy:s1:maybe-live" in r.alerts.resolved


async def test_seed_20261201_no_hook_reaches_a_strategy_before_its_on_start(
    tmp_path: Path,
) -> None:
    """Chaos seed 20261201 (``IBFLEET_CHAOS_SEED=20261201``): the supervisor came back with a
    strategy's orders of the earlier run working at IB; the new session's order reports were
    posted to the strategy before its on_start, and it crashed on its own unset state. Every
    hook but on_start posted before on_start is dropped (the strategy reads the book then)."""
    async with rig(tmp_path) as r:
        for gw in ("gw-a", "gw-b"):
            r.ib.gateways[gw].up = False
        await r.host.start()
        runner = r.runner()
        assert runner.state is StrategyState.LOADED and not runner.run.started
        update = api.OrderUpdate(
            key="s1-X", status=IntentState.ACKED, filled=0.0, remaining=1.0, message="reported"
        )
        runner.post("order", lambda: runner._hook().on_order_status(update))
        await runner.inbox.join()
        assert runner.state is StrategyState.LOADED, runner.run.last_error
        r.ib.gateways["gw-a"].up = True
        r.host.on_gate("gw-a", OPEN)
        await until(lambda: runner.state is StrategyState.RUNNING, what="started on gw-a")
        await runner.inbox.join()
        assert runner.strategy.events == ["start"]
