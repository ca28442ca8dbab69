"""The simulated Gateway's API port: its clients, its fault switches, the broker's events.

One :class:`GatewayFrontEnd` per JVM of :class:`ibsim.process.GatewayProcess`, which logs in
(IBC's part) and then calls :meth:`GatewayFrontEnd.listen`. API clients connect over real TCP
with the real gateway's handshake (:mod:`ibsim.api.session`); requests are answered from the
broker through a :class:`ibsim.port.BrokerPort`, and order events and faults pushed by the
broker are relayed to the clients that own or watch them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ibsim.api.session import ApiSession
from ibsim.broker import OrderEvent
from ibsim.contracts import ContractSpec
from ibsim.link import LinkError
from ibsim.pacing import HistoricalPacing, PacingConfig
from ibsim.port import BrokerPort, Fault, FaultEvent, GatewayEvent

log = logging.getLogger(__name__)


class FrontEndState(enum.Enum):
    """Where one JVM's API side stands."""

    CREATED = "created"
    READY = "ready"  # logged in and listening for API clients
    STOPPED = "stopped"
    CRASHED = "crashed"


@dataclass(slots=True)
class FrontEndConfig:
    """One Gateway's API settings."""

    name: str
    host: str = "127.0.0.1"
    port: int = 0
    read_only: bool = False
    tick_rate: float = 20.0  # price ticks per second per market data subscription
    max_msg_rate: int = 50  # IB's pacing limit per client per second (error 100 above it)
    pacing: PacingConfig = field(default_factory=PacingConfig)  # historical-data limits


class GatewayFrontEnd:
    """A Gateway's API side: TWS API server, accounts of its login, fault switches."""

    def __init__(self, *, config: FrontEndConfig, broker: BrokerPort) -> None:
        self.config = config
        self.broker = broker
        self.state = FrontEndState.CREATED
        self.accounts: tuple[str, ...] = ()
        self.market_data = "realtime"
        self.ready = asyncio.Event()
        self.sessions: dict[int, ApiSession] = {}
        self.all_sessions: set[ApiSession] = set()
        self._server: asyncio.Server | None = None
        # fault switches
        self.link_up = True
        self.market_farm_ok = True
        self.hmds_farm_ok = True
        self.stalled = asyncio.Event()
        self.unstalled = asyncio.Event()
        self.unstalled.set()
        self.delay = 0.0
        self.crashed = asyncio.Event()
        self.session_ended = asyncio.Event()
        self.specs: dict[int, ContractSpec] = {}
        # IB paces historical data per Gateway session: every client of this JVM together.
        self.hist_pacing = HistoricalPacing(self.pacing_config())
        self._background: set[asyncio.Future[None]] = set()
        # Sticky faults the broker replays at subscribe (see service.STICKY_FAULTS).
        self.clock_offset = 0.0
        self.clock_hooks: list[Callable[[float], None]] = []
        self.current_time_pacing = False
        self.login_stall = False
        self.no_login_dialog = False

    def pacing_config(self) -> PacingConfig:
        """The pacing limits, with the message rate from ``max_msg_rate``."""
        return dataclasses.replace(self.config.pacing, max_msg_rate=self.config.max_msg_rate)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a follow-up in the background, keeping a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def name(self) -> str:
        """The gateway's name at the broker."""
        return self.config.name

    @property
    def port(self) -> int:
        """The API port actually bound (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            return self.config.port
        return int(self._server.sockets[0].getsockname()[1])

    # -- serving ---------------------------------------------------------------------------

    async def listen(self) -> None:
        """Open the API port (a real gateway opens it only once logged in)."""
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve_client, host=self.config.host, port=self.config.port
            )
            self.config.port = self.port
        self.state = FrontEndState.READY
        self.ready.set()
        log.info("sim_gateway_listening gateway=%s port=%s", self.name, self.port)

    async def stop(self, *, logout: bool = True) -> None:
        """Close the port, drop every client, end the broker session."""
        await self._close_server()
        if logout:
            with contextlib.suppress(Exception):
                await self.broker.logout(gateway=self.name)
            self.broker.unsubscribe(gateway=self.name)
        self.state = FrontEndState.STOPPED
        self.ready.clear()

    async def _close_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.drop_clients()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    def drop_clients(self) -> None:
        """Close every API socket (fault: drop, crash, stop)."""
        for session in list(self.all_sessions):
            session.close()

    async def crash(self) -> None:
        """Fault: the gateway process dies; clients lose their sockets, the session is gone."""
        await self._close_server()
        with contextlib.suppress(Exception):
            await self.broker.logout(gateway=self.name)
        self.broker.unsubscribe(gateway=self.name)
        self.state = FrontEndState.CRASHED
        self.ready.clear()
        self.crashed.set()

    # -- broker events ---------------------------------------------------------------------

    def _on_event(self, event: GatewayEvent) -> None:
        if isinstance(event, OrderEvent):
            for session in list(self.all_sessions):
                session.on_order_event(event)
            return
        self._on_fault(event)

    def _on_fault(self, event: FaultEvent) -> None:
        log.info(
            "sim_gateway_fault gateway=%s fault=%s active=%s value=%s",
            self.name,
            event.fault.value,
            event.active,
            event.value,
        )
        if event.fault is Fault.LINK:
            self.link_up = not event.active
            if event.active:
                self._broadcast(
                    1100, "Connectivity between IB and Trader Workstation has been lost."
                )
            elif int(event.value) == 1101:
                self._broadcast(
                    1101,
                    "Connectivity between IB and Trader Workstation has been restored - data lost.",
                )
            else:
                self._broadcast(
                    1102,
                    "Connectivity between IB and Trader Workstation has been restored - "
                    "data maintained.",
                )
        elif event.fault is Fault.MARKET_FARM:
            self.market_farm_ok = not event.active
            if event.active:
                self._broadcast(2103, "Market data farm connection is broken:usfarm")
            else:
                self._broadcast(2104, "Market data farm connection is OK:usfarm")
        elif event.fault is Fault.HMDS_FARM:
            self.hmds_farm_ok = not event.active
            if event.active:
                self._broadcast(2105, "HMDS data farm connection is broken:ushmds")
            else:
                self._broadcast(2106, "HMDS data farm connection is OK:ushmds")
        elif event.fault is Fault.STALL:
            if event.active:
                self.unstalled.clear()
                self.stalled.set()
            else:
                self.stalled.clear()
                self.unstalled.set()
        elif event.fault is Fault.DROP_CLIENTS:
            self.drop_clients()
        elif event.fault is Fault.CRASH:
            self.spawn(self.crash())
        elif event.fault is Fault.SLOW:
            self.delay = event.value if event.active else 0.0
        elif event.fault is Fault.TICK_RATE:
            self.config.tick_rate = event.value
        elif event.fault is Fault.CLOCK:
            self.clock_offset = event.value if event.active else 0.0
            for hook in list(self.clock_hooks):
                hook(self.clock_offset)
        elif event.fault is Fault.CURRENT_TIME_PACING:
            self.current_time_pacing = event.active
        elif event.fault is Fault.LOGIN_STALL:
            self.login_stall = event.active
        elif event.fault is Fault.NO_LOGIN_DIALOG:
            self.no_login_dialog = event.active
        elif event.fault is Fault.SESSION_ENDED:
            # Another login took the username: IB ends this session; clients lose the link.
            self.session_ended.set()
            self.link_up = False
            self._broadcast(1100, "Connectivity between IB and Trader Workstation has been lost.")

    def _broadcast(self, code: int, message: str) -> None:
        for session in list(self.all_sessions):
            session.send_error(-1, code, message)

    # -- API clients -----------------------------------------------------------------------

    def client_id_in_use(self, client_id: int) -> bool:
        """True while a live client owns the id (error 326 for a second one)."""
        return client_id in self.sessions

    def release_client_id(self, client_id: int, session: ApiSession) -> None:
        """A client left: its id is free again."""
        if self.sessions.get(client_id) is session:
            del self.sessions[client_id]

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        session = ApiSession(gateway=self, reader=reader, writer=writer)
        self.all_sessions.add(session)
        try:
            await session.run()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except LinkError as exc:
            # The handshake needs IB's servers (the connection time): the client tries again.
            log.warning("sim_api_session_refused gateway=%s error=%s", self.name, exc)
        except Exception:
            log.exception("sim_api_session_failed gateway=%s", self.name)
        finally:
            self.all_sessions.discard(session)
            session.close()
