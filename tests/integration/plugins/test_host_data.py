"""The host's data calls against the in-process simulator: a burst of history requests under
IB's pacing with no 162 reaching the strategy, and the account, portfolio, what-if, lookup and
market data refusals the simulator answers.

Where the simulator enforces IB's pacing (``ibsim.pacing``), its windows are shrunk a hundred
times and the host's with them, so the ten-minute rule takes six seconds; without it the burst
still has to complete, paced by the host alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.config import MarketDataEntitlement
from plugins import api
from plugins.host import HostSettings, StrategyHost, StrategyState
from plugins.pacing import PacingRules
from tests.integration.plugins.helpers import (
    ACCOUNT,
    make_host,
    open_journal,
    strategy,
    two_gateways,
)
from tests.waiting import until

pytestmark = pytest.mark.timeout(120)
MOD = __name__
SCALE = 0.01  # IB's windows a hundred times shorter
AAPL = api.Instrument("AAPL")
MSFT = api.Instrument("MSFT")


class Idle(api.Strategy):
    """Does nothing by itself: the test makes its data calls through its context."""


def sim_pacing() -> dict[str, Any]:
    """The simulator's pacing shrunk by SCALE, where this simulator enforces pacing."""
    try:
        from ibsim.pacing import PacingConfig  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return {}
    return {
        "pacing": PacingConfig(
            hist_window=600.0 * SCALE,
            identical_window=15.0 * SCALE,
            same_contract_window=2.0 * SCALE,
        )
    }


def host_settings() -> HostSettings:
    # The host's windows shrunk the same; the slack (50 ms) covers a request's way there.
    rules = dataclasses.replace(PacingRules(), slack=5.0).scaled(SCALE)
    return HostSettings(connect_timeout=1.0, request_timeout=2.0, pacing=rules, pacing_recheck=0.01)


async def started(host: StrategyHost, *names: str) -> None:
    await host.start()
    for name in names:
        runner = host.runners[name]
        await until(
            lambda runner=runner: runner.state is StrategyState.RUNNING, what=f"{name} running"
        )


async def history_burst(host: StrategyHost, count: int) -> tuple[float, list[Any]]:
    """``count`` history requests from every strategy of ``host`` at once; the seconds they
    took and what each returned (bars or the exception)."""
    ctxs = [r.ctx for r in host.runners.values()]
    calls = [
        ctxs[n % len(ctxs)].history(
            (AAPL, MSFT)[n % 2], f"{1 + n % 5} D", "5 mins", ("TRADES", "MIDPOINT")[n // 2 % 2]
        )
        for n in range(count)
    ]
    started_at = time.monotonic()
    results = await asyncio.gather(*calls, return_exceptions=True)
    return time.monotonic() - started_at, results


async def test_a_burst_of_100_history_requests_completes_with_no_162_reaching_the_strategy(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path)
    async with two_gateways(**sim_pacing()) as sim:
        host = make_host(
            sim,
            journal,
            [strategy("h1", f"{MOD}:Idle"), strategy("h2", f"{MOD}:Idle", client_id=12)],
            settings=host_settings(),
        )
        try:
            await started(host, "h1", "h2")
            seconds, results = await history_burst(host, 100)
            refused = [r for r in results if isinstance(r, BaseException)]
            assert refused == [], refused[:3]
            assert all(isinstance(r, list) and r for r in results)
            assert all(isinstance(b, api.HistoricalBar) for r in results for b in r)
            retries = sum(r.requests.history_retries for r in host.runners.values())
            # More than 60 requests: the ten-minute rule (six seconds here) held the rest.
            assert seconds >= 600.0 * SCALE
            print(f"history burst: 100 requests in {seconds:.2f}s, {retries} retried after 162")
        finally:
            await host.stop()
    journal.close()


async def test_account_portfolio_what_if_and_lookup_from_the_simulator(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    async with two_gateways() as sim:
        host = make_host(sim, journal, [strategy("d1", f"{MOD}:Idle")], settings=host_settings())
        try:
            await started(host, "d1")
            ctx = host.runners["d1"].ctx
            account = await ctx.account()
            assert account.account == ACCOUNT and account.currency == "USD"
            assert account.net_liquidation and account.net_liquidation > 0
            assert account.buying_power is not None and account.available_funds is not None
            assert "USD" in account.cash
            assert await ctx.portfolio() == []  # a fresh account holds nothing
            spec = api.OrderSpec(AAPL, api.Side.BUY, 100, limit_price=None)
            answer = await ctx.what_if(spec)
            assert answer.init_margin_change and answer.init_margin_change > 0
            assert answer.commission is not None and answer.commission > 0
            assert sim.broker.orders == {}  # a what-if is never an order at IB
            assert journal.intents_maybe_live("d1") == []
            listings = await ctx.lookup("IBM")
            assert [listing.instrument.symbol for listing in listings] == ["IBM"]
            assert listings[0].con_id > 0
        finally:
            await host.stop()
    journal.close()


async def test_market_data_the_account_lacks_is_refused_naming_the_permission(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path)
    async with two_gateways() as sim:
        host = make_host(sim, journal, [strategy("m1", f"{MOD}:Idle")], settings=host_settings())
        try:
            await started(host, "m1")
            frontend = sim.gateway("gw-a").frontend
            assert frontend is not None
            frontend.market_data = MarketDataEntitlement.NONE.value
            with pytest.raises(api.DataRefused, match="a market data subscription for AAPL"):
                await host.runners["m1"].ctx.subscribe(AAPL)
            frontend.market_data = MarketDataEntitlement.DELAYED.value
            with pytest.raises(api.DataRefused, match=r"IB error (354|10167)") as refused:
                await host.runners["m1"].ctx.subscribe(AAPL)
            assert refused.value.reason is api.DataReason.NO_PERMISSION
            assert AAPL not in [
                host.runners["m1"].book.instruments.get(c)
                for c in host.runners["m1"].data.subscriptions
            ]
        finally:
            await host.stop()
    journal.close()
