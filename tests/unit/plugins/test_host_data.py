"""The strategy's data calls through the fake broker: history under IB's pacing, account,
portfolio, what-if, lookup, refused market data; and the limits the order path adds."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from plugins import api
from plugins.host import StrategyState
from plugins.pacing import PacingRules
from plugins.risk import RiskReason
from tests.unit.plugins.fake_broker import AAPL, HistoryCall
from tests.unit.plugins.host_harness import Rig, buy, rig, strategy
from tests.waiting import until

PACING_162 = (
    162,
    "Historical Market Data Service error message:Historical data request pacing violation",
)
AAPL_I = api.Instrument("AAPL")


async def started(r: Rig, *names: str) -> None:
    r.ib.data.clock = r.clock.monotonic
    # Waits between looks at the pacer are short: the test moves the clock, not the loop.
    services = r.host.services
    services.settings = dataclasses.replace(services.settings, pacing_recheck=0.001)
    await r.host.start()
    for name in names or ("s1",):
        runner = r.host.runners[name]
        await until(
            lambda runner=runner: runner.state is StrategyState.RUNNING, what=f"{name} running"
        )


async def drive(r: Rig, tasks: list[asyncio.Task[Any]], *, step: float, limit: float) -> None:
    """Move the fake clock by ``step`` whenever the requests stop moving, until all are done."""
    moved = 0.0
    while not all(t.done() for t in tasks):
        assert moved <= limit, f"requests still waiting after {limit:g} s of pacing"
        sent = len(r.ib.data.history)
        await asyncio.sleep(0.005)
        if len(r.ib.data.history) == sent:
            r.clock.advance(step)
            moved += step


def violations(calls: list[HistoryCall], rules: PacingRules) -> list[str]:
    """IB's rules checked on what the fake IB received (independently of the pacer)."""
    found = []
    times = [c.at for c in calls]
    for i, c in enumerate(calls):
        window = [t for t in times[: i + 1] if t > c.at - rules.history_window]
        if len(window) > rules.history_requests:
            found.append(f"request {i}: {len(window)} in {rules.history_window}s")
        same = [
            d.at
            for d in calls[:i]
            if (d.con_id, d.what_to_show) == (c.con_id, c.what_to_show)
            and d.at > c.at - rules.same_contract_window
        ]
        if len(same) + 1 >= 6:
            found.append(f"request {i}: {len(same) + 1} for one contract in 2 s")
        if any(
            dataclasses.replace(d, at=0) == dataclasses.replace(c, at=0)
            and d.at > c.at - rules.identical_within
            for d in calls[:i]
        ):
            found.append(f"request {i}: identical within {rules.identical_within}s")
    return found


# -- history -------------------------------------------------------------------------------


async def test_history_returns_typed_bars_for_the_request_made(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await started(r)
        end = dt.datetime(2026, 3, 2, 20, 0, tzinfo=dt.UTC)
        bars = await r.runner().ctx.history(AAPL_I, "1 D", "1 min", "MIDPOINT", False, end=end)
        assert [b.close for b in bars] == [100.5, 101.5, 102.5]
        assert bars[0].start.tzinfo is not None and bars[0].wap == pytest.approx(100.2)
        (call,) = r.ib.data.history
        assert (call.end, call.duration, call.bar_size, call.what_to_show, call.use_rth) == (
            "20260302-20:00:00",
            "1 D",
            "1 min",
            "MIDPOINT",
            False,
        )


async def test_a_burst_of_100_requests_from_two_strategies_keeps_ibs_pacing(
    tmp_path: Path,
) -> None:
    """Two strategies share one gateway's pacing; every request completes, none is refused."""
    configs = [strategy("s1"), strategy("s2").model_copy(update={"client_id": 12})]
    async with rig(tmp_path, *configs) as r:
        await started(r, "s1", "s2")
        ctxs = [r.runner("s1").ctx, r.runner("s2").ctx]
        tasks = [
            asyncio.create_task(
                ctxs[n % 2].history(AAPL_I, f"{1 + n % 7} D", "1 min", ("TRADES", "BID")[n % 2])
            )
            for n in range(100)
        ]
        await drive(r, tasks, step=5.0, limit=2000.0)
        assert all(len(t.result()) == 3 for t in tasks)
        calls = r.ib.data.history
        assert len(calls) == 100
        assert violations(calls, PacingRules()) == []
        # the 61st request had to wait for the first to leave the ten-minute window
        assert calls[60].at - calls[0].at >= 600.0


async def test_an_identical_request_waits_instead_of_being_refused(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await started(r)
        ctx = r.runner().ctx
        await ctx.history(AAPL_I, "1 D", "1 min")
        second = asyncio.create_task(ctx.history(AAPL_I, "1 D", "1 min"))
        await drive(r, [second], step=1.0, limit=60.0)
        first, again = r.ib.data.history
        assert again.at - first.at >= 15.0


async def test_a_pacing_violation_is_retried_after_the_pacing_wait(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await started(r)
        r.ib.data.history_errors.append(PACING_162)
        task = asyncio.create_task(r.runner().ctx.history(AAPL_I, "1 D", "1 min"))
        await drive(r, [task], step=1.0, limit=60.0)
        assert len(task.result()) == 3
        refused, retried = r.ib.data.history
        assert retried.at - refused.at >= 15.0  # the identical-request rule's wait
        assert r.runner().requests.history_retries == 1


async def test_pacing_violations_past_the_retries_are_a_clear_error(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await started(r)
        r.ib.data.history_errors.extend([PACING_162] * 4)
        task = asyncio.create_task(r.runner().ctx.history(AAPL_I, "1 D", "1 min"))
        await drive(r, [task], step=1.0, limit=120.0)
        with pytest.raises(api.DataRefused, match="pacing 4 times") as refused:
            task.result()
        assert refused.value.reason is api.DataReason.PACING and refused.value.code == 162
        assert len(r.ib.data.history) == 4


@pytest.mark.parametrize(
    ("error", "reason", "words"),
    [
        (
            (
                162,
                "Historical Market Data Service error message:No market data permissions for "
                "NASDAQ STK",
            ),
            api.DataReason.NO_PERMISSION,
            "lacks market data for AAPL",
        ),
        ((162, "HMDS query returned no data: AAPL@SMART Trades"), api.DataReason.NO_DATA, "162"),
        ((200, "No security definition"), api.DataReason.NO_CONTRACT, "No security definition"),
    ],
)
async def test_other_history_errors_are_refused_at_once_with_ibs_words(
    tmp_path: Path, error: tuple[int, str], reason: api.DataReason, words: str
) -> None:
    async with rig(tmp_path) as r:
        await started(r)
        r.ib.data.history_errors.append(error)
        with pytest.raises(api.DataRefused, match=words) as refused:
            await r.runner().ctx.history(AAPL_I, "1 D", "1 min")
        assert refused.value.reason is reason and refused.value.code == error[0]
        assert "strategy s1: history '1 D' of '1 min' TRADES bars for AAPL" in refused.value.message
        assert len(r.ib.data.history) == 1


async def test_history_without_a_live_session_is_refused_as_not_trading(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await started(r)
        r.runner().halt()
        with pytest.raises(api.DataRefused) as refused:
            await r.runner().ctx.history(AAPL_I, "1 D", "1 min")
        assert refused.value.reason is api.DataReason.NOT_TRADING
        assert r.ib.data.history == []


# -- market data permissions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "names"),
    [
        (354, "Requested market data is not subscribed.", "a market data subscription"),
        (10167, "Displaying delayed market data.", "a live market data subscription"),
        (10197, "No market data during competing live session", "competing live session"),
    ],
)
async def test_a_subscription_the_account_lacks_is_refused_naming_the_permission(
    tmp_path: Path, code: int, message: str, names: str
) -> None:
    async with rig(tmp_path) as r:
        r.ib.data.md_refusals[AAPL.conId] = (code, message)
        await r.host.start()
        runner = r.runner()
        # Quiet subscribes in on_start: the refusal is an exception there, so it crashes
        await until(lambda: runner.state is StrategyState.CRASHED, what="on_start refused")
        assert names in (runner.last_error or "")
        assert f"IB error {code}" in (runner.last_error or "")
        assert AAPL.conId not in runner.data.subscriptions
        r.ib.data.md_refusals.clear()
        await r.host.resume("s1")
        await until(lambda: AAPL.conId in runner.data.subscriptions, what="subscribed")


# -- account, portfolio, what-if, lookup -----------------------------------------------------


async def test_account_and_portfolio_are_typed_records(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await started(r)
        ctx = r.runner().ctx
        account = await ctx.account()
        assert account == api.AccountSummary(
            account="DU1",
            currency="USD",
            net_liquidation=100_000.0,
            buying_power=400_000.0,
            available_funds=90_000.0,
            cash={"USD": 80_000.0, "EUR": 1_000.0},
        )
        (position,) = await ctx.portfolio()
        assert position.instrument == AAPL_I and position.con_id == AAPL.conId
        assert (position.quantity, position.average_cost, position.unrealised_pnl) == (
            10.0,
            185.0,
            50.0,
        )


async def test_what_if_answers_margin_and_commission_and_places_nothing(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await started(r)
        answer = await r.runner().ctx.what_if(buy(10, 185.0))
        assert answer.init_margin_change == pytest.approx(462.5)
        assert answer.maint_margin_change == pytest.approx(370.0)
        assert (answer.commission, answer.currency) == (1.0, "USD")
        assert r.ib.trades == {}  # nothing at IB
        assert r.journal.intents_maybe_live("s1") == []  # nothing journalled
        assert r.runner().status().orders_sent == 0


async def test_a_what_if_ib_refuses_is_a_data_refusal_with_its_code(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await started(r)
        r.ib.data.what_if_error = (321, "Error validating request.-'bO' : cause - no exchange")
        with pytest.raises(api.DataRefused, match="IB error 321") as refused:
            await r.runner().ctx.what_if(buy(1, 185.0))
        assert refused.value.code == 321


async def test_lookup_finds_and_qualifies_a_symbol_not_subscribed(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await started(r)
        (listing,) = await r.runner().ctx.lookup("AAPL")
        assert listing.con_id == AAPL.conId
        assert listing.instrument == api.Instrument("AAPL", "STK", "SMART", "USD")
        assert r.runner().data.qualified[listing.instrument].conId == AAPL.conId
        assert await r.runner().ctx.lookup("NOPE") == []


# -- the limits the order path adds ----------------------------------------------------------


async def test_a_limit_far_from_the_market_is_refused_by_the_collar(tmp_path: Path) -> None:
    async with rig(tmp_path, strategy(price_collar_pct=10)) as r:
        await started(r)
        r.ib.tick(185.0)
        await until(lambda: r.runner().ctx.last_price(AAPL_I) == 185.0, what="a price")
        with pytest.raises(api.OrderRefused, match="price_collar_pct 10") as refused:
            await r.runner().place(buy(1, 18.5))
        assert refused.value.reason is api.RefusalReason.PRICE_COLLAR
        await r.runner().place(buy(1, 180.0))


async def test_a_symbols_position_limit_counts_working_orders(tmp_path: Path) -> None:
    async with rig(tmp_path, strategy(position_limits={"AAPL": 3})) as r:
        await started(r)
        await r.runner().place(buy(2, 100.0))
        with pytest.raises(api.OrderRefused, match="max_position 3") as refused:
            await r.runner().place(buy(2, 100.0))
        assert refused.value.risk is RiskReason.MAX_POSITION


async def test_the_daily_loss_halts_the_strategy_cancels_its_orders_and_alerts(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, strategy(max_daily_loss=50)) as r:
        await started(r)
        runner = r.runner()
        bought = await runner.place(buy(10, 190.0))
        resting = await runner.place(buy(1, 180.0))
        r.ib.fill(bought.key, price=190.0)
        r.ib.tick(186.0)  # 10 x -4 = -40: within the limit
        await until(lambda: runner.ctx.last_price(AAPL_I) == 186.0, what="a price")
        assert runner.state is StrategyState.RUNNING
        r.ib.tick(184.0)  # -60
        await until(lambda: runner.state is StrategyState.HALTED, what="halted")
        assert "strategy:s1:daily_loss" in r.alerts.raised_keys()
        await r.host.settle()
        assert [e for e in r.journal.events(limit=1000) if e.kind == "strategy.daily_loss"]
        await until(lambda: resting.key not in r.ib.open_refs(), what="resting order cancelled")
        # resumed the same day: adding is refused, reducing passes, no second halt
        await r.host.resume("s1")
        await until(lambda: runner.state is StrategyState.RUNNING, what="resumed")
        with pytest.raises(api.OrderRefused, match="max_daily_loss 50") as refused:
            await runner.place(buy(1, 184.0))
        assert refused.value.reason is api.RefusalReason.DAILY_LOSS
        await runner.place(api.OrderSpec(AAPL_I, api.Side.SELL, 5, limit_price=184.0))
        assert r.alerts.raised_keys().count("strategy:s1:daily_loss") == 1
