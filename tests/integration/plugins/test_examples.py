"""The shipped example strategies, tested the way an author tests theirs: ``plugins.testing``."""

from __future__ import annotations

from pathlib import Path

from plugins import api
from plugins.examples.breakout import Breakout
from plugins.examples.meanrev import MeanReversion
from plugins.examples.pinger import Pinger
from plugins.registry import load_strategy_class
from plugins.testing import BrokerOrderView, StrategyHarness, refs_sent_twice


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


BREAKOUT = {
    "symbol": "AAPL",
    "window": 3,
    "quantity": 2,
    "target": 0.02,
    "risk": 0.01,
    "slippage": 0.001,
    "breakeven": 0.5,
}
# A new high at 101.00: the entry a limit at 101.10 (0.1 % over), the take-profit 2 % over
# that, the stop-loss 1 % under; half way to the target the stop moves up to the entry.
ENTRY, TAKE_PROFIT, STOP_LOSS, HALF_WAY = 101.10, 103.12, 100.09, 102.11


async def breakout_entered(h: StrategyHarness) -> dict[str, BrokerOrderView]:
    """Replay a quiet window, then a new high; return the bracket's three legs at the broker,
    by leg (``entry``, ``tp``, ``sl``), once the entry filled and the legs are seen linked."""
    await h.replay("AAPL", [100.0, 99.8, 99.9, 100.0])  # the window's high is 100.00
    assert h.broker_orders() == [], "no new high yet: nothing sent"
    await h.replay("AAPL", [101.0])
    await h.until(lambda: len(h.broker_orders()) == 3, what="the bracket's three legs at IB")
    await h.until(lambda: h.broker_position("AAPL") == 2, what="the entry filled at IB")
    await h.until(lambda: h.ctx.position(api.Instrument("AAPL")) == 2, what="the fill booked")
    by_ref = {o.order_ref: o for o in h.broker_orders()}
    [entry] = [o for o in by_ref.values() if o.parent_id == 0]
    legs = {"entry": entry, "tp": by_ref[f"{entry.order_ref}.tp"]}
    legs["sl"] = by_ref[f"{entry.order_ref}.sl"]
    assert_linked(legs)
    return legs


def assert_linked(legs: dict[str, BrokerOrderView]) -> None:
    entry, tp, sl = legs["entry"], legs["tp"], legs["sl"]
    assert (entry.action, entry.order_type, entry.limit_price) == ("BUY", "LMT", ENTRY)
    assert (tp.action, tp.order_type, tp.limit_price) == ("SELL", "LMT", TAKE_PROFIT)
    assert (sl.action, sl.order_type, sl.aux_price) == ("SELL", "STP", STOP_LOSS)
    assert [o.quantity for o in legs.values()] == [2, 2, 2]
    # Linked at the broker: both exits under the entry's order id, in one OCA group.
    assert entry.oca_group == "" and entry.order_id > 0
    assert tp.parent_id == sl.parent_id == entry.order_id
    assert tp.oca_group == sl.oca_group != ""
    assert tp.working and sl.working, "the exits work once the entry filled"


def leg(h: StrategyHarness, ref: str) -> BrokerOrderView:
    [found] = [o for o in h.broker_orders() if o.order_ref == ref]
    return found


async def test_breakout_take_profit_fills_and_oca_cancels_the_stop(tmp_path: Path) -> None:
    async with StrategyHarness.start(
        Breakout, params=BREAKOUT, prices={"AAPL": 100.0}, workdir=tmp_path
    ) as h:
        legs = await breakout_entered(h)
        entry, tp, sl = (legs[k].order_ref for k in ("entry", "tp", "sl"))

        # Half way to the target: the stop moves up to the entry, in place at IB.
        await h.replay("AAPL", [HALF_WAY + 0.05])
        await h.until(lambda: leg(h, sl).aux_price == ENTRY, what="the stop at break-even")
        assert "modified" in [note for _, note in leg(h, sl).history]

        h.set_price("AAPL", 103.5)  # through the take-profit
        await h.until(lambda: leg(h, tp).status == "Filled", what="the take-profit filled")
        await h.until(lambda: leg(h, sl).status == "Cancelled", what="the stop cancelled")
        notes = [note for _, note in leg(h, sl).history]
        assert any("OCA group" in note for note in notes), notes  # IB cancelled it, not ibfleet
        assert not any(note.startswith("cancelled by") for note in notes), notes
        assert h.broker_position("AAPL") == 0
        await h.until(lambda: not h.open_orders(), what="the host booking all three ended")
        assert h.ctx.position(api.Instrument("AAPL")) == 0
        assert leg(h, entry).status == "Filled"
        assert refs_sent_twice(h.order_refs_sent()) == [] and len(h.broker_orders()) == 3
        # The bracket is over: the next new high enters a new one.
        await h.replay("AAPL", [103.6, 104.0])
        await h.until(lambda: len(h.broker_orders()) == 6, what="a second bracket")
        assert refs_sent_twice(h.order_refs_sent()) == []


async def test_breakout_stop_loss_fills_and_oca_cancels_the_take_profit(tmp_path: Path) -> None:
    async with StrategyHarness.start(
        Breakout, params=BREAKOUT, prices={"AAPL": 100.0}, workdir=tmp_path
    ) as h:
        legs = await breakout_entered(h)
        tp, sl = legs["tp"].order_ref, legs["sl"].order_ref
        # A new high while the bracket works does not enter another one.
        await h.replay("AAPL", [101.5])
        assert len(h.broker_orders()) == 3

        h.set_price("AAPL", 99.5)  # through the stop, before half way: it never moved
        await h.until(lambda: leg(h, sl).status == "Filled", what="the stop-loss filled")
        await h.until(lambda: leg(h, tp).status == "Cancelled", what="the take-profit cancelled")
        assert leg(h, sl).aux_price == STOP_LOSS
        notes = [note for _, note in leg(h, tp).history]
        assert any("OCA group" in note for note in notes), notes
        assert h.broker_position("AAPL") == 0
        await h.until(lambda: not h.open_orders(), what="the host booking all three ended")
        assert h.ctx.position(api.Instrument("AAPL")) == 0
        assert refs_sent_twice(h.order_refs_sent()) == [] and len(h.broker_orders()) == 3


def test_the_guides_breakout_is_the_shipped_file_word_for_word() -> None:
    root = Path(__file__).resolve().parents[3]
    guide = (root / "plugins" / "README.md").read_text()
    brackets = guide[guide.index("## Brackets") : guide.index("## Cancel by criteria")]
    block = brackets.split("```python\n", 1)[1].split("```", 1)[0]
    shipped = (root / "plugins" / "examples" / "breakout.py").read_text()
    assert len(block.splitlines()) > 20 and block in shipped


def test_breakout_is_installed_as_the_entry_point_the_fleet_file_names() -> None:
    # Stale package metadata (an install from before the entry point) fails here, by name.
    assert load_strategy_class("breakout") is Breakout
