"""Riding out an outage of the strategy's gateway, and waiting for a first gateway.

The supervisor's order gate says what kind of outage a gateway is in; whether the strategy
holds, waits out its grace, runs safe state or fails over is :func:`plugins.outage.react`'s
decision, re-evaluated here whenever the gate changes or the reaction is due to change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from datetime import timedelta

from gateway.aio import within
from gateway.outage import Gate, OutageKind
from plugins import api, outage
from plugins.config import StrategyConfig
from plugins.host.failover import Failover, Post, Resume
from plugins.host.runstate import RunState
from plugins.host.safestate import SafeState
from plugins.host.services import HostServices
from plugins.host.sessions import Sessions
from plugins.host.status import SafeStateTrigger, StrategyState

__all__ = ["Outages"]

log = logging.getLogger("plugins.host")


class Outages:
    def __init__(
        self,
        cfg: StrategyConfig,
        services: HostServices,
        run: RunState,
        sessions: Sessions,
        safe_state: SafeState,
        failover: Failover,
        resume: Resume,
        post: Post,
        strategy: Callable[[], api.Strategy],
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self._services = services
        self._run = run
        self._sessions = sessions
        self._safe = safe_state
        self._failover = failover
        self._resume = resume
        self._post = post
        self._strategy = strategy
        #: The task that rides out an outage of the active gateway.
        self.ride_task: asyncio.Task[None] | None = None
        self.first_task: asyncio.Task[None] | None = None  # waiting for a first gateway
        self.since: float | None = None  # monotonic: the outage's first sign
        #: The ride's latest look: the kind, the step react() gave and the elapsed seconds.
        self.last_look: tuple[OutageKind, outage.Step, float] | None = None

    def riding(self) -> bool:
        return self.ride_task is not None and not self.ride_task.done()

    # -- what starts a ride ------------------------------------------------------------------

    def gate_changed(self, gateway: str, gate: Gate, was: bool | None) -> None:
        """The supervisor's order gate of ``gateway`` opened or closed (or changed its kind)."""
        run = self._run
        run.changed.set()
        if not gate.open and gateway == self._sessions.active:
            # Only a gateway that was open (or that a running strategy trades on, or whose
            # outage is already being ridden) can be lost: one still coming up is not.
            in_use = was is True or (was is None and run.state is StrategyState.RUNNING)
            # A strategy still starting, with no session yet, has nothing there to ride out:
            # its start waits for the gate itself (a new leader's restored gate may flap).
            starting = run.state is StrategyState.LOADED and self._sessions.current is None
            if (in_use and not starting) or self.riding():
                self.began(f"gateway {gateway}: {gate.reason or 'order gate closed'}")
        elif gate.open and run.state is StrategyState.SAFE_STATE and self._sessions.current is None:
            self._failover.keep_recovering(gateway)

    def began(self, reason: str) -> None:
        """The active gateway's gate closed or its session dropped: ride the outage out."""
        run = self._run
        run.trading = False
        run.changed.set()
        if run.stopping or run.state not in (StrategyState.RUNNING, StrategyState.LOADED):
            return
        if not self.riding():
            self.since = self._services.clock.monotonic()
            self.ride_task = asyncio.create_task(
                self._ride_outage(reason), name=f"ibfleet-outage-{self.name}"
            )
        active = self._sessions.active or ""
        change = api.GatewayChange(
            gateway=active, ready=False, reason=reason, kind=self._services.feed(active).kind
        )
        if run.started:
            self._post("gateway", lambda: self._strategy().on_gateway_state(change))

    # -- the ride ----------------------------------------------------------------------------

    def _now(self, gateway: str, since: float) -> tuple[OutageKind, timedelta | None, float]:
        """The outage's kind, bound and elapsed seconds as the lifecycle and our session say.

        A closed gate gives its kind and bound, timed from the outage's first sign. An open
        (or ungated) gateway whose session we cannot get back is lost as far as we know,
        timed from the gate's opening: a planned hold's time is never counted as lost time.
        """
        feed = self._services.feed(gateway)
        gate = feed.gate
        now = self._services.clock.monotonic()
        if gate is not None and not gate.open and gate.kind is not None:
            return gate.kind, gate.bound, now - since
        opened = feed.changed_at if gate is not None else since
        return OutageKind.LOST, None, now - max(since, opened)

    def _react(self, gateway: str, since: float) -> tuple[OutageKind, outage.Reaction, float]:
        kind, bound, elapsed = self._now(gateway, since)
        reaction = outage.react(kind, self.cfg.safe_state, timedelta(seconds=elapsed), bound)
        self.last_look = (kind, reaction.step, elapsed)
        left = math.inf if reaction.recheck_in is None else reaction.recheck_in.total_seconds()
        return kind, reaction, left

    async def _ride_outage(self, reason: str) -> None:
        try:
            await self._ride(reason)
        finally:
            if self.ride_task is asyncio.current_task():
                self.since = None

    async def _ride(self, reason: str) -> None:
        run, services = self._run, self._services
        gateway = self._sessions.active or self.cfg.gateways[0]
        since = self.since if self.since is not None else services.clock.monotonic()
        log.warning(
            "strategy_gateway_out strategy=%s gateway=%s grace=%.1f reason=%s",
            self.name,
            gateway,
            self.cfg.safe_state.grace.total_seconds(),
            reason,
        )
        reported: tuple[OutageKind, outage.Step] | None = None
        while run.state in (StrategyState.RUNNING, StrategyState.LOADED) and not run.stopping:
            run.changed.clear()  # before looking: a change from here on wakes the wait below
            kind, reaction, left = self._react(gateway, since)
            if services.feed(gateway).ready is not False:
                # Its gate allows it: back on the same gateway before anything else, with a
                # connect attempt that never runs far past the moment the reaction changes.
                if await self._back_on(gateway, budget=max(left, 0.01)):
                    return
                kind, reaction, left = self._react(gateway, since)
            if (kind, reaction.step) != reported:
                log.info(
                    "strategy_outage strategy=%s gateway=%s kind=%s step=%s",
                    self.name,
                    gateway,
                    kind.value,
                    reaction.step.value,
                )
                reported = (kind, reaction.step)
            if reaction.step is outage.Step.SAFE_STATE:
                assert reaction.action is not None
                trigger = (
                    SafeStateTrigger.SHUTDOWN
                    if kind is OutageKind.SHUTDOWN
                    else SafeStateTrigger.GATEWAY_LOST
                )
                done = await self._safe.run(trigger, reaction.action, failover=reaction.fail_over)
                if trigger is SafeStateTrigger.SHUTDOWN:
                    run.shutdown_done = True
                if reaction.fail_over and not run.stopping:
                    await self._failover.after_safe_state(done)
                return
            # HOLD or WAIT: look again when the gate changes or the reaction is due to.
            with contextlib.suppress(TimeoutError):
                pause = min(left, services.settings.retry_interval * 5)
                await within(run.changed.wait(), max(pause, 0.001))

    async def _back_on(self, gateway: str, *, budget: float) -> bool:
        """Resume on ``gateway`` if its gate is not closed: the same session, else a new one."""
        feed = self._services.feed(gateway)
        if feed.ready is False:
            return False
        session = self._sessions.current
        if session is not None and not session.closed:
            if not feed.ready:
                return False  # ungated and our session still up: nothing says it is back
            await self._resume(session, False)
            return True
        try:
            # Never the same instant as the client's own connect timeout: a cancel landing on
            # ib_async's wait_for can be lost (3.11).
            new = await within(
                self._sessions.open(gateway),
                min(budget, self._services.settings.connect_timeout + 1.0),
            )
        except (ConnectionError, TimeoutError):
            return False
        if self._services.feed(gateway).ready is False:
            # The gate closed while we connected: the outage goes on (a planned one holds).
            self._sessions.close(new)
            return False
        await self._resume(new, False)
        return True

    # -- a first gateway ---------------------------------------------------------------------

    def wait_for_first(self) -> None:
        """Nothing of ours can be live: wait quietly for a gateway to come up (no safe state,
        no page: a fleet that is still starting is not a lost gateway)."""
        self.first_task = asyncio.create_task(
            self._await_first_gateway(), name=f"ibfleet-first-{self.name}"
        )

    async def _await_first_gateway(self) -> None:
        run, services = self._run, self._services
        primary = self.cfg.gateways[0]
        waiting_since = services.clock.monotonic()
        patience = timedelta(
            seconds=max(
                services.settings.primary_patience, self.cfg.safe_state.grace.total_seconds()
            )
        )
        while run.state is StrategyState.LOADED:
            run.changed.clear()
            readiness = services.gates.readiness(
                self.cfg.gateways, waiting_since=waiting_since, now=services.clock.monotonic()
            )
            choice = outage.start_choice(readiness, patience=patience)
            for name in choice.try_now:
                try:
                    # open() bounds itself; the outer deadline only guards against a hang, so
                    # a slow handshake is closed by the client, never abandoned half-open.
                    session = await within(
                        self._sessions.open(name), services.settings.connect_timeout + 5.0
                    )
                except (ConnectionError, TimeoutError) as exc:
                    log.info("strategy_first_connect_failed strategy=%s error=%s", self.name, exc)
                    continue
                if name != primary and services.feed(primary).ready:
                    # The primary came up while we were connecting elsewhere: start there.
                    self._sessions.close(session)
                    break
                try:
                    await self._resume(session, name != primary)
                except Exception as exc:  # keep waiting rather than die silently
                    log.warning("strategy_first_resume_failed strategy=%s error=%r", self.name, exc)
                    self._sessions.close(session)
                    continue
                return
            wait = 1.0
            if choice.recheck_in is not None:
                wait = min(wait, choice.recheck_in.total_seconds())
            with contextlib.suppress(TimeoutError):
                await within(run.changed.wait(), max(wait, 0.001))

    async def stop(self) -> None:
        """A safe state or failover under way finishes (never half a cancel, never a session
        left open); a ride that is only waiting ends at once on ``stopping``."""
        settings = self._services.settings
        ride = self.ride_task
        me = asyncio.current_task()
        if ride is not None and ride is not me and not ride.done():
            await asyncio.wait(
                {ride},
                timeout=settings.connect_timeout
                + settings.cancel_deadline
                + settings.flatten_deadline
                + 4 * settings.request_timeout,
            )
        for task in (ride, self.first_task):
            if task is not None and task is not me and not task.done():
                task.cancel()
                # Bounded: a cancel that lands on a connect in flight ends with that connect.
                await asyncio.wait({task}, timeout=settings.connect_timeout + 2.0)

    def cancel(self) -> None:
        me = asyncio.current_task()
        for task in (self.ride_task, self.first_task):
            if task is not None and task is not me:
                task.cancel()
