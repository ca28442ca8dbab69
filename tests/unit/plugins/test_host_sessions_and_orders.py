"""Sessions, market data, the order path and reconciliation, through the fake broker."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gateway.outage import Gate, OutageKind
from plugins import api
from plugins.host import StrategyState
from plugins.intents import IntentState
from supervisor.journal import IntentStatus
from tests.unit.plugins.fake_broker import AAPL
from tests.unit.plugins.host_harness import buy, rig, strategy
from tests.waiting import until


async def running(r: object, name: str = "s1") -> None:
    runner = r.host.runners[name]  # type: ignore[attr-defined]
    await until(lambda: runner.state is StrategyState.RUNNING, what=f"{name} running")


# -- sessions ------------------------------------------------------------------------------


async def test_a_strategy_starts_on_its_primary_with_its_configured_client_id(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await r.host.start()
        await running(r)
        assert r.ib.connects == [("gw-a", 11)]
        assert r.runner().status().client_id == 11
        await until(lambda: r.runner().strategy.events == ["start"], what="on_start")


async def test_a_refused_client_id_on_a_leased_gateway_is_rotated_once(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.host.start()
        await running(r)
        runner = r.runner()
        r.ib.gateways["gw-b"].ids_in_use.add(2)  # the first id the leases give
        session = await runner.sessions.open("gw-b")
        assert [c for c in r.ib.connects if c[0] == "gw-b"] == [("gw-b", 2), ("gw-b", 3)]
        assert session.client_id == 3
        runner.sessions.close(session)


async def test_a_refused_configured_id_is_a_connection_error_naming_strategy_and_address(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, leases=False) as r:
        r.ib.gateways["gw-a"].ids_in_use.add(11)
        with pytest.raises(ConnectionError, match=r"strategy s1: .*gw-a \(127.0.0.1:4000, client"):
            await r.runner().sessions.open("gw-a")
        assert r.ib.connects == [("gw-a", 11)]  # a configured id is never guessed around


async def test_a_dropped_session_stops_trading_and_refuses_orders_with_the_outage(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await r.host.start()
        await running(r)
        runner = r.runner()
        r.ib.gateways["gw-a"].up = False
        r.ib.drop("gw-a")
        assert not runner.trading
        r.host.on_gate("gw-a", Gate(open=False, kind=OutageKind.LOST, reason="x"))
        with pytest.raises(api.OrderRefused, match="gateway lost") as refused:
            await runner.place(buy())
        assert refused.value.reason is api.RefusalReason.NOT_TRADING


# -- market data -----------------------------------------------------------------------------


async def test_ticks_give_the_last_price_and_reach_the_strategy(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.host.start()
        await running(r)
        runner = r.runner()
        await until(lambda: AAPL.conId in r.ib.live("gw-a")[0].subscribed, what="subscribed")
        r.ib.tick(185.5)
        assert runner.ctx.last_price(api.Instrument("AAPL")) == 185.5
        await until(
            lambda: any(isinstance(e, api.Tick) for e in runner.strategy.events), what="a tick"
        )


async def test_an_instrument_that_matches_no_one_contract_is_refused(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.host.start()
        await running(r)
        with pytest.raises(api.OrderRefused, match="matches 0 contracts"):
            await r.runner().place(
                api.OrderSpec(api.Instrument("NOPE"), api.Side.BUY, 1, limit_price=1.0)
            )
        assert r.ib.refs_sent() == []


# -- the order path --------------------------------------------------------------------------


async def test_an_order_is_journalled_before_it_is_sent_with_its_key_as_order_ref(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await r.host.start()
        await running(r)
        seen_in_journal: list[object] = []
        place = r.ib.place

        def spy(session: object, contract: object, order: object) -> object:
            seen_in_journal.append(r.journal.intent(order.orderRef))  # type: ignore[attr-defined]
            return place(session, contract, order)  # type: ignore[arg-type]

        r.ib.place = spy  # type: ignore[method-assign]
        placed = await r.runner().place(buy())
        assert r.ib.refs_sent() == [placed.key]
        assert seen_in_journal and seen_in_journal[0] is not None
        assert placed.status in (IntentState.SENT, IntentState.ACKED)
        await r.host.settle()
        record = r.journal.intent(placed.key)
        assert record is not None and record.status is IntentStatus.ACKED


async def test_a_risk_refusal_journals_nothing_and_sends_nothing(tmp_path: Path) -> None:
    async with rig(tmp_path, strategy(max_order_qty=5)) as r:
        await r.host.start()
        await running(r)
        with pytest.raises(api.OrderRefused, match="max_order_qty") as refused:
            await r.runner().place(buy(quantity=10))
        assert refused.value.reason is api.RefusalReason.RISK
        assert r.ib.refs_sent() == [] and r.journal.intents_maybe_live("s1") == []
        assert r.runner().status().orders_refused == 1


async def test_an_order_the_journal_cannot_record_is_never_sent(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.host.start()
        await running(r)

        def broken(**_: object) -> object:
            raise OSError("disk full")

        r.journal.record_intent = broken  # type: ignore[method-assign]
        with pytest.raises(api.OrderRefused, match="journal cannot be written"):
            await r.runner().place(buy())
        assert r.ib.refs_sent() == []


async def test_a_reset_window_refuses_new_orders_on_an_open_session(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.host.start()
        await running(r)
        window = Gate(
            open=False, kind=OutageKind.RESET_WINDOW, bound=dt.timedelta(minutes=5), reason="w"
        )
        r.host.on_gate("gw-a", window)
        with pytest.raises(api.OrderRefused, match="reset window"):
            await r.runner().place(buy())
        assert r.ib.refs_sent() == []


async def test_modify_changes_the_order_in_place_and_cancel_cancels_it(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.host.start()
        await running(r)
        runner = r.runner()
        placed = await runner.place(buy(quantity=2, price=100.0))
        changed = await runner.ctx.modify(placed.key, limit_price=101.0)
        assert changed.limit_price == 101.0
        assert len(r.ib.trades) == 1
        assert next(iter(r.ib.trades.values())).order.lmtPrice == 101.0
        await runner.cancel(placed.key)
        assert r.ib.open_refs() == []
        assert runner.ctx.open_orders() == []


async def test_a_fill_moves_the_position_once_and_reaches_the_strategy(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.host.start()
        await running(r)
        runner = r.runner()
        placed = await runner.place(buy(quantity=3))
        r.ib.fill(placed.key, price=99.0)
        assert runner.position_of(api.Instrument("AAPL")) == 3
        await until(
            lambda: any(isinstance(e, api.Fill) for e in runner.strategy.events), what="on_fill"
        )
        assert runner.status().fills == 1


# -- reconciliation --------------------------------------------------------------------------


async def test_a_restart_finds_its_order_at_ib_and_an_intent_ib_never_saw_is_unknown(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await r.host.start()
        await running(r)
        placed = await r.runner().place(buy())
        await r.host.settle()
        # An intent written before a crash whose order never left the process.
        r.journal.record_intent(
            key="s1-0000000000000001",
            strategy="s1",
            gateway="gw-a",
            account="DU1",
            client_id=11,
            contract={"conId": AAPL.conId, "symbol": "AAPL"},
            order={"action": "BUY", "totalQuantity": 1, "orderType": "LMT", "lmtPrice": 1.0},
            now=r.clock.now(),
        )
        runner = r.runner()
        result = await runner.reconciler.reconcile(runner.session)
        assert result.unknown == ("s1-0000000000000001",) or list(result.unknown) == [
            "s1-0000000000000001"
        ]
        assert placed.key in {o.key for o in runner.ctx.open_orders()}
        assert runner.status().unknown_intents == 1
        assert "strategy:s1:unknown-intents" in r.alerts.raised_keys()
        assert r.ib.refs_sent() == [placed.key]  # nothing re-sent
