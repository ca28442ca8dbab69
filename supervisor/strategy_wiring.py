"""Wiring the strategy host into the supervisor: its endpoints, alerts, order-gate hook and
the HTTP API's control surface."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from gateway.outage import Gate
from plugins.host import (
    GatewayEndpoint,
    HostSettings,
    SafeStateRun,
    StrategyHost,
    StrategyStatus,
    SystemClock,
)
from plugins.outage import gate_of_ready
from plugins.ports import IntentStore
from supervisor.alertpolicy import Alert, Severity
from supervisor.api_views import StrategyView
from supervisor.fleet_loop import Supervisor
from supervisor.metrics import FleetMetrics
from supervisor.notify import AlertDispatcher

log = logging.getLogger("ibfleet.strategies")


class HostAlerts:
    """The host's AlertSink: strategy alerts go through the fleet's alert dispatcher."""

    def __init__(self, dispatcher: AlertDispatcher) -> None:
        self._dispatcher = dispatcher
        self._tasks: set[asyncio.Task[Any]] = set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def raise_(self, key: str, severity: str, title: str, body: str) -> None:
        try:
            level = Severity.parse(severity)
        except ValueError:
            level = Severity.CRITICAL  # an unknown level from a plugin must still reach a human
        self._spawn(self._dispatcher.raise_(Alert(key=key, severity=level, title=title, body=body)))

    def resolve(self, key: str) -> None:
        self._spawn(self._dispatcher.resolve(key))


def _view(status: StrategyStatus) -> StrategyView:
    return StrategyView.model_validate(status.to_json())


def _run(run: SafeStateRun) -> dict[str, object]:
    return {
        "strategy": run.strategy,
        "trigger": run.trigger.value,
        "action": run.action.value,
        "path": run.path.value,
        "gateway": run.gateway,
        "duration_seconds": round(run.duration_seconds, 3),
        "cancelled": list(run.cancelled),
        "closing_orders": list(run.closing_orders),
        "still_live": list(run.still_live),
        "ok": run.ok,
    }


class HostControl:
    """The API's StrategyControl on the host."""

    def __init__(self, host: StrategyHost) -> None:
        self.host = host

    def strategies(self) -> list[StrategyView]:
        return [_view(s) for s in self.host.strategies()]

    async def halt(self, name: str) -> StrategyView:
        return _view(await self.host.halt(name))

    async def resume(self, name: str, *, gateway: str | None) -> StrategyView:
        return _view(await self.host.resume(name, gateway=gateway))

    async def kill(self, name: str | None, *, flatten: bool) -> list[dict[str, object]]:
        return [_run(r) for r in await self.host.kill(name, flatten=flatten)]

    async def cancel(
        self, name: str | None, *, symbol: str | None, all_orders_on_account: bool, dry_run: bool
    ) -> list[dict[str, object]]:
        if all_orders_on_account:
            runs = await self.host.cancel_account(symbol=symbol, dry_run=dry_run)
        else:
            runs = await self.host.cancel(name, symbol=symbol, dry_run=dry_run)
        return [r.to_json() for r in runs]


def build_host(
    supervisor: Supervisor,
    *,
    store: IntentStore,
    dispatcher: AlertDispatcher,
    metrics: FleetMetrics,
    clock: Callable[[], datetime],
) -> StrategyHost:
    """A host for the fleet's enabled strategies, fed by the supervisor's order gate."""
    settings = supervisor.settings
    endpoints = {}
    for gw in settings.gateways:
        host, port = supervisor.deps.api_endpoint(gw)
        endpoints[gw.name] = GatewayEndpoint(
            name=gw.name,
            host=host,
            port=port,
            account=gw.account,
            read_only=gw.read_only,
            # The probe's leases: strategies failing over get ids the probe does not hold.
            leases=supervisor.controllers[gw.name].leases,
        )
    strategy_host = StrategyHost(
        strategies=[s for s in settings.strategies if s.enabled],
        endpoints=endpoints,
        store=store,
        alerts=HostAlerts(dispatcher),
        metrics=metrics,
        clock=SystemClock(wall=clock),
        # The journal gives up on a call after write_wait; the host waits for its answer a
        # little longer (writes queued before it), then refuses the order unsent.
        settings=HostSettings(journal_wait=2 * settings.storage.write_wait.total_seconds()),
    )

    # A rollout moves strategies off a gateway before replacing it.
    supervisor.replace_hooks.move_hooks.append(strategy_host.move_off)
    supervisor.deps.gate_hooks.append(
        gate_hook(strategy_host, reason_of=lambda gw: supervisor.controllers[gw].status.reason)
    )
    return strategy_host


class GateSink(Protocol):
    def on_gate(self, name: str, gate: Gate) -> None: ...


def gate_hook(
    host: GateSink, *, reason_of: Callable[[str], str]
) -> Callable[[str, Gate | bool], None]:
    """The supervisor's order-gate hook, feeding the host's one entry point ``on_gate``."""

    def gate(gateway: str, gate: Gate | bool) -> None:
        # The lifecycle decides the outage kind; a bare bool (while the order gate still
        # carries only open/closed) is a lost gateway when closed, never a guessed planned one.
        if isinstance(gate, bool):
            gate = gate_of_ready(gate, reason_of(gateway))
        host.on_gate(gateway, gate)

    return gate
