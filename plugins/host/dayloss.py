"""The daily loss limit of one strategy: its day's P&L from its fills, marked at the last
prices, and the halt (orders cancelled, an alert) when the loss reaches ``max_daily_loss``.

The decision is :func:`plugins.risk.loss_breached` over :class:`plugins.daypnl.DayPnL`; this
keeps the P&L current, persists it in the strategy's kv store (under the host's names) and
halts at most once per trading day, so an operator's resume that day is not undone at once
(orders that add to a position are still refused until the next day).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping

from plugins.config import StrategyConfig
from plugins.daypnl import DayPnL
from plugins.host.orderbook import HOST_KV, KvRecords
from plugins.host.services import HostServices
from plugins.risk import loss_breached

__all__ = ["DayLoss"]

log = logging.getLogger("plugins.host")

_KV = f"{HOST_KV}.pnl"


class DayLoss:
    """The strategy's P&L of the day and its loss limit."""

    def __init__(
        self,
        cfg: StrategyConfig,
        services: HostServices,
        marks: Mapping[int, float],
        halt: Callable[[], Awaitable[object]],
        running: Callable[[], bool],
        kv: KvRecords,
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self._services = services
        self._marks = marks
        self._halt = halt
        self._running = running
        limits = cfg.limits
        self.pnl = DayPnL(calendar=limits.daily_loss_calendar, reset=limits.daily_loss_reset)
        self._kv = kv
        self.halted_day: dt.date | None = None

    def load(self) -> None:
        """The day's P&L as an earlier run left it (a new day starts from zero anyway)."""
        record = self._kv.get(_KV)
        if record:
            self.pnl.load(record)

    def total(self) -> float:
        """The day's P&L now (realised plus open positions at the last prices)."""
        return self.pnl.total(self._marks, now=self._services.clock.now())

    def fill(self, con_id: int, quantity: float, price: float, *, multiplier: float) -> None:
        """Book one of the strategy's executions (signed quantity), then check the limit."""
        now = self._services.clock.now()
        self.pnl.fill(con_id, quantity, price, now=now, multiplier=multiplier, marks=self._marks)
        self._kv.set(_KV, self.pnl.to_record())
        self.check()

    def check(self) -> None:
        """Halt the strategy once a trading day when its loss reaches the limit."""
        limits = self.cfg.limits
        if limits.max_daily_loss is None or not self._running():
            return
        total = self.total()
        if not loss_breached(total, limits) or self.halted_day == self.pnl.day:
            return
        self.halted_day = self.pnl.day
        log.warning(
            "strategy_daily_loss strategy=%s pnl=%.2f limit=%g",
            self.name,
            total,
            limits.max_daily_loss,
        )
        self._services.journal_event(
            at=self._services.clock.now(),
            kind="strategy.daily_loss",
            strategy=self.name,
            severity="critical",
            message=f"daily loss limit reached: P&L {total:.2f}",
            fields={"pnl": total, "realised": self.pnl.realised, "limit": limits.max_daily_loss},
        )
        self._services.alert(
            f"strategy:{self.name}:daily_loss",
            "critical",
            f"strategy {self.name} halted: daily loss limit",
            f"the day's P&L {total:.2f} (realised {self.pnl.realised:.2f}) reached "
            f"max_daily_loss {limits.max_daily_loss:g}; its open orders are cancelled; until "
            f"the next trading day only orders that reduce a position pass; resume with "
            f"`ibfleet strategies resume {self.name}`",
        )
        self._services.keep(
            asyncio.create_task(self._stop(), name=f"ibfleet-daily-loss-{self.name}")
        )

    async def _stop(self) -> None:
        try:
            await self._halt()
        except Exception:
            log.exception("strategy_daily_loss_halt_failed strategy=%s", self.name)
