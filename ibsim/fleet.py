"""Process mode: a broker and N gateway front ends in one event loop, for tests and the demo.

    async with SimFleet.start(gateways=2) as sim:
        ib.connectAsync("127.0.0.1", sim.ports[0], clientId=1)
        sim.broker.orders            # the truth: every order ever received
        await sim.link_lost(0)        # faults, as the control API injects them

Ports 0 are ephemeral; the bound ports are in ``sim.ports`` and ``sim.control_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from ibsim import auth
from ibsim.broker import Broker, BrokerConfig
from ibsim.frontend import FrontEndConfig, GatewayFrontEnd, LineSink
from ibsim.port import Fault, FaultEvent, LoginKind, LoginOutcome
from ibsim.service import BrokerService, InProcessBrokerPort, system_clock

if TYPE_CHECKING:
    from ibsim.control import ControlServer

log = logging.getLogger(__name__)


@dataclass(slots=True)
class GatewaySpec:
    """One gateway of a fleet: its name, username and settings."""

    name: str
    username: str
    password: str = field(repr=False, default="sim-password")
    port: int = 0
    read_only: bool = False
    existing_session_action: str = "primary"
    relogin_after_2fa_timeout: bool = False


def paper_account(index: int) -> str:
    """Paper account ids as IB issues them (DU + 7 digits)."""
    return f"DU{1_000_001 + index:07d}"


def default_users(count: int, *, twofa: bool = False) -> list[auth.User]:
    """One paper user and account per gateway: simuser1 -> DU1000001, ..."""
    return [
        auth.User(
            username=f"simuser{i + 1}",
            password="sim-password",  # noqa: S106 - a simulator's fixed test password
            accounts=(paper_account(i),),
            mode=auth.Mode.PAPER,
            twofa_required=twofa,
        )
        for i in range(count)
    ]


class SimFleet:
    """A running broker (with control API) and its gateway front ends."""

    def __init__(
        self,
        *,
        service: BrokerService,
        gateways: list[GatewaySpec],
        tick_rate: float,
        max_msg_rate: int,
        line_sink: LineSink | None,
        host: str,
        control_port: int | None,
    ) -> None:
        self.service = service
        self.specs = gateways
        self.host = host
        self.tick_rate = tick_rate
        self.max_msg_rate = max_msg_rate
        self.line_sink = line_sink
        self.frontends: list[GatewayFrontEnd] = []
        self.lines: list[str] = []
        self._control_port = control_port
        self._control_server: ControlServer | None = None
        self.control_url = ""

    # -- construction ----------------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        *,
        gateways: int | list[GatewaySpec] = 1,
        users: list[auth.User] | None = None,
        twofa: bool = False,
        port_base: int = 0,
        control_port: int | None = 0,
        host: str = "127.0.0.1",
        tick_rate: float = 20.0,
        step_interval: float = 0.05,
        max_msg_rate: int = 50,
        broker_config: BrokerConfig | None = None,
        auth_config: auth.AuthorityConfig | None = None,
        clock: Callable[[], datetime] = system_clock,
        line_sink: LineSink | None = None,
        login: bool = True,
    ) -> AsyncIterator[SimFleet]:
        """Start the broker, its control API (unless control_port is None) and the gateways.

        With ``login`` the gateways log in at once (no 2FA unless ``twofa``): a 2FA login
        would block, so with ``twofa`` the gateways are started but their logins are left to
        the test (``await sim.login(i)`` while approving through the control API).
        """
        if isinstance(gateways, int):
            count = gateways
            specs = [
                GatewaySpec(
                    name=f"gw{i + 1}",
                    username=f"simuser{i + 1}",
                    port=port_base + i if port_base else 0,
                )
                for i in range(count)
            ]
        else:
            specs = gateways
        service = BrokerService(
            clock=clock,
            config=broker_config,
            users=users if users is not None else default_users(len(specs), twofa=twofa),
            auth_config=auth_config,
            step_interval=step_interval,
        )
        fleet = cls(
            service=service,
            gateways=specs,
            tick_rate=tick_rate,
            max_msg_rate=max_msg_rate,
            line_sink=line_sink,
            host=host,
            control_port=control_port,
        )
        await service.start()
        try:
            for spec in specs:
                fleet.frontends.append(fleet._make_frontend(spec))
            if control_port is not None:
                await fleet._start_control(control_port)
            if login and not twofa:
                outcomes = await asyncio.gather(*(fleet.login(i) for i in range(len(specs))))
                for spec, outcome in zip(specs, outcomes, strict=True):
                    if outcome.kind is not LoginKind.LOGGED_IN:
                        raise RuntimeError(
                            f"sim gateway {spec.name}: login as {spec.username} ended "
                            f"{outcome.kind.value} ({outcome.reason})"
                        )
            yield fleet
        finally:
            await fleet.close()

    def _make_frontend(self, spec: GatewaySpec) -> GatewayFrontEnd:
        def sink(line: str, _name: str = spec.name) -> None:
            self.lines.append(f"{_name} {line}")
            if self.line_sink is not None:
                self.line_sink(line)
            else:
                log.info("ibc_line gateway=%s line=%s", _name, line)

        return GatewayFrontEnd(
            config=FrontEndConfig(
                name=spec.name,
                username=spec.username,
                password=spec.password,
                host=self.host,
                port=spec.port,
                read_only=spec.read_only,
                existing_session_action=spec.existing_session_action,
                tick_rate=self.tick_rate,
                max_msg_rate=self.max_msg_rate,
                relogin_after_2fa_timeout=spec.relogin_after_2fa_timeout,
            ),
            broker=InProcessBrokerPort(self.service),
            line_sink=sink,
        )

    async def _start_control(self, port: int) -> None:
        from ibsim.control import ControlServer, create_app

        server = ControlServer(
            create_app(service=self.service, fleet=self), host=self.host, port=port
        )
        self._control_server = server
        self.control_url = await server.start()

    async def close(self) -> None:
        """Stop every gateway, the control API and the broker."""
        for frontend in self.frontends:
            with contextlib.suppress(Exception):
                await frontend.stop()
        if self._control_server is not None:
            await self._control_server.stop()
        await self.service.stop()

    # -- access ----------------------------------------------------------------------------

    @property
    def broker(self) -> Broker:
        """The broker core: the truth (orders ever, positions, executions)."""
        return self.service.broker

    @property
    def ports(self) -> list[int]:
        """API port of each gateway, in order."""
        return [frontend.port for frontend in self.frontends]

    def frontend(self, which: int | str) -> GatewayFrontEnd:
        """A gateway by index or name."""
        if isinstance(which, int):
            return self.frontends[which]
        for frontend in self.frontends:
            if frontend.name == which:
                return frontend
        raise KeyError(f"no sim gateway named {which!r}")

    async def login(self, which: int | str, *, presents_token: bool = False) -> LoginOutcome:
        """Log a gateway in (and open its port if the login succeeds)."""
        return await self.frontend(which).start(presents_token=presents_token)

    # -- faults (what the control API does) ------------------------------------------------

    def fault(self, which: int | str, fault: Fault, *, active: bool, value: float = 0.0) -> None:
        """Push a fault to one gateway, as the broker does for the control API."""
        name = self.frontend(which).name
        self.service.push_fault(FaultEvent(gateway=name, fault=fault, active=active, value=value))

    def link_lost(self, which: int | str) -> None:
        """IB link lost: clients get 1100."""
        self.fault(which, Fault.LINK, active=True)

    def link_restored(self, which: int | str, *, data_lost: bool = False) -> None:
        """IB link back: 1101 (data lost) or 1102 (data maintained)."""
        self.fault(which, Fault.LINK, active=False, value=1101 if data_lost else 1102)

    def set_price(self, symbol: str, price: float) -> None:
        """Move a price now (resting orders that cross fill at once)."""
        spec = self.broker.symbols.by_symbol(symbol)
        if spec is None:
            raise KeyError(f"unknown symbol {symbol!r}")
        self.broker.set_price(spec.con_id, price)
