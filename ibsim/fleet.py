"""Process mode: a broker and N gateways in one event loop, for tests and the demo.

    async with SimFleet.start(gateways=2) as sim:
        ib.connectAsync("127.0.0.1", sim.ports[0], clientId=1)
        sim.broker.orders            # the truth: every order ever received
        sim.link_lost(0)             # faults, as the control API injects them

Each gateway is the gateway container's own process tree (:class:`ibsim.process.GatewayProcess`:
socat, ibcstart.sh's loop, IBC and the Gateway), configured through the container's contract
(:func:`ibsim.settings.image_env`, read back by :func:`ibsim.settings.read_settings`), so
process mode, the in-process runtime and the container behave alike. A gateway whose process
ended (the crash fault, a stop) is started again by :meth:`SimFleet.login`, as Docker starts a
stopped container. Ports 0 are ephemeral; the bound ports are in ``sim.ports`` (kept across
restarts) and ``sim.control_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from gateway.config import TradingMode
from ibsim import auth
from ibsim.api.server import GatewayFrontEnd
from ibsim.broker import Broker, BrokerConfig
from ibsim.pacing import PacingConfig
from ibsim.port import Fault, FaultEvent, LoginOutcome
from ibsim.process import EXIT_CRASHED, ApiOptions, GatewayProcess
from ibsim.service import BrokerService, InProcessBrokerPort, system_clock
from ibsim.settings import GatewaySettings, image_env, read_settings, sim_env

if TYPE_CHECKING:
    from ibsim.api.session import ApiSession
    from ibsim.control import ControlServer

log = logging.getLogger(__name__)

LineSink = Callable[[str], None]
STOP_TIMEOUT = 10.0  # seconds a gateway gets to end at close() before it is killed


@dataclass(slots=True)
class GatewaySpec:
    """One gateway of a fleet: its name, username and settings (the container's env)."""

    name: str
    username: str
    password: str = field(repr=False, default="sim-password")
    port: int = 0
    read_only: bool = False
    existing_session_action: str = "primary"
    relogin_after_2fa_timeout: bool = False
    trading_mode: str = "paper"
    #: The Gateway's start-up before its login dialog: short, strategy tests restart often.
    jvm_start: float = 0.2

    def settings(self) -> GatewaySettings:
        """The gateway's settings, read from its env as the container reads them."""
        env = image_env(
            username=self.username,
            password=self.password,
            trading_mode=self.trading_mode,
            read_only_api=self.read_only,
            existing_session_action=self.existing_session_action,
            relogin_after_2fa_timeout=self.relogin_after_2fa_timeout,
        ) | sim_env(gateway_name=self.name, api_port=self.port, jvm_start=self.jvm_start)

        def no_files(path: str) -> bytes:
            raise FileNotFoundError(2, "No such file or directory", path)

        return read_settings(env, read_file=no_files, hostname=self.name, need_broker=False)


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
            mode=TradingMode.PAPER,
            twofa_required=twofa,
        )
        for i in range(count)
    ]


_NEVER = asyncio.Event()  # the "ready" of a gateway with no Gateway JVM running


class SimGateway:
    """One gateway of a process-mode fleet: its container's process, started again on demand.

    ``outcomes`` holds every answer of IB's login server to it, in order; ``exit_code`` the
    last run's exit status (None while running or before the first start).
    """

    def __init__(
        self,
        spec: GatewaySpec,
        *,
        make_process: Callable[[GatewaySettings, Callable[[LoginOutcome], None]], GatewayProcess],
    ) -> None:
        self.spec = spec
        self.settings = spec.settings()
        self._make_process = make_process
        self.process: GatewayProcess | None = None
        self.outcomes: list[LoginOutcome] = []
        self.exit_code: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._news: list[asyncio.Future[None]] = []

    @property
    def name(self) -> str:
        """The gateway's name at the broker."""
        return self.spec.name

    @property
    def running(self) -> bool:
        """The container's process runs (socat is up, a Gateway JVM may be relaunching)."""
        return self._task is not None and not self._task.done()

    @property
    def frontend(self) -> GatewayFrontEnd | None:
        """The current Gateway JVM's API side (None between JVMs and when not running)."""
        return self.process.frontend if self.process is not None and self.running else None

    @property
    def port(self) -> int:
        """The published API port (socat's), the same across restarts."""
        if self.process is not None and self.running:
            return self.process.api_port
        return self.settings.api_port

    @property
    def ready(self) -> asyncio.Event:
        """Set while a logged-in Gateway serves the API behind the port."""
        frontend = self.frontend
        return frontend.ready if frontend is not None else _NEVER

    @property
    def sessions(self) -> dict[int, ApiSession]:
        """The API clients by client id."""
        frontend = self.frontend
        return frontend.sessions if frontend is not None else {}

    @property
    def state(self) -> str:
        """created, exited, relaunching (no JVM) or the JVM's API state."""
        if not self.running:
            return "created" if self.exit_code is None else "exited"
        frontend = self.frontend
        return frontend.state.value if frontend is not None else "relaunching"

    # -- the container -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the container's process unless it runs (Docker: a no-op then)."""
        if self.running:
            return
        self.exit_code = None
        process = self._make_process(self.settings, self._heard)
        self.process = process
        self._task = asyncio.create_task(self._run(process), name=f"ibsim-fleet-{self.name}")

    async def _run(self, process: GatewayProcess) -> None:
        code = EXIT_CRASHED
        try:
            code = await process.run()
        except Exception:  # a bug in the simulated process is its crash, not the fleet's
            log.exception("sim_fleet_process_failed gateway=%s", self.name)
        finally:
            self.exit_code = code
            self._wake()

    async def stop(self, *, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM: the Gateway logs off and the process ends (killed after ``timeout``)."""
        task, process = self._task, self.process
        if task is None or task.done() or process is None:
            return
        process.stop_requested.set()
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _heard(self, outcome: LoginOutcome) -> None:
        if self.process is not None:
            # socat is bound by now: keep its port for the next start of the container.
            self.settings = dataclasses.replace(self.settings, api_port=self.process.api_port)
        self.outcomes.append(outcome)
        self._wake()

    def _wake(self) -> None:
        news, self._news = self._news, []
        for future in news:
            if not future.done():
                future.set_result(None)

    async def next_outcome(self, after: int) -> LoginOutcome:
        """The login server's answer number ``after`` (0-based), waiting for it; an error if
        the process ends before it comes."""
        while len(self.outcomes) <= after:
            if not self.running:
                raise RuntimeError(
                    f"sim gateway {self.name}: the process exited {self.exit_code} before "
                    "answering the login"
                )
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._news.append(future)
            await future
        return self.outcomes[after]

    async def login(self) -> LoginOutcome:
        """The gateway's login: at once when its Gateway is logged in, else the next answer of
        the login server (starting the process if it is not running)."""
        if self.ready.is_set() and self.outcomes:
            return self.outcomes[-1]
        seen = len(self.outcomes)
        self.start()
        return await self.next_outcome(seen)

    async def soft_restart(self) -> LoginOutcome:
        """The Gateway's auto-restart now (as at its daily time): every API socket drops, the
        JVM relaunches and logs in with the autorestart token; returns that login."""
        if self.process is None or not self.running:
            raise RuntimeError(f"sim gateway {self.name}: not running, nothing to restart")
        seen = len(self.outcomes)
        self.process.restart_now()
        return await self.next_outcome(seen)


class SimFleet:
    """A running broker (with control API) and its gateways."""

    def __init__(
        self,
        *,
        service: BrokerService,
        gateways: list[GatewaySpec],
        api: ApiOptions,
        line_sink: LineSink | None,
        host: str,
        clock: Callable[[], datetime],
    ) -> None:
        self.service = service
        self.specs = gateways
        self.host = host
        self.line_sink = line_sink
        self.lines: list[str] = []
        self._api = api
        self._clock = clock
        self._control_server: ControlServer | None = None
        self.control_url = ""
        self.gateways = [SimGateway(spec, make_process=self._make_process) for spec in gateways]

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
        pacing: PacingConfig | None = None,
        broker_config: BrokerConfig | None = None,
        auth_config: auth.AuthorityConfig | None = None,
        clock: Callable[[], datetime] = system_clock,
        line_sink: LineSink | None = None,
        login: bool = True,
    ) -> AsyncIterator[SimFleet]:
        """Start the broker, its control API (unless control_port is None) and the gateways.

        With ``login`` the gateways start and log in at once (no 2FA unless ``twofa``): a
        2FA login would block, so with ``twofa`` (or without ``login``) the gateways are left
        stopped for the test to start (``await sim.login(i)`` while approving through the
        control API).
        """
        if isinstance(gateways, int):
            specs = [
                GatewaySpec(
                    name=f"gw{i + 1}",
                    username=f"simuser{i + 1}",
                    port=port_base + i if port_base else 0,
                )
                for i in range(gateways)
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
            api=ApiOptions(
                tick_rate=tick_rate, max_msg_rate=max_msg_rate, pacing=pacing or PacingConfig()
            ),
            line_sink=line_sink,
            host=host,
            clock=clock,
        )
        await service.start()
        try:
            if control_port is not None:
                await fleet._start_control(control_port)
            if login and not twofa:
                outcomes = await asyncio.gather(*(fleet.login(i) for i in range(len(specs))))
                for spec, outcome in zip(specs, outcomes, strict=True):
                    if outcome.kind is not auth.LoginKind.LOGGED_IN:
                        raise RuntimeError(
                            f"sim gateway {spec.name}: login as {spec.username} ended "
                            f"{outcome.kind.value} ({outcome.reason})"
                        )
            yield fleet
        finally:
            await fleet.close()

    def _make_process(
        self, settings: GatewaySettings, heard: Callable[[LoginOutcome], None]
    ) -> GatewayProcess:
        name = settings.gateway_name

        def out(line: str) -> None:
            self.lines.append(f"{name} {line}")
            if self.line_sink is not None:
                self.line_sink(line)
            else:
                log.info("ibc_line gateway=%s line=%s", name, line)

        return GatewayProcess(
            settings,
            broker=InProcessBrokerPort(self.service),
            out=out,
            api_host=self.host,
            command_host=self.host,
            clock=self._clock,
            api=self._api,
            on_login=heard,
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
        await asyncio.gather(*(gateway.stop() for gateway in self.gateways))
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
        return [gateway.port for gateway in self.gateways]

    def gateway(self, which: int | str) -> SimGateway:
        """A gateway by index or name."""
        if isinstance(which, int):
            return self.gateways[which]
        for gateway in self.gateways:
            if gateway.name == which:
                return gateway
        raise KeyError(f"no sim gateway named {which!r}")

    # The names the strategy host's integration tests use for the same two things.
    @property
    def frontends(self) -> list[SimGateway]:
        """The gateways, in order (see :attr:`gateways`)."""
        return self.gateways

    def frontend(self, which: int | str) -> SimGateway:
        """A gateway by index or name (see :meth:`gateway`)."""
        return self.gateway(which)

    async def login(self, which: int | str) -> LoginOutcome:
        """Start a gateway if it is not running and return its login (see SimGateway.login)."""
        return await self.gateway(which).login()

    # -- faults (what the control API does) ------------------------------------------------

    def fault(self, which: int | str, fault: Fault, *, active: bool, value: float = 0.0) -> None:
        """Push a fault to one gateway, as the broker does for the control API."""
        name = self.gateway(which).name
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
