"""The running fleet: one controller per gateway, the orchestrator, schedule ticks and the
HTTP API's ``FleetControl``.

``supervisor.wiring`` builds this from the settings (journal, secrets, Docker, the HTTP API) and
runs it; this module only takes what it needs passed in. One gateway's controller is
:mod:`supervisor.gateway_controller`.

One owner per decision: the lifecycle decides restarts, holds and the outage kind; the
orchestrator (built with ``decides_restarts=False``) only executes them; a gateway the journal
says is stopped, FATAL or backing off is held at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from gateway import api_endpoint as endpoints
from gateway import ibc
from gateway import probe as probe_mod
from gateway.runtime import EventKind, Runtime, RuntimeEvent
from gateway.spec import ContainerSpec
from supervisor import lifecycle as lc
from supervisor import rollout_views, schedules, status_views
from supervisor.api_views import (
    Action,
    AlertView,
    ApplyRequest,
    ApplyResult,
    CommandResult,
    EventView,
    GatewayView,
    HeartbeatsView,
    RolloutView,
    ScheduleView,
)
from supervisor.budget import Ledger
from supervisor.gateway_controller import (
    Clock,
    Deps,
    GatewayController,
    IbcSend,
    lifecycle_policy,
    utc_now,
)
from supervisor.journal import AsyncJournal
from supervisor.lifecycle_inputs import from_runtime_event
from supervisor.metrics import FleetMetrics
from supervisor.notify import AlertDispatcher
from supervisor.orchestrator import Orchestrator, OrchestratorEvent
from supervisor.rollout_hooks import FleetReplaceHooks, rollout_options
from supervisor.settings import FleetSettings

log = logging.getLogger("ibfleet.supervisor")

#: Restored lifecycle states whose container stays down until the lifecycle itself starts it.
_HELD_STATES = frozenset({lc.State.STOPPED, lc.State.FATAL, lc.State.BACKOFF})


class Supervisor:
    """The whole fleet: controllers, orchestrator, schedules and alerts.

    It is also the HTTP API's ``FleetControl``.
    """

    def __init__(
        self,
        *,
        settings: FleetSettings,
        runtime: Runtime,
        desired: Sequence[ContainerSpec],
        journal: AsyncJournal,
        dispatcher: AlertDispatcher,
        metrics: FleetMetrics,
        clock: Clock = utc_now,
        probe_factory: probe_mod.SessionFactory = probe_mod.IbAsyncSession,
        ibc_send: IbcSend = ibc.send,
        rng: random.Random | None = None,
        reconcile_interval: float = 30.0,
        tick_every: float = 1.0,
        restored: Mapping[str, lc.GatewayStatus] | None = None,
        ledger: Ledger | None = None,
        usernames: Mapping[str, str] | None = None,
        operator_stopped: Collection[str] = (),
        replace_deadline: float | None = None,
        api_endpoint: endpoints.ApiEndpoint = endpoints.from_host,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.clock = clock
        self.tick_every = tick_every
        restored = restored or {}
        # Held at start: what an operator stopped (journalled) and what the restored lifecycle
        # keeps down (STOPPED, FATAL, BACKOFF: it starts those itself when their time comes).
        held = set(operator_stopped) | {
            name for name, status in restored.items() if status.state in _HELD_STATES
        }
        # Rolling replacement of a running gateway's new spec: see supervisor.rollout_hooks.
        self.replace_hooks = FleetReplaceHooks()
        self.orchestrator = Orchestrator(
            runtime=runtime,
            fleet=settings.fleet,
            desired=desired,
            publish=self._on_runtime,
            clock=clock,
            interval=reconcile_interval,
            decides_restarts=False,
            held=held,
            **rollout_options(settings, replace_deadline, self.replace_hooks),
        )
        h = settings.health
        self.deps = Deps(
            settings=settings,
            runtime=runtime,
            orchestrator=self.orchestrator,
            journal=journal,
            dispatcher=dispatcher,
            metrics=metrics,
            clock=clock,
            probe_factory=probe_factory,
            ibc_send=ibc_send,
            rng=rng or random.Random(),
            ledger={} if ledger is None else ledger,
            probe_settings=probe_mod.ProbeSettings(
                heartbeat_every=h.heartbeat_every.total_seconds(),
                heartbeat_deadline=h.heartbeat_deadline.total_seconds(),
                connect_deadline=h.connect_deadline.total_seconds(),
            ),
            api_endpoint=api_endpoint,
        )
        now = clock()
        self.controllers: dict[str, GatewayController] = {}
        for gw in settings.gateways:
            status = restored.get(gw.name)
            stale = status is not None and status.state is not lc.State.STOPPED
            if gw.name in operator_stopped and status is not None and stale:
                # The operator's stop is journalled on its own; it wins over a stale record.
                status, _ = lc.transition(
                    status, lc.OperatorStop(), now=now, policy=lifecycle_policy(settings, gw)
                )
            self.controllers[gw.name] = GatewayController(
                gw=gw,
                deps=self.deps,
                status=status
                or lc.GatewayStatus.initial(
                    gateway=gw.name, username=(usernames or {}).get(gw.name, gw.name), now=now
                ),
                restored=status is not None,
            )
        metrics.sample_login_budget(self.login_budgets)
        self.replace_hooks.bind(self)
        self._window: schedules.Window | None = None
        self._daily_next: dict[str, datetime] = {}
        self._reauth_warned: datetime | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._loops: tuple[asyncio.Task[Any], ...] = ()
        self._started = asyncio.Event()

    # -- running --------------------------------------------------------------------------

    async def start(self) -> None:
        for controller in self.controllers.values():
            controller.start()
        for container in await self.runtime.list(fleet=self.settings.fleet):
            found = self.controllers.get(container.gateway or "")
            if found is not None and container.is_alive:
                if not found.restored:
                    found.post(lc.ContainerStarted())
                found.on_container(container, adopted=True)
        self._loops = (
            asyncio.create_task(self.orchestrator.run(), name="orchestrator"),
            asyncio.create_task(self._ticker(), name="ticker"),
        )
        self._tasks = list(self._loops)
        self._started.set()

    def alive(self) -> bool:
        """True while the reconcile loop and the ticker run (the systemd watchdog asks)."""
        return bool(self._loops) and not any(task.done() for task in self._loops)

    async def close_gates(self) -> None:
        """Close every gateway's order gate with kind SHUTDOWN: the supervisor is stopping."""
        for controller in self.controllers.values():
            controller.post(lc.SupervisorStopping())
        for controller in self.controllers.values():
            with contextlib.suppress(TimeoutError):
                await controller.drain(5.0)

    async def stop(self) -> None:
        """Stop supervising; the gateway containers keep running."""
        await self.close_gates()
        await self.orchestrator.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.orchestrator.close()
        for controller in self.controllers.values():
            await controller.close()

    def _on_runtime(self, event: RuntimeEvent | OrchestratorEvent) -> None:
        if isinstance(event, OrchestratorEvent):
            self._on_orchestrator(event)
            return
        controller = self.controllers.get(event.gateway or "")
        if controller is None:
            return
        mapped = from_runtime_event(event)
        if event.kind is EventKind.START:
            controller.started(event.container_id)
            self._spawn_inspect(controller, event.container_id)
        elif controller.stale(event.container_id):
            # E.g. a rollout removing the previous container after the new one started.
            log.debug("stale_container_event gateway=%s kind=%s", event.gateway, event.kind.value)
            return
        if mapped is not None:
            controller.post(mapped)

    def _spawn_inspect(self, controller: GatewayController, container_id: str) -> None:
        async def inspect() -> None:
            try:
                container = await self.runtime.inspect(container_id)
            except Exception as exc:
                log.warning("inspect_failed gateway=%s error=%s", controller.gw.name, exc)
                return
            controller.on_container(container, adopted=False)

        self._tasks.append(asyncio.create_task(inspect()))

    def _on_orchestrator(self, event: OrchestratorEvent) -> None:
        level = logging.WARNING if "FAIL" in event.kind.name else logging.INFO
        log.log(
            level,
            "orchestrator gateway=%s kind=%s detail=%r",
            event.gateway,
            event.kind.value,
            event.detail,
        )
        # The orchestrator only executes; the lifecycle already decided and alerted.
        return

    async def _ticker(self) -> None:
        while True:
            try:
                self.tick(self.clock())
            except Exception:
                # A broken schedule must not stop the ticks that drive every deadline.
                log.exception("tick_failed")
            await asyncio.sleep(self.tick_every)

    def tick(self, now: datetime) -> None:
        """Schedule inputs for every gateway: reset windows, daily restarts, weekly re-auth."""
        region = self.settings.region
        window = schedules.in_reset_window(region, now)
        posts: list[lc.Event] = [lc.Tick()]
        if window is not None and self._window is None:
            posts.append(lc.ResetWindowEntered(name=window.name, until=window.end))
        elif window is None and self._window is not None:
            posts.append(lc.ResetWindowLeft())
        self._window = window
        self.deps.metrics.set_reset_window(window is not None)
        lead = self.settings.health.reauth_warning
        reauth_at = schedules.next_weekly_reauth(now)
        if schedules.reauth_warning_due(now, lead) and self._reauth_warned != reauth_at:
            self._reauth_warned = reauth_at
            posts.append(lc.WeeklyReauthDue(at=reauth_at))
        for name, controller in self.controllers.items():
            for event in posts:
                controller.post(event)
            # The Gateway restarts itself daily at the AutoRestartTime ibfleet rendered (the
            # fleet's default when restart.daily is unset): expect it, send nothing.
            daily = self.settings.daily_restart(controller.gw)
            due = self._daily_next.get(name)
            if due is None:
                self._daily_next[name] = schedules.next_daily(daily, zone=self.settings.tz, now=now)
            elif now >= due:
                controller.post(lc.DailyRestartExpected())
                self._daily_next[name] = schedules.next_daily(daily, zone=self.settings.tz, now=now)

    def login_budgets(self) -> dict[str, int]:
        """Logins each gateway may still attempt now: its username's shared ledger, refilled as
        attempts age out of the window (read at scrape time)."""
        now = self.clock()
        out: dict[str, int] = {}
        for name, controller in self.controllers.items():
            budget = self.deps.ledger.get(controller.status.username)
            used = 0 if budget is None else budget.used(now)
            out[name] = max(0, controller.policy.login_budget - used)
        return out

    async def settle(self, timeout: float = 5.0) -> None:
        for controller in self.controllers.values():
            await controller.drain(timeout)

    # -- FleetControl ---------------------------------------------------------------------

    def gateways(self) -> list[GatewayView]:
        stopped = self.orchestrator.operator_stopped
        pending = rollout_views.pending(self.orchestrator)
        return [
            c.view(
                should_run=name not in stopped and c.status.state is not lc.State.STOPPED
            ).model_copy(update={"pending_change": pending.get(name)})
            for name, c in self.controllers.items()
        ]

    def rollout(self) -> RolloutView:
        return rollout_views.rollout(self.orchestrator, self.clock())

    async def apply(self, request: ApplyRequest) -> ApplyResult:
        result = rollout_views.apply(self.orchestrator, request, self.clock())
        named = ", ".join(request.gateways) or ("all, now" if request.now else "the plan")
        await self.deps.journal.append_event(
            at=self.clock(),
            kind="operator",
            gateway=None,
            severity="info",
            message=f"operator apply ({named}): {result.detail}",
        )
        return result

    async def events(
        self, *, since_id: int | None, limit: int, gateway: str | None
    ) -> list[EventView]:
        records = await self.deps.journal.events(since_id=since_id, gateway=gateway, limit=limit)
        return [
            EventView(
                id=r.id,
                at=r.at,
                kind=r.kind,
                gateway=r.gateway,
                strategy=r.strategy,
                severity=r.severity,
                message=r.message,
            )
            for r in records
        ]

    async def command(self, gateway: str, action: Action) -> CommandResult:
        controller = self.controllers[gateway]
        if action in (Action.STOP, Action.START):
            # An operator stop survives a supervisor restart: journalled before it is acted on.
            await self.deps.journal.set_operator_state(
                gateway,
                stopped_by_operator=action is Action.STOP,
                fatal_acknowledged_at=self.clock() if action is Action.START else None,
                now=self.clock(),
            )
        events: dict[Action, lc.Event] = {
            Action.RESTART: lc.OperatorRestart(),
            Action.STOP: lc.OperatorStop(),
            Action.START: lc.OperatorStart(),
        }
        if action is Action.START and controller.status.state in (lc.State.FATAL, lc.State.BACKOFF):
            # Starting a FATAL or backing-off gateway is the human's "I fixed it": budgets reset.
            controller.post(lc.OperatorReset())
        controller.post(events[action])
        await controller.drain()
        await self.deps.journal.append_event(
            at=self.clock(),
            kind="operator",
            gateway=gateway,
            severity="info",
            message=f"operator {action.value}",
        )
        return CommandResult(
            gateway=gateway,
            action=action,
            accepted=True,
            detail=f"{action.value}: now {controller.status.state.name}",
        )

    def metrics(self) -> tuple[bytes, str]:
        return self.deps.metrics.render()

    # The status page's reads: built by their owners, see supervisor.status_views.

    def heartbeats(self, gateway: str) -> HeartbeatsView:
        history = self.controllers[gateway].heartbeats
        return status_views.heartbeats(gateway, history, self.clock())

    def alerts(self) -> list[AlertView]:
        return status_views.open_alerts(self.deps.dispatcher.book)

    def schedule(self) -> ScheduleView:
        return status_views.upcoming(self.settings, self.clock())
