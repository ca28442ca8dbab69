"""One strategy's API session: which gateway it is on, opening one (with a leased client id
rotated once on error 326), fencing one, and the session's events."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from ib_async import Fill as IbFill
from ib_async import Ticker, Trade

from gateway.apiconnect import connect_rotating
from plugins import api, outage
from plugins.config import StrategyConfig
from plugins.host.broker import BrokerSession, Session
from plugins.host.runstate import RunState
from plugins.host.services import HostServices

__all__ = ["SessionEvents", "Sessions"]

log = logging.getLogger("plugins.host")


class SessionEvents(Protocol):
    """What the strategy does with its session's events (the runner implements it)."""

    def order_status(self, session: Session, trade: Trade) -> None: ...

    def execution(self, session: Session, trade: Trade, fill: IbFill) -> None: ...

    def tickers(self, session: Session, tickers: Iterable[Ticker]) -> None: ...

    def lost(self, session: Session) -> None: ...


class _Bound:
    """A broker's listener bound to the session it belongs to (late events name their session)."""

    def __init__(self, owner: Sessions, session: Session) -> None:
        self._owner, self._session = owner, session

    def order_status(self, trade: Trade) -> None:
        if not self._session.closed:
            self._owner.events.order_status(self._session, trade)

    def execution(self, trade: Trade, fill: IbFill) -> None:
        if not self._session.closed:
            self._owner.events.execution(self._session, trade, fill)

    def tickers(self, tickers: Iterable[Ticker]) -> None:
        if not self._session.closed:
            self._owner.events.tickers(self._session, tickers)

    def disconnected(self) -> None:
        self._owner.dropped(self._session)


class Sessions:
    """The strategy's current session and the gateway it trades on (``active``)."""

    def __init__(
        self, cfg: StrategyConfig, services: HostServices, run: RunState, events: SessionEvents
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self._services = services
        self._run = run
        self.events = events
        self.current: Session | None = None
        self.active: str | None = cfg.gateways[0]

    def client_id_for(self, gateway: str) -> int:
        """The configured id on the primary; on a failover gateway, one leased there."""
        if gateway == self.cfg.gateways[0]:
            return self.cfg.client_id
        endpoint = self._services.endpoints[gateway]
        if endpoint.leases is None:
            return self.cfg.client_id
        return endpoint.leases.lease(f"strategy:{self.name}", now=self._services.clock.now())

    async def open(self, gateway: str) -> Session:
        """A new session on ``gateway``; raises ConnectionError naming strategy and address."""
        services = self._services
        endpoint = services.endpoints[gateway]
        leases = endpoint.leases
        rotate = None
        if leases is not None:

            def rotate() -> int:
                return leases.rotate(f"strategy:{self.name}", now=services.clock.now())

        tried = self.client_id_for(gateway)

        async def connect(client_id: int) -> tuple[BrokerSession, list[str]]:
            nonlocal tried
            tried = client_id
            broker = services.new_broker()
            accounts = await broker.connect(
                host=endpoint.host,
                port=endpoint.port,
                client_id=client_id,
                timeout=services.settings.connect_timeout,
                account=endpoint.account or "",
            )
            return broker, accounts

        try:
            (broker, accounts), client_id = await connect_rotating(
                connect, client_id=tried, rotate=rotate
            )
        except (OSError, TimeoutError, ConnectionError) as exc:
            raise ConnectionError(
                f"strategy {self.name}: cannot connect to gateway {gateway} "
                f"({endpoint.host}:{endpoint.port}, client id {tried}): "
                f"{type(exc).__name__} {exc}"
            ) from None
        account = endpoint.account or (accounts[0] if accounts else "")
        session = Session(broker=broker, gateway=gateway, client_id=client_id, account=account)
        broker.listen(_Bound(self, session))
        log.info(
            "strategy_session_open strategy=%s gateway=%s client_id=%s account=%s",
            self.name,
            gateway,
            client_id,
            account,
        )
        return session

    def close(self, session: Session | None) -> None:
        """Fence: disconnect a session before anything else may act for this strategy."""
        if session is None or session.closed:
            return
        session.closed = True
        session.broker.disconnect()
        log.info(
            "strategy_session_closed strategy=%s gateway=%s client_id=%s",
            self.name,
            session.gateway,
            session.client_id,
        )

    def dropped(self, session: Session) -> None:
        """The session's socket closed without us closing it."""
        if session.closed:
            return
        session.closed = True
        if session is self.current:
            log.warning("strategy_session_lost strategy=%s gateway=%s", self.name, session.gateway)
            self.events.lost(session)

    def live(self) -> Session:
        """The session orders and requests may use now, else a NOT_TRADING refusal saying why."""
        session = self.current
        if session is None or session.closed or not self._run.trading:
            kind = self._services.feed(self.active or "").kind
            why = f": {outage.describe(kind)}" if kind is not None else ""
            raise api.OrderRefused(
                api.RefusalReason.NOT_TRADING,
                f"strategy {self.name} is {self._run.state.name} "
                f"(gateway {self.active}{why}): no orders or requests now",
            )
        return session
