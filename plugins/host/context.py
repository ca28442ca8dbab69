"""What a strategy gets as ``self.ctx``: a narrow view of its runner, and its kv store."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from plugins import api
from plugins.host.orderbook import HOST_KV

if TYPE_CHECKING:
    from plugins.host.runner import Runner

__all__ = ["StrategyContext", "StrategyStore"]


class StrategyStore(api.KeyValueStore):
    """The strategy's kv store: names starting with ``_host`` are the host's own."""

    def __init__(self, runner: Runner) -> None:
        self._r = runner

    def _check(self, name: str) -> None:
        if name.startswith(HOST_KV):
            raise ValueError(f"strategy {self._r.name}: kv name {name!r} is reserved for the host")

    def get(self, name: str, default: Any = None) -> Any:
        self._check(name)
        value = self._r.kv.get(name)
        return default if value is None else value

    def set(self, name: str, value: Any) -> None:
        self._check(name)
        self._r.kv.set(name, value)

    def delete(self, name: str) -> bool:
        self._check(name)
        return self._r.kv.delete(name)


class StrategyContext:
    """The :class:`plugins.api.Context` a strategy gets."""

    def __init__(self, runner: Runner) -> None:
        self._r = runner
        self._store = StrategyStore(runner)
        self._log = logging.LoggerAdapter(
            logging.getLogger(f"ibfleet.strategy.{runner.name}"), {"strategy": runner.name}
        )

    @property
    def name(self) -> str:
        return self._r.name

    @property
    def params(self) -> Mapping[str, Any]:
        return self._r.cfg.params

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        return self._log

    @property
    def store(self) -> api.KeyValueStore:
        return self._store

    @property
    def gateway(self) -> str | None:
        return self._r.active

    def now(self) -> datetime:
        return self._r.services.clock.now()

    async def subscribe(self, instrument: api.Instrument, *, bar: timedelta | None = None) -> None:
        await self._r.data.subscribe(instrument, bar=bar)

    def last_price(self, instrument: api.Instrument) -> float | None:
        return self._r.data.last_price(instrument)

    def position(self, instrument: api.Instrument) -> float:
        return self._r.position_of(instrument)

    def open_orders(self) -> list[api.OrderView]:
        return [o.view() for o in self._r.book.working()]

    async def place(self, spec: api.OrderSpec) -> api.OrderView:
        return await self._r.place(spec)

    async def modify(
        self,
        key: str,
        *,
        quantity: float | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
    ) -> api.OrderView:
        return await self._r.orders.modify(
            key, quantity=quantity, limit_price=limit_price, stop_price=stop_price
        )

    async def cancel(self, key: str) -> None:
        await self._r.cancel(key)

    def call_every(self, interval: timedelta, timer: str) -> None:
        self._r.call_every(interval, timer)

    # -- brackets and cancel by criteria -------------------------------------------------------

    async def place_bracket(
        self, entry: api.OrderSpec, *, take_profit: float, stop_loss: float
    ) -> api.Bracket:
        return await self._r.orders.place_bracket(
            entry, take_profit=take_profit, stop_loss=stop_loss
        )

    async def cancel_all(self, instrument: api.Instrument | None = None) -> list[str]:
        return await self._r.orders.cancel_all(instrument)

    # -- data --------------------------------------------------------------------------------

    async def history(
        self,
        instrument: api.Instrument,
        duration: str,
        bar_size: str,
        what_to_show: str = "TRADES",
        rth: bool = True,
        *,
        end: datetime | None = None,
    ) -> list[api.HistoricalBar]:
        return await self._r.requests.history(
            instrument, duration, bar_size, what_to_show, rth, end
        )

    async def account(self) -> api.AccountSummary:
        return await self._r.requests.account()

    async def portfolio(self) -> list[api.PortfolioPosition]:
        return await self._r.requests.portfolio()

    async def what_if(self, spec: api.OrderSpec) -> api.WhatIf:
        return await self._r.requests.what_if(spec)

    async def lookup(
        self,
        symbol: str,
        *,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "",
    ) -> list[api.Listing]:
        return await self._r.requests.lookup(
            symbol, sec_type=sec_type, exchange=exchange, currency=currency
        )
