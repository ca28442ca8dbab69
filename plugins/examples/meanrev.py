"""``meanrev``: quotes a buy under and a sell over a moving average, and moves them with it.

Params: ``symbol`` (AAPL), ``window`` (20 prices), ``band`` (0.002: 0.2 % from the average),
``quantity`` (1), ``max_position`` (5: stop adding on one side past it), ``min_move``
(0.0005: modify only when the wanted price moved this fraction).
"""

from __future__ import annotations

from collections import deque

from plugins import api


class MeanReversion(api.Strategy):
    """Two resting limit orders around a moving average, replaced as the average moves."""

    description = "limit orders around a moving average, modified as it moves"
    version = "1"

    async def on_start(self) -> None:
        params = self.ctx.params
        self.instrument = api.Instrument(str(params.get("symbol", "AAPL")))
        self.window = int(params.get("window", 20))
        self.band = float(params.get("band", 0.002))
        self.quantity = float(params.get("quantity", 1))
        self.max_position = float(params.get("max_position", 5))
        self.min_move = float(params.get("min_move", 0.0005))
        self.prices: deque[float] = deque(maxlen=self.window)
        self.quotes: dict[api.Side, str] = {}
        await self.ctx.subscribe(self.instrument)

    async def on_tick(self, tick: api.Tick) -> None:
        price = tick.mid
        if price is None:
            return
        self.prices.append(price)
        if len(self.prices) < min(self.window, 5):
            return
        average = sum(self.prices) / len(self.prices)
        position = self.ctx.position(self.instrument)
        await self._quote(api.Side.BUY, round(average * (1 - self.band), 2), position)
        await self._quote(api.Side.SELL, round(average * (1 + self.band), 2), position)

    async def _quote(self, side: api.Side, price: float, position: float) -> None:
        open_orders = {o.key: o for o in self.ctx.open_orders()}
        key = self.quotes.get(side)
        current = open_orders.get(key) if key else None
        too_long = side.sign * position >= self.max_position
        if current is None:
            if not too_long:
                try:
                    placed = await self.ctx.place(
                        api.OrderSpec(self.instrument, side, self.quantity, limit_price=price)
                    )
                except api.OrderRefused as refused:
                    self.ctx.log.info("quote_refused side=%s reason=%s", side.value, refused)
                    return
                self.quotes[side] = placed.key
            return
        if too_long:
            await self.ctx.cancel(current.key)
            return
        old = current.limit_price or price
        if abs(price - old) / old >= self.min_move:
            try:
                await self.ctx.modify(current.key, limit_price=price)
            except api.OrderRefused as refused:
                self.ctx.log.info("modify_refused key=%s reason=%s", current.key, refused)

    async def on_order_status(self, update: api.OrderUpdate) -> None:
        if update.status.terminal or update.status is api.IntentState.UNKNOWN:
            for side, key in list(self.quotes.items()):
                if key == update.key:
                    del self.quotes[side]
