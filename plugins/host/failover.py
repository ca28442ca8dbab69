"""Where a strategy may trade next, and the one way it moves there.

:func:`plugins.host.candidates.candidates` is the failover rule (the strategy's gateways in
its order, not the one it leaves, on the same account, with a gate that lets a session act);
:meth:`Failover.first_of` is the move (fence the current session, then connect to the first
candidate that works and, when asked, does what the caller needs). Safe state, failover after
a lost gateway, the recovery of a waiting strategy and an operator's resume all move through
these two.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from plugins import api
from plugins.config import StrategyConfig
from plugins.host.broker import Session
from plugins.host.candidates import candidates
from plugins.host.runstate import RunState
from plugins.host.services import HostServices
from plugins.host.sessions import Sessions
from plugins.host.status import SafeStateRun, StrategyState

__all__ = ["Failover"]

log = logging.getLogger("plugins.host")

T = TypeVar("T")

#: Reconcile on a session and let the strategy act there (``failover``: it is a new gateway).
Resume = Callable[[Session, bool], Awaitable[None]]
Post = Callable[[str, Callable[[], Awaitable[None]]], None]


class Failover:
    def __init__(
        self,
        cfg: StrategyConfig,
        services: HostServices,
        run: RunState,
        sessions: Sessions,
        resume: Resume,
        post: Post,
        strategy: Callable[[], api.Strategy],
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self._services = services
        self._run = run
        self._sessions = sessions
        self._resume = resume
        self._post = post
        self._strategy = strategy
        self.count = 0

    def candidates(self, *, exclude: str | None, shutting_down: bool = False) -> list[str]:
        current = self._sessions.current
        return candidates(
            self.cfg.gateways,
            self._services.endpoints,
            exclude=exclude,
            account=current.account if current else None,
            usable=lambda g: self._services.usable(g, shutting_down=shutting_down),
        )

    async def first_of(
        self, names: Sequence[str], use: Callable[[Session], Awaitable[T | None]] | None = None
    ) -> tuple[Session, T | None] | None:
        """Fence the current session, then the first of ``names`` that connects (and whose
        ``use`` gives something other than None); every session tried and not kept is closed."""
        sessions = self._sessions
        for name in names:
            # Fence: the old session is closed before a new one does anything.
            sessions.close(sessions.current)
            try:
                session = await sessions.open(name)
            except ConnectionError as exc:
                log.warning(
                    "failover_connect_failed strategy=%s gateway=%s reason=%s",
                    self.name,
                    name,
                    exc,
                )
                continue
            if use is None:
                return session, None
            try:
                done = await use(session)
            except BaseException:
                sessions.close(session)  # cancelled midway: never leave it open
                raise
            if done is None:
                sessions.close(session)
                continue
            return session, done
        return None

    async def after_safe_state(self, run: SafeStateRun) -> None:
        """After a lost gateway's safe state: move to the next gateway, or wait for one."""
        async with self._run.lock:
            old = self._sessions.active
            session = self._sessions.current
            if session is None or session.closed or session.gateway == old:
                moved = await self.first_of(self.candidates(exclude=old))
                session = moved[0] if moved is not None else None
            if session is None:
                log.warning("failover_waiting strategy=%s gateway=%s", self.name, old)
                self._sessions.current = None
                change = api.GatewayChange(gateway=old or "", ready=False, reason="no gateway")
                self._post("gateway", lambda: self._strategy().on_gateway_state(change))
                return
            self._run.set(StrategyState.FAILING_OVER, gateway=self._sessions.active)
            self._record_move(
                "strategy.failover", "warning", old, session, f"failover from {old} to "
            )
            await self._resume(session, True)

    def _record_move(
        self, kind: str, severity: str, old: str | None, session: Session, message: str
    ) -> None:
        """Count a move and journal it (``message`` is completed with the new gateway)."""
        self.count += 1
        services = self._services
        if services.metrics is not None:
            services.metrics.failed_over(self.name)
        services.journal_event(
            at=services.clock.now(),
            kind=kind,
            gateway=session.gateway,
            strategy=self.name,
            severity=severity,
            message=message + session.gateway,
            fields={"from": old, "to": session.gateway, "client_id": session.client_id},
        )

    async def planned_move(self, gateway: str) -> str | None:
        """Before ``gateway`` is replaced (a rollout): move to the next candidate in order,
        reconciled there before the old session closes; returns where it went, or None.

        No safe state: the strategy's orders stay working at IB. The new session sees them
        (reqAllOpenOrders, same account) and may cancel them; IB lets only the session that
        placed an order modify it, so a modify after the move is refused (cancel and place
        anew). With no candidate on the same account the strategy stays and holds through the
        planned outage as its gate says (:func:`plugins.outage.react`).
        """
        async with self._run.lock:
            old = self._sessions.current
            if old is None or old.closed or old.gateway != gateway:
                return None
            if self._run.state is not StrategyState.RUNNING:
                return None
            for name in self.candidates(exclude=gateway):
                try:
                    session = await self._sessions.open(name)
                except ConnectionError as exc:
                    log.warning(
                        "planned_move_connect_failed strategy=%s gateway=%s reason=%s",
                        self.name,
                        name,
                        exc,
                    )
                    continue
                self._run.trading = False  # nothing is sent while the two sessions overlap
                try:
                    await self._resume(session, True)
                except BaseException:
                    self._sessions.close(session)
                    self._sessions.current = old
                    self._sessions.active = gateway
                    self._run.trading = True
                    raise
                self._sessions.close(old)  # only now: the new session is reconciled
                self._record_move(
                    "strategy.planned_move",
                    "info",
                    gateway,
                    session,
                    f"planned move (gateway replaced) from {gateway} to ",
                )
                return name
            return None

    async def recover_if_waiting(self, gateway: str) -> None:
        """A gateway came back while the strategy had none: resume there after reconciling."""
        run = self._run
        if run.state is not StrategyState.SAFE_STATE or self._sessions.current is not None:
            return
        if gateway not in self.cfg.gateways or run.lock.locked():
            return
        async with run.lock:
            moved = await self.first_of([gateway])
            if moved is not None:
                await self._resume(moved[0], gateway != self._sessions.active)

    async def move_to(self, gateway: str) -> Session:
        """An operator's resume on ``gateway``: the current session when it is there, else a
        new one (the old one fenced first); raises ConnectionError when it cannot connect."""
        session = self._sessions.current
        if session is not None and not session.closed and session.gateway == gateway:
            return session
        self._sessions.close(session)
        self._sessions.current = None
        return await self._sessions.open(gateway)

    def keep_recovering(self, gateway: str) -> None:
        """Start :meth:`recover_if_waiting` in the background (from a gate that opened)."""
        task = asyncio.get_running_loop().create_task(self.recover_if_waiting(gateway))
        self._services.keep(task)
