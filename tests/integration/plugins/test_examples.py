"""The shipped example strategies, tested the way an author tests theirs: ``plugins.testing``."""

from __future__ import annotations

from pathlib import Path

from plugins import api
from plugins.examples.meanrev import MeanReversion
from plugins.examples.pinger import Pinger
from plugins.testing import StrategyHarness, refs_sent_twice


async def test_meanrev_quotes_both_sides_around_the_average_and_follows_it(tmp_path: Path) -> None:
    params = {"symbol": "AAPL", "window": 5, "band": 0.01, "min_move": 0.001}
    async with StrategyHarness.start(
        MeanReversion, params=params, prices={"AAPL": 100.0}, workdir=tmp_path
    ) as h:
        await h.replay("AAPL", [100.0, 100.02, 99.98, 100.0, 100.01])
        await h.until(lambda: len(h.broker_orders(working_only=True)) == 2, what="two quotes")
        quotes = {o.action: o for o in h.broker_orders(working_only=True)}
        assert set(quotes) == {"BUY", "SELL"}
        assert quotes["BUY"].limit_price is not None and quotes["BUY"].limit_price < 100.0
        assert quotes["SELL"].limit_price is not None and quotes["SELL"].limit_price > 100.0

        # The average moves up: the quotes are modified in place (same orderRef), not re-sent.
        await h.replay("AAPL", [100.5, 100.6, 100.7, 100.8, 100.9])
        await h.until(
            lambda: all(
                (o.limit_price or 0) > 100.0 * 0.99 + 0.3
                for o in h.broker_orders(working_only=True)
                if o.action == "BUY"
            ),
            what="the buy quote following the average up",
        )
        assert refs_sent_twice(h.order_refs_sent()) == []
        assert len(h.broker_orders()) == 2, "a modify must not create a new order at IB"


async def test_meanrev_buy_quote_fills_when_the_price_drops_through_it(tmp_path: Path) -> None:
    params = {"symbol": "AAPL", "window": 5, "band": 0.005, "quantity": 2}
    async with StrategyHarness.start(
        MeanReversion, params=params, prices={"AAPL": 100.0}, workdir=tmp_path
    ) as h:
        await h.replay("AAPL", [100.0] * 5)
        await h.until(lambda: len(h.broker_orders(working_only=True)) == 2, what="two quotes")
        h.set_price("AAPL", 99.0)  # through the buy at ~99.50
        await h.until(lambda: h.broker_position("AAPL") == 2, what="the buy quote filled")
        await h.until(
            lambda: h.ctx.position(api.Instrument("AAPL")) == 2,
            what="the host booking the fill",
        )


async def test_pinger_rests_far_from_the_market_and_cancels_each_ping(tmp_path: Path) -> None:
    params = {"symbol": "AAPL", "interval_seconds": 0.1, "offset": 0.1}
    async with StrategyHarness.start(
        Pinger, params=params, prices={"AAPL": 200.0}, workdir=tmp_path
    ) as h:
        await h.until(lambda: len(h.broker_orders()) >= 3, what="three pings at the broker")
        orders = h.broker_orders()
        assert all(o.action == "BUY" and o.limit_price == 180.0 for o in orders)
        assert sum(o.working for o in orders) <= 1, "a ping is cancelled before the next"
        assert h.broker_position("AAPL") == 0
        assert h.ctx.store.get("pings", 0) >= 3


async def test_pinger_fails_over_when_its_primary_is_lost_and_sends_nothing_twice(
    tmp_path: Path,
) -> None:
    params = {"symbol": "AAPL", "interval_seconds": 0.1}
    async with StrategyHarness.start(
        Pinger,
        params=params,
        prices={"AAPL": 50.0},
        workdir=tmp_path,
        config={"safe_state": {"on_disconnect": "cancel", "grace": "0.3s"}},
    ) as h:
        await h.until(lambda: h.broker_orders(), what="a first ping")
        await h.lose_gateway("primary")
        await h.until(
            lambda: any(o.gateway == "failover" for o in h.broker_orders()),
            timeout=20,
            what="a ping through the failover gateway",
        )
        assert refs_sent_twice(h.order_refs_sent()) == []
        assert not any(o.working and o.gateway == "primary" for o in h.broker_orders())
