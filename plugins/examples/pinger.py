"""``pinger``: rests a small limit order far from the market and cancels it, periodically.

A heartbeat for the order path: it proves that orders reach IB and that cancels work.
Params: ``symbol`` (AAPL), ``quantity`` (1), ``interval_seconds`` (2), ``offset`` (0.1: the
limit sits 10 % under the market, so it never fills).
"""

from __future__ import annotations

from datetime import timedelta

from plugins import api


class Pinger(api.Strategy):
    """Place a resting buy, cancel it on the next timer, repeat."""

    description = "rests a small far-from-market limit order and cancels it periodically"
    version = "1"

    async def on_start(self) -> None:
        params = self.ctx.params
        self.instrument = api.Instrument(str(params.get("symbol", "AAPL")))
        self.quantity = float(params.get("quantity", 1))
        self.offset = float(params.get("offset", 0.1))
        await self.ctx.subscribe(self.instrument)
        self.ctx.call_every(timedelta(seconds=float(params.get("interval_seconds", 2))), "ping")
        self.pings = int(self.ctx.store.get("pings", 0))

    async def on_timer(self, timer: str) -> None:
        try:
            await self._ping()
        except api.OrderRefused as refused:
            # Refusals (risk limits, a gateway lost or in its reset window, ...) are normal
            # events: note them and try again on the next timer.
            self.ctx.log.warning("ping refused: %s", refused)

    async def _ping(self) -> None:
        mine = self.ctx.open_orders()
        if mine:
            for order in mine:
                await self.ctx.cancel(order.key)
            return
        price = self.ctx.last_price(self.instrument)
        if price is None:
            return
        await self.ctx.place(
            api.OrderSpec(
                instrument=self.instrument,
                side=api.Side.BUY,
                quantity=self.quantity,
                limit_price=round(price * (1 - self.offset), 2),
            )
        )
        self.pings += 1
        self.ctx.store.set("pings", self.pings)
