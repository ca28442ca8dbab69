"""Bracket placement cost against a single order, through the strategy host on the in-process
simulator (real ib_async over TCP, durable journal on local disk).

    .venv/bin/python benchmarks/bench_brackets.py [--orders 100]

For each of ``--orders`` rounds: ``ctx.place`` of one limit order, and ``ctx.place_bracket``
(three intents journalled, then three placeOrder calls). Reported: the call's own time (risk,
journal writes, sends: what the strategy waits for) and the time until the broker shows every
leg working (the call plus IB's answer). Pacing is kept out: each round sleeps for its tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path

from bench_orders import _host, _pct, _specs, _until, _users

from ibsim.fleet import SimFleet
from plugins import api
from plugins.host import StrategyState
from supervisor.journal import SqliteJournal

AAPL = api.Instrument("AAPL")


def _ms(values: list[float]) -> str:
    return (
        f"median={statistics.median(values) * 1000:.3f} ms p99={_pct(values, 0.99) * 1000:.3f} ms"
    )


async def bench(orders: int, tmp: Path) -> dict[str, list[float]]:
    journal = SqliteJournal(tmp / "brackets.sqlite")
    out: dict[str, list[float]] = {"single": [], "bracket": [], "single_ack": [], "bracket_ack": []}
    async with SimFleet.start(
        gateways=_specs(), users=_users(), control_port=None, tick_rate=5.0
    ) as sim:
        host = _host(sim, journal, "bench_orders:Idle", 5.0)
        await host.start()
        runner = host.runners["bench"]
        await _until(lambda: runner.state is StrategyState.RUNNING, 10)
        broker = sim.broker

        def working(keys: list[str]) -> bool:
            found = {o.order_ref: o for o in broker.orders.values() if o.order_ref in keys}
            return len(found) == len(keys) and all(
                o.status.value in ("Submitted", "PreSubmitted") for o in found.values()
            )

        for i in range(orders):
            # Whole cents: the simulator refuses a price off the tick, as IB does (error 110).
            price = round(50.0 - (i % 1000) * 0.01, 2)
            await asyncio.sleep(1 / 45)  # one token back
            t = time.perf_counter()
            view = await runner.ctx.place(api.OrderSpec(AAPL, api.Side.BUY, 1, limit_price=price))
            out["single"].append(time.perf_counter() - t)
            out["single_ack"].append(await _until(lambda v=view: working([v.key]), 5) - t)
            await asyncio.sleep(3 / 45)  # three tokens back
            t = time.perf_counter()
            b = await runner.ctx.place_bracket(
                api.OrderSpec(AAPL, api.Side.BUY, 1, limit_price=price),
                take_profit=round(price * 2, 2),
                stop_loss=round(price / 2, 2),
            )
            out["bracket"].append(time.perf_counter() - t)
            keys = [leg.key for leg in b.legs]
            out["bracket_ack"].append(await _until(lambda k=keys: working(k), 5) - t)
            if len(runner.ctx.open_orders()) > 600:
                await runner.ctx.cancel_all()
        await host.kill("bench")
        await host.stop()
    journal.close()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="ibfleet-bench-brackets-") as name:
        out = await bench(args.orders, Path(name))
    single, bracket = statistics.median(out["single"]), statistics.median(out["bracket"])
    print(f"n={args.orders} rounds")
    print(f"single order: place {_ms(out['single'])}; working at broker {_ms(out['single_ack'])}")
    print(
        f"bracket:      place {_ms(out['bracket'])}; all 3 legs working {_ms(out['bracket_ack'])}"
    )
    print(f"bracket / single (place, median): {bracket / single:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
