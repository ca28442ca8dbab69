"""One strategy's market data: qualified contracts, subscriptions, last prices and bars."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from ib_async import Contract, Ticker

from gateway import codes
from plugins import api
from plugins.bar_builder import BarBuilder
from plugins.host.broker import BrokerError, Session, ask
from plugins.host.orderbook import OrderBook
from plugins.host.services import HostServices
from plugins.host.sessions import Sessions

__all__ = ["MarketData", "describe_instrument", "describe_permission", "price_or_none"]

#: Queue a hook call for the strategy's task: ``post(kind, call)``.
Post = Callable[[str, Callable[[], Any]], None]

log = logging.getLogger("plugins.host")


def price_or_none(value: float | None) -> float | None:
    """IB's "no price" (NaN, 0, -1, 1.7e308) as None."""
    if value is None or not math.isfinite(value) or value <= 0 or value >= 1e300:
        return None
    return float(value)


class MarketData:
    def __init__(
        self,
        services: HostServices,
        sessions: Sessions,
        book: OrderBook,
        post: Post,
        strategy: Callable[[], api.Strategy],
    ) -> None:
        self._services = services
        self._sessions = sessions
        self._book = book
        self._post = post
        self._strategy = strategy
        self.qualified: dict[api.Instrument, Contract] = {}
        self.subscriptions: dict[int, timedelta | None] = {}
        self.bars: dict[int, BarBuilder] = {}
        self.last: dict[int, float] = {}
        self._pending: dict[int, Ticker] = {}  # the newest ticker per conId not yet delivered

    async def qualify(self, instrument: api.Instrument) -> Contract:
        """The one contract at IB for ``instrument`` (asked once, then remembered)."""
        found = self.qualified.get(instrument)
        if found is not None:
            return found
        session = self._sessions.live()
        contract = Contract(
            symbol=instrument.symbol,
            secType=instrument.sec_type,
            exchange=instrument.exchange,
            currency=instrument.currency,
        )
        matches = await ask(
            session,
            lambda b: b.contracts_matching(contract),
            timeout=self._services.settings.request_timeout,
        )
        if len(matches) != 1:
            raise api.OrderRefused(
                api.RefusalReason.RISK,
                f"instrument {instrument} matches {len(matches)} contracts at IB; be more precise",
            )
        qualified = matches[0]
        self.qualified[instrument] = qualified
        self._book.contracts[qualified.conId] = qualified
        self._book.instruments[qualified.conId] = instrument
        return qualified

    async def subscribe(self, instrument: api.Instrument, *, bar: timedelta | None) -> None:
        contract = await self.qualify(instrument)
        con_id = contract.conId
        if bar is not None:
            self.bars[con_id] = BarBuilder(instrument.symbol, bar)
        if con_id not in self.subscriptions:
            await self._open_line(instrument, contract, bar)

    def resubscribe(self, session: Session) -> None:
        """Every subscription again on a new session."""
        for con_id in list(self.subscriptions):
            contract = self._book.contracts.get(con_id)
            if contract is not None:
                session.broker.request_market_data(contract)

    def last_price(self, instrument: api.Instrument) -> float | None:
        contract = self.qualified.get(instrument)
        return self.last.get(contract.conId) if contract is not None else None

    def on_tickers(self, tickers: Iterable[Ticker]) -> None:
        for ticker in tickers:
            con_id = ticker.contract.conId if ticker.contract else 0
            if con_id not in self.subscriptions:
                continue
            price = (
                price_or_none(ticker.last)
                or price_or_none(ticker.midpoint())
                or price_or_none(ticker.close)
            )
            if price is not None:
                self.last[con_id] = price
                builder = self.bars.get(con_id)
                if builder is not None:
                    done = builder.add(price, self._services.clock.now())
                    if done is not None:
                        self._post("bar", functools.partial(self._strategy().on_bar, done))
            # Ticks coalesce: a slow strategy gets the newest ticker, not a backlog.
            first = con_id not in self._pending
            self._pending[con_id] = ticker
            if first:
                self._post("tick", functools.partial(self._deliver_tick, con_id))

    async def _deliver_tick(self, con_id: int) -> None:
        ticker = self._pending.pop(con_id, None)
        instrument = self._book.instruments.get(con_id)
        if ticker is None or instrument is None:
            return
        tick = api.Tick(
            instrument=instrument,
            time=ticker.time or self._services.clock.now(),
            bid=price_or_none(ticker.bid),
            ask=price_or_none(ticker.ask),
            last=price_or_none(ticker.last),
        )
        await self._strategy().on_tick(tick)

    # -- a new line, refused by name when the account lacks the data -----------------------

    async def _open_line(
        self, instrument: api.Instrument, contract: Contract, bar: timedelta | None
    ) -> None:
        con_id = contract.conId
        # Counted before the wait, so the first ticks (which may come before it ends) are seen.
        self.subscriptions[con_id] = bar
        try:
            session = self._sessions.live()
        except api.OrderRefused as closed:
            # An outage now (a restart, a stall): the line opens with the others when the
            # session is back (resubscribe), as for a subscription made before the outage.
            log.info(
                "subscription_deferred strategy=%s symbol=%s reason=%s",
                self._sessions.name,
                instrument.symbol,
                closed,
            )
            return
        wait = self._services.settings.subscribe_wait
        try:
            refused = await ask(
                session,
                lambda b: b.subscribe_market_data(contract, wait=wait),
                timeout=wait + self._services.settings.request_timeout,
            )
        except (ConnectionError, TimeoutError) as lost:
            # The session went (or is slow) mid-request: kept, and opened again on the next one.
            log.warning(
                "subscription_unconfirmed strategy=%s symbol=%s reason=%s",
                self._sessions.name,
                instrument.symbol,
                lost,
            )
            return
        except BaseException:
            self.subscriptions.pop(con_id, None)
            raise
        if refused is not None:
            self.subscriptions.pop(con_id, None)
            self.bars.pop(con_id, None)
            raise api.DataRefused(
                api.DataReason.NO_PERMISSION,
                describe_permission(refused, instrument),
                code=refused.code,
            )


def describe_instrument(instrument: api.Instrument) -> str:
    return (
        f"{instrument.symbol} ({instrument.sec_type} on {instrument.exchange}"
        f"{' in ' + instrument.currency if instrument.currency else ''})"
    )


#: What each of IB's market data permission codes says the account lacks.
_PERMISSIONS: dict[int, str] = {
    codes.ApiCode.MARKET_DATA_NOT_SUBSCRIBED: "a market data subscription for {what} (IB error "
    "354: not subscribed); add it in Client Portal under market data subscriptions",
    codes.ApiCode.NEEDS_SUBSCRIPTION_DELAYED_AVAILABLE: "a market data subscription for {what} "
    "(IB error 10089: needs a subscription; delayed data would be available)",
    codes.ApiCode.PARTLY_NOT_SUBSCRIBED: "part of the market data subscriptions for {what} (IB "
    "error 10090: partly not subscribed)",
    codes.ApiCode.DELAYED_DATA_SHOWN: "a live market data subscription for {what} (IB error "
    "10167: only delayed data; ibfleet does not feed a strategy delayed prices as live)",
    codes.ApiCode.COMPETING_LIVE_SESSION: "the market data for {what} while another session of "
    "this IB user is live (IB error 10197: competing live session); log the other one out",
}


def describe_permission(error: BrokerError, instrument: api.Instrument) -> str:
    """The refusal a strategy sees: which permission the account lacks, and IB's words."""
    what = describe_instrument(instrument)
    lacks = _PERMISSIONS.get(error.code)
    text = lacks.format(what=what) if lacks else f"market data for {what} (IB error {error.code})"
    return f"no market data: the account lacks {text}; {codes.ib_said(error.message)}"
