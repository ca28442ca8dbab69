"""Brackets through the host on the fake broker: placement, journal keys, risk, safe state,
group reconciliation after a reconnect and a failover, and cancel by criteria."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.outage import Gate, OutageKind
from plugins import api
from plugins.host import SafeStatePath, StrategyState
from plugins.intents import IntentState, leg_key
from tests.unit.plugins.host_harness import Rig, rig, strategy
from tests.waiting import until

AAPL = api.Instrument("AAPL")
LOST = Gate(open=False, kind=OutageKind.LOST, reason="crashed")


async def started(r: Rig) -> Any:
    await r.host.start()
    runner = r.runner()
    await until(lambda: runner.state is StrategyState.RUNNING, what="running")
    return runner


def entry(quantity: float = 10, price: float | None = 100.0) -> api.OrderSpec:
    return api.OrderSpec(AAPL, api.Side.BUY, quantity, limit_price=price)


async def bracket(runner: Any, **kw: Any) -> api.Bracket:
    result: api.Bracket = await runner.ctx.place_bracket(
        entry(**kw), take_profit=110.0, stop_loss=95.0
    )
    return result


def status_of(r: Rig, key: str) -> str:
    [trade] = [t for t in r.ib.trades.values() if t.order.orderRef == key]
    return str(trade.orderStatus.status)


def statuses(r: Rig, b: api.Bracket) -> list[str]:
    return [status_of(r, leg.key) for leg in b.legs]


# -- placement -------------------------------------------------------------------------------


async def test_a_bracket_is_three_journalled_legs_linked_at_ib_all_written_before_any_send(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        runner = await started(r)
        steps: list[str] = []
        record, place = r.journal.record_intent, r.ib.place

        def recording(**kw: Any) -> Any:
            steps.append(f"journal {kw['key']}")
            return record(**kw)

        def placing(session: Any, contract: Any, order: Any) -> Any:
            steps.append(f"send {order.orderRef}")
            return place(session, contract, order)

        r.journal.record_intent = recording  # type: ignore[method-assign]
        r.ib.place = placing  # type: ignore[method-assign]
        b = await bracket(runner)
        p = b.entry.key
        assert (b.take_profit.key, b.stop_loss.key) == (leg_key(p, "tp"), leg_key(p, "sl"))
        keys = [p, f"{p}.tp", f"{p}.sl"]
        assert steps == [f"journal {k}" for k in keys] + [f"send {k}" for k in keys]
        orders = {t.order.orderRef: t.order for t in r.ib.trades.values()}
        parent, tp, sl = (orders[k] for k in keys)
        assert [o.transmit for o in (parent, tp, sl)] == [False, False, True]
        assert tp.parentId == sl.parentId == parent.orderId and parent.parentId == 0
        assert tp.ocaGroup == sl.ocaGroup == p and tp.ocaType == 1
        assert (tp.orderType, tp.lmtPrice, sl.orderType, sl.auxPrice) == ("LMT", 110, "STP", 95)
        await r.host.settle()
        for key in keys:
            intent = r.journal.intent(key)
            assert intent is not None and intent.order["purpose"] == "bracket"
        assert r.journal.intent(f"{p}.sl").order["parentId"] == parent.orderId  # type: ignore[union-attr]
        # At IB: the entry works, its exits wait for its fill.
        assert statuses(r, b) == ["Submitted", "PreSubmitted", "PreSubmitted"]
        assert {o.key for o in runner.ctx.open_orders()} == set(keys)
        assert b.take_profit.parent == p and b.entry.parent is None


async def test_the_entry_fill_arms_the_exits_and_one_exit_filling_cancels_the_other(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        runner = await started(r)
        b = await bracket(runner)
        r.ib.fill(b.entry.key, price=100.0)
        assert statuses(r, b) == ["Filled", "Submitted", "Submitted"]
        r.ib.fill(b.take_profit.key, price=110.0)
        assert statuses(r, b) == ["Filled", "Filled", "Cancelled"]
        assert runner.position_of(AAPL) == 0
        await until(lambda: runner.ctx.open_orders() == [], what="no working legs")


async def test_a_bracket_within_max_position_is_not_counted_twice_by_its_exits(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, strategy(max_position=10, max_open_orders=4)) as r:
        runner = await started(r)
        b = await bracket(runner, quantity=10)
        # Exits of 10 each, one cancels the other: the worst case is 10 sold, not 20.
        assert runner.book.risk_book(r.ib.contracts[0].conId).open_sell_quantity == 10
        await runner.ctx.modify(b.entry.key, limit_price=99.0)


async def test_a_bracket_counts_three_orders_against_max_open_orders(tmp_path: Path) -> None:
    async with rig(tmp_path, strategy(max_open_orders=3)) as r:
        runner = await started(r)
        await bracket(runner, quantity=1)
        with pytest.raises(api.OrderRefused, match="3 orders already open, this adds 3"):
            await bracket(runner, quantity=1)


async def test_a_refused_bracket_journals_and_sends_no_leg(tmp_path: Path) -> None:
    async with rig(tmp_path, strategy(max_order_qty=5)) as r:
        runner = await started(r)
        with pytest.raises(api.OrderRefused, match="max_order_qty"):
            await bracket(runner, quantity=6)
        assert r.ib.placed == [] and r.journal.open_intents("s1") == []


async def test_a_journal_failing_on_a_leg_sends_no_leg(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        runner = await started(r)
        record = r.journal.record_intent

        def failing_on_exits(**kw: Any) -> Any:
            if kw["key"].endswith(".sl"):
                raise OSError("disk full")
            return record(**kw)

        r.journal.record_intent = failing_on_exits  # type: ignore[method-assign]
        with pytest.raises(api.OrderRefused, match="no leg of the bracket was sent"):
            await bracket(runner)
        assert r.ib.placed == []
        # The legs already written are journalled as never sent: none looks live afterwards.
        await r.host.settle()
        assert r.journal.intents_maybe_live("s1") == []


async def test_moving_the_stop_loss_modifies_it_in_place_under_its_entry(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        runner = await started(r)
        b = await bracket(runner)
        r.ib.fill(b.entry.key, price=100.0)
        await runner.ctx.modify(b.stop_loss.key, stop_price=100.0)
        [sl] = [t.order for t in r.ib.trades.values() if t.order.orderRef == b.stop_loss.key]
        [parent] = [t.order for t in r.ib.trades.values() if t.order.orderRef == b.entry.key]
        assert (sl.auxPrice, sl.transmit, sl.parentId) == (100.0, True, parent.orderId)
        assert r.ib.modifies == [b.stop_loss.key] and len(r.ib.placed) == 3


async def test_cancelling_the_entry_cancels_its_exits_at_ib(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        runner = await started(r)
        b = await bracket(runner)
        await runner.ctx.cancel(b.entry.key)
        assert statuses(r, b) == ["Cancelled"] * 3
        await until(lambda: runner.ctx.open_orders() == [], what="no working legs")


# -- safe state ------------------------------------------------------------------------------


async def test_kill_cancels_every_leg_of_a_bracket(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        runner = await started(r)
        b = await bracket(runner)
        [run] = await r.host.kill("s1")
        assert run.ok and set(run.cancelled) == {leg.key for leg in b.legs}
        assert statuses(r, b) == ["Cancelled"] * 3 and run.still_live == ()


async def test_kill_with_flatten_closes_a_brackets_position_once(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        runner = await started(r)
        b = await bracket(runner, quantity=4)
        r.ib.fill(b.entry.key, price=100.0)
        [run] = await r.host.kill("s1", flatten=True)
        assert run.ok and len(run.closing_orders) == 1
        closing = [t for t in r.ib.trades.values() if t.order.orderRef == run.closing_orders[0]]
        assert [(t.order.action, t.order.totalQuantity) for t in closing] == [("SELL", 4)]
        assert statuses(r, b) == ["Filled", "Cancelled", "Cancelled"]
        assert runner.position_of(AAPL) == 0


# -- group reconciliation --------------------------------------------------------------------


def forge(r: Rig, key: str, status: str) -> None:
    """IB's side changed while the host was away, without IB's own cascade."""
    for trade in r.ib.trades.values():
        if trade.order.orderRef == key:
            trade.orderStatus.status = status


@pytest.fixture
def drop_and_back() -> Iterator[Any]:
    async def run(r: Rig, runner: Any) -> None:
        old = runner.session
        r.ib.drop("gw-a")
        await until(lambda: runner.trading and runner.session is not old, what="reconnected")

    yield run


async def test_a_whole_bracket_survives_a_reconnect_with_no_leg_sent_again(
    tmp_path: Path, drop_and_back: Any
) -> None:
    async with rig(tmp_path, strategy(grace=60)) as r:
        runner = await started(r)
        b = await bracket(runner)
        await drop_and_back(r, runner)
        assert statuses(r, b) == ["Submitted", "PreSubmitted", "PreSubmitted"]
        assert r.ib.placed == [leg.key for leg in b.legs]
        assert {o.key for o in runner.ctx.open_orders()} == {leg.key for leg in b.legs}
        assert not [k for k in r.alerts.raised_keys() if ":bracket:" in k]


async def test_exits_left_working_after_their_entry_was_cancelled_are_cancelled_on_reconnect(
    tmp_path: Path, drop_and_back: Any
) -> None:
    async with rig(tmp_path, strategy(grace=60)) as r:
        runner = await started(r)
        b = await bracket(runner)
        forge(r, b.entry.key, "Cancelled")
        await drop_and_back(r, runner)
        await until(lambda: statuses(r, b) == ["Cancelled"] * 3, what="orphan exits cancelled")
        [(key, severity, _, body)] = [a for a in r.alerts.raised if ":bracket:" in a[0]]
        assert key == f"strategy:s1:bracket:{b.entry.key}" and severity == "critical"
        assert b.stop_loss.key in body
        assert len(r.ib.placed) == 3


async def test_an_entry_whose_stop_loss_is_missing_at_ib_is_cancelled_on_reconnect(
    tmp_path: Path, drop_and_back: Any
) -> None:
    async with rig(tmp_path, strategy(grace=60)) as r:
        runner = await started(r)
        b = await bracket(runner)
        [sl] = [p for p, t in r.ib.trades.items() if t.order.orderRef == b.stop_loss.key]
        del r.ib.trades[sl]  # the stop-loss never reached IB
        await drop_and_back(r, runner)
        assert [status_of(r, leg.key) for leg in b.legs[:2]] == ["Cancelled", "Cancelled"]
        # Only the stop-loss stays on the strategy's list, as UNKNOWN: it may be live somewhere.
        await until(
            lambda: (
                [(o.key, o.status) for o in runner.ctx.open_orders()]
                == [(b.stop_loss.key, IntentState.UNKNOWN)]
            ),
            what="entry and take-profit gone",
        )
        assert runner.book.unknown == {b.stop_loss.key} and len(r.ib.placed) == 3


async def test_a_filled_entry_keeps_its_one_exit_after_a_reconnect_and_pages(
    tmp_path: Path, drop_and_back: Any
) -> None:
    async with rig(tmp_path, strategy(grace=60)) as r:
        runner = await started(r)
        b = await bracket(runner)
        r.ib.fill(b.entry.key, price=100.0)
        [tp] = [p for p, t in r.ib.trades.items() if t.order.orderRef == b.take_profit.key]
        del r.ib.trades[tp]
        await drop_and_back(r, runner)
        assert status_of(r, b.stop_loss.key) == "Submitted"
        [(_, severity, _, body)] = [a for a in r.alerts.raised if ":bracket:" in a[0]]
        assert severity == "critical" and "protected by" in body


async def test_a_bracket_held_through_a_failover_is_reconciled_there_as_a_group(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, strategy(grace=0, action="hold")) as r:
        runner = await started(r)
        b = await bracket(runner)
        forge(r, b.entry.key, "Cancelled")  # gone while gw-a was dying; its exits linger
        r.ib.gateways["gw-a"].up = False
        r.ib.drop("gw-a")
        r.host.on_gate("gw-a", LOST)
        await until(lambda: runner.trading and runner.status().gateway == "gw-b", what="on gw-b")
        [run] = r.host.safe_state_runs("s1")
        assert run.path is SafeStatePath.NOTHING
        await until(lambda: statuses(r, b) == ["Cancelled"] * 3, what="exits cancelled from gw-b")
        assert len(r.ib.placed) == 3


# -- cancel by criteria ----------------------------------------------------------------------


async def test_cancel_all_cancels_the_strategys_orders_of_one_instrument_or_all(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        msft = r.ib.contracts[0].__class__(
            conId=272093, symbol="MSFT", secType="STK", exchange="SMART", currency="USD"
        )
        r.ib.contracts.append(msft)
        runner = await started(r)
        b = await bracket(runner)
        other = await runner.ctx.place(
            api.OrderSpec(api.Instrument("MSFT"), api.Side.BUY, 1, limit_price=300.0)
        )
        keys = await runner.ctx.cancel_all(AAPL)
        assert sorted(keys) == sorted(leg.key for leg in b.legs)
        assert keys[-1] == b.entry.key  # exits first
        assert statuses(r, b) == ["Cancelled"] * 3 and status_of(r, other.key) == "Submitted"
        assert await runner.ctx.cancel_all() == [other.key]
        assert status_of(r, other.key) == "Cancelled"
        assert runner.ctx.open_orders() == []


# -- the shipped example (the guide shows it word for word: tests/integration/plugins) --------


async def test_the_breakout_example_places_a_bracket_and_moves_its_stop_to_break_even(
    tmp_path: Path,
) -> None:
    cfg = strategy(plugin="plugins.examples.breakout:Breakout")
    params = {"symbol": "AAPL", "window": 2, "quantity": 10, "target": 0.01, "risk": 0.005}
    cfg = cfg.model_copy(update={"params": params})
    async with rig(tmp_path, cfg) as r:
        runner = await started(r)
        at = r.clock.now()
        for last in (100.0, 99.5, 101.0):  # 101.00 is a new high of the last two moves
            await runner.strategy.on_tick(api.Tick(AAPL, at, None, None, last))
        [parent] = [t.order for t in r.ib.trades.values() if not t.order.parentId]
        # The entry a limit 0.1 % over the breakout, the exits 1 % over and 0.5 % under it.
        assert (parent.lmtPrice, parent.tif, parent.totalQuantity) == (101.1, "DAY", 10)
        assert len(r.ib.placed) == 3
        orders = {t.order.orderRef: t.order for t in r.ib.trades.values()}
        assert orders[f"{parent.orderRef}.tp"].lmtPrice == 102.11
        assert orders[f"{parent.orderRef}.sl"].auxPrice == 100.59
        r.ib.fill(parent.orderRef, price=101.05)
        await until(lambda: runner.ctx.position(AAPL) == 10, what="the entry's fill booked")
        await runner.strategy.on_tick(api.Tick(AAPL, at, None, None, 101.5))  # not half way
        assert r.ib.modifies == []
        await runner.strategy.on_tick(api.Tick(AAPL, at, None, None, 101.7))
        await until(lambda: r.ib.modifies == [f"{parent.orderRef}.sl"], what="stop moved")
        assert orders[f"{parent.orderRef}.sl"].auxPrice == 101.1
        await runner.strategy.on_tick(api.Tick(AAPL, at, None, None, 101.9))
        assert r.ib.modifies == [f"{parent.orderRef}.sl"], "the stop moves once"
