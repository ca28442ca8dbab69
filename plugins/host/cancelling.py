"""Cancel by criteria, for operators: a strategy's orders (ibfleet's own, by orderRef), or,
asked for explicitly, every order on the account whoever placed it.

A strategy's cancel goes through its own session, one order at a time, and waits until IB's
open-order list no longer shows them. The account-wide cancel uses one open session per
account: with no symbol filter it is IB's ``reqGlobalCancel`` (every order of the account,
any client); with one, per-order cancels, which IB carries out for another client's order only
when the session is the gateway's master client, so whatever stays open is reported.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ib_async import Trade

from plugins.config import MAX_MESSAGES_PER_SECOND
from plugins.host.broker import Session, ask
from plugins.host.orders import take_token
from plugins.host.services import HostServices
from plugins.intents import parent_of, strategy_of
from plugins.ratelimit import TokenBucket

__all__ = [
    "AccountCancel",
    "CancelRun",
    "OrderAtIb",
    "cancel_open",
    "every_order",
    "orders_at_ib",
    "wait_until_gone",
]

log = logging.getLogger("plugins.host")

_DONE_WORDS = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})


@dataclass(frozen=True, slots=True)
class OrderAtIb:
    """One open order as IB lists it; ``strategy`` when it carries an ibfleet key."""

    account: str
    perm_id: int
    client_id: int
    order_ref: str
    symbol: str
    action: str
    quantity: float
    order_type: str
    status: str
    strategy: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "perm_id": self.perm_id,
            "client_id": self.client_id,
            "order_ref": self.order_ref,
            "symbol": self.symbol,
            "action": self.action,
            "quantity": self.quantity,
            "order_type": self.order_type,
            "status": self.status,
            "strategy": self.strategy,
        }


@dataclass(frozen=True, slots=True)
class CancelRun:
    """What one cancel did: the orders it named, those still open after, and how."""

    scope: str  # "strategy" or "account"
    strategy: str | None
    account: str | None
    gateway: str | None
    orders: tuple[OrderAtIb, ...]
    still_open: tuple[OrderAtIb, ...]
    ok: bool
    detail: str = ""
    dry_run: bool = False
    global_cancel: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "strategy": self.strategy,
            "account": self.account,
            "gateway": self.gateway,
            "orders": [o.to_json() for o in self.orders],
            "still_open": [o.to_json() for o in self.still_open],
            "ok": self.ok,
            "detail": self.detail,
            "dry_run": self.dry_run,
            "global_cancel": self.global_cancel,
        }


def orders_at_ib(
    trades: Iterable[Trade], *, symbol: str | None, keep: Callable[[str], bool]
) -> list[tuple[Trade, OrderAtIb]]:
    """The open orders among ``trades`` of ``symbol`` (any, when None) whose orderRef ``keep``
    accepts, each with its plain description."""
    found = []
    for t in trades:
        if t.orderStatus.status in _DONE_WORDS:
            continue
        if symbol is not None and t.contract.symbol.upper() != symbol.upper():
            continue
        if not keep(t.order.orderRef or ""):
            continue
        found.append(
            (
                t,
                OrderAtIb(
                    account=t.order.account,
                    perm_id=t.order.permId,
                    client_id=t.order.clientId,
                    order_ref=t.order.orderRef or "",
                    symbol=t.contract.symbol,
                    action=t.order.action,
                    quantity=float(t.order.totalQuantity),
                    order_type=t.order.orderType,
                    status=t.orderStatus.status,
                    strategy=strategy_of(t.order.orderRef or ""),
                ),
            )
        )
    return found


async def wait_until_gone(
    session: Session,
    services: HostServices,
    perm_ids: set[int],
    *,
    symbol: str | None,
    keep: Callable[[str], bool],
) -> tuple[OrderAtIb, ...]:
    """Look at IB's open orders until none of ``perm_ids`` is there or the cancel deadline
    passes; returns those still open (IB confirms a cancel only in that list)."""
    timeout = services.settings.request_timeout
    deadline = services.clock.monotonic() + services.settings.cancel_deadline
    while True:
        trades = await ask(session, lambda b: b.open_orders(), timeout=timeout)
        left = tuple(
            o for _, o in orders_at_ib(trades, symbol=symbol, keep=keep) if o.perm_id in perm_ids
        )
        if not left or services.clock.monotonic() > deadline:
            return left
        await asyncio.sleep(services.settings.retry_interval / 2)


def every_order(ref: str) -> bool:
    """The account-wide filter: whoever placed it."""
    return True


async def cancel_open(
    session: Session,
    services: HostServices,
    bucket: TokenBucket,
    *,
    scope: str,
    strategy: str | None,
    keep: Callable[[str], bool],
    symbol: str | None,
    dry_run: bool,
    use_global: bool = False,
) -> CancelRun:
    """Name the open orders ``keep`` and ``symbol`` select; unless ``dry_run``, cancel them
    (a bracket's exits first; ``use_global``: one reqGlobalCancel) and wait until IB no longer
    lists them."""

    def run(**kw: Any) -> CancelRun:
        return CancelRun(
            scope=scope,
            strategy=strategy,
            account=session.account,
            gateway=session.gateway,
            dry_run=dry_run,
            **kw,
        )

    timeout = services.settings.request_timeout
    try:
        trades = await ask(session, lambda b: b.open_orders(), timeout=timeout)
        chosen = orders_at_ib(trades, symbol=symbol, keep=keep)
        chosen.sort(key=lambda pair: parent_of(pair[1].order_ref) is None)
        orders = tuple(o for _, o in chosen)
        if dry_run or not chosen:
            return run(orders=orders, still_open=orders if dry_run else (), ok=True)
        log.warning(
            "orders_cancel scope=%s strategy=%s account=%s gateway=%s symbol=%s orders=%d",
            scope,
            strategy or "*",
            session.account,
            session.gateway,
            symbol or "*",
            len(chosen),
        )
        if use_global:
            await take_token(bucket, services)
            session.broker.global_cancel()
        else:
            for trade, _ in chosen:
                await take_token(bucket, services)
                session.broker.cancel_order(trade.order)
        left = await wait_until_gone(
            session, services, {o.perm_id for o in orders}, symbol=symbol, keep=keep
        )
    except (ConnectionError, TimeoutError, OSError) as exc:
        return run(orders=(), still_open=(), ok=False, detail=str(exc) or type(exc).__name__)
    detail = ""
    if left:
        detail = f"{len(left)} orders still open at IB after the cancel deadline"
        if scope == "account":
            detail += " (IB cancels another client's order only from the master client id)"
    return run(orders=orders, still_open=left, ok=not left, detail=detail, global_cancel=use_global)


class AccountCancel:
    """The account-wide variant: every open order on each account, not only ibfleet's."""

    def __init__(self, services: HostServices) -> None:
        self._services = services
        self.bucket = TokenBucket(rate=MAX_MESSAGES_PER_SECOND)

    async def run(
        self, sessions: Sequence[Session], *, symbol: str | None, dry_run: bool
    ) -> list[CancelRun]:
        """One run per account; ``sessions`` holds one open session per account."""
        if not sessions:
            raise ConnectionError(
                "no strategy has an open API session to IB: nothing can list or cancel the "
                "account's orders now"
            )
        return [
            await cancel_open(
                s,
                self._services,
                self.bucket,
                scope="account",
                strategy=None,
                keep=every_order,
                symbol=symbol,
                dry_run=dry_run,
                use_global=symbol is None,
            )
            for s in sessions
        ]
