"""An in-process :class:`gateway.runtime.Runtime`: simulated gateways as tasks, not containers.

For the demo on a machine with no Docker engine, and for fast component tests of the
supervisor. Each "container" is a simulated gateway front end running in the supervisor's own
event loop against an in-process :class:`BrokerService`; it behaves as the simulator's gateway
container does (same IBC log lines, same exit codes, same command server), so the supervisor
cannot tell the two runtimes apart:

* ``create`` records the container and registers its user at the broker (username and password
  from the spec's secret files, account from the ``io.ibfleet.account`` label, 2FA for the
  usernames in ``twofa_users``); ``start`` logs in and opens the TWS API on the spec's published
  host address, then an IBC-style command server on an ephemeral loopback port
  (:meth:`command_address`).
* ``stop``/``restart``/``remove`` are Docker's: a restart is a new process, so the restart token
  is lost and the next login needs full authentication.
* ``follow_logs`` yields the lines since the current start, each prefixed with an RFC 3339 time
  as ``docker logs --timestamps`` does; ``events`` yields START, DIE (exit code) and DESTROY.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING

from gateway.config import MarketDataEntitlement
from gateway.runtime import (
    ContainerGone,
    ContainerState,
    EventKind,
    ObservedContainer,
    RuntimeEvent,
    RuntimeFailure,
)
from gateway.spec import (
    LABEL_ACCOUNT,
    LABEL_FLEET,
    LABEL_GATEWAY,
    PASSWORD_PATH,
    USERNAME_PATH,
    ContainerSpec,
)
from ibsim import auth
from ibsim.broker import BrokerConfig
from ibsim.cmdserver import IbcCommandServer
from ibsim.process import EXIT_CRASHED, GatewayProcess
from ibsim.service import BrokerService, InProcessBrokerPort
from ibsim.settings import ConfigError, GatewaySettings, read_settings

if TYPE_CHECKING:
    from ibsim.control import ControlServer

__all__ = ["InProcessRuntime"]

log = logging.getLogger(__name__)

EXIT_KILLED = 137  # what Docker reports for SIGKILL (a forced remove or a stop that timed out)
_AUTORESTART_PATH = "/home/ibgateway/Jts/autorestart"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(at: datetime) -> str:
    """Docker's ``--timestamps`` prefix: UTC with nine fraction digits and ``Z``."""
    utc = at.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + f".{utc.microsecond:06d}000Z"


class _Stop(enum.Enum):
    GRACEFUL = "graceful"  # SIGTERM / STOP: log off, exit 0
    KILL = "kill"  # SIGKILL: no goodbye, exit 137


@dataclasses.dataclass(slots=True)
class _Run:
    """One start of a container: its log lines and how it ends."""

    lines: list[str] = dataclasses.field(default_factory=list)
    ended: bool = False
    waiters: list[asyncio.Future[None]] = dataclasses.field(default_factory=list)
    stop: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    exit_code: int | None = None
    task: asyncio.Task[None] | None = None
    process: GatewayProcess | None = None

    @property
    def commands(self) -> IbcCommandServer | None:
        return self.process.command_server if self.process is not None else None

    def wake(self) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()


@dataclasses.dataclass(slots=True)
class _Container:
    id: str
    name: str
    spec: ContainerSpec
    settings: _Placement
    state: ContainerState = ContainerState.CREATED
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    run: _Run | None = None

    def observe(self) -> ObservedContainer:
        return ObservedContainer(
            id=self.id,
            name=self.name,
            state=self.state,
            labels=self.spec.label_map,
            started_at=self.started_at,
            finished_at=self.finished_at,
            exit_code=self.exit_code,
            image=self.spec.image,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _Placement:
    """A container's settings (read as the entrypoint reads them) and where it listens."""

    settings: GatewaySettings
    account: str
    true_password: str = dataclasses.field(repr=False)
    api_host: str


def _settings(spec: ContainerSpec) -> _Placement:
    """Read the spec exactly as ``ibfleet sim gateway`` reads its container (one parser)."""
    where = spec.name

    def fail(message: str) -> RuntimeFailure:
        return RuntimeFailure(f"create {where}: {message}", operation="create", container=where)

    files = {f.path: f.content.get_secret_value() for f in spec.files}
    username = files.get(USERNAME_PATH, "").strip()
    password = files.get(PASSWORD_PATH, "").strip()
    if not username:
        raise fail(f"the spec has no username file ({USERNAME_PATH})")
    if not password:
        raise fail(f"the spec has no password file ({PASSWORD_PATH})")
    account = spec.label_map.get(LABEL_ACCOUNT, "").strip()
    if not account:
        raise fail(f"the spec has no {LABEL_ACCOUNT} label naming the IB account")
    if not spec.ports:
        raise fail("the spec publishes no API port")

    def read_file(path: str) -> bytes:
        if path not in files:
            raise FileNotFoundError(2, "No such file or directory", path)
        return files[path].encode("utf-8")

    try:
        settings = read_settings(
            spec.env_map, read_file=read_file, hostname=spec.name, need_broker=False
        )
    except ConfigError as exc:
        raise fail(str(exc)) from None
    binding = spec.ports[0]
    settings = dataclasses.replace(
        settings,
        gateway_name=spec.gateway,
        api_port=binding.host_port,
        # An ephemeral loopback port: command_address() tells the supervisor where it is.
        command_port_override=0 if settings.command_server_enabled else None,
    )
    return _Placement(
        settings=settings, account=account, true_password=password, api_host=binding.host_ip
    )


class InProcessRuntime:
    """:class:`gateway.runtime.Runtime` with simulated gateways in this process's event loop.

    ``broker_service`` is used as given (and left running at :meth:`close`); without one the
    runtime makes and owns its own. ``twofa_users`` names the usernames whose logins need a
    2FA approval (through :attr:`broker_service` or the control API).
    """

    def __init__(
        self,
        *,
        broker_service: BrokerService | None = None,
        twofa_users: set[str] | frozenset[str] = frozenset(),
        broker_config: BrokerConfig | None = None,
        auth_config: auth.AuthorityConfig | None = None,
        market_data: MarketDataEntitlement = MarketDataEntitlement.REALTIME,
        command_host: str = "127.0.0.1",
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._owns_broker = broker_service is None
        self.broker_service = broker_service or BrokerService(
            config=broker_config or BrokerConfig(), auth_config=auth_config
        )
        self._broker_started = not self._owns_broker
        self._twofa_users = frozenset(twofa_users)
        self._market_data = market_data
        self._command_host = command_host
        self._clock = clock
        self._containers: dict[str, _Container] = {}
        self._ids = itertools.count(1)
        self._subscribers: list[tuple[str, asyncio.Queue[RuntimeEvent]]] = []
        self._control: ControlServer | None = None

    # -- lifecycle of the runtime itself ------------------------------------------------------

    async def _ensure_broker(self) -> None:
        if not self._broker_started:
            self._broker_started = True
            await self.broker_service.start()

    async def start_control(self, port: int = 0, *, host: str = "127.0.0.1") -> str:
        """Serve the broker's control API (approve 2FA, inject faults); returns its URL."""
        from ibsim.control import ControlServer, create_app

        await self._ensure_broker()
        if self._control is not None:
            return self._control.url
        server = ControlServer(create_app(service=self.broker_service), host=host, port=port)
        url = await server.start()
        self._control = server
        return url

    async def close(self) -> None:
        """Kill every simulated gateway (they die with the process), the control API and an
        owned broker."""
        for container in list(self._containers.values()):
            await self._end(container, _Stop.KILL, timeout=5.0)
        if self._control is not None:
            await self._control.stop()
            self._control = None
        if self._owns_broker and self._broker_started:
            await self.broker_service.stop()
            self._broker_started = False

    async def __aenter__(self) -> InProcessRuntime:
        await self._ensure_broker()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- observe -----------------------------------------------------------------------------

    def _get(self, container_id: str, op: str) -> _Container:
        container = self._containers.get(container_id)
        if container is None:
            raise ContainerGone(
                f"{op} {container_id}: not found (no such container)",
                operation=op,
                container=container_id,
            )
        return container

    async def list(self, *, fleet: str) -> list[ObservedContainer]:
        prefix = f"ibfleet-{fleet}-"
        return [
            c.observe()
            for c in self._containers.values()
            if c.spec.label_map.get(LABEL_FLEET) == fleet or c.name.startswith(prefix)
        ]

    async def inspect(self, container_id: str) -> ObservedContainer:
        return self._get(container_id, "inspect").observe()

    async def command_address(self, container_id: str) -> tuple[str, int] | None:
        """The command server's loopback address; None until the gateway has logged in (the
        simulated IBC opens it then) and once it has exited."""
        container = self._get(container_id, "inspect")
        run = container.run
        if container.state is not ContainerState.RUNNING or run is None or run.commands is None:
            return None
        return self._command_host, run.commands.port

    # -- act ---------------------------------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> str:
        if any(c.name == spec.name for c in self._containers.values()):
            raise RuntimeFailure(
                f"create {spec.name}: engine refused (409: the name is in use)",
                operation="create",
                container=spec.name,
            )
        settings = _settings(spec)
        await self._ensure_broker()
        self._register(settings)
        container = _Container(
            id=f"sim{next(self._ids):08x}", name=spec.name, spec=spec, settings=settings
        )
        self._containers[container.id] = container
        log.info("runtime_created container=%s id=%s runtime=in-process", spec.name, container.id)
        return container.id

    def _register(self, placement: _Placement) -> None:
        # IB's side knows the user's real password (the secret file); the gateway logs in with
        # what IBC made of config.ini, so a mangled password fails as it would at IB.
        settings = placement.settings
        user = auth.User(
            username=settings.username,
            password=placement.true_password,
            accounts=(placement.account,),
            mode=settings.ibc_mode,
            twofa_required=settings.username in self._twofa_users,
            market_data=self._market_data,
        )
        authority = self.broker_service.authority
        known = authority.user(user.username)
        if known is None:
            self.broker_service.add_user(user)
        elif known != user:
            # The fleet file changed the password or account: IB's side changes with it.
            # LoginAuthority has no replace; its user table is the one place that holds it.
            authority._users[user.username] = user
            for account in user.accounts:
                self.broker_service.broker.open_account(account)

    async def start(self, container_id: str) -> None:
        container = self._get(container_id, "start")
        if container.state is ContainerState.RUNNING:
            return  # Docker: starting a running container is a no-op
        run = _Run()
        container.run = run
        container.state = ContainerState.RUNNING
        container.started_at = self._clock()
        container.finished_at = None
        container.exit_code = None
        run.task = asyncio.create_task(
            self._process(container, run), name=f"ibfleet-sim-{container.name}"
        )
        self._event(EventKind.START, container)

    async def stop(self, container_id: str, *, timeout: float) -> None:
        container = self._get(container_id, "stop")
        await self._end(container, _Stop.GRACEFUL, timeout=timeout)

    async def restart(self, container_id: str, *, timeout: float) -> None:
        container = self._get(container_id, "restart")
        await self._end(container, _Stop.GRACEFUL, timeout=timeout)
        await self.start(container_id)

    async def rename(self, container_id: str, name: str) -> None:
        container = self._get(container_id, "rename")
        if any(c.name == name for c in self._containers.values() if c is not container):
            raise RuntimeFailure(
                f"rename {container.name}: the name {name} is in use",
                operation="rename",
                container=container.name,
            )
        container.name = name

    async def remove(self, container_id: str) -> None:
        container = self._get(container_id, "remove")
        await self._end(container, _Stop.KILL, timeout=5.0)
        self._containers.pop(container_id, None)
        self._event(EventKind.DESTROY, container)

    async def _end(self, container: _Container, how: _Stop, *, timeout: float) -> None:
        """Ask the run to end (graceful or kill); a graceful stop that overruns is a kill."""
        run = container.run
        if run is None or run.task is None or run.task.done():
            return
        if how is _Stop.GRACEFUL:
            run.stop.set()
            done, _ = await asyncio.wait({run.task}, timeout=max(timeout, 0.0))
            if done:
                return
        run.task.cancel()  # SIGKILL: the process ends where it stands
        with contextlib.suppress(asyncio.CancelledError):
            await run.task

    # -- the simulated gateway process --------------------------------------------------------

    def _out(self, run: _Run, line: str) -> None:
        run.lines.append(f"{rfc3339(self._clock())} {line}")
        run.wake()

    async def _process(self, container: _Container, run: _Run) -> None:
        """One container from start to exit: the same GatewayProcess the entrypoint runs."""
        placement = container.settings
        process = GatewayProcess(
            placement.settings,
            broker=InProcessBrokerPort(self.broker_service),
            out=lambda line: self._out(run, line),
            api_host=placement.api_host,
            command_host=self._command_host,
            clock=self._clock,
            stop_requested=run.stop,
        )
        run.process = process
        code = EXIT_KILLED
        try:
            code = await process.run()
        except asyncio.CancelledError:
            code = EXIT_KILLED
        except Exception as exc:  # a bug in the simulated process is its crash, not ours
            log.exception(
                "sim_runtime_process_failed container=%s error=%s",
                container.name,
                type(exc).__name__,
            )
            code = EXIT_CRASHED
        finally:
            frontend = process.frontend
            if frontend is not None:
                # A killed JVM's session ends at IB too (the broker sees its link drop).
                with contextlib.suppress(Exception):
                    await frontend.stop(logout=True)
            run.exit_code = code % 256
            run.ended = True
            run.wake()
            container.state = ContainerState.EXITED
            container.exit_code = run.exit_code
            container.finished_at = self._clock()
            self._event(EventKind.DIE, container, exit_code=run.exit_code)

    # -- streams -----------------------------------------------------------------------------

    async def follow_logs(self, container_id: str) -> AsyncIterator[str]:
        """Lines since the current start, ending when that run ends (as ``docker logs -f``)."""
        container = self._get(container_id, "logs")
        run = container.run
        if run is None:
            return
        index = 0
        loop = asyncio.get_running_loop()
        while True:
            if index < len(run.lines):
                line = run.lines[index]
                index += 1
                yield line
                continue
            if run.ended:
                return
            waiter: asyncio.Future[None] = loop.create_future()
            run.waiters.append(waiter)
            await waiter

    async def events(self, *, fleet: str) -> AsyncIterator[RuntimeEvent]:
        """This fleet's START / DIE / DESTROY events for as long as the caller iterates."""
        queue: asyncio.Queue[RuntimeEvent] = asyncio.Queue()
        entry = (fleet, queue)
        self._subscribers.append(entry)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.remove(entry)

    def _event(
        self, kind: EventKind, container: _Container, *, exit_code: int | None = None
    ) -> None:
        event = RuntimeEvent(
            kind=kind,
            container_id=container.id,
            at=self._clock(),
            name=container.name,
            gateway=container.spec.label_map.get(LABEL_GATEWAY),
            exit_code=exit_code,
        )
        log.info(
            "runtime_event kind=%s container=%s exit_code=%s",
            kind.value,
            container.name,
            "-" if exit_code is None else exit_code,
        )
        fleet = container.spec.label_map.get(LABEL_FLEET)
        for wanted, queue in self._subscribers:
            if wanted == fleet:
                queue.put_nowait(event)
