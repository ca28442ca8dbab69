"""The :class:`~plugins.host.broker.BrokerSession` adapter on ``ib_async.IB``: the one module
of the host that calls the client library."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ib_async import IB, Contract, Order, Ticker, Trade
from ib_async import Fill as IbFill

from gateway.apiconnect import connect_ib
from plugins.host.broker import BrokerListener, Margin

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
