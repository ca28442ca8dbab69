"""``breakout``: buys a new high with a bracket, and moves its stop to break-even on the way up.

When the price rises above the highest of its last ``window`` moves, it buys with a limit a
little over the market and, in the same call, a take-profit limit ``target`` above and a
stop-loss stop ``risk`` below the entry's limit. The three legs are linked at IB (the exits
work once the entry fills; one cancels the other), so the position is protected even while
ibfleet itself is gone. Once the price has come ``breakeven`` of the way to the target, the
stop moves up to the entry's limit (the most the entry paid): from then on the trade cannot
lose. One bracket at a time: the next only once no leg works and the position is flat (an
entry whose exits an operator cancelled leaves a position the strategy will not trade over).

Params: ``symbol`` (AAPL), ``window`` (20 price moves), ``quantity`` (1), ``target`` (0.01: 1 %
above the entry), ``risk`` (0.005: 0.5 % below), ``slippage`` (0.001: the entry limit's room
over the breakout price), ``breakeven`` (0.5; 0 keeps the stop where it is), ``tick`` (0.01:
prices are rounded to it), ``tif`` (DAY, or GTC).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from plugins import api


class Breakout(api.Strategy):
    """One bracket at a time, entered on a new high of the recent window."""

    description = "buys a new high with a bracket (take-profit, stop-loss linked at IB)"
    version = "1"

    async def on_start(self) -> None:
        params = self.ctx.params
        self.instrument = api.Instrument(str(params.get("symbol", "AAPL")))
        self.window = int(params.get("window", 20))
        self.quantity = float(params.get("quantity", 1))
        self.target = float(params.get("target", 0.01))
        self.risk = float(params.get("risk", 0.005))
        self.slippage = float(params.get("slippage", 0.001))
        self.breakeven = float(params.get("breakeven", 0.5))
        self.tick = float(params.get("tick", 0.01))
        self.tif = api.TimeInForce(str(params.get("tif", "DAY")).upper())
        for name, ok in (
            ("window", self.window >= 1),
            ("quantity", self.quantity > 0),
            ("target", self.target > 0),
            ("risk", 0 < self.risk < 1),
            ("slippage", self.slippage >= 0),
            ("breakeven", 0 <= self.breakeven < 1),
            ("tick", self.tick > 0),
        ):
            if not ok:
                raise ValueError(f"breakout {self.ctx.name}: param {name} is out of range")
        self.prices: deque[float] = deque(maxlen=self.window)
        # The bracket in progress survives a restart of ibfleet (the host re-books its legs).
        self.bracket: dict[str, Any] | None = self.ctx.store.get("bracket")
        await self.ctx.subscribe(self.instrument)

    def _round(self, price: float) -> float:
        return round(round(price / self.tick) * self.tick, 10)

    def _legs(self) -> list[api.OrderView]:
        """The current bracket's legs still working at IB."""
        if self.bracket is None:
            return []
        entry = self.bracket["entry"]
        return [o for o in self.ctx.open_orders() if entry in (o.key, o.parent)]

    def _over(self) -> bool:
        """No bracket, or its legs have all ended and the position is flat again."""
        if self.bracket is None:
            return True
        if self._legs() or self.ctx.position(self.instrument) != 0:
            return False
        self.ctx.log.info("bracket_over entry=%s", self.bracket["entry"])
        self.bracket = None
        self.ctx.store.delete("bracket")
        return True

    async def on_tick(self, tick: api.Tick) -> None:
        price = tick.last if tick.last is not None else tick.mid
        if price is None or (self.prices and price == self.prices[-1]):
            return  # a quote update that did not move the price: the window counts moves
        high = max(self.prices) if len(self.prices) == self.window else None
        self.prices.append(price)
        if not self._over():
            await self._manage(price)
        elif high is not None and price > high:
            await self._enter(price)

    async def _enter(self, price: float) -> None:
        limit = self._round(price * (1 + self.slippage))
        take_profit = self._round(limit * (1 + self.target))
        try:
            bracket = await self.ctx.place_bracket(
                api.OrderSpec(
                    self.instrument, api.Side.BUY, self.quantity, limit_price=limit, tif=self.tif
                ),
                take_profit=take_profit,
                stop_loss=self._round(limit * (1 - self.risk)),
            )
        except api.OrderRefused as refused:
            # A limit, the rate, a gateway in its reset window: none of the three was sent,
            # and the next new high tries again.
            self.ctx.log.info("bracket_refused reason=%s", refused.message)
            return
        self.bracket = {
            "entry": bracket.entry.key,
            "stop": bracket.stop_loss.key,
            "limit": limit,
            "take_profit": take_profit,
            "stop_moved": False,
        }
        self.ctx.store.set("bracket", self.bracket)

    async def _manage(self, price: float) -> None:
        """Move the stop to the entry's limit once the price is ``breakeven`` of the way up."""
        bracket = self.bracket
        if bracket is None or bracket["stop_moved"] or self.breakeven == 0:
            return
        if self.ctx.position(self.instrument) <= 0:
            return  # the entry has not filled yet
        limit, take_profit = bracket["limit"], bracket["take_profit"]
        if price < limit + self.breakeven * (take_profit - limit):
            return
        if bracket["stop"] not in {o.key for o in self._legs()}:
            return  # the stop already ended: the take-profit filled, or it was cancelled
        try:
            await self.ctx.modify(bracket["stop"], stop_price=limit)
        except api.OrderRefused as refused:
            self.ctx.log.info("stop_not_moved reason=%s", refused.message)
            if refused.reason is not api.RefusalReason.UNKNOWN_ORDER:
                return  # transient (the rate, the gateway): the next tick tries again
            # Placed through the gateway before a failover: IB keeps it as it is.
        bracket["stop_moved"] = True
        self.ctx.store.set("bracket", bracket)
