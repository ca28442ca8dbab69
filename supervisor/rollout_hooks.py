"""The supervisor's side of a rolling replacement (:class:`supervisor.rolling.ReplaceHooks`).

Before a gateway is replaced its strategies are moved to their failover (``move_hooks``: the
strategy host's planned move) and its lifecycle is told, so the outage is a planned one and
the old container's stop pages nobody. Ready means the lifecycle's API_READY on the new
container: logged in, answering probes, permissions as configured. A rollback raises one alert
saying what failed and that the gateway is back on its previous container; a replacement that
needs a second factor is announced ahead ("approve the IB Key prompt for X at about HH:MM").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from gateway.runtime import ContainerGone, ContainerState
from supervisor import lifecycle as lc
from supervisor import rollout
from supervisor.alertpolicy import Alert, Severity
from supervisor.rolling import Outcome, Replacement

if TYPE_CHECKING:
    from supervisor.fleet_loop import Supervisor
    from supervisor.gateway_controller import GatewayController
    from supervisor.settings import FleetSettings

__all__ = ["FleetReplaceHooks", "facts_of", "first_of", "rollout_alert_key", "rollout_options"]

log = logging.getLogger("ibfleet.rollout")

#: How long the runtime's events may lag behind the rollout's own calls, at most.
_EVENTS_LAG = 10.0

#: How often a replacement asks the runtime whether the new container still runs.
_LOOK_EVERY = 1.0

#: Moves the strategies trading on a gateway to their failover before it is replaced.
MoveHook = Callable[[str], Awaitable[object]]


def rollout_alert_key(gateway: str) -> str:
    return f"rollout:{gateway}"


def facts_of(settings: FleetSettings) -> dict[str, rollout.GatewayFacts]:
    """The rollout planner's facts of every gateway of the fleet file."""
    return rollout.fleet_facts(
        settings.gateways,
        settings.strategies,
        simulated=settings.simulator.enabled,
        simulated_second_factor=settings.simulator.twofa_gateways,
    )


def first_of(settings: FleetSettings) -> set[str]:
    """What is replaced before every gateway: the simulator's broker, which they all use."""
    from supervisor.simfleet import BROKER_GATEWAY

    return {BROKER_GATEWAY} if settings.simulator.enabled else set()


def rollout_options(
    settings: FleetSettings, replace_deadline: float | None, hooks: FleetReplaceHooks
) -> dict[str, Any]:
    """The orchestrator's rollout arguments from the fleet file.

    A replacement gets the login deadline, plus IB's 3-minute IB Key wait on a gateway whose
    login asks for a second factor, unless ``replace_deadline`` says otherwise (tests).
    """
    facts = facts_of(settings)
    deadline = settings.health.login_deadline.total_seconds()
    if any(f.second_factor for f in facts.values()):
        deadline += 180.0
    return {
        "hooks": hooks,
        "facts": facts,
        "first": first_of(settings),
        "window": settings.runtime.update_window,
        "tz": settings.tz,
        "replace_deadline": deadline if replace_deadline is None else replace_deadline,
    }


class FleetReplaceHooks:
    """Built before the supervisor's controllers exist; :meth:`bind` hands them in."""

    def __init__(self, *, poll: float = 0.2) -> None:
        self.move_hooks: list[MoveHook] = []
        self._supervisor: Supervisor | None = None
        self._poll = poll

    def bind(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    @property
    def _sup(self) -> Supervisor:
        assert self._supervisor is not None, "FleetReplaceHooks used before bind()"
        return self._supervisor

    async def before_replace(self, gateway: str, *, bound: float) -> None:
        for move in self.move_hooks:
            try:
                await move(gateway)
            except Exception:
                # A strategy that cannot move holds through the planned outage instead.
                log.exception("rollout_move_failed gateway=%s", gateway)
        controller = self._sup.controllers.get(gateway)
        if controller is not None:
            # Until then the rollout decides (its deadline, its rollback), never the lifecycle.
            until = self._sup.clock() + timedelta(seconds=bound)
            controller.post(lc.ReplaceStarted(until=until))
            await controller.drain()

    async def keeps_down(self, gateway: str) -> bool:
        controller = self._sup.controllers.get(gateway)
        return controller is not None and controller.status.state in lc.OPERATOR_STATES

    async def wait_ready(self, gateway: str, container_id: str, *, timeout: float) -> bool:
        controller = self._sup.controllers.get(gateway)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        next_look = loop.time() + _LOOK_EVERY
        while loop.time() < deadline:
            if controller is None:
                return True  # not a gateway (the simulator's broker): running is enough
            if loop.time() >= next_look:
                next_look = loop.time() + _LOOK_EVERY
                if not await self._alive(container_id):
                    return False  # it exited (a broken image): roll back now, not at the deadline
            current = controller.container
            on_new = current is not None and current.id == container_id
            if on_new and controller.status.state is lc.State.API_READY:
                return True
            if controller.status.state in lc.OPERATOR_STATES:
                return False  # stopped by an operator, or FATAL: it will not become ready
            # The lifecycle's state has no awaitable of its own; it changes within a probe.
            await asyncio.sleep(self._poll)
        return False

    async def _alive(self, container_id: str) -> bool:
        try:
            found = await self._sup.runtime.inspect(container_id)
        except ContainerGone:
            return False
        except Exception:
            return True  # the engine did not answer: the deadline decides
        return found.state not in (ContainerState.EXITED, ContainerState.DEAD)

    async def after_replace(self, result: Replacement) -> None:
        sup = self._sup
        controller = sup.controllers.get(result.gateway)
        if controller is not None:
            await self._until_started(controller, result)
            controller.post(lc.ReplaceFinished(ok=result.outcome is Outcome.REPLACED))
        now = sup.clock()
        ok = result.outcome is Outcome.REPLACED
        await sup.deps.journal.append_event(
            at=now,
            kind="rollout",
            gateway=result.gateway,
            severity="info" if ok else "warning",
            message=f"rollout {result.outcome.value}: {result.detail}",
        )
        if ok:
            await sup.deps.dispatcher.resolve(rollout_alert_key(result.gateway))
            return
        role = "canary " if result.canary else ""
        back = (
            "it is back on its previous container and the rest of the fleet was not touched"
            if result.outcome is Outcome.ROLLED_BACK
            else "its previous container could not be restored either"
        )
        await sup.deps.dispatcher.raise_(
            Alert(
                key=rollout_alert_key(result.gateway),
                severity=Severity.CRITICAL
                if result.outcome is Outcome.FAILED
                else Severity.WARNING,
                title=f"ibfleet rollout stopped: {role}gateway {result.gateway} not ready",
                body=f"{result.detail}. {back.capitalize()}. Further replacements wait: fix the "
                "fleet file, then `ibfleet plan` and `ibfleet apply`.",
            )
        )

    async def _until_started(self, controller: GatewayController, result: Replacement) -> None:
        """Until the runtime's start of the container the gateway is left on has reached the
        controller: the events of the rollout's own stops and removals come before it, so
        they are read as the rollout's, never as a death the lifecycle would act on."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _EVENTS_LAG
        wanted = result.container_id
        if wanted is None or result.outcome is Outcome.FAILED:
            return
        if result.outcome is Outcome.ROLLED_BACK and controller.status.state in lc.OPERATOR_STATES:
            return  # restored stopped: no start to wait for
        while loop.time() < deadline:
            if controller.current_id == wanted:
                break
            await asyncio.sleep(self._poll)  # the runtime's event stream has no ack to await
        with contextlib.suppress(TimeoutError):
            await controller.drain(_EVENTS_LAG)

    async def announce(self, gateway: str, at: datetime) -> None:
        local = at.astimezone(self._sup.settings.tz)
        await self._sup.deps.dispatcher.raise_(
            Alert(
                key=f"{rollout_alert_key(gateway)}:2fa",
                severity=Severity.WARNING,
                title=f"approve the IB Key prompt for {gateway} at about {local:%H:%M}",
                body=f"gateway {gateway} is replaced with its new spec at about "
                f"{local:%Y-%m-%d %H:%M %Z}: a full login that waits for your phone.",
            )
        )
