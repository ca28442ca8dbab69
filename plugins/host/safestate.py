"""Safe state: cancel / flatten / hold through the best path still open.

The same session, else a session on a failover gateway of the same account (which cancels the
lost gateway's orders one by one: ``reqGlobalCancel`` would also cancel other strategies'
orders on that account), else a critical alert listing the intents that may still be live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ib_async import Contract, Order, Trade

from gateway.aio import within
from plugins import api
from plugins.config import MAX_MESSAGES_PER_SECOND, SafeStateAction, StrategyConfig
from plugins.host.broker import Session, ask
from plugins.host.cancelling import CancelRun, cancel_open
from plugins.host.failover import Failover
from plugins.host.orderbook import OrderBook
from plugins.host.orders import OrderPath, take_token
from plugins.host.reconciling import Reconciler
from plugins.host.runstate import RunState
from plugins.host.services import HostServices, JournalFailure
from plugins.host.sessions import Sessions
from plugins.host.status import SafeStatePath, SafeStateRun, SafeStateTrigger, StrategyState
from plugins.intents import belongs_to, parent_of
from plugins.ratelimit import TokenBucket

__all__ = ["SafeState"]

log = logging.getLogger("plugins.host")

_DONE_WORDS = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})
#: What one path's work reports: the keys it cancelled and the closing orders it sent.
_Done = tuple[tuple[str, ...], tuple[str, ...]]


class SafeState:
    def __init__(
        self,
        cfg: StrategyConfig,
        services: HostServices,
        run: RunState,
        sessions: Sessions,
        book: OrderBook,
        orders: OrderPath,
        reconciler: Reconciler,
        failover: Failover,
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self._services = services
        self._run = run
        self._sessions = sessions
        self._book = book
        self._orders = orders
        self._reconciler = reconciler
        self._failover = failover
        #: Cancels and closing orders share IB's message budget, never the strategy's.
        self.bucket = TokenBucket(rate=MAX_MESSAGES_PER_SECOND)
        self.runs: list[SafeStateRun] = []

    async def run(
        self, trigger: SafeStateTrigger, action: SafeStateAction, *, failover: bool = False
    ) -> SafeStateRun:
        """Cancel / flatten / hold through the best path still open; record the run.

        ``failover``: a session opened on another gateway for it is kept as the current one.
        """
        async with self._run.lock:
            return await self._run_locked(trigger, action, failover=failover)

    async def _run_locked(
        self, trigger: SafeStateTrigger, action: SafeStateAction, *, failover: bool
    ) -> SafeStateRun:
        services, sessions = self._services, self._sessions
        clock = services.clock
        started_at = clock.now()
        t0 = clock.monotonic()
        self._run.trading = False
        self._run.set(StrategyState.SAFE_STATE, gateway=sessions.active)
        path = SafeStatePath.NOTHING
        gateway: str | None = None
        cancelled: tuple[str, ...] = ()
        closing: tuple[str, ...] = ()
        ok = True
        shutting_down = trigger is SafeStateTrigger.SHUTDOWN
        if action is not SafeStateAction.HOLD:
            ok = False
            session = sessions.current
            if (
                session is not None
                and not session.closed
                and trigger is not SafeStateTrigger.GATEWAY_LOST
                and services.usable(session.gateway, shutting_down=shutting_down)
            ):
                done = await self._act_via(session, action)
                if done is not None:
                    path, gateway, ok = SafeStatePath.SAME_GATEWAY, session.gateway, True
                    cancelled, closing = done
            if not ok:
                names = self._failover.candidates(
                    exclude=sessions.active, shutting_down=shutting_down
                )
                moved = await self._failover.first_of(names, lambda s: self._act_via(s, action))
                if moved is not None:
                    other, acted = moved
                    assert acted is not None
                    path, gateway, ok = SafeStatePath.FAILOVER_GATEWAY, other.gateway, True
                    cancelled, closing = acted
                    if failover:
                        sessions.current = other
                    else:
                        sessions.close(other)
        journal_error: str | None = None
        store = services.store
        try:
            if not await services.writer.settle(wait=services.settings.journal_wait):
                raise JournalFailure("the journal did not take the order reports in time")
            live = await services.journal(lambda: store.intents_maybe_live(self.name))
            still_live = tuple(i.key for i in live)
        except JournalFailure as exc:
            # The cancels went to IB regardless; what the journal cannot confirm may be live.
            journal_error = str(exc)
            still_live = tuple(o.key for o in self._book.working())
        if journal_error is not None:
            services.alert(
                f"strategy:{self.name}:maybe-live",
                "critical",
                f"strategy {self.name}: orders may be live (journal unavailable)",
                f"trigger {trigger.value}; {action.value} was sent to IB "
                f"{'and done' if ok else 'but no gateway could do it'}, yet the journal cannot "
                f"be read ({journal_error}). Orders that may still be live at IB (orderRef): "
                f"{', '.join(still_live) or 'none known'}",
            )
        elif not ok:
            path = SafeStatePath.ALERT_ONLY
            services.alert(
                f"strategy:{self.name}:maybe-live",
                "critical",
                f"strategy {self.name}: safe state could not reach IB",
                f"trigger {trigger.value}; no gateway could {action.value}. Orders that may "
                f"still be live at IB (orderRef): {', '.join(still_live) or 'none'}",
            )
        elif not still_live:
            services.resolve(f"strategy:{self.name}:maybe-live")
        duration = clock.monotonic() - t0
        run = SafeStateRun(
            strategy=self.name,
            trigger=trigger,
            action=action,
            path=path,
            gateway=gateway,
            started_at=started_at,
            duration_seconds=duration,
            cancelled=cancelled,
            closing_orders=closing,
            still_live=still_live,
            ok=ok,
        )
        self._record(run)
        return run

    def _record(self, run: SafeStateRun) -> None:
        services = self._services
        self.runs.append(run)
        if services.metrics is not None:
            services.metrics.safe_state_ran(self.name, run.trigger.value, run.duration_seconds)
        services.journal_event(
            at=services.clock.now(),
            kind="strategy.safe_state",
            gateway=run.gateway,
            strategy=self.name,
            severity="info" if run.ok else "critical",
            message=f"safe state {run.action.value} after {run.trigger.value} via {run.path.value}",
            fields={
                "trigger": run.trigger.value,
                "action": run.action.value,
                "path": run.path.value,
                "duration_seconds": round(run.duration_seconds, 4),
                "cancelled": list(run.cancelled),
                "closing_orders": list(run.closing_orders),
                "still_live": list(run.still_live),
                "ok": run.ok,
            },
        )
        log.info(
            "safe_state strategy=%s trigger=%s action=%s path=%s ok=%s duration=%.3f "
            "cancelled=%d still_live=%d",
            self.name,
            run.trigger.value,
            run.action.value,
            run.path.value,
            run.ok,
            run.duration_seconds,
            len(run.cancelled),
            len(run.still_live),
        )

    async def _act_via(self, session: Session, action: SafeStateAction) -> _Done | None:
        """Cancel (and flatten) through ``session``; None when it could not be confirmed."""
        try:
            cancelled = await self._cancel_all(session)
            closing: tuple[str, ...] = ()
            if action is SafeStateAction.FLATTEN:
                await self._reconcile_after(session)
                closing = await self._flatten(session)
            await self._reconcile_after(session)
        except (ConnectionError, TimeoutError, OSError) as exc:
            log.warning(
                "safe_state_path_failed strategy=%s gateway=%s reason=%s",
                self.name,
                session.gateway,
                exc,
            )
            return None
        return cancelled, closing

    async def _open_ours(self, session: Session) -> list[Trade]:
        trades = await ask(
            session, lambda b: b.open_orders(), timeout=self._services.settings.request_timeout
        )
        return [
            t
            for t in trades
            if belongs_to(t.order.orderRef, self.name) and t.orderStatus.status not in _DONE_WORDS
        ]

    async def _cancel_all(self, session: Session) -> tuple[str, ...]:
        """Cancel every open order carrying this strategy's key, one by one; wait until gone."""
        services = self._services
        deadline = services.clock.monotonic() + services.settings.cancel_deadline
        ours = await self._open_ours(session)
        # A bracket's exits before its entry: cancelling the entry first makes IB cancel the
        # exits itself, and the exits' own cancels would then be refused (10147).
        ours.sort(key=lambda t: parent_of(t.order.orderRef) is None)
        keys = tuple(t.order.orderRef for t in ours)
        sent: set[int] = set()
        while ours:
            for trade in ours:
                if trade.order.permId in sent:
                    continue
                await take_token(self.bucket, services)
                session.broker.cancel_order(trade.order)
                sent.add(trade.order.permId)
            if services.clock.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(ours)} orders still open at {session.gateway} after cancelling"
                )
            # IB confirms a cancel only in the open-order list: look again shortly.
            await asyncio.sleep(services.settings.retry_interval / 2)
            ours = await self._open_ours(session)
        return keys

    async def _reconcile_after(self, session: Session) -> None:
        """Reconcile after the cancels: a journal that cannot be read does not undo what IB
        was told (the run then says which orders may be live, from the book)."""
        try:
            await self._reconciler.reconcile(session)
        except JournalFailure as exc:
            log.error(
                "safe_state_reconcile_journal_failed strategy=%s gateway=%s error=%s",
                self.name,
                session.gateway,
                exc,
            )

    async def _flatten(self, session: Session) -> tuple[str, ...]:
        """Close the strategy's own positions with market orders (journalled, rate-limited)."""
        services, book = self._services, self._book
        keys: list[str] = []
        for con_id, qty in list(book.positions.items()):
            if abs(qty) < 1e-9:
                continue
            contract = book.contracts.get(con_id) or Contract(conId=con_id, exchange="SMART")
            side = api.Side.SELL if qty > 0 else api.Side.BUY
            order = Order(action=side.value, totalQuantity=abs(qty), orderType="MKT")
            await take_token(self.bucket, services)
            keys.append((await self._orders.send(session, contract, order, purpose="flatten")).key)
        deadline = services.clock.monotonic() + services.settings.flatten_deadline
        changed = self._run.changed
        while not book.flat():
            if services.clock.monotonic() > deadline or session.closed:
                raise TimeoutError(f"positions not flat at {session.gateway} in time")
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await within(changed.wait(), services.settings.retry_interval)
        return tuple(keys)

    # -- cancel by criteria (operator) -------------------------------------------------------

    async def cancel_matching(self, *, symbol: str | None, dry_run: bool) -> CancelRun:
        """Cancel this strategy's open orders at IB (of ``symbol`` only, when given) through
        its own session, without halting it; waits for a safe-state run in progress."""
        session = self._sessions.current
        if session is None or session.closed:
            return CancelRun(
                scope="strategy",
                strategy=self.name,
                account=None,
                gateway=self._sessions.active,
                orders=(),
                still_open=(),
                ok=False,
                detail=f"strategy {self.name} has no open API session "
                f"(state {self._run.state.name})",
                dry_run=dry_run,
            )

        def mine(ref: str) -> bool:
            return belongs_to(ref, self.name)

        async with self._run.lock:
            return await cancel_open(
                session,
                self._services,
                self.bucket,
                scope="strategy",
                strategy=self.name,
                keep=mine,
                symbol=symbol,
                dry_run=dry_run,
            )
