"""Operators cancel by criteria: a strategy's or every strategy's orders (ibfleet's only), of one
symbol or all, and the account-wide variant that also cancels orders ibfleet did not place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ib_async import Contract, Order

from plugins import api
from plugins.host import StrategyState
from tests.unit.plugins.host_harness import MOD, Rig, rig, strategy
from tests.waiting import until

MSFT = Contract(conId=272093, symbol="MSFT", secType="STK", exchange="SMART", currency="USD")


async def started(r: Rig, *names: str) -> None:
    r.ib.contracts.append(MSFT)
    await r.host.start()
    for name in names or ("s1",):
        runner = r.runner(name)
        await until(lambda runner=runner: runner.state is StrategyState.RUNNING, what=name)


async def limit(r: Rig, name: str, symbol: str, price: float = 100.0) -> str:
    spec = api.OrderSpec(api.Instrument(symbol), api.Side.BUY, 1, limit_price=price)
    view: api.OrderView = await r.runner(name).ctx.place(spec)
    return view.key


async def manual_order(r: Rig, symbol: str = "AAPL") -> Order:
    """An order someone placed in TWS (client 0), not through ibfleet."""
    session = r.ib.broker()
    await session.connect(
        host="127.0.0.1", port=r.ib.port_of["gw-a"], client_id=0, timeout=1, account="DU1"
    )
    contract = r.ib.contracts[0] if symbol == "AAPL" else MSFT
    order = Order(action="SELL", totalQuantity=5, orderType="LMT", lmtPrice=500.0, orderRef="")
    order.orderId = session.next_order_id()
    session.place_order(contract, order)
    return order


def open_refs(r: Rig) -> set[str]:
    return set(r.ib.open_refs())


def two() -> tuple[Any, Any]:
    return strategy("s1"), strategy("s2", plugin=f"{MOD}:Quiet")


async def test_one_strategys_orders_of_one_symbol_are_cancelled_and_nothing_else(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, *two()) as r:
        await started(r, "s1", "s2")
        a1, m1 = await limit(r, "s1", "AAPL"), await limit(r, "s1", "MSFT")
        a2 = await limit(r, "s2", "AAPL")
        await manual_order(r)
        [run] = await r.host.cancel("s1", symbol="aapl")
        assert run.ok and [o.order_ref for o in run.orders] == [a1] and run.still_open == ()
        assert open_refs(r) == {m1, a2, ""}
        assert r.runner("s1").state is StrategyState.RUNNING  # cancel is not a kill


async def test_every_strategys_orders_are_cancelled_but_never_an_order_ibfleet_did_not_place(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, *two()) as r:
        await started(r, "s1", "s2")
        await limit(r, "s1", "AAPL")
        await limit(r, "s2", "MSFT")
        manual = await manual_order(r)
        runs = await r.host.cancel()
        assert [(run.strategy, len(run.orders), run.ok) for run in runs] == [
            ("s1", 1, True),
            ("s2", 1, True),
        ]
        assert open_refs(r) == {""} and r.ib.trades[manual.permId].orderStatus.status == "Submitted"


async def test_a_dry_run_names_the_orders_and_cancels_none(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await started(r)
        key = await limit(r, "s1", "AAPL")
        [run] = await r.host.cancel("s1", dry_run=True)
        assert run.dry_run and [o.order_ref for o in run.orders] == [key]
        assert open_refs(r) == {key}


async def test_a_strategy_without_a_session_reports_why_it_could_not_cancel(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, strategy(grace=60)) as r:
        await started(r)
        await limit(r, "s1", "AAPL")
        r.ib.gateways["gw-a"].up = False
        r.ib.drop("gw-a")
        [run] = await r.host.cancel("s1")
        assert not run.ok and "no open API session" in run.detail


async def test_the_account_wide_cancel_names_then_cancels_every_order_on_the_account(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await started(r)
        key = await limit(r, "s1", "AAPL")
        await manual_order(r)
        [preview] = await r.host.cancel_account(dry_run=True)
        assert sorted((o.order_ref, o.strategy) for o in preview.orders) == [
            ("", None),
            (key, "s1"),
        ]
        assert len(open_refs(r)) == 2 and r.ib.global_cancels == 0
        [run] = await r.host.cancel_account()
        assert run.ok and run.global_cancel and r.ib.global_cancels == 1
        assert open_refs(r) == set()


async def test_the_account_wide_cancel_of_one_symbol_cancels_order_by_order(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await started(r)
        keep = await limit(r, "s1", "MSFT")
        await manual_order(r, "AAPL")
        [run] = await r.host.cancel_account(symbol="AAPL")
        assert run.ok and not run.global_cancel and r.ib.global_cancels == 0
        assert [o.symbol for o in run.orders] == ["AAPL"] and open_refs(r) == {keep}


async def test_the_account_wide_cancel_with_no_session_open_is_a_connection_error(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        with pytest.raises(ConnectionError, match="no strategy has an open API session"):
            await r.host.cancel_account()
