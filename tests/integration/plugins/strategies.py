"""Small strategies for the host tests (loaded by ``module:Class``)."""

from __future__ import annotations

from datetime import timedelta

from plugins import api

AAPL = api.Instrument("AAPL")


class Resting(api.Strategy):
    """Keeps ``count`` resting buys far under the market; re-places them after a failover."""

    async def on_start(self) -> None:
        self.events: list[object] = []
        await self.ctx.subscribe(AAPL)
        self.ctx.call_every(timedelta(seconds=0.05), "top-up")

    async def on_timer(self, timer: str) -> None:
        want = int(self.ctx.params.get("count", 3))
        price = self.ctx.last_price(AAPL)
        if price is None:
            return
        try:
            for _ in range(want - len(self.ctx.open_orders())):
                await self.ctx.place(
                    api.OrderSpec(AAPL, api.Side.BUY, 1, limit_price=round(price * 0.8, 2))
                )
        except api.OrderRefused:
            # As a careful strategy does: a refusal (session lost mid-burst, ...) is not a crash.
            return

    async def on_gateway_state(self, change: api.GatewayChange) -> None:
        self.events.append(change)

    async def on_order_status(self, update: api.OrderUpdate) -> None:
        self.events.append(update)


class Boom(api.Strategy):
    """Places one resting order, then raises on its first timer."""

    async def on_start(self) -> None:
        await self.ctx.subscribe(AAPL)
        self.ctx.call_every(timedelta(seconds=0.05), "boom")
        self.placed = False

    async def on_timer(self, timer: str) -> None:
        price = self.ctx.last_price(AAPL)
        if price is None:
            return
        if not self.placed:
            await self.ctx.place(
                api.OrderSpec(AAPL, api.Side.BUY, 1, limit_price=round(price * 0.8, 2))
            )
            self.placed = True
            return
        raise RuntimeError("strategy bug")


class Buyer(api.Strategy):
    """Buys ``quantity`` at market once, then rests a far limit order."""

    async def on_start(self) -> None:
        await self.ctx.subscribe(AAPL)
        if self.ctx.store.get("bought") is None:
            await self.ctx.place(
                api.OrderSpec(
                    AAPL, api.Side.BUY, float(self.ctx.params["quantity"]), limit_price=1000.0
                )
            )
            self.ctx.store.set("bought", True)


class RestingGtc(api.Strategy):
    """Rests one GTC buy far under the market, once for its whole life (kept in its store).

    It never places a second order, so the broker's record shows whatever happened to the first:
    still working through a planned restart, cancelled by safe state, or left at IB on shutdown.
    """

    async def on_start(self) -> None:
        await self.ctx.subscribe(AAPL)
        self.ctx.call_every(timedelta(seconds=0.1), "place-once")

    async def on_timer(self, timer: str) -> None:
        if self.ctx.store.get("placed") is not None:
            return
        price = self.ctx.last_price(AAPL)
        if price is None:
            return
        try:
            order = await self.ctx.place(
                api.OrderSpec(AAPL, api.Side.BUY, 1, limit_price=round(price * 0.5, 2), tif="GTC")
            )
        except api.OrderRefused:
            return  # the gateway went away between the price and the order: try on the next timer
        self.ctx.store.set("placed", order.key)


class BracketOnce(api.Strategy):
    """Places one bracket under the market once for its whole life (its key kept in its store):
    an entry 10 % under, a take-profit 10 % over and a stop-loss 20 % under the first price."""

    async def on_start(self) -> None:
        await self.ctx.subscribe(AAPL)
        self.ctx.call_every(timedelta(seconds=0.05), "place-once")

    async def on_timer(self, timer: str) -> None:
        if self.ctx.store.get("bracket") is not None:
            return
        price = self.ctx.last_price(AAPL)
        if price is None:
            return
        try:
            placed = await self.ctx.place_bracket(
                api.OrderSpec(AAPL, api.Side.BUY, 2, limit_price=round(price * 0.9, 2), tif="GTC"),
                take_profit=round(price * 1.1, 2),
                stop_loss=round(price * 0.8, 2),
            )
        except api.OrderRefused:
            return
        self.ctx.store.set("bracket", [leg.key for leg in placed.legs])
        self.ctx.store.set("prices", [price * 0.9, price * 1.1, price * 0.8])
