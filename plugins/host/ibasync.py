"""The :class:`~plugins.host.broker.BrokerSession` adapter on ``ib_async.IB``: the one module
of the host that calls the client library."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ib_async import (
    IB,
    AccountValue,
    BarData,
    Contract,
    Order,
    OrderState,
    PortfolioItem,
    Ticker,
    Trade,
)
from ib_async import Fill as IbFill

from gateway import codes
from gateway.apiconnect import connect_ib
from plugins.host.broker import BrokerError, BrokerListener, Margin

__all__ = ["IbAsyncBroker"]


class IbAsyncBroker:
    """One ``ib_async.IB`` client behind the host's port."""

    def __init__(self, *, request_timeout: float) -> None:
        self._ib = IB()
        self._ib.RequestTimeout = request_timeout
        self._listener: BrokerListener | None = None
        self._ib.orderStatusEvent += self._status
        self._ib.execDetailsEvent += self._exec
        self._ib.pendingTickersEvent += self._tickers
        self._ib.disconnectedEvent += self._disconnected

    def _status(self, trade: Trade) -> None:
        if self._listener is not None:
            self._listener.order_status(trade)

    def _exec(self, trade: Trade, fill: IbFill) -> None:
        if self._listener is not None:
            self._listener.execution(trade, fill)

    def _tickers(self, tickers: Iterable[Ticker]) -> None:
        if self._listener is not None:
            self._listener.tickers(tickers)

    def _disconnected(self) -> None:
        if self._listener is not None:
            self._listener.disconnected()

    async def connect(
        self, *, host: str, port: int, client_id: int, timeout: float, account: str
    ) -> list[str]:
        return await connect_ib(
            self._ib, host=host, port=port, client_id=client_id, timeout=timeout, account=account
        )

    def listen(self, listener: BrokerListener) -> None:
        self._listener = listener

    def disconnect(self) -> None:
        self._ib.disconnect()

    def is_connected(self) -> bool:
        return bool(self._ib.isConnected())

    def next_order_id(self) -> int:
        return int(self._ib.client.getReqId())

    def place_order(self, contract: Contract, order: Order) -> Trade:
        return self._ib.placeOrder(contract, order)

    def cancel_order(self, order: Order) -> None:
        self._ib.cancelOrder(order)

    def request_market_data(self, contract: Contract) -> None:
        self._ib.reqMktData(contract, "", False, False)

    async def open_orders(self) -> list[Trade]:
        return list(await self._ib.reqAllOpenOrdersAsync())

    async def completed_orders(self) -> list[Trade]:
        return list(await self._ib.reqCompletedOrdersAsync(False))

    async def executions(self) -> list[IbFill]:
        return list(await self._ib.reqExecutionsAsync())

    async def contracts_matching(self, contract: Contract) -> list[Contract]:
        details: list[Any] = await self._ib.reqContractDetailsAsync(contract)
        return [d.contract for d in details if d.contract is not None]

    async def what_if(self, contract: Contract, order: Order) -> Margin:
        state = await self._ib.whatIfOrderAsync(contract, order)
        return Margin(
            init_margin_after=str(getattr(state, "initMarginAfter", "")),
            equity_with_loan_after=str(getattr(state, "equityWithLoanAfter", "")),
        )

    # -- cancel by criteria ----------------------------------------------------------------

    def global_cancel(self) -> None:
        self._ib.reqGlobalCancel()  # type: ignore[no-untyped-call]

    # -- data: history, account, what-if, market data permissions --------------------------

    @contextlib.contextmanager
    def _errors_for(self, contract: Contract) -> Iterator[list[BrokerError]]:
        """IB's errors for requests made with this very ``contract`` object while inside:
        ib_async resolves a failed request as an empty answer and tells the code only here."""
        heard: list[BrokerError] = []

        def on_error(req_id: int, code: int, message: str, erred: Any = None) -> None:
            if erred is contract and not codes.is_warning(code):
                heard.append(BrokerError(code, message))

        self._ib.errorEvent += on_error
        try:
            yield heard
        finally:
            self._ib.errorEvent -= on_error

    async def historical_bars(
        self,
        contract: Contract,
        *,
        end: str,
        duration: str,
        bar_size: str,
        what_to_show: str,
        use_rth: bool,
        timeout: float,
    ) -> list[BarData]:
        probe = copy.copy(contract)  # its own object, so its errors are told apart
        started = time.monotonic()
        with self._errors_for(probe) as heard:
            bars = await self._ib.reqHistoricalDataAsync(
                probe, end, duration, bar_size, what_to_show, use_rth, 2, False, [], timeout
            )
        if heard:
            raise heard[0]
        if not bars and time.monotonic() - started >= timeout:
            raise TimeoutError(f"historical data for {contract.symbol} took over {timeout:g}s")
        return list(bars)

    async def account_values(self, account: str) -> list[AccountValue]:
        # Kept up to date by the account updates the connect subscribed; the summary is a
        # request, only when those are not there (a read-only session, another account).
        values = list(self._ib.accountValues(account))
        if not values:
            values = list(await self._ib.accountSummaryAsync(account))
        return values

    async def portfolio(self, account: str) -> list[PortfolioItem]:
        return list(self._ib.portfolio(account))

    async def what_if_state(self, contract: Contract, order: Order) -> OrderState:
        probe = copy.copy(contract)
        with self._errors_for(probe) as heard:
            state = await self._ib.whatIfOrderAsync(probe, order)
        if heard:
            raise heard[0]
        if not isinstance(state, OrderState):
            raise BrokerError(0, "the what-if order got no answer")
        return state

    async def subscribe_market_data(self, contract: Contract, *, wait: float) -> BrokerError | None:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[BrokerError | None] = loop.create_future()

        def on_error(req_id: int, code: int, message: str, erred: Any = None) -> None:
            same = erred is not None and getattr(erred, "conId", None) == contract.conId
            if same and code in codes.MARKET_DATA_PERMISSION and not answer.done():
                answer.set_result(BrokerError(code, message))

        def on_update(ticker: Ticker) -> None:
            if not answer.done():
                answer.set_result(None)

        self._ib.errorEvent += on_error
        ticker = self._ib.reqMktData(contract, "", False, False)
        ticker.updateEvent += on_update
        try:
            refused = await asyncio.wait_for(answer, wait)
        except TimeoutError:
            refused = None  # no tick yet (a quiet market) and no refusal: the line is open
        finally:
            self._ib.errorEvent -= on_error
            ticker.updateEvent -= on_update
        if refused is not None:
            self._ib.cancelMktData(contract)
        return refused
