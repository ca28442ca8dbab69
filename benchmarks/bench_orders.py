"""Strategy host timings against the in-process simulator (real ib_async over TCP).

    .venv/bin/python benchmarks/bench_orders.py [--trials 20] [--grace 0.5] [--orders 200]

1. Safe state: primary gateway crashes -> every order the strategy had there is cancelled at
   the broker (through the failover gateway on the same account). Target p99 <= grace + 1 s.
2. Failover: crash -> first new order from the secondary gateway at the broker.
3. Order path: ``ctx.place`` (risk checks + durable journal write + placeOrder) against a bare
   ``IB.placeOrder`` on the same simulator. Target: <= 2 ms median per order.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ib_async import IB, Contract, Order

from gateway.leases import ClientIdLeases
from gateway.outage import Gate, OutageKind
from ibsim import auth
from ibsim.broker import Broker
from ibsim.fleet import GatewaySpec, SimFleet
from ibsim.port import Fault
from plugins import api
from plugins.config import StrategyConfig
from plugins.host import GatewayEndpoint, HostSettings, StrategyHost, StrategyState
from supervisor.journal import SqliteJournal

ACCOUNT = "DU1000001"
AAPL = api.Instrument("AAPL")


class Quoter(api.Strategy):
    """Keeps ``count`` resting buys far under the market."""

    async def on_start(self) -> None:
        await self.ctx.subscribe(AAPL)
        self.ctx.call_every(dt.timedelta(seconds=0.02), "top-up")

    async def on_timer(self, timer: str) -> None:
        price = self.ctx.last_price(AAPL)
        if price is None:
            return
        for _ in range(int(self.ctx.params.get("count", 5)) - len(self.ctx.open_orders())):
            await self.ctx.place(api.OrderSpec(AAPL, api.Side.BUY, 1, round(price * 0.8, 2)))


class Idle(api.Strategy):
    """Does nothing: the benchmark drives the order path itself."""


class _Alerts:
    def raise_(self, key: str, severity: str, title: str, body: str) -> None:
        pass

    def resolve(self, key: str) -> None:
        pass


def _users() -> list[auth.User]:
    return [
        auth.User(username=u, password="sim-password", accounts=(ACCOUNT,))
        for u in ("alpha", "beta")
    ]


def _specs() -> list[GatewaySpec]:
    return [GatewaySpec(name="gw-a", username="alpha"), GatewaySpec(name="gw-b", username="beta")]


def _host(
    sim: SimFleet, journal: SqliteJournal, plugin: str, grace: float, **params: object
) -> StrategyHost:
    cfg = StrategyConfig.model_validate(
        {
            "name": "bench",
            "plugin": plugin,
            "gateways": ["gw-a", "gw-b"],
            "client_id": 11,
            "safe_state": {"on_disconnect": "cancel", "grace": dt.timedelta(seconds=grace)},
            "limits": {
                "max_orders_per_sec": 45,
                "max_open_orders": 1000,
                "max_position": 1e6,
                "max_notional": 1e9,
                "max_order_qty": 1e6,
                "price_collar_pct": None,  # resting 20 % under the market on purpose
            },
            "params": params,
        }
    )
    endpoints = {
        name: GatewayEndpoint(
            name,
            "127.0.0.1",
            port,
            account=ACCOUNT,
            leases=ClientIdLeases(start=1, end=50, probe_id=1),
        )
        for name, port in zip(("gw-a", "gw-b"), sim.ports, strict=True)
    }
    return StrategyHost(
        strategies=[cfg],
        endpoints=endpoints,
        store=journal,
        alerts=_Alerts(),
        settings=HostSettings(connect_timeout=1.0, request_timeout=2.0),
    )


async def _until(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds (perf_counter) at which ``condition`` first held; polls every 1 ms."""
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.001)
    return time.perf_counter()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench_safe_state(trials: int, grace: float, tmp: Path) -> tuple[list[float], list[float]]:
    safe, failover = [], []
    for trial in range(trials):
        journal = SqliteJournal(tmp / f"safe-{trial}.sqlite")
        async with SimFleet.start(
            gateways=_specs(), users=_users(), control_port=None, tick_rate=50.0
        ) as sim:
            host = _host(sim, journal, f"{__name__}:Quoter", grace, count=5)
            await host.start()

            def on_a(broker: Broker = sim.broker) -> set[int]:
                return {
                    o.perm_id
                    for o in broker.orders.values()
                    if o.gateway == "gw-a" and not o.is_done
                }

            await _until(lambda: len(on_a()) == 5, 10)
            t0 = time.perf_counter()
            sim.fault(0, Fault.CRASH, active=True)
            host.on_gate("gw-a", Gate(open=False, kind=OutageKind.LOST, reason="crashed"))
            t_safe = await _until(lambda: not on_a(), grace + 10)
            t_first = await _until(
                lambda b=sim.broker: any(o.gateway == "gw-b" for o in b.orders.values()), 10
            )
            safe.append(t_safe - t0)
            failover.append(t_first - t0)
            await host.stop()
        journal.close()
    return safe, failover


async def bench_order_path(orders: int, tmp: Path) -> tuple[list[float], list[float]]:
    journal = SqliteJournal(tmp / "path.sqlite")
    async with SimFleet.start(
        gateways=_specs(), users=_users(), control_port=None, tick_rate=5.0
    ) as sim:
        host = _host(sim, journal, f"{__name__}:Idle", 5.0)
        await host.start()
        runner = host.runners["bench"]
        await _until(lambda: runner.state is StrategyState.RUNNING, 10)
        hosted = []
        for i in range(orders):
            spec = api.OrderSpec(AAPL, api.Side.BUY, 1, limit_price=round(100.0 - i * 0.001, 3))
            await asyncio.sleep(1 / 45)  # stay under the bucket: measure the path, not pacing
            t = time.perf_counter()
            await runner.place(spec)
            hosted.append(time.perf_counter() - t)
        await host.kill("bench")
        await host.stop()
        ib = IB()
        await ib.connectAsync("127.0.0.1", sim.ports[1], clientId=30, timeout=5)
        contract = Contract(conId=265598, exchange="SMART")
        bare = []
        for i in range(orders):
            order = Order(
                action="BUY",
                totalQuantity=1,
                orderType="LMT",
                lmtPrice=round(100.0 - i * 0.001, 3),
                orderRef=f"bare-{i}",
            )
            await asyncio.sleep(1 / 45)
            t = time.perf_counter()
            ib.placeOrder(contract, order)
            bare.append(time.perf_counter() - t)
        ib.reqGlobalCancel()
        ib.disconnect()
    journal.close()
    return hosted, bare


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--grace", type=float, default=0.5)
    parser.add_argument("--orders", type=int, default=200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="ibfleet-bench-orders-") as name:
        tmp = Path(name)
        safe, failover = await bench_safe_state(args.trials, args.grace, tmp)
        print(
            f"safe state (crash -> all orders cancelled at broker), grace={args.grace}s, "
            f"n={len(safe)}: median={statistics.median(safe) * 1000:.0f} ms "
            f"p99={_pct(safe, 0.99) * 1000:.0f} ms target p99<={(args.grace + 1) * 1000:.0f} ms "
            f"{'OK' if _pct(safe, 0.99) <= args.grace + 1 else 'MISSED'}"
        )
        print(
            f"failover (crash -> first order from secondary at broker), n={len(failover)}: "
            f"median={statistics.median(failover) * 1000:.0f} ms "
            f"p99={_pct(failover, 0.99) * 1000:.0f} ms"
        )
        hosted, bare = await bench_order_path(args.orders, tmp)
        med_h, med_b = statistics.median(hosted), statistics.median(bare)
        print(
            f"order path per order, n={args.orders}: host place median={med_h * 1000:.3f} ms "
            f"p99={_pct(hosted, 0.99) * 1000:.3f} ms; "
            f"bare placeOrder median={med_b * 1000:.3f} ms; "
            f"overhead median={(med_h - med_b) * 1000:.3f} ms target<=2 ms "
            f"{'OK' if med_h <= 0.002 else 'MISSED'}"
        )


if __name__ == "__main__":
    asyncio.run(main())
