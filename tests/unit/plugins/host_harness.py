"""A strategy host on the fake broker: a movable clock, a real journal, recording sinks."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.leases import ClientIdLeases
from gateway.outage import Gate
from plugins import api
from plugins.config import StrategyConfig
from plugins.host import GatewayEndpoint, HostSettings, StrategyHost
from supervisor.journal import SqliteJournal
from tests.unit.plugins.fake_broker import AAPL, ACCOUNT, FakeIb

OPEN = Gate(open=True)
T0 = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
MOD = __name__


class FakeClock:
    """The host's one clock, moved by the test."""

    def __init__(self) -> None:
        self.mono = 1000.0

    def now(self) -> dt.datetime:
        return T0 + dt.timedelta(seconds=self.mono - 1000.0)

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.mono += seconds


@dataclass
class Alerts:
    raised: list[tuple[str, str, str, str]] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)

    def raise_(self, key: str, severity: str, title: str, body: str) -> None:
        self.raised.append((key, severity, title, body))

    def resolve(self, key: str) -> None:
        self.resolved.append(key)

    def raised_keys(self) -> list[str]:
        return [k for k, *_ in self.raised]


class Quiet(api.Strategy):
    """Subscribes to AAPL and records every hook; trades only when the test says."""

    async def on_start(self) -> None:
        self.events: list[object] = ["start"]
        await self.ctx.subscribe(api.Instrument("AAPL"))

    async def on_gateway_state(self, change: api.GatewayChange) -> None:
        self.events.append(change)

    async def on_order_status(self, update: api.OrderUpdate) -> None:
        self.events.append(update)

    async def on_fill(self, fill: api.Fill) -> None:
        self.events.append(fill)

    async def on_tick(self, tick: api.Tick) -> None:
        self.events.append(tick)

    async def on_stop(self, reason: api.StopReason) -> None:
        self.events.append(reason)


class Crashy(Quiet):
    async def on_fill(self, fill: api.Fill) -> None:
        raise RuntimeError("strategy bug")


class Interruptible(Quiet):
    """Its first on_start waits for the test's ``go``, then subscribes (by when the test may
    have taken its gateway away); every on_start is counted."""

    go: asyncio.Event | None = None
    starts = 0

    async def on_start(self) -> None:
        type(self).starts += 1
        self.events = ["start"]
        if type(self).starts == 1 and type(self).go is not None:
            await type(self).go.wait()
        await self.ctx.subscribe(api.Instrument("AAPL"))


def strategy(
    name: str = "s1",
    plugin: str = f"{MOD}:Quiet",
    *,
    grace: float = 5.0,
    action: str = "cancel",
    gateways: tuple[str, ...] = ("gw-a", "gw-b"),
    **limits: Any,
) -> StrategyConfig:
    return StrategyConfig.model_validate(
        {
            "name": name,
            "plugin": plugin,
            "gateways": list(gateways),
            "client_id": 11,
            "safe_state": {
                "on_disconnect": action,
                "on_shutdown": "hold",
                "grace": dt.timedelta(seconds=grace),
            },
            "limits": {"max_orders_per_sec": 40, "max_open_orders": 50, **limits},
        }
    )


@dataclass
class Rig:
    host: StrategyHost
    ib: FakeIb
    clock: FakeClock
    alerts: Alerts
    journal: SqliteJournal

    def runner(self, name: str = "s1") -> Any:
        return self.host.runners[name]


@asynccontextmanager
async def rig(
    tmp_path: Path,
    *configs: StrategyConfig,
    accounts: tuple[str, str] = (ACCOUNT, ACCOUNT),
    leases: bool = True,
) -> AsyncIterator[Rig]:
    ib = FakeIb("gw-a", "gw-b")
    clock = FakeClock()
    alerts = Alerts()
    journal = SqliteJournal(tmp_path / "journal.sqlite")
    endpoints = {
        name: GatewayEndpoint(
            name=name,
            host="127.0.0.1",
            port=ib.port_of[name],
            account=account,
            leases=ClientIdLeases(start=1, end=50, probe_id=1) if leases else None,
        )
        for name, account in zip(("gw-a", "gw-b"), accounts, strict=True)
    }
    host = StrategyHost(
        strategies=list(configs) or [strategy()],
        endpoints=endpoints,
        store=journal,
        alerts=alerts,
        clock=clock,
        settings=HostSettings(
            connect_timeout=0.5, request_timeout=0.5, cancel_deadline=0.5, retry_interval=0.01
        ),
        broker=ib.broker,
    )
    host.on_gate("gw-a", OPEN)
    host.on_gate("gw-b", OPEN)
    try:
        yield Rig(host=host, ib=ib, clock=clock, alerts=alerts, journal=journal)
    finally:
        await host.stop()
        journal.close()


def buy(quantity: float = 1, price: float = 100.0) -> api.OrderSpec:
    return api.OrderSpec(api.Instrument("AAPL"), api.Side.BUY, quantity, limit_price=price)


__all__ = ["AAPL", "OPEN", "Alerts", "FakeClock", "Rig", "buy", "rig", "strategy"]
