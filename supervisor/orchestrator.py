"""The reconcile loop: observe the runtime, plan (pure), act; at start, on events, periodically.

(Over 600 lines: the loop, the restart rationing and the rollout's sequencing share one lock and
one view of the fleet; the replacement itself lives in :mod:`supervisor.rolling`.)

Who decides restarts is set once, at construction (one owner per decision):

- ``decides_restarts=False`` (the supervisor): the per-gateway lifecycle decides every restart,
  hold and stop; the orchestrator only executes :meth:`Orchestrator.start`,
  :meth:`Orchestrator.restart` and :meth:`Orchestrator.stop`, and brings the fleet file's
  gateways up at its first pass unless they are held (an operator stop, FATAL or a backoff the
  lifecycle restored from the journal). A container that dies later stays down until the
  lifecycle asks for it: a single kill costs a single restart.
- ``decides_restarts=True`` (standalone use: tools, the simulator fleet): the orchestrator
  restarts dead containers itself, the first one at once, later ones after an exponential,
  fully jittered backoff, and a sliding-window retry budget stops a crash loop altogether.

A running container whose spec changed is not recreated in the pass that sees it: it is rolled
out (:mod:`supervisor.rolling`), one gateway at a time in :func:`supervisor.rollout.plan_rollout`'s
order, the first as the canary, deferred to ``runtime.update_window`` when it costs a full login.
A failed canary is rolled back and blocks further replacements until :meth:`Orchestrator.apply`.

Every decision and every runtime event is handed to ``publish`` so the supervisor's wiring can
feed the per-gateway lifecycle. Closing the orchestrator leaves every container running:
restarts of the supervisor must never cost a gateway its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import zoneinfo
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from gateway.aio import within
from gateway.runtime import ContainerGone, ContainerState, ObservedContainer, Runtime, RuntimeEvent
from gateway.spec import ContainerSpec
from supervisor import reconcile, rolling, rollout
from supervisor.budget import BackoffPolicy, Budget
from supervisor.reconcile import Action, ActionKind
from supervisor.rolling import Outcome, ReplaceHooks, Replacement
from supervisor.rollout import GatewayFacts, RolloutPlan, When, WindowSpec

__all__ = [
    "Orchestrator",
    "OrchestratorEvent",
    "OrchestratorEventKind",
    "Publisher",
    "RestartPolicy",
]

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class OrchestratorEventKind(enum.Enum):
    ACTION_DONE = "action_done"
    ACTION_FAILED = "action_failed"
    ADOPTED = "adopted"
    CONFLICT = "conflict"
    BACKOFF = "backoff"  # an automatic restart is deferred until retry_at
    BUDGET_EXHAUSTED = "budget_exhausted"  # held until an operator starts the gateway
    OPERATOR_STOPPED = "operator_stopped"
    OPERATOR_STARTED = "operator_started"
    RECONCILE_FAILED = "reconcile_failed"  # the runtime could not even be listed
    REPLACED = "replaced"  # a rollout replaced a running gateway, and it is ready
    ROLLED_BACK = "rolled_back"  # a replacement was not ready in time: back on the old container
    ROLLOUT_BLOCKED = "rollout_blocked"  # replacements wait for `ibfleet apply` after a failure


@dataclass(frozen=True, slots=True)
class OrchestratorEvent:
    kind: OrchestratorEventKind
    gateway: str
    at: datetime
    action: ActionKind | None = None
    container_id: str | None = None
    detail: str = ""
    retry_at: datetime | None = None


Publisher = Callable[[RuntimeEvent | OrchestratorEvent], None]


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How automatic restarts of one gateway are rationed."""

    backoff: BackoffPolicy = field(
        default_factory=lambda: BackoffPolicy(base=timedelta(seconds=10), cap=timedelta(minutes=10))
    )
    budget: int = 6  # automatic restarts allowed per budget_window
    budget_window: timedelta = timedelta(hours=1)
    # A container that stays up this long resets the backoff to "restart at once".
    stable_after: timedelta = timedelta(minutes=5)


@dataclass(slots=True)
class _Restarts:
    window: Budget
    attempts: int = 0
    retry_at: datetime | None = None
    exhausted: bool = False
    announced_retry: datetime | None = None
    seen: bool = False  # a container of this gateway was observed or created by us
    settled: bool = False  # one pass has acted on this gateway (its first bring-up is done)


class Orchestrator:
    """Observe -> plan -> act for one fleet behind a :class:`gateway.runtime.Runtime`."""

    def __init__(
        self,
        *,
        runtime: Runtime,
        fleet: str,
        desired: Sequence[ContainerSpec],
        publish: Publisher,
        clock: Callable[[], datetime] = utc_now,
        interval: float = 30.0,
        policy: RestartPolicy | None = None,
        rng: random.Random | None = None,
        stop_timeout: float = 30.0,
        action_timeout: float = 120.0,
        event_retry: float = 1.0,
        decides_restarts: bool = True,
        held: Iterable[str] = (),
        hooks: ReplaceHooks | None = None,
        facts: Mapping[str, GatewayFacts] | None = None,
        first: Collection[str] = (),
        window: WindowSpec | None = None,
        tz: zoneinfo.ZoneInfo | None = None,
        replace_deadline: float = 300.0,
    ) -> None:
        self._runtime = runtime
        self._fleet = fleet
        self._desired: tuple[ContainerSpec, ...] = tuple(desired)
        self._publish = publish
        self._clock = clock
        self._interval = interval
        self._policy = policy or RestartPolicy()
        self._rng = rng or random.Random()
        self._stop_timeout = stop_timeout
        self._action_timeout = action_timeout
        self._event_retry = event_retry
        self._restarts: dict[str, _Restarts] = {}
        self._decides_restarts = decides_restarts
        # Gateways that must not be started (operator stop, FATAL, a lifecycle backoff).
        self._operator_stopped: set[str] = set(held)
        # Gateways whose lifecycle asked for a start the next pass must carry out.
        self._wanted: set[str] = set()
        self._announced: set[tuple[OrchestratorEventKind, str]] = set()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._closing = asyncio.Event()
        self.passes = 0  # completed reconcile passes, for tests and metrics
        # -- rollouts
        self._hooks: ReplaceHooks = hooks or rolling.ContainerRunning(runtime)
        self._facts: dict[str, GatewayFacts] = dict(facts or {})
        self._first = frozenset(first)
        self._window = window
        self._tz = tz
        self._replace_deadline = replace_deadline
        self._rollout_task: asyncio.Task[None] | None = None
        self._replacing: str | None = None  # the gateway being replaced: passes leave it alone
        self._now_anyway: set[str] = set()  # `ibfleet apply`: these go now, window or not
        self._blocked: Replacement | None = None  # a failed replacement: wait for apply
        self._announced_at: dict[str, datetime] = {}
        self.plan: RolloutPlan | None = None  # the last pass's rollout plan
        self.replacements: list[Replacement] = []  # every replacement carried out, in order

    # -- operator surface --------------------------------------------------------------------

    @property
    def operator_stopped(self) -> frozenset[str]:
        """Gateways held stopped (by an operator, or by the lifecycle that owns restarts)."""
        return frozenset(self._operator_stopped)

    held = operator_stopped

    def hold(self, gateway: str) -> None:
        """Start nothing for ``gateway`` until :meth:`start`; a running container is left."""
        self._operator_stopped.add(gateway)
        self._wanted.discard(gateway)

    def set_desired(self, desired: Sequence[ContainerSpec]) -> None:
        """Replace the desired specs (a reloaded fleet file); the next pass applies them."""
        self._desired = tuple(desired)
        self.request_reconcile()

    def request_reconcile(self) -> None:
        self._wake.set()

    async def operator_stop(self, gateway: str) -> None:
        """Stop a gateway and keep it stopped until :meth:`operator_start`."""
        self.hold(gateway)
        self._emit(OrchestratorEventKind.OPERATOR_STOPPED, gateway)
        async with self._lock:
            for container in await self._runtime.list(fleet=self._fleet):
                ours = container.fleet == self._fleet and container.gateway == gateway
                if ours and container.is_alive:
                    await self._runtime.stop(container.id, timeout=self._stop_timeout)

    def operator_start(self, gateway: str) -> None:
        """Undo an operator stop or a spent budget: the gateway may run (and retry) again.

        With ``decides_restarts=False`` this is also how the lifecycle asks for a start: the
        next pass creates or starts the gateway's container if it is not running.
        """
        self._operator_stopped.discard(gateway)
        self._wanted.add(gateway)
        state = self._restarts.get(gateway)
        if state is not None:
            state.attempts = 0
            state.retry_at = None
            state.exhausted = False
            state.window = Budget(limit=self._policy.budget, window=self._policy.budget_window)
        self._announced = {a for a in self._announced if not a[1].startswith(f"{gateway}/")}
        self._emit(OrchestratorEventKind.OPERATOR_STARTED, gateway)
        self.request_reconcile()

    stop = operator_stop
    start = operator_start

    async def restart(self, gateway: str) -> None:
        """Restart the gateway's container now (started if it is down, created if missing)."""
        self._operator_stopped.discard(gateway)
        async with self._lock:
            ours = [
                c
                for c in await self._runtime.list(fleet=self._fleet)
                if c.fleet == self._fleet and c.gateway == gateway
            ]
            alive = [c for c in ours if c.is_alive]
            target = alive[0] if alive else (ours[0] if ours else None)
            if target is None or target.state is ContainerState.DEAD:
                # Nothing to restart in place: the next pass creates (or recreates) it.
                self._wanted.add(gateway)
            else:
                await within(
                    self._runtime.restart(target.id, timeout=self._stop_timeout),
                    timeout=self._action_timeout,
                )
                self._emit(
                    OrchestratorEventKind.ACTION_DONE,
                    gateway,
                    action=ActionKind.START,
                    container_id=target.id,
                    detail="restart requested by the lifecycle",
                )
        self.request_reconcile()

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Reconcile now, then on every runtime event and every ``interval`` until closed."""
        events = asyncio.create_task(self._follow_events(), name=f"ibfleet-events-{self._fleet}")
        try:
            while not self._closing.is_set():
                self._wake.clear()
                await self.reconcile_once()
                await self._sleep_until_woken()
        finally:
            events.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await events
            log.info("orchestrator_stopped fleet=%s containers=left_running", self._fleet)

    async def close(self) -> None:
        """End :meth:`run` after the current pass; containers are left as they are.

        A replacement under way is finished first (ready or rolled back), never cut in half.
        """
        self._closing.set()
        self._wake.set()
        task = self._rollout_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    async def _sleep_until_woken(self) -> None:
        timeout = self._interval
        now = self._clock()
        for state in self._restarts.values():
            # A retry time already passed was acted on by the pass that just ran; only a
            # future one shortens the sleep (a past one would make this loop spin).
            if state.retry_at is not None and not state.exhausted and state.retry_at > now:
                timeout = min(timeout, (state.retry_at - now).total_seconds())
        with contextlib.suppress(TimeoutError):
            await within(self._wake.wait(), timeout=timeout)

    async def _follow_events(self) -> None:
        while True:
            try:
                async for event in self._runtime.events(fleet=self._fleet):
                    self._safe_publish(event)
                    self.request_reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the stream broke: say so, then follow it again
                log.warning(
                    "runtime_events_broken fleet=%s error=%s", self._fleet, type(exc).__name__
                )
            # A stream that ended may have missed events: reconcile covers the gap.
            self.request_reconcile()
            await asyncio.sleep(self._event_retry)

    # -- one pass ----------------------------------------------------------------------------

    async def reconcile_once(self) -> list[Action]:
        """Observe, plan and act once; returns the plan (including ADOPT/WAIT/CONFLICT)."""
        async with self._lock:
            try:
                observed = await within(
                    self._runtime.list(fleet=self._fleet), timeout=self._action_timeout
                )
            except Exception as exc:
                self._emit(
                    OrchestratorEventKind.RECONCILE_FAILED,
                    "*",
                    detail=f"cannot list containers: {type(exc).__name__}: {exc}",
                )
                return []
            now = self._clock()
            self._note_observed(observed, now)
            actions = reconcile.plan(
                self._desired, observed, fleet=self._fleet, hold=self._hold(now, observed)
            )
            self.plan = rollout.plan_rollout(
                actions,
                facts=self._facts,
                now=now,
                window=self._window,
                tz=self._tz,
                now_anyway=self._now_anyway,
                first=self._first,
            )
            # A running gateway's new spec is rolled out, never recreated in a pass; nor is the
            # gateway being replaced touched by one (its rollback copy included).
            allowed = [
                a
                for a in actions
                if not rollout.is_rolling(a)
                and a.gateway != self._replacing
                and self._admit(a, now)
            ]
            by_gateway: dict[str, list[Action]] = {}
            for action in allowed:
                by_gateway.setdefault(action.gateway, []).append(action)
            # Gateways are acted on concurrently; each gateway's actions run in plan order.
            await asyncio.gather(*(self._act_all(group) for group in by_gateway.values()))
            for spec in self._desired:
                # Brought up (or held) once: from now on a down container waits for a request.
                self._state(spec.gateway).settled = True
            self.passes += 1
        await self._start_rollout(self.plan)
        return actions

    def _state(self, gateway: str) -> _Restarts:
        state = self._restarts.get(gateway)
        if state is None:
            state = _Restarts(
                window=Budget(limit=self._policy.budget, window=self._policy.budget_window)
            )
            self._restarts[gateway] = state
        return state

    def _note_observed(self, observed: Sequence[ObservedContainer], now: datetime) -> None:
        for container in observed:
            if container.fleet != self._fleet or container.gateway is None:
                continue
            state = self._state(container.gateway)
            state.seen = True
            stable = container.started_at is not None and (
                now - container.started_at >= self._policy.stable_after
            )
            if container.is_alive and stable and state.attempts:
                state.attempts = 0
                state.retry_at = None

    def _hold(self, now: datetime, observed: Sequence[ObservedContainer]) -> frozenset[str]:
        held = set(self._operator_stopped)
        for gateway, state in self._restarts.items():
            if state.exhausted or (state.retry_at is not None and now < state.retry_at):
                held.add(gateway)
        return frozenset(held)

    def _admit(self, action: Action, now: datetime) -> bool:
        """Apply backoff and the retry budget to automatic restarts; False defers the action."""
        gateway = action.gateway
        state = self._state(gateway)
        if action.kind is ActionKind.CONFLICT:
            self._emit_once(
                OrchestratorEventKind.CONFLICT,
                gateway,
                container_id=action.container.id if action.container else None,
                detail=action.reason,
            )
            return False
        if action.kind is ActionKind.WAIT:
            deferred = state.retry_at is not None and now < state.retry_at
            if deferred and not state.exhausted and state.announced_retry != state.retry_at:
                state.announced_retry = state.retry_at
                self._emit(
                    OrchestratorEventKind.BACKOFF,
                    gateway,
                    detail=f"restart attempt {state.attempts + 1} deferred",
                    retry_at=state.retry_at,
                )
            return False
        if action.kind is ActionKind.ADOPT:
            cid = action.container.id if action.container else ""
            self._emit_once(OrchestratorEventKind.ADOPTED, gateway, container_id=cid)
            return False
        if not action.starts_container:
            return True
        if not self._decides_restarts:
            return self._admit_requested(action, state)
        automatic = action.kind is ActionKind.START or (
            state.seen and (action.container is None or not action.container.is_alive)
        )
        state.seen = True
        if not automatic:
            return True  # a first creation or a rollout of a running gateway's new spec
        if not state.window.allows(now):
            state.exhausted = True
            self._emit_once(
                OrchestratorEventKind.BUDGET_EXHAUSTED,
                gateway,
                detail=f"{self._policy.budget} automatic restarts within "
                f"{self._policy.budget_window}; held until an operator starts it",
            )
            return False
        state.window = state.window.record(now)
        delay = self._policy.backoff.delay(state.attempts, rng=self._rng)
        state.attempts += 1
        state.retry_at = now + delay
        return True

    def _admit_requested(self, action: Action, state: _Restarts) -> bool:
        """The lifecycle owns restarts: start a down container only at first or on request."""
        gateway = action.gateway
        first = not state.settled
        running = action.container is not None and action.container.is_alive
        if running or first or gateway in self._wanted:
            # A rollout of a running container's new spec, the first bring-up, or a start the
            # lifecycle asked for.
            self._wanted.discard(gateway)
            return True
        return False  # down since the last pass: the lifecycle decides whether it runs again

    async def _act_all(self, group: list[Action]) -> None:
        for action in group:
            try:
                await within(self._act(action), timeout=self._action_timeout)
            except Exception as exc:
                self._emit(
                    OrchestratorEventKind.ACTION_FAILED,
                    action.gateway,
                    action=action.kind,
                    container_id=action.container.id if action.container else None,
                    detail=f"{type(exc).__name__}: {exc}",
                )
                return  # later actions of this gateway depended on this one
            else:
                self._emit(
                    OrchestratorEventKind.ACTION_DONE,
                    action.gateway,
                    action=action.kind,
                    container_id=action.container.id if action.container else None,
                    detail=action.reason,
                )

    async def _act(self, action: Action) -> None:
        runtime = self._runtime
        container = action.container
        if action.kind is ActionKind.REMOVE and container is not None:
            await self._stop_and_remove(container)
        elif action.kind is ActionKind.RECREATE and container is not None:
            assert action.spec is not None
            await self._stop_and_remove(container)
            await self._create_and_start(action.spec)
        elif action.kind is ActionKind.CREATE:
            assert action.spec is not None
            await self._create_and_start(action.spec)
        elif action.kind is ActionKind.START and container is not None:
            await runtime.start(container.id)

    async def _create_and_start(self, spec: ContainerSpec) -> None:
        container_id = await self._runtime.create(spec)
        await self._runtime.start(container_id)

    async def _stop_and_remove(self, container: ObservedContainer) -> None:
        # A graceful stop first lets IBC log off, so IB does not see an abandoned session.
        steps: list[Callable[[], Awaitable[None]]] = []
        if container.is_alive:
            steps.append(lambda: self._runtime.stop(container.id, timeout=self._stop_timeout))
        steps.append(lambda: self._runtime.remove(container.id))
        for step in steps:
            with contextlib.suppress(ContainerGone):
                await step()

    # -- rollouts -----------------------------------------------------------------------------

    @property
    def replacing(self) -> str | None:
        """The gateway being replaced now, if any."""
        return self._replacing

    @property
    def blocked(self) -> Replacement | None:
        """The failed replacement that holds further ones until :meth:`apply`."""
        return self._blocked

    def apply(self, gateways: Collection[str] = (), *, now: bool = False) -> None:
        """``ibfleet apply``: carry out the plan (again after a failed canary).

        ``gateways`` (or every gateway when ``now`` and none is named) go now even outside the
        update window; without either the plan is carried out as its window says.
        """
        self._blocked = None
        if gateways:
            self._now_anyway.update(gateways)
        elif now:
            self._now_anyway.update(spec.gateway for spec in self._desired)
        self.request_reconcile()

    def rollout_running(self) -> bool:
        return self._rollout_task is not None and not self._rollout_task.done()

    async def wait_rollout(self) -> None:
        """Until the rollout under way (if any) has ended."""
        task = self._rollout_task
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    async def _start_rollout(self, plan: RolloutPlan) -> None:
        for line in plan.waiting:
            # Announced once per opening: the IB Key prompt comes at about the window's start.
            announce = line.second_factor and line.at is not None
            if announce and line.at is not None and self._announced_at.get(line.gateway) != line.at:
                self._announced_at[line.gateway] = line.at
                await self._hooks.announce(line.gateway, line.at)
        due = [line.gateway for line in plan.rolling if line.when is When.NOW]
        if not due or self.rollout_running() or self._closing.is_set():
            return
        if self._blocked is not None:
            self._emit_once(
                OrchestratorEventKind.ROLLOUT_BLOCKED,
                self._blocked.gateway,
                detail=f"{self._blocked.detail}; run `ibfleet apply` to try again",
            )
            return
        self._rollout_task = asyncio.create_task(
            self._roll(due), name=f"ibfleet-rollout-{self._fleet}"
        )

    async def _roll(self, order: list[str]) -> None:
        """Replace ``order`` one at a time; stop at the first that is not ready."""
        for index, gateway in enumerate(order):
            if self._closing.is_set() or self._blocked is not None:
                return
            async with self._lock:
                observed = await self._runtime.list(fleet=self._fleet)
                actions = reconcile.plan(self._desired, observed, fleet=self._fleet)
            action = next(
                (a for a in actions if a.gateway == gateway and rollout.is_rolling(a)), None
            )
            if action is None or action.spec is None or action.container is None:
                continue  # replaced meanwhile, or no longer running: nothing to roll
            result = await self._replace(action, canary=index == 0)
            self.request_reconcile()  # the plan operators see follows each replacement
            if result.outcome is not Outcome.REPLACED:
                self._blocked = result
                return
        self.request_reconcile()

    async def _replace(self, action: Action, *, canary: bool) -> Replacement:
        assert action.spec is not None and action.container is not None
        gateway = action.gateway
        self._replacing = gateway
        if (
            self._announced_at.get(gateway) is None
            and self._facts.get(gateway, GatewayFacts(name=gateway)).second_factor
        ):
            await self._hooks.announce(gateway, self._clock())
        try:
            result = await rolling.replace_one(
                runtime=self._runtime,
                hooks=self._hooks,
                lock=self._lock,
                spec=action.spec,
                old=action.container,
                canary=canary,
                deadline=self._replace_deadline,
                stop_timeout=self._stop_timeout,
                action_timeout=self._action_timeout,
                clock=self._clock,
            )
        except Exception as exc:
            result = Replacement(
                gateway, Outcome.FAILED, f"{type(exc).__name__}: {exc}", canary, self._clock()
            )
            with contextlib.suppress(Exception):
                await self._hooks.after_replace(result)
        finally:
            self._replacing = None
            self._now_anyway.discard(gateway)
            self._announced_at.pop(gateway, None)
        self.replacements.append(result)
        kind = (
            OrchestratorEventKind.REPLACED
            if result.outcome is Outcome.REPLACED
            else OrchestratorEventKind.ROLLED_BACK
        )
        self._emit(
            kind,
            gateway,
            action=ActionKind.RECREATE,
            container_id=action.container.id,
            detail=("canary: " if canary else "") + result.detail,
        )
        return result

    # -- publishing --------------------------------------------------------------------------

    def _emit(
        self,
        kind: OrchestratorEventKind,
        gateway: str,
        *,
        action: ActionKind | None = None,
        container_id: str | None = None,
        detail: str = "",
        retry_at: datetime | None = None,
    ) -> None:
        event = OrchestratorEvent(
            kind=kind,
            gateway=gateway,
            at=self._clock(),
            action=action,
            container_id=container_id,
            detail=detail,
            retry_at=retry_at,
        )
        level = logging.WARNING if kind in _WARN else logging.INFO
        log.log(
            level,
            "orchestrator_%s fleet=%s gateway=%s action=%s container=%s detail=%r",
            kind.value,
            self._fleet,
            gateway,
            action.value if action else "-",
            (container_id or "-")[:12],
            detail,
        )
        self._safe_publish(event)

    def _emit_once(
        self,
        kind: OrchestratorEventKind,
        gateway: str,
        *,
        container_id: str | None = None,
        detail: str = "",
    ) -> None:
        key = (kind, f"{gateway}/{container_id or ''}")
        if key in self._announced:
            return
        self._announced.add(key)
        self._emit(kind, gateway, container_id=container_id, detail=detail)

    def _safe_publish(self, event: RuntimeEvent | OrchestratorEvent) -> None:
        try:
            self._publish(event)
        except Exception as exc:  # a broken subscriber must not stop reconciling
            log.exception("orchestrator_publish_failed error=%s", type(exc).__name__)


_WARN = frozenset(
    {
        OrchestratorEventKind.ACTION_FAILED,
        OrchestratorEventKind.ROLLED_BACK,
        OrchestratorEventKind.ROLLOUT_BLOCKED,
        OrchestratorEventKind.CONFLICT,
        OrchestratorEventKind.BUDGET_EXHAUSTED,
        OrchestratorEventKind.RECONCILE_FAILED,
    }
)
