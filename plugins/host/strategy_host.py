"""The strategy host: one runner per configured strategy, fed the supervisor's order gates."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence

from gateway.outage import Gate
from plugins.config import SafeStateAction, StrategyConfig
from plugins.host.broker import BrokerFactory, BrokerSession, Session
from plugins.host.cancelling import AccountCancel, CancelRun
from plugins.host.clock import Clock, SystemClock
from plugins.host.runner import Runner
from plugins.host.services import HostServices
from plugins.host.settings import GatewayEndpoint, HostSettings
from plugins.host.status import SafeStateRun, StrategyStatus
from plugins.ports import AlertSink, IntentStore, StrategyMetrics

__all__ = ["StrategyHost"]

log = logging.getLogger("plugins.host")


def _ib_async_broker(settings: HostSettings) -> BrokerFactory:
    def new() -> BrokerSession:
        # Imported here: a host built on another BrokerSession never loads the client library.
        from plugins.host.ibasync import IbAsyncBroker

        return IbAsyncBroker(request_timeout=settings.request_timeout)

    return new


class StrategyHost:
    """Runs the configured strategies; the supervisor feeds it gateway states.

    Methods for the CLI and HTTP API: :meth:`strategies`, :meth:`halt`, :meth:`resume`,
    :meth:`kill`, :meth:`cancel`, :meth:`cancel_account`. The supervisor calls :meth:`on_gate`
    whenever a gateway's order gate changes.
    """

    def __init__(
        self,
        *,
        strategies: Sequence[StrategyConfig],
        endpoints: Mapping[str, GatewayEndpoint],
        store: IntentStore,
        alerts: AlertSink,
        metrics: StrategyMetrics | None = None,
        clock: Clock | None = None,
        settings: HostSettings | None = None,
        rng: random.Random | None = None,
        broker: BrokerFactory | None = None,
    ) -> None:
        names = [s.name for s in strategies]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"strategies: names must be unique, repeated: {', '.join(dupes)}")
        for cfg in strategies:
            missing = [g for g in cfg.gateways if g not in endpoints]
            if missing:
                raise ValueError(
                    f"strategies[{cfg.name}].gateways: unknown gateway {', '.join(missing)}"
                )
        settings = settings or HostSettings()
        self.services = HostServices(
            store=store,
            alert_sink=alerts,
            metrics=metrics,
            clock=clock or SystemClock(),
            settings=settings,
            endpoints=dict(endpoints),
            new_broker=broker or _ib_async_broker(settings),
            rng=rng or random.SystemRandom(),
        )
        self.runners = {cfg.name: Runner(cfg, self.services) for cfg in strategies}
        self._account_cancel = AccountCancel(self.services)

    async def start(self) -> None:
        """Start every enabled strategy (each reconciles before its ``on_start``)."""
        await asyncio.gather(*(r.start() for r in self.runners.values() if r.cfg.enabled))

    async def stop(self, *, hand_over: bool = False) -> None:
        """Shutdown: each strategy's safe state, ``on_stop``, sessions closed (``hand_over``:
        sessions closed only, since a new leader owns the orders now)."""
        await asyncio.gather(*(r.stop(hand_over=hand_over) for r in self.runners.values()))
        await self.services.writer.settle()
        self.services.writer.close()

    async def settle(self) -> None:
        """Wait until every queued journal write is on disk."""
        await self.services.writer.settle()

    def on_gate(self, name: str, gate: Gate) -> None:
        """The supervisor's order gate of gateway ``name``: open, or closed for an outage of
        ``gate.kind``. The one entry point for gate changes; each strategy trading there
        reacts as :func:`plugins.outage.react` says."""
        was = self.services.gates.set(name, gate, now=self.services.clock.monotonic())
        log.info(
            "strategy_host_gate gateway=%s open=%s kind=%s reason=%r",
            name,
            gate.open,
            gate.kind.value if gate.kind is not None else "-",
            gate.reason,
        )
        for runner in self.runners.values():
            runner.outages.gate_changed(name, gate, was)

    async def move_off(self, gateway: str) -> dict[str, str | None]:
        """``gateway`` is about to be replaced: each strategy trading there moves to its next
        gateway as a planned move (:meth:`plugins.host.failover.Failover.planned_move`).
        Returns strategy -> the gateway it moved to (None: it stays and holds)."""
        runners = [r for r in self.runners.values() if r.active == gateway]
        moved = await asyncio.gather(*(r.failover.planned_move(gateway) for r in runners))
        for runner, to in zip(runners, moved, strict=True):
            log.info("strategy_planned_move strategy=%s from=%s to=%s", runner.name, gateway, to)
        return {r.name: to for r, to in zip(runners, moved, strict=True)}

    # -- operations (CLI / HTTP) -----------------------------------------------------------

    def _runner(self, name: str) -> Runner:
        runner = self.runners.get(name)
        if runner is None:
            known = ", ".join(sorted(self.runners)) or "none"
            raise KeyError(f"no strategy named {name!r} (known: {known})")
        return runner

    def strategies(self) -> list[StrategyStatus]:
        """Every strategy with its state and counts, by name."""
        return [self.runners[n].status() for n in sorted(self.runners)]

    def safe_state_runs(self, name: str) -> list[SafeStateRun]:
        """The safe-state runs of one strategy since the host started."""
        return list(self._runner(name).safe.runs)

    async def halt(self, name: str) -> StrategyStatus:
        """Pause a strategy: no hooks, no orders; its orders at IB stay (kill cancels)."""
        runner = self._runner(name)
        runner.halt()
        return runner.status()

    async def resume(self, name: str, *, gateway: str | None = None) -> StrategyStatus:
        """Resume after halt, kill, crash or safe state, on ``gateway`` (default: current)."""
        runner = self._runner(name)
        target = gateway or runner.active or runner.cfg.gateways[0]
        if target not in runner.cfg.gateways:
            raise ValueError(
                f"strategy {name}: gateway {target!r} is not one of {runner.cfg.gateways}"
            )
        await runner.resume(target)
        return runner.status()

    async def kill(self, name: str | None = None, *, flatten: bool = False) -> list[SafeStateRun]:
        """Kill switch: cancel (and flatten) now, then HALTED; ``name`` None means all."""
        runners = [self._runner(name)] if name is not None else list(self.runners.values())
        action = SafeStateAction.FLATTEN if flatten else SafeStateAction.CANCEL
        return list(await asyncio.gather(*(r.kill(action) for r in runners)))

    # -- cancel by criteria (CLI / HTTP) -----------------------------------------------------

    async def cancel(
        self, name: str | None = None, *, symbol: str | None = None, dry_run: bool = False
    ) -> list[CancelRun]:
        """Cancel ibfleet's own open orders: of one strategy or all, of one symbol or all.
        The strategies keep running. ``dry_run`` only names the orders."""
        runners = [self._runner(name)] if name is not None else list(self.runners.values())
        return list(
            await asyncio.gather(
                *(r.safe.cancel_matching(symbol=symbol, dry_run=dry_run) for r in runners)
            )
        )

    def _account_sessions(self) -> list[Session]:
        by_account: dict[str, Session] = {}
        for runner in self.runners.values():
            session = runner.sessions.current
            if session is not None and not session.closed and session.broker.is_connected():
                by_account.setdefault(session.account, session)
        return list(by_account.values())

    async def cancel_account(
        self, *, symbol: str | None = None, dry_run: bool = False
    ) -> list[CancelRun]:
        """Every open order on the strategies' accounts, whoever placed it (ibfleet or not):
        reqGlobalCancel without ``symbol``, per-order cancels with it. ``dry_run`` names them.
        Raises ConnectionError when no strategy has an open session to list them."""
        return await self._account_cancel.run(
            self._account_sessions(), symbol=symbol, dry_run=dry_run
        )
