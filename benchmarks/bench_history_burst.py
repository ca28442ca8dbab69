"""A burst of historical data requests through the host, paced for IB, against the in-process
simulator (real ib_async over TCP).

    .venv/bin/python benchmarks/bench_history_burst.py [--requests 100] [--strategies 2]
        [--scale 0.01] [--trials 3]

Every strategy asks at once; the host queues the requests under IB's pacing rules (60 in ten
minutes, no identical one within 15 s, fewer than six per contract and tick type in 2 s),
shared by every strategy on the gateway. ``--scale`` shrinks IB's windows (0.01: the ten
minutes take six seconds; 1: IB's own, a 100-request burst then takes over ten minutes); the
simulator's pacing, where it enforces it, is shrunk the same. Printed: the burst's duration,
the least the rules allow, and how many 162 pacing errors IB sent anyway (each retried).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ibsim import auth
from ibsim.fleet import GatewaySpec, SimFleet
from plugins import api
from plugins.config import StrategyConfig
from plugins.host import GatewayEndpoint, HostSettings, StrategyHost, StrategyState
from plugins.pacing import PacingRules
from supervisor.journal import SqliteJournal

ACCOUNT = "DU1000001"
SYMBOLS = (api.Instrument("AAPL"), api.Instrument("MSFT"))


class Idle(api.Strategy):
    """The benchmark makes the calls through its context."""


class _Alerts:
    def raise_(self, key: str, severity: str, title: str, body: str) -> None:
        pass

    def resolve(self, key: str) -> None:
        pass


def _sim_pacing(scale: float) -> dict[str, Any]:
    try:
        from ibsim.pacing import PacingConfig  # type: ignore[import-not-found, unused-ignore]
    except ImportError:  # a simulator that does not enforce IB's pacing
        return {}
    return {
        "pacing": PacingConfig(
            hist_window=600.0 * scale,
            identical_window=15.0 * scale,
            same_contract_window=2.0 * scale,
        )
    }


def _host(sim: SimFleet, journal: SqliteJournal, strategies: int, scale: float) -> StrategyHost:
    configs = [
        StrategyConfig.model_validate(
            {
                "name": f"hist-{n}",
                "plugin": f"{__name__}:Idle",
                "gateways": ["gw-a"],
                "client_id": 11 + n,
                "safe_state": {"on_disconnect": "hold", "grace": dt.timedelta(seconds=1)},
            }
        )
        for n in range(strategies)
    ]
    rules = dataclasses.replace(PacingRules(), slack=5.0).scaled(scale)
    return StrategyHost(
        strategies=configs,
        endpoints={"gw-a": GatewayEndpoint("gw-a", "127.0.0.1", sim.ports[0], account=ACCOUNT)},
        store=journal,
        alerts=_Alerts(),
        settings=HostSettings(
            connect_timeout=1.0, request_timeout=2.0, pacing=rules, pacing_recheck=0.01
        ),
    )


async def burst(requests: int, strategies: int, scale: float, tmp: Path) -> tuple[float, int]:
    """Seconds the burst took, and the pacing violations IB sent during it."""
    journal = SqliteJournal(tmp / f"burst-{time.monotonic_ns()}.sqlite")
    users = [auth.User(username="alpha", password="sim-password", accounts=(ACCOUNT,))]
    async with SimFleet.start(
        gateways=[GatewaySpec(name="gw-a", username="alpha")],
        users=users,
        control_port=None,
        **_sim_pacing(scale),
    ) as sim:
        host = _host(sim, journal, strategies, scale)
        await host.start()
        try:
            deadline = time.monotonic() + 10
            while not all(r.state is StrategyState.RUNNING for r in host.runners.values()):
                if time.monotonic() > deadline:
                    raise TimeoutError("the strategies did not start")
                await asyncio.sleep(0.01)
            ctxs = [r.ctx for r in host.runners.values()]
            calls = [
                ctxs[n % len(ctxs)].history(
                    SYMBOLS[n % 2], f"{1 + n % 5} D", "5 mins", ("TRADES", "MIDPOINT")[n // 2 % 2]
                )
                for n in range(requests)
            ]
            started = time.monotonic()
            await asyncio.gather(*calls)
            seconds = time.monotonic() - started
            retries = sum(r.requests.history_retries for r in host.runners.values())
        finally:
            await host.stop()
    journal.close()
    return seconds, retries


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--strategies", type=int, default=2)
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    rules = PacingRules().scaled(args.scale)
    # The least the ten-minute rule allows: one full window per 60 requests after the first 60.
    least = (args.requests - 1) // rules.history_requests * rules.history_window
    with tempfile.TemporaryDirectory(prefix="ibfleet-bench-history-") as name:
        runs = [
            await burst(args.requests, args.strategies, args.scale, Path(name))
            for _ in range(args.trials)
        ]
    durations = [s for s, _ in runs]
    print(
        f"history burst: {args.requests} requests from {args.strategies} strategies on one "
        f"gateway, IB's windows x{args.scale:g}, n={args.trials}: "
        f"median={statistics.median(durations):.2f} s max={max(durations):.2f} s "
        f"(the rules allow {least:.2f} s at the least); "
        f"162 pacing errors from IB: {sum(r for _, r in runs)} (each retried, none reached a "
        "strategy)"
    )


if __name__ == "__main__":
    asyncio.run(main())
