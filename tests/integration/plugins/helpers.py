"""Shared pieces for the strategy host tests: a two-gateway simulator on one account, a real
journal, recording alert and metrics sinks, and waiting on conditions with a deadline."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.leases import ClientIdLeases
from ibsim import auth
from ibsim.broker import Broker
from ibsim.fleet import GatewaySpec, SimFleet
from plugins.config import StrategyConfig
from plugins.host import GatewayEndpoint, HostSettings, StrategyHost
from supervisor.journal import SqliteJournal

ACCOUNT = "DU1000001"


@dataclass
class RecordingAlerts:
    raised: list[tuple[str, str, str, str]] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)

    def raise_(self, key: str, severity: str, title: str, body: str) -> None:
        self.raised.append((key, severity, title, body))

    def resolve(self, key: str) -> None:
        self.resolved.append(key)


@dataclass
class RecordingMetrics:
    states: list[tuple[str, str]] = field(default_factory=list)
    orders: Counter[tuple[str, str]] = field(default_factory=Counter)
    safe_runs: list[tuple[str, str, float]] = field(default_factory=list)
    failovers: list[str] = field(default_factory=list)

    def set_strategy_state(self, strategy: str, state: Any) -> None:
        self.states.append((strategy, str(state)))

    def order_counted(self, strategy: str, outcome: str) -> None:
        self.orders[(strategy, outcome)] += 1

    def safe_state_ran(self, strategy: str, trigger: str, duration_seconds: float) -> None:
        self.safe_runs.append((strategy, trigger, duration_seconds))

    def failed_over(self, strategy: str) -> None:
        self.failovers.append(strategy)


def two_gateway_users() -> list[auth.User]:
    """Two usernames on one account: the primary and the failover gateway."""
    return [
        auth.User(username="alpha", password="sim-password", accounts=(ACCOUNT,)),
        auth.User(username="beta", password="sim-password", accounts=(ACCOUNT,)),
    ]


@contextlib.asynccontextmanager
async def two_gateways(**kw: Any) -> AsyncIterator[SimFleet]:
    specs = [GatewaySpec(name="gw-a", username="alpha"), GatewaySpec(name="gw-b", username="beta")]
    kw.setdefault("tick_rate", 20.0)
    kw.setdefault("control_port", None)
    async with SimFleet.start(gateways=specs, users=two_gateway_users(), **kw) as sim:
        yield sim


def endpoints(sim: SimFleet) -> dict[str, GatewayEndpoint]:
    return {
        "gw-a": GatewayEndpoint(
            name="gw-a",
            host="127.0.0.1",
            port=sim.ports[0],
            account=ACCOUNT,
            leases=ClientIdLeases(start=1, end=50, probe_id=1),
        ),
        "gw-b": GatewayEndpoint(
            name="gw-b",
            host="127.0.0.1",
            port=sim.ports[1],
            account=ACCOUNT,
            leases=ClientIdLeases(start=1, end=50, probe_id=1),
        ),
    }


def strategy(
    name: str,
    plugin: str,
    *,
    grace: float = 0.5,
    action: str = "cancel",
    on_shutdown: str = "cancel",
    client_id: int = 11,
    gateways: tuple[str, ...] = ("gw-a", "gw-b"),
    **params: Any,
) -> StrategyConfig:
    return StrategyConfig.model_validate(
        {
            "name": name,
            "plugin": plugin,
            "gateways": list(gateways),
            "client_id": client_id,
            "safe_state": {
                "on_disconnect": action,
                "on_shutdown": on_shutdown,
                "grace": dt.timedelta(seconds=grace),
            },
            # The test strategies rest far from the market on purpose: no price collar.
            "limits": {"max_orders_per_sec": 40, "max_open_orders": 50, "price_collar_pct": None},
            "params": params,
        }
    )


def make_host(
    sim: SimFleet,
    journal: SqliteJournal,
    strategies: list[StrategyConfig],
    *,
    alerts: RecordingAlerts | None = None,
    metrics: RecordingMetrics | None = None,
    settings: HostSettings | None = None,
) -> StrategyHost:
    return StrategyHost(
        strategies=strategies,
        endpoints=endpoints(sim),
        store=journal,
        alerts=alerts or RecordingAlerts(),
        metrics=metrics,
        settings=settings or HostSettings(connect_timeout=1.0, request_timeout=2.0),
    )


def open_journal(tmp_path: Path) -> SqliteJournal:
    return SqliteJournal(tmp_path / "journal.sqlite")


def order_refs(broker: Broker, prefix: str) -> Counter[str]:
    """How many orders the broker received per orderRef (the truth about duplicates)."""
    return Counter(o.order_ref for o in broker.orders.values() if o.order_ref.startswith(prefix))


def open_at_broker(broker: Broker, prefix: str) -> list[str]:
    return [
        o.order_ref
        for o in broker.orders.values()
        if o.order_ref.startswith(prefix) and not o.is_done
    ]
