"""Simulator benchmark: connect time, order round trip, tick throughput, fleet capacity.

Run:  .venv/bin/python benchmarks/bench_sim.py [--quick]

Client and simulator share one process and one event loop here, so the figures are a lower
bound for the simulator alone (the ib_async client's own decoding costs the same CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import statistics
import time

import ib_async

from ibsim.broker import BrokerConfig
from ibsim.fleet import SimFleet


def rss_mib() -> float:
    """Current resident set size (Linux /proc), falling back to the peak."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def bench_connect(rounds: int) -> list[float]:
    async with SimFleet.start(gateways=1, control_port=None) as sim:
        times = []
        for i in range(rounds):
            ib = ib_async.IB()
            started = time.perf_counter()
            await ib.connectAsync("127.0.0.1", sim.ports[0], clientId=100 + i, timeout=5)
            times.append(time.perf_counter() - started)
            ib.disconnect()
        return times


async def bench_orders(rounds: int) -> list[float]:
    # IB's 50 msg/s pacing would drop orders sent back to back: lift it to time the path.
    async with SimFleet.start(
        gateways=1,
        control_port=None,
        broker_config=BrokerConfig(lot_size=1e9),
        max_msg_rate=1_000_000,
    ) as sim:
        ib = ib_async.IB()
        await ib.connectAsync("127.0.0.1", sim.ports[0], clientId=1, timeout=5)
        ib.client.MaxRequests = 0
        contract = ib_async.Stock("AAPL", "SMART", "USD")
        await ib.qualifyContractsAsync(contract)
        times = []
        for _ in range(rounds):
            done = asyncio.Event()

            def on_status(trade: ib_async.Trade, done: asyncio.Event = done) -> None:
                if trade.orderStatus.status == "Filled":
                    done.set()

            ib.orderStatusEvent += on_status
            started = time.perf_counter()
            ib.placeOrder(contract, ib_async.MarketOrder("BUY", 1))
            await asyncio.wait_for(done.wait(), 5)
            ib.orderStatusEvent -= on_status
            times.append(time.perf_counter() - started)
        ib.disconnect()
        return times


async def bench_ticks(seconds: float, rate: float, lines: int) -> float:
    async with SimFleet.start(gateways=1, control_port=None, tick_rate=rate) as sim:
        ib = ib_async.IB()
        await ib.connectAsync("127.0.0.1", sim.ports[0], clientId=1, timeout=5)
        counted = 0

        def count(tickers: set[ib_async.Ticker]) -> None:
            nonlocal counted
            counted += sum(len(t.ticks) for t in tickers)

        ib.pendingTickersEvent += count
        symbols = ["AAPL", "MSFT", "SPY", "IBM", "TSLA"][:lines]
        for symbol in symbols:
            contract = ib_async.Stock(symbol, "SMART", "USD")
            await ib.qualifyContractsAsync(contract)
            ib.reqMktData(contract)
        await asyncio.sleep(0.5)  # warm-up: measured window starts after the first batches
        counted = 0
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - started
        ib.disconnect()
        return counted / elapsed


async def bench_capacity(gateways: int, clients_per: int) -> tuple[float, float, float]:
    before = rss_mib()
    started = time.perf_counter()
    async with SimFleet.start(gateways=gateways, control_port=None, tick_rate=1.0) as sim:
        up = time.perf_counter() - started
        mid = rss_mib()
        ibs = []
        for port in sim.ports:
            for c in range(clients_per):
                ib = ib_async.IB()
                await ib.connectAsync("127.0.0.1", port, clientId=c + 1, timeout=10)
                ibs.append(ib)
        answers = await asyncio.gather(*(ib.reqCurrentTimeAsync() for ib in ibs))
        assert len(answers) == gateways * clients_per
        after = rss_mib()
        for ib in ibs:
            ib.disconnect()
    return up, mid - before, after - before


async def main(quick: bool) -> None:
    logging.basicConfig(level=logging.ERROR)
    rows: list[tuple[str, str]] = []
    count = 20 if quick else 100
    up, idle_mib, loaded_mib = await bench_capacity(count, 2)
    rows.append((f"{count} gateways start + login", f"{up * 1000:.0f} ms"))
    rows.append((f"{count} gateways RSS growth", f"{idle_mib:.1f} MiB"))
    rows.append(
        (f"{count} gateways x 2 clients RSS growth", f"{loaded_mib:.1f} MiB (incl. clients)")
    )
    connects = await bench_connect(10 if quick else 40)
    rows.append(("ib_async connect (median)", f"{statistics.median(connects) * 1000:.1f} ms"))
    orders = await bench_orders(50 if quick else 300)
    rows.append(("order place -> Filled (median)", f"{statistics.median(orders) * 1000:.2f} ms"))
    rows.append(("order place -> Filled (p99)", f"{pct(orders, 0.99) * 1000:.2f} ms"))
    for lines, rate in ((1, 100_000.0), (1, 200_000.0), (5, 40_000.0)):
        throughput = await bench_ticks(1.0 if quick else 3.0, rate, lines)
        rows.append(
            (
                f"ticks/s to one ib_async client ({lines} line(s), offered {rate * lines:,.0f})",
                f"{throughput:,.0f}",
            )
        )
    width = max(len(name) for name, _ in rows)
    print(f"{'measure'.ljust(width)}  value")
    print(f"{'-' * width}  -----")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, 20 gateways")
    asyncio.run(main(parser.parse_args().quick))
