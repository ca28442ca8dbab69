"""Rolling replacement: one gateway at a time, the canary first, rolled back when not ready.

The orchestrator decides nothing here: :mod:`supervisor.rollout` says which running gateways
need a new container, in which order and when; this module carries one replacement out:

1. ``hooks.before_replace``: the supervisor moves the strategies trading on the gateway to
   their failover (a planned move: reconciled there before the old session closes, no safe
   state) and tells the lifecycle that a replacement begins (a planned outage, no page);
2. the old container is stopped (IBC logs off) and kept under ``<name>-previous``;
3. the new one is created and started; ``hooks.wait_ready`` waits until it is logged in and
   answers probes (the lifecycle's API_READY), within ``deadline``;
4. ready: the previous container is removed. Not ready: the new one is removed and the previous
   one renamed back and started, exactly as it ran (its image, its files), unless
   ``hooks.keeps_down`` says the lifecycle holds the gateway (an operator stopped it meanwhile,
   or a login budget is spent): then it is renamed back and left stopped.

While it runs the rollout alone decides what a death, a failed login or a missed deadline of
the gateway means (the lifecycle is told, with the bound ``deadline`` plus the stop and action
timeouts); ``hooks.after_replace`` hands the gateway back.

One replacement at a time also keeps the rule that gateways sharing an account, or used together
by a strategy, are never down together: the next one goes only once this one answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gateway.aio import within
from gateway.runtime import ContainerGone, ContainerState, ObservedContainer, Runtime
from gateway.spec import ContainerSpec
from supervisor.reconcile import previous_name

__all__ = [
    "ContainerRunning",
    "Outcome",
    "ReplaceHooks",
    "Replacement",
    "replace_one",
]

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    REPLACED = "replaced"
    ROLLED_BACK = "rolled_back"  # not ready in time: back on the previous container
    FAILED = "failed"  # not ready, and the previous container could not be restored either


@dataclass(frozen=True, slots=True)
class Replacement:
    """How one replacement went, for the hooks, the events and the status."""

    gateway: str
    outcome: Outcome
    detail: str
    canary: bool
    at: datetime
    seconds: float = 0.0
    #: The container the gateway is on afterwards (the new one, or the restored previous one).
    container_id: str | None = None


class ReplaceHooks(Protocol):
    """What the orchestrator asks of the rest of the supervisor around a replacement."""

    async def before_replace(self, gateway: str, *, bound: float) -> None:
        """Move strategies off ``gateway`` and tell its lifecycle that for ``bound`` seconds
        the rollout decides (may take a while)."""
        ...

    async def keeps_down(self, gateway: str) -> bool:
        """True when the gateway must stay stopped: a rollback restores but does not start it."""
        ...

    async def wait_ready(self, gateway: str, container_id: str, *, timeout: float) -> bool:
        """True once the new container is logged in and answers probes, within ``timeout``."""
        ...

    async def after_replace(self, result: Replacement) -> None:
        """The replacement ended (alert on a rollback; the lifecycle's replace is over)."""
        ...

    async def announce(self, gateway: str, at: datetime) -> None:
        """A replacement of ``gateway`` that needs a second factor will happen at ``at``."""
        ...


class ContainerRunning:
    """Hooks for standalone use (no lifecycle, no strategies): ready = running for ``settle``
    seconds; the runtime is asked every ``every`` seconds."""

    def __init__(self, runtime: Runtime, *, settle: float = 2.0, every: float = 0.2) -> None:
        self._runtime = runtime
        self._settle = settle
        self._every = every

    async def before_replace(self, gateway: str, *, bound: float) -> None:
        return None

    async def keeps_down(self, gateway: str) -> bool:
        return False

    async def wait_ready(self, gateway: str, container_id: str, *, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        running_since: float | None = None
        while loop.time() < deadline:
            try:
                state = (await self._runtime.inspect(container_id)).state
            except ContainerGone:
                return False
            if state is ContainerState.RUNNING:
                running_since = running_since if running_since is not None else loop.time()
                if loop.time() - running_since >= self._settle:
                    return True
            elif state in (ContainerState.EXITED, ContainerState.DEAD):
                return False
            await asyncio.sleep(self._every)  # the runtime has no readiness event to wait on
        return False

    async def after_replace(self, result: Replacement) -> None:
        return None

    async def announce(self, gateway: str, at: datetime) -> None:
        return None


async def _quietly(step: Awaitable[None]) -> None:
    with contextlib.suppress(ContainerGone):
        await step


async def replace_one(
    *,
    runtime: Runtime,
    hooks: ReplaceHooks,
    lock: asyncio.Lock,
    spec: ContainerSpec,
    old: ObservedContainer,
    canary: bool,
    deadline: float,
    stop_timeout: float,
    action_timeout: float,
    clock: Callable[[], datetime],
) -> Replacement:
    """Replace ``old`` by a container of ``spec``; roll back when it is not ready in time."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    gateway = spec.gateway
    kept = previous_name(spec.name)
    await hooks.before_replace(gateway, bound=deadline + 2 * stop_timeout + 3 * action_timeout)
    new_id: str | None = None
    failure = ""
    async with lock:
        for container in await runtime.list(fleet=spec.fleet):
            if container.name == kept and container.id != old.id:
                await _quietly(runtime.remove(container.id))  # a stale copy
        if old.is_alive:
            # A graceful stop lets IBC log off, so IB does not see an abandoned session.
            await within(runtime.stop(old.id, timeout=stop_timeout), timeout=action_timeout)
        await within(runtime.rename(old.id, kept), timeout=action_timeout)
        try:
            new_id = await within(runtime.create(spec), timeout=action_timeout)
            await within(runtime.start(new_id), timeout=action_timeout)
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"
    ready = False
    if not failure and new_id is not None:
        ready = await hooks.wait_ready(gateway, new_id, timeout=deadline)
        if not ready:
            failure = f"not logged in and answering probes within {deadline:g}s"
    if ready:
        async with lock:
            await _quietly(runtime.remove(old.id))
        result = Replacement(
            gateway,
            Outcome.REPLACED,
            "on the new spec",
            canary,
            clock(),
            loop.time() - began,
            container_id=new_id,
        )
    else:
        result = await _roll_back(
            runtime=runtime,
            hooks=hooks,
            lock=lock,
            spec=spec,
            old=old,
            new_id=new_id,
            failure=failure,
            canary=canary,
            action_timeout=action_timeout,
            clock=clock,
            began=began,
        )
    log.log(
        logging.INFO if result.outcome is Outcome.REPLACED else logging.WARNING,
        "rollout_%s gateway=%s canary=%s seconds=%.1f detail=%r",
        result.outcome.value,
        gateway,
        canary,
        result.seconds,
        result.detail,
    )
    await hooks.after_replace(result)
    return result


async def _roll_back(
    *,
    runtime: Runtime,
    hooks: ReplaceHooks,
    lock: asyncio.Lock,
    spec: ContainerSpec,
    old: ObservedContainer,
    new_id: str | None,
    failure: str,
    canary: bool,
    action_timeout: float,
    clock: Callable[[], datetime],
    began: float,
) -> Replacement:
    loop = asyncio.get_running_loop()
    down = await hooks.keeps_down(spec.gateway)
    async with lock:
        try:
            if new_id is not None:
                await _quietly(runtime.remove(new_id))
            await within(runtime.rename(old.id, old.name), timeout=action_timeout)
            if not down:
                await within(runtime.start(old.id), timeout=action_timeout)
        except Exception as exc:
            detail = f"{failure}; the previous container could not be restored: {exc}"
            return Replacement(spec.gateway, Outcome.FAILED, detail, canary, clock(), 0.0)
    detail = f"{failure}; back on the previous container ({old.image or 'previous image'})"
    if down:
        detail += ", left stopped: the gateway is held (stopped or FATAL)"
    return Replacement(
        spec.gateway,
        Outcome.ROLLED_BACK,
        detail,
        canary,
        clock(),
        loop.time() - began,
        container_id=old.id,
    )
