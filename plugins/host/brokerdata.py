"""One strategy's data requests: historical bars (paced for the whole gateway, a pacing
violation retried after the pacing wait), the account, the portfolio, what-if orders and
contract lookup. Nothing here places an order or writes an intent."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from ib_async import AccountValue, BarData, Contract, OrderState, PortfolioItem

from gateway import codes
from plugins import api
from plugins.config import StrategyConfig
from plugins.host.broker import BrokerError, BrokerSession, Session, ask
from plugins.host.marketdata import MarketData, describe_instrument, describe_permission
from plugins.host.orderbook import OrderBook
from plugins.host.ordermap import order_for
from plugins.host.services import HostServices
from plugins.host.sessions import Sessions
from plugins.pacing import HistoryRequest, is_pacing_violation

__all__ = [
    "DataRequests",
    "account_summary",
    "historical_bar",
    "portfolio_position",
    "what_if_answer",
]

log = logging.getLogger("plugins.host")

T = TypeVar("T")


def _number(value: object) -> float | None:
    """IB's number, or None for its "no value" (empty text, NaN, 1.7e308)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and abs(number) < 1e300 else None


def historical_bar(bar: BarData) -> api.HistoricalBar:
    date = bar.date
    if isinstance(date, dt.datetime):
        start = date if date.tzinfo else date.replace(tzinfo=dt.UTC)
    elif isinstance(date, dt.date):
        start = dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC)
    else:
        raise ValueError(f"historical bar date {date!r} is neither a date nor a time")
    return api.HistoricalBar(
        start=start.astimezone(dt.UTC),
        open=float(bar.open),
        high=float(bar.high),
        low=float(bar.low),
        close=float(bar.close),
        volume=float(bar.volume),
        wap=_number(bar.average) if bar.average and bar.average > 0 else None,
        count=int(bar.barCount),
    )


def account_summary(account: str, values: Iterable[AccountValue]) -> api.AccountSummary:
    """The account's summary from IB's account value rows (tag, value, currency)."""
    mine = [v for v in values if not account or not v.account or v.account == account]
    by_tag = {v.tag: v for v in mine if v.currency != "BASE"}

    def value(tag: str) -> float | None:
        row = by_tag.get(tag)
        return _number(row.value) if row is not None else None

    net = by_tag.get("NetLiquidation")
    cash: dict[str, float] = {}
    for row in mine:
        if row.tag == "CashBalance" and row.currency not in ("", "BASE"):
            amount = _number(row.value)
            if amount is not None:
                cash[row.currency] = amount
    if not cash and "TotalCashValue" in by_tag:
        total = by_tag["TotalCashValue"]
        amount = _number(total.value)
        if amount is not None:
            cash[total.currency] = amount
    return api.AccountSummary(
        account=account or (mine[0].account if mine else ""),
        currency=net.currency if net is not None else "",
        net_liquidation=value("NetLiquidation"),
        buying_power=value("BuyingPower"),
        available_funds=value("AvailableFunds"),
        cash=cash,
    )


def portfolio_position(item: PortfolioItem, known: api.Instrument | None) -> api.PortfolioPosition:
    contract = item.contract
    instrument = known or api.Instrument(
        symbol=contract.symbol,
        sec_type=contract.secType,
        currency=contract.currency,
        multiplier=_number(contract.multiplier) or 1.0,
    )
    return api.PortfolioPosition(
        instrument=instrument,
        con_id=contract.conId,
        quantity=float(item.position),
        average_cost=float(item.averageCost),
        market_price=_number(item.marketPrice),
        market_value=float(item.marketValue),
        unrealised_pnl=_number(item.unrealizedPNL),
        realised_pnl=_number(item.realizedPNL),
    )


def what_if_answer(state: OrderState) -> api.WhatIf:
    return api.WhatIf(
        init_margin_change=_number(state.initMarginChange),
        maint_margin_change=_number(state.maintMarginChange),
        commission=_number(state.commission),
        currency=state.commissionCurrency or "",
        init_margin_after=_number(state.initMarginAfter),
        maint_margin_after=_number(state.maintMarginAfter),
        equity_with_loan_after=_number(state.equityWithLoanAfter),
    )


def _ib_end(end: dt.datetime | None) -> str:
    if end is None:
        return ""
    if end.tzinfo is None:
        raise ValueError(f"history end must be timezone-aware, got naive {end!r}")
    return end.astimezone(dt.UTC).strftime("%Y%m%d-%H:%M:%S")


class DataRequests:
    """What a strategy asks of IB besides orders and market data lines."""

    def __init__(
        self,
        cfg: StrategyConfig,
        services: HostServices,
        sessions: Sessions,
        book: OrderBook,
        data: MarketData,
    ) -> None:
        self.name = cfg.name
        self._services = services
        self._sessions = sessions
        self._book = book
        self._data = data
        self.history_retries = 0  # pacing violations IB sent anyway (each retried)
        self._qualifying = asyncio.Lock()
        self.paced_seconds = 0.0  # time requests waited for IB's pacing

    def _live(self) -> Session:
        try:
            return self._sessions.live()
        except api.OrderRefused as refused:
            raise api.DataRefused(api.DataReason.NOT_TRADING, refused.message) from None

    async def _ask(
        self,
        session: Session,
        call: Callable[[BrokerSession], Awaitable[T]],
        *,
        timeout: float,
        what: str,
    ) -> T:
        try:
            return await ask(session, call, timeout=timeout)
        except TimeoutError:
            raise api.DataRefused(
                api.DataReason.TIMEOUT,
                f"strategy {self.name}: {what}: gateway {session.gateway} did not answer "
                f"within {timeout:g}s",
            ) from None
        except ConnectionError as exc:
            raise api.DataRefused(
                api.DataReason.NOT_TRADING, f"strategy {self.name}: {what}: {exc}"
            ) from None

    async def _paced_session(self, request: HistoryRequest | None = None) -> Session:
        """The live session once IB's pacing lets the request go on its gateway."""
        session = self._live()
        self.paced_seconds += await self._services.paced(session.gateway, request)
        return self._live()  # the gateway may have gone while the request waited

    async def _contract(self, instrument: api.Instrument, what: str) -> Contract:
        try:
            known = self._data.qualified.get(instrument)
            if known is not None:
                return known
            # One contract request at a time, paced: a burst of history for a new instrument
            # asks IB once, not once per request.
            async with self._qualifying:
                if instrument not in self._data.qualified:
                    await self._paced_session()
                return await self._data.qualify(instrument)
        except api.OrderRefused as refused:
            raise api.DataRefused(
                api.DataReason.NO_CONTRACT, f"strategy {self.name}: {what}: {refused.message}"
            ) from None
        except (TimeoutError, ConnectionError) as exc:
            raise api.DataRefused(
                api.DataReason.NOT_TRADING, f"strategy {self.name}: {what}: {exc}"
            ) from None

    # -- history -------------------------------------------------------------------------

    async def history(
        self,
        instrument: api.Instrument,
        duration: str,
        bar_size: str,
        what_to_show: str,
        rth: bool,
        end: dt.datetime | None,
    ) -> list[api.HistoricalBar]:
        what = (
            f"history {duration!r} of {bar_size!r} {what_to_show} bars for "
            f"{describe_instrument(instrument)}"
        )
        ib_end = _ib_end(end)
        contract = await self._contract(instrument, what)
        request = HistoryRequest(
            con_id=contract.conId,
            exchange=contract.exchange,
            what_to_show=what_to_show,
            duration=duration,
            bar_size=bar_size,
            rth=rth,
            end=ib_end,
        )
        settings = self._services.settings
        retries = settings.pacing.retries
        for attempt in range(retries + 1):
            session = await self._paced_session(request)
            try:
                bars = await self._history_once(session, contract, request, what)
            except BrokerError as error:
                if is_pacing_violation(error.code, error.message) and attempt < retries:
                    # The request counted at IB; the identical-request rule now holds its
                    # retry for the pacing wait.
                    self.history_retries += 1
                    log.warning(
                        "history_pacing_violation strategy=%s gateway=%s attempt=%d",
                        self.name,
                        session.gateway,
                        attempt + 1,
                    )
                    continue
                raise self._history_refused(error, instrument, what, attempts=attempt + 1) from None
            return [historical_bar(b) for b in bars]
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _history_once(
        self, session: Session, contract: Contract, request: HistoryRequest, what: str
    ) -> list[BarData]:
        settings = self._services.settings
        try:
            return await self._ask(
                session,
                lambda b: b.historical_bars(
                    contract,
                    end=request.end,
                    duration=request.duration,
                    bar_size=request.bar_size,
                    what_to_show=request.what_to_show,
                    use_rth=request.rth,
                    timeout=settings.history_timeout,
                ),
                timeout=settings.history_timeout + settings.request_timeout,
                what=what,
            )
        finally:
            # Answered or refused: IB's rules count it from now on.
            pacer = self._services.pacer(session.gateway)
            pacer.answered(self._services.clock.monotonic(), request)

    def _history_refused(
        self, error: BrokerError, instrument: api.Instrument, what: str, *, attempts: int
    ) -> api.DataRefused:
        text = error.message.lower()
        if is_pacing_violation(error.code, error.message):
            reason = api.DataReason.PACING
            why = (
                f"IB refused it for pacing {attempts} times although the host kept to its "
                f"pacing rules; {codes.ib_said(error.message)}"
            )
        elif error.code in codes.MARKET_DATA_PERMISSION or "permission" in text:
            reason = api.DataReason.NO_PERMISSION
            why = describe_permission(error, instrument)
        elif error.code == codes.ApiCode.NO_SECURITY_DEFINITION:
            reason, why = api.DataReason.NO_CONTRACT, codes.ib_said(error.message)
        else:
            reason = api.DataReason.NO_DATA
            why = f"IB error {error.code}; {codes.ib_said(error.message)}"
        return api.DataRefused(reason, f"strategy {self.name}: {what}: {why}", code=error.code)

    # -- the account ---------------------------------------------------------------------

    async def account(self) -> api.AccountSummary:
        session = await self._paced_session()
        values = await self._ask(
            session,
            lambda b: b.account_values(session.account),
            timeout=self._services.settings.request_timeout,
            what="account values",
        )
        return account_summary(session.account, values)

    async def portfolio(self) -> list[api.PortfolioPosition]:
        session = await self._paced_session()
        items = await self._ask(
            session,
            lambda b: b.portfolio(session.account),
            timeout=self._services.settings.request_timeout,
            what="portfolio",
        )
        return [portfolio_position(i, self._book.instruments.get(i.contract.conId)) for i in items]

    async def what_if(self, spec: api.OrderSpec) -> api.WhatIf:
        what = f"what-if {spec.side.value} {spec.quantity:g} {describe_instrument(spec.instrument)}"
        if not (spec.quantity > 0 and math.isfinite(spec.quantity)):
            raise ValueError(f"strategy {self.name}: {what}: quantity must be positive")
        contract = await self._contract(spec.instrument, what)
        session = await self._paced_session()
        # The order as it would be placed, with no key and no journal entry: whatIf only.
        order = order_for(spec, session.account)
        try:
            state = await self._ask(
                session,
                lambda b: b.what_if_state(contract, order),
                timeout=self._services.settings.request_timeout,
                what=what,
            )
        except BrokerError as error:
            raise api.DataRefused(
                api.DataReason.NO_DATA,
                f"strategy {self.name}: {what}: IB error {error.code}; "
                f"{codes.ib_said(error.message)}",
                code=error.code,
            ) from None
        return what_if_answer(state)

    async def lookup(
        self, symbol: str, *, sec_type: str, exchange: str, currency: str
    ) -> list[api.Listing]:
        if not symbol.strip():
            raise ValueError(f"strategy {self.name}: lookup needs a symbol")
        query = Contract(symbol=symbol, secType=sec_type, exchange=exchange, currency=currency)
        session = await self._paced_session()
        found = await self._ask(
            session,
            lambda b: b.contracts_matching(query),
            timeout=self._services.settings.request_timeout,
            what=f"lookup of {symbol} ({sec_type})",
        )
        listings = [
            api.Listing(
                instrument=api.Instrument(
                    symbol=c.symbol,
                    sec_type=c.secType,
                    exchange=exchange or c.exchange,
                    currency=c.currency,
                    multiplier=_number(c.multiplier) or 1.0,
                ),
                con_id=c.conId,
                primary_exchange=c.primaryExchange,
                local_symbol=c.localSymbol,
            )
            for c in found
        ]
        # An instrument that names one contract is qualified now: no second request later.
        for listing, contract in zip(listings, found, strict=True):
            if sum(1 for other in listings if other.instrument == listing.instrument) == 1:
                self._data.qualified.setdefault(listing.instrument, contract)
                self._book.contracts.setdefault(contract.conId, contract)
                self._book.instruments.setdefault(contract.conId, listing.instrument)
        return listings
