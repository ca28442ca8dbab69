"""The host never waits for the journal on the event loop: a locked journal delays (and then
refuses) only the orders waiting on it, while the loop, the other hooks and IB keep going."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from plugins import api
from plugins.host import StrategyState
from tests.unit.plugins.host_harness import Rig, buy, rig
from tests.waiting import until


async def started(r: Rig) -> Any:
    await r.host.start()
    runner = r.runner()
    await until(lambda: runner.state is StrategyState.RUNNING, what="running")
    return runner


def lock_intents(r: Rig) -> threading.Event:
    """The journal's intent writes hang (as behind another process's lock) until released."""
    release = threading.Event()
    record = r.journal.record_intent

    def locked(**kw: Any) -> Any:
        release.wait(10)
        return record(**kw)

    r.journal.record_intent = locked  # type: ignore[method-assign]
    return release


async def count_turns(stop: asyncio.Event, turns: list[int]) -> None:
    while not stop.is_set():
        turns[0] += 1
        await asyncio.sleep(0.005)


async def test_a_locked_journal_refuses_the_order_unsent_and_the_loop_keeps_turning(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        runner = await started(r)
        release = lock_intents(r)
        stop, turns = asyncio.Event(), [0]
        ticker = asyncio.create_task(count_turns(stop, turns))
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(api.OrderRefused, match="did not answer within") as refused:
            await runner.ctx.place(buy())
        waited = loop.time() - began
        stop.set()
        await ticker
        assert refused.value.reason is api.RefusalReason.NOT_TRADING
        assert r.ib.placed == [], "an order whose intent was not written must never reach IB"
        # The loop turned all along (a blocked loop would have counted about once).
        assert turns[0] >= 20, f"the loop turned {turns[0]} times in {waited:.2f}s"
        release.set()
        await r.host.settle()
        # The late write landed, then its never-sent mark: nothing looks live afterwards.
        assert r.journal.intents_maybe_live("s1") == []


async def test_a_failover_during_the_intent_write_sends_nothing_on_either_session(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        runner = await started(r)
        release = lock_intents(r)
        placing = asyncio.create_task(runner.ctx.place(buy()))
        await until(lambda: runner.orders.sent == 0 and not placing.done(), what="placing")
        runner.sessions.close(runner.sessions.current)  # the session the intent was for goes
        release.set()
        with pytest.raises(api.OrderRefused):
            await placing
        assert r.ib.placed == []
        await r.host.settle()
        assert r.journal.intents_maybe_live("s1") == []


async def test_the_strategys_store_reads_come_from_memory_and_writes_queue_behind(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        r.journal.kv_set("s1", "seen", 3, now=r.clock.now())
        runner = await started(r)
        store = runner.ctx.store

        def no_reads(*_: Any, **__: Any) -> Any:
            raise AssertionError("a strategy's read went to the journal")

        r.journal.kv_get = no_reads  # type: ignore[method-assign]
        assert store.get("seen") == 3
        store.set("seen", {"n": 4})
        assert store.get("seen") == {"n": 4}
        with pytest.raises(ValueError, match="not JSON"):
            store.set("bad", object())
        assert store.delete("seen") and store.get("seen", "gone") == "gone"
        await r.host.settle()
        assert r.journal.kv_items("s1") == {}
