"""One gateway's controller: its lifecycle, the observers that feed it and the effects it runs.

Inputs reach the controller as lifecycle events (:mod:`supervisor.lifecycle_inputs` maps them):
container events from the runtime, auth events parsed from the container's log (since its
current start only), probe results, schedule ticks and operator commands. The controller runs
the pure ``lifecycle.transition`` and carries out the effects it returns (soft restart through
IBC's command server, a container restart, alerts, order gating, safe state). State, alerts and
the login budget go to the journal so a restarted supervisor carries on where it stopped,
without paging again. The login budget is one ledger per IB username, shared by the gateways
that use it, consulted by every lifecycle transition and kept in the journal.

The fleet around the controllers is :mod:`supervisor.fleet_loop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway import api_endpoint as endpoints
from gateway import authlog, codes, ibc
from gateway import probe as probe_mod
from gateway.config import GatewayConfig
from gateway.leases import ClientIdLeases
from gateway.outage import Gate
from gateway.runtime import ObservedContainer, Runtime
from supervisor import lifecycle as lc
from supervisor.alertpolicy import Alert
from supervisor.api_views import GatewayView
from supervisor.budget import Budget, Ledger, ledger_to_record
from supervisor.heartbeats import HeartbeatHistory, capacity_for
from supervisor.journal import AsyncJournal
from supervisor.lifecycle_inputs import from_auth_event, from_probe_event
from supervisor.metrics import FleetMetrics, TwoFactorOutcome
from supervisor.notify import AlertDispatcher
from supervisor.orchestrator import Orchestrator
from supervisor.settings import FleetSettings

log = logging.getLogger("ibfleet.supervisor")

Clock = Callable[[], datetime]
#: The strategy host's hook on the order gate: (gateway, gate). A closed gate names the outage
#: kind the lifecycle decided; the host's reaction is a function of that kind, not of states.
GateHook = Callable[[str, Gate], None]
IbcSend = Callable[..., Awaitable[ibc.IbcReply]]


def utc_now() -> datetime:
    return datetime.now(UTC)


def lifecycle_policy(settings: FleetSettings, gw: GatewayConfig) -> lc.LifecyclePolicy:
    """The lifecycle's thresholds from the fleet file."""
    h = settings.health
    return lc.LifecyclePolicy(
        heartbeat_deadline=h.heartbeat_deadline * 2 + h.heartbeat_every,
        slow_heartbeat=h.heartbeat_deadline,
        login_timeout=h.login_deadline,
        ready_grace_after_window=h.after_window_grace,
        login_budget=gw.logins_per_hour,
        # One mechanism per 2FA timeout: "restart" renders IBC's relogin and
        # --on2fatimeout=restart, so IBC owns it; "exit" renders neither, so the supervisor
        # restarts at once (budgeted).
        twofa_timeout_action=gw.two_factor.timeout_action,
        twofa_retry_at_once=True,
    )


@dataclass
class Deps:
    """What every controller shares; one object, passed down."""

    settings: FleetSettings
    runtime: Runtime
    orchestrator: Orchestrator
    journal: AsyncJournal
    dispatcher: AlertDispatcher
    metrics: FleetMetrics
    clock: Clock
    probe_factory: probe_mod.SessionFactory
    ibc_send: IbcSend
    rng: random.Random
    ledger: Ledger  # the login budget of each IB username
    probe_settings: probe_mod.ProbeSettings
    gate_hooks: list[GateHook] = field(default_factory=list)
    # Where the probe and the strategies dial a gateway's API (the host, or the fleet network).
    api_endpoint: endpoints.ApiEndpoint = endpoints.from_host


class GatewayController:
    """Owns one gateway's lifecycle; events are handled one at a time, in arrival order."""

    def __init__(
        self, *, gw: GatewayConfig, deps: Deps, status: lc.GatewayStatus, restored: bool
    ) -> None:
        self.gw = gw
        self.deps = deps
        self.status = status
        self.restored = restored
        self.policy = lifecycle_policy(deps.settings, gw)
        self.container: ObservedContainer | None = None
        # The container the gateway runs on, from the runtime's last start (set at once, before
        # the inspect behind ``container`` answers): the others' deaths are history.
        self.current_id: str | None = None
        self.heartbeat_rtt: float | None = None
        # The last minutes of heartbeats, for the status page's sparkline (bounded).
        self.heartbeats = HeartbeatHistory(capacity_for(deps.settings.health.heartbeat_every))
        self.leases = ClientIdLeases(
            start=gw.client_ids.start,
            end=gw.client_ids.end,
            probe_id=gw.effective_probe_client_id,
        )
        self._queue: asyncio.Queue[lc.Event] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._logs: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self.processed = 0

    # -- input --------------------------------------------------------------------------

    def post(self, event: lc.Event) -> None:
        self._queue.put_nowait(event)

    def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name=f"gateway-{self.gw.name}")
        self._probe = asyncio.create_task(self._run_probe(), name=f"probe-{self.gw.name}")
        # The strategies hear the gate the (restored) status decides, before any event.
        gate = lc.gate_of(self.status, now=self.deps.clock(), policy=self.policy)
        self.status = dataclasses.replace(self.status, gate_open=gate.open, gate_kind=gate.kind)
        self._gate(gate)

    async def close(self) -> None:
        """Stop observing, finish the events already queued (their alerts and resolutions are
        decided and must go out), then stop."""
        await self._cancel(self._probe, self._logs)
        if self._worker is not None and not self._worker.done():
            with contextlib.suppress(TimeoutError):
                await self.drain(5.0)
        await self._cancel(self._worker, *self._tasks)

    @staticmethod
    async def _cancel(*tasks: asyncio.Task[Any] | None) -> None:
        for task in tasks:
            if task is not None:
                task.cancel()
        for task in tasks:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until every posted event has been handled (tests, shutdown)."""
        async with asyncio.timeout(timeout):
            await self._queue.join()

    async def _work(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._handle(event)
            except Exception:
                log.exception("gateway_event_failed gateway=%s event=%s", self.gw.name, event)
            finally:
                self._queue.task_done()

    async def _handle(self, event: lc.Event) -> None:
        now = self.deps.clock()
        d = self.deps
        username = self.status.username
        # The login budget is the username's, shared with every gateway using it: the machine
        # decides on the ledger's attempts, and what it records goes back into the ledger.
        ledger = d.ledger.get(username)
        shared = () if ledger is None else ledger.events
        if shared != self.status.login_attempts:
            self.status = dataclasses.replace(self.status, login_attempts=shared)
        before = self.status
        self.status, effects = lc.transition(
            before, event, now=now, policy=self.policy, rng=self.deps.rng
        )
        if self.status.login_attempts != shared:
            d.ledger[username] = Budget(
                limit=self.policy.login_budget,
                window=self.policy.login_window,
                events=tuple(sorted(self.status.login_attempts)),
            )
            await d.journal.save_login_ledger(ledger_to_record(d.ledger), now=now)
        self.processed += 1
        m = self.deps.metrics
        if self.processed == 1 or self.status.state is not before.state:
            # Ticks and heartbeats arrive many times a second; the gauges change with the state.
            m.set_gateway_state(self.gw.name, self.status.state)
            m.set_gateway_ready(self.gw.name, self.status.ready)
        if self.status.state is not before.state:
            log.info(
                "gateway_state gateway=%s from=%s to=%s reason=%r",
                self.gw.name,
                before.state.name,
                self.status.state.name,
                self.status.reason,
            )
            await self.deps.journal.append_event(
                at=now,
                kind="state",
                gateway=self.gw.name,
                severity="info",
                message=f"{before.state.name} -> {self.status.state.name}: {self.status.reason}",
                fields={"event": type(event).__name__},
            )
        # Heartbeats move last_heartbeat many times a second; that alone is not worth a write.
        if dataclasses.replace(self.status, last_heartbeat=before.last_heartbeat) != before:
            await self.deps.journal.save_record(
                f"gateway:{self.gw.name}", self.status.to_record(), now=now
            )
        for effect in effects:
            await self._effect(effect, now)

    # -- effects ------------------------------------------------------------------------

    async def _effect(self, effect: object, now: datetime) -> None:
        d = self.deps
        match effect:
            case Alert():
                await d.dispatcher.raise_(effect)
                await d.journal.append_event(
                    at=now,
                    kind="alert",
                    gateway=self.gw.name,
                    severity=effect.severity.name.lower(),
                    message=effect.title,
                )
            case lc.ResolveAlert(key=key):
                await d.dispatcher.resolve(key)
            case lc.SoftRestart():
                d.metrics.gateway_restarted(self.gw.name, lc.RestartKind.SOFT)
                self._spawn(self._soft_restart())
            case lc.HardRestart():
                d.metrics.gateway_restarted(self.gw.name, lc.RestartKind.HARD)
                self._spawn(self._hard_restart())
            case lc.StartContainer():
                d.orchestrator.start(self.gw.name)
            case lc.StopContainer():
                self._spawn(d.orchestrator.stop(self.gw.name))
            case lc.GateOrders(gate=gate):
                self._gate(gate)
            case lc.TriggerSafeState(reason=reason):
                # The order gate closed in the same transition; the host acts on that.
                log.info("safe_state_due gateway=%s reason=%r", self.gw.name, reason)
            case lc.ScheduleBackoff(until=until):
                self._spawn(self._tick_at(until))
            case lc.CountLogin(outcome=outcome):
                # The ledger itself follows the status's login_attempts (see _handle).
                d.metrics.login_attempted(self.gw.name, outcome)
                if outcome is lc.LoginOutcome.TWOFA_TIMEOUT:
                    d.metrics.twofa_prompted(self.gw.name, TwoFactorOutcome.TIMED_OUT)

    def _gate(self, gate: Gate) -> None:
        log.info(
            "order_gate gateway=%s open=%s kind=%s bound=%s",
            self.gw.name,
            gate.open,
            gate.kind.value if gate.kind else "-",
            gate.bound,
        )
        for hook in self.deps.gate_hooks:
            try:
                hook(self.gw.name, gate)
            except Exception:
                # A broken hook must not stop the lifecycle that feeds every other one.
                log.exception("gate_hook_failed gateway=%s", self.gw.name)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _later(delay: float, call: Callable[[], None]) -> None:
        await asyncio.sleep(delay)
        call()

    async def _tick_at(self, until: datetime) -> None:
        delay = (until - self.deps.clock()).total_seconds()
        await asyncio.sleep(max(0.0, delay))
        self.post(lc.Tick())

    async def _soft_restart(self) -> None:
        container = self.container
        address = None
        if container is not None:
            address = await self.deps.runtime.command_address(container.id)
        if address is None:
            log.warning("soft_restart_unreachable gateway=%s", self.gw.name)
            return  # the lifecycle's restart deadline escalates to a hard restart
        try:
            reply = await self.deps.ibc_send("RESTART", host=address[0], port=address[1])
            log.info("soft_restart gateway=%s reply=%r", self.gw.name, reply.text[:200])
        except ibc.IbcCommandError as exc:
            log.warning("soft_restart_failed gateway=%s error=%s", self.gw.name, exc)
            return
        if reply.status is ibc.ReplyStatus.OK and reply.text.lower().startswith("restart"):
            # "OK RESTART in progress" (then "OK RESTART at hh:mm AM"): the Gateway restarts
            # itself at the next minute, with its token (RestartTask.java).
            self.post(lc.RestartScheduled())

    async def _hard_restart(self) -> None:
        # The orchestrator executes it (one executor): restart in place, or start/create.
        try:
            await self.deps.orchestrator.restart(self.gw.name)
        except Exception as exc:
            # The lifecycle's restart deadline escalates (within its budget) if this failed.
            log.warning("hard_restart_failed gateway=%s error=%s", self.gw.name, exc)

    # -- observers ----------------------------------------------------------------------

    def started(self, container_id: str) -> None:
        """The runtime reported ``container_id``'s start: it is the gateway's container now."""
        self.current_id = container_id

    def stale(self, container_id: str) -> bool:
        """An event of a container the gateway no longer runs on (a rollout's previous or
        failed new one, a duplicate removed): it says nothing about the gateway."""
        return self.current_id is not None and container_id != self.current_id

    def on_container(self, container: ObservedContainer, *, adopted: bool) -> None:
        """A (new) container of this gateway runs: follow its log from its current start."""
        self.container = container
        if adopted or self.current_id is None:
            self.current_id = container.id
        if self._logs is not None:
            self._logs.cancel()
        started = container.started_at or utc_now()
        # A restored state already knows the story before this supervisor started: the backlog
        # is read only for where the login stands now (log times are wall-clock times).
        backlog_until = utc_now() if adopted and self.restored else None
        self._logs = asyncio.create_task(
            self._follow(container.id, started, backlog_until), name=f"logs-{self.gw.name}"
        )

    async def _follow(
        self, container_id: str, started: datetime, backlog_until: datetime | None
    ) -> None:
        follower = authlog.AuthLogFollower(started_at=started)
        summarised = asyncio.Event()

        def summarise() -> None:
            # The login completed while no supervisor watched: say so once.
            if not summarised.is_set():
                summarised.set()
                if follower.logged_in and not self.status.logged_in:
                    self.post(lc.LoggedIn())

        if backlog_until is not None:
            # The backlog arrives at once; if nothing new follows, summarise it shortly.
            self._spawn(self._later(1.0, summarise))
        try:
            async for line in self.deps.runtime.follow_logs(container_id):
                events = follower.feed(line)
                if backlog_until is not None and not summarised.is_set():
                    if all(e.at is not None and e.at < backlog_until for e in events):
                        continue
                    summarise()
                for event in events:
                    mapped = from_auth_event(event)
                    if mapped is not None:
                        self.post(mapped)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("log_follow_ended gateway=%s error=%s", self.gw.name, exc)

    def _on_probe(self, event: probe_mod.ProbeEvent) -> None:
        m = self.deps.metrics
        if isinstance(event, probe_mod.ProbeHeartbeat):
            self.heartbeat_rtt = event.rtt
            self.heartbeats.answered(self.deps.clock(), event.rtt)
            m.observe_heartbeat(self.gw.name, event.rtt, at=self.deps.clock().timestamp())
        if isinstance(event, probe_mod.ProbeHeartbeatMissed):
            self.heartbeats.missed(self.deps.clock())
        if isinstance(event, probe_mod.ProbeApiCode):
            farm = codes.farm_of(event.code, event.message)
            if farm is not None:
                m.set_farm(self.gw.name, farm.name or farm.kind.value, event.code in codes.FARM_OK)
        if isinstance(event, probe_mod.ProbeConnectFailed) and not self.status.api_connected:
            return  # nothing listens yet: the login deadline covers a gateway that never answers
        mapped = from_probe_event(event, account=self.gw.account)
        if mapped is not None:
            self.post(mapped)

    async def _run_probe(self) -> None:
        host, port = self.deps.api_endpoint(self.gw)
        probe = probe_mod.HealthProbe(
            host=host,
            port=port,
            account=self.gw.account,
            mode=self.gw.mode,
            contracts=self.gw.probes,
            client_id=lambda: self.leases.probe,
            rotate_client_id=lambda: self.leases.rotate(
                ClientIdLeases.PROBE, now=self.deps.clock()
            ),
            session_factory=self.deps.probe_factory,
            emit=self._on_probe,
            settings=self.deps.probe_settings,
        )
        await probe.run()

    def view(self, *, should_run: bool) -> GatewayView:
        s = self.status
        return GatewayView(
            name=self.gw.name,
            state=s.state.name,
            ready=s.ready,
            should_run=should_run,
            mode=self.gw.mode.value,
            account=self.gw.account,
            since=s.since,
            reason=s.reason,
            last_heartbeat=s.last_heartbeat,
            heartbeat_rtt_seconds=self.heartbeat_rtt,
            container_id=self.container.id[:12] if self.container else None,
            restarts={"total": s.restart_count},
            open_alerts=sorted(s.open_alerts),
        )
