"""The port in front of the IB API session: the few calls the host makes of ``ib_async``.

The host speaks to IB only through :class:`BrokerSession`; :mod:`plugins.host.ibasync` is its
adapter on the real client and ``tests/unit/plugins/fake_broker.py`` a hand-written fake. The
values that cross it are ``ib_async``'s own plain data classes (``Contract``, ``Order``,
``Trade``, ``Fill``, ``Ticker``): they carry exactly IB's fields (orderRef, permId, clientId),
so a copy of them here would only add a translation to get wrong.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ib_async import (
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

from gateway.aio import within

__all__ = [
    "BrokerError",
    "BrokerFactory",
    "BrokerListener",
    "BrokerSession",
    "GatewayTimeout",
    "Margin",
    "Session",
    "ask",
]

T = TypeVar("T")


class BrokerListener(Protocol):
    """What a session reports as it happens."""

    def order_status(self, trade: Trade) -> None: ...

    def execution(self, trade: Trade, fill: IbFill) -> None: ...

    def tickers(self, tickers: Iterable[Ticker]) -> None: ...

    def disconnected(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Margin:
    """A what-if answer, as IB gives it (text that may not be a number)."""

    init_margin_after: str
    equity_with_loan_after: str


class BrokerSession(Protocol):
    """One API session to one gateway."""

    async def connect(
        self, *, host: str, port: int, client_id: int, timeout: float, account: str
    ) -> list[str]:
        """Connect; return the managed accounts. Raises ``gateway.apiconnect.ClientIdInUse``
        on error 326, ``ConnectionError`` otherwise."""
        ...

    def listen(self, listener: BrokerListener) -> None:
        """Send this session's events to ``listener`` from now on."""
        ...

    def disconnect(self) -> None: ...

    def is_connected(self) -> bool: ...

    def next_order_id(self) -> int: ...

    def place_order(self, contract: Contract, order: Order) -> Trade:
        """Send (or, with an order id already used, modify) an order; never blocks."""
        ...

    def cancel_order(self, order: Order) -> None: ...

    def request_market_data(self, contract: Contract) -> None: ...

    async def open_orders(self) -> list[Trade]:
        """Every open order of the account, whichever client placed it."""
        ...

    async def completed_orders(self) -> list[Trade]: ...

    async def executions(self) -> list[IbFill]: ...

    async def contracts_matching(self, contract: Contract) -> list[Contract]:
        """The contracts IB knows that match ``contract`` (qualified, with conId)."""
        ...

    async def what_if(self, contract: Contract, order: Order) -> Margin: ...

    def global_cancel(self) -> None:
        """reqGlobalCancel: every open order of the account, whichever client placed it."""
        ...

    # -- data: history, account, what-if, market data permissions --------------------------
    # Each raises :class:`BrokerError` with IB's code when IB answers with an error.

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
        """reqHistoricalData with ``formatDate=2`` (intraday bars in UTC), no updates."""
        ...

    async def account_values(self, account: str) -> list[AccountValue]:
        """The account's values (NetLiquidation, BuyingPower, CashBalance per currency...)."""
        ...

    async def portfolio(self, account: str) -> list[PortfolioItem]: ...

    async def what_if_state(self, contract: Contract, order: Order) -> OrderState:
        """IB's whole what-if answer; the order is sent with ``whatIf`` set, never placed."""
        ...

    async def subscribe_market_data(self, contract: Contract, *, wait: float) -> BrokerError | None:
        """Open a market data line and wait up to ``wait`` s for its first tick or a refusal:
        a permission error (354, 10167, 10197, ...) closes the line and is returned."""
        ...


class BrokerError(Exception):
    """IB answered a request with an error: ``code`` and IB's ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"IB error {code}: {message}")
        self.code = code
        self.message = message


#: A new, unconnected session.
BrokerFactory = Callable[[], BrokerSession]


@dataclass(eq=False)
class Session:
    """A connected session and what it was opened with; ``closed`` once fenced or dropped."""

    broker: BrokerSession
    gateway: str
    client_id: int
    account: str
    closed: bool = False


class GatewayTimeout(TimeoutError):
    """A request of the host's that the gateway did not answer in time (a stalled or slow
    gateway): its trouble, not the strategy's, when it surfaces under a hook."""


async def ask(
    session: Session, call: Callable[[BrokerSession], Awaitable[T]], *, timeout: float
) -> T:
    """One request on ``session`` within ``timeout``; a closed session is refused first."""
    if session.closed or not session.broker.is_connected():
        raise ConnectionError(f"session to {session.gateway} is closed")
    try:
        return await within(call(session.broker), timeout)
    except TimeoutError:
        raise GatewayTimeout(
            f"gateway {session.gateway} did not answer within {timeout:g}s"
        ) from None
