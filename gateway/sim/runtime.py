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
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.runtime import (
    ContainerGone,
    ContainerState,
    EventKind,
    ObservedContainer,
    RuntimeEvent,
    RuntimeFailure,
)
from gateway.sim import auth, ibclog
from gateway.sim.broker import BrokerConfig
from gateway.sim.cmdserver import CommandHandlers, IbcCommandServer
from gateway.sim.entrypoint import (
    EXIT_2FA_TIMEOUT,
    EXIT_CRASHED,
    EXIT_LOGIN_FAILED,
    EXIT_OK,
)
from gateway.sim.frontend import FrontEndConfig, GatewayFrontEnd
from gateway.sim.port import LoginKind
from gateway.sim.service import BrokerService, InProcessBrokerPort
from gateway.spec import (
    LABEL_ACCOUNT,
    LABEL_FLEET,
    LABEL_GATEWAY,
    PASSWORD_PATH,
    USERNAME_PATH,
    ContainerSpec,
)

if TYPE_CHECKING:
    from gateway.sim.control import ControlServer

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
class _Settings:
    """What the gnzsnz env contract and the secret files say about one gateway."""

    username: str
    password: str = dataclasses.field(repr=False)
    account: str
    mode: auth.Mode
    read_only: bool
    twofa_timeout_action: str
    relogin_after_twofa_timeout: bool
    twofa_exit_interval: int
    existing_session_action: str
    zone: ZoneInfo
    host: str
    port: int


@dataclasses.dataclass(slots=True)
class _Run:
    """One start of a container: its log lines and how it ends."""

    lines: list[str] = dataclasses.field(default_factory=list)
    ended: bool = False
    waiters: list[asyncio.Future[None]] = dataclasses.field(default_factory=list)
    stop: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    exit_code: int | None = None
    task: asyncio.Task[None] | None = None
    frontend: GatewayFrontEnd | None = None
    commands: IbcCommandServer | None = None

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
    settings: _Settings
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


def _yes(env: dict[str, str], name: str, *, default: bool, where: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("yes", "true", "1"):
        return True
    if raw in ("no", "false", "0"):
        return False
    raise RuntimeFailure(
        f"create {where}: {name}={env[name]!r}: expected yes or no",
        operation="create",
        container=where,
    )


def _settings(spec: ContainerSpec) -> _Settings:
    """Read the spec as the simulator's gateway entrypoint reads its container."""
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
    env = spec.env_map
    mode_text = env.get("TRADING_MODE", "paper").strip().lower() or "paper"
    if mode_text not in ("paper", "live"):
        raise fail(f"TRADING_MODE={mode_text!r}: the simulator runs one session: paper or live")
    action = env.get("TWOFA_TIMEOUT_ACTION", "exit").strip().lower() or "exit"
    if action not in ("exit", "restart"):
        raise fail(f"TWOFA_TIMEOUT_ACTION={action!r}: expected exit or restart")
    interval_text = env.get("TWOFA_EXIT_INTERVAL", "").strip() or "60"
    if not interval_text.isdigit():
        raise fail(f"TWOFA_EXIT_INTERVAL={interval_text!r}: expected whole seconds")
    zone_text = env.get("TIME_ZONE", "").strip() or "America/New_York"
    try:
        zone = ZoneInfo(zone_text)
    except (ZoneInfoNotFoundError, ValueError):
        raise fail(f"TIME_ZONE={zone_text!r}: not a known time zone") from None
    binding = spec.ports[0]
    return _Settings(
        username=username,
        password=password,
        account=account,
        mode=auth.Mode(mode_text),
        read_only=_yes(env, "READ_ONLY_API", default=False, where=where),
        twofa_timeout_action=action,
        relogin_after_twofa_timeout=_yes(
            env, "RELOGIN_AFTER_TWOFA_TIMEOUT", default=False, where=where
        ),
        twofa_exit_interval=int(interval_text),
        existing_session_action=env.get("EXISTING_SESSION_DETECTED_ACTION", "primary").strip()
        or "primary",
        zone=zone,
        host=binding.host_ip,
        port=binding.host_port,
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
        market_data: auth.MarketData = auth.MarketData.REALTIME,
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
        from gateway.sim.control import ControlServer, create_app

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

    def _register(self, settings: _Settings) -> None:
        user = auth.User(
            username=settings.username,
            password=settings.password,
            accounts=(settings.account,),
            mode=settings.mode,
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
        """One gateway process from start to exit, as ``ibfleet sim gateway`` runs it."""
        settings = container.settings
        frontend = GatewayFrontEnd(
            config=FrontEndConfig(
                name=container.spec.gateway,
                username=settings.username,
                password=settings.password,
                host=settings.host,
                port=settings.port,
                read_only=settings.read_only,
                existing_session_action=settings.existing_session_action,
                relogin_after_2fa_timeout=settings.relogin_after_twofa_timeout,
                twofa_exit_interval=settings.twofa_exit_interval,
            ),
            broker=InProcessBrokerPort(self.broker_service),
            line_sink=lambda line: self._out(run, line),
            ibc_clock=lambda: self._clock().astimezone(settings.zone),
        )
        run.frontend = frontend
        code = EXIT_KILLED
        try:
            code = await self._live(container, run, frontend)
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
            await self._cleanup(run, frontend)
            if code != EXIT_KILLED:
                self._out(run, ibclog.exit_status(code))
            run.exit_code = code % 256
            run.ended = True
            run.wake()
            container.state = ContainerState.EXITED
            container.exit_code = run.exit_code
            container.finished_at = self._clock()
            self._event(EventKind.DIE, container, exit_code=run.exit_code)

    async def _cleanup(self, run: _Run, frontend: GatewayFrontEnd) -> None:
        # A killed JVM's session ends at IB too (the broker sees its link drop): log out always.
        commands, run.commands = run.commands, None
        with contextlib.suppress(Exception):
            if commands is not None:
                await commands.close()
        with contextlib.suppress(Exception):
            await frontend.stop(logout=True)

    async def _until_stopped(self, run: _Run, work: asyncio.Future[int | None]) -> int | None:
        """Await ``work`` unless a stop comes first (then cancel it and return EXIT_OK)."""
        stop: asyncio.Future[object] = asyncio.ensure_future(run.stop.wait())
        watched: set[asyncio.Future[object]] = {work, stop}  # type: ignore[arg-type]
        try:
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if work.done():
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        return EXIT_OK

    async def _live(self, container: _Container, run: _Run, frontend: GatewayFrontEnd) -> int:
        login = asyncio.ensure_future(self._login(container, run, frontend))
        settled = await self._until_stopped(run, login)
        if run.stop.is_set():
            return EXIT_OK
        if settled is not None:
            return settled

        restarting: dict[str, bool] = {"failed": False}

        async def stop_command() -> None:
            run.stop.set()

        async def restart_command() -> None:
            outcome = await frontend.soft_restart()
            if outcome.kind is not LoginKind.LOGGED_IN:
                restarting["failed"] = True
                run.stop.set()

        async def reconnect() -> None:
            log.info("sim_gateway_command command=RECONNECT gateway=%s", frontend.name)

        commands = IbcCommandServer(
            handlers=CommandHandlers(
                stop=stop_command,
                restart=restart_command,
                reconnect_account=reconnect,
                reconnect_data=reconnect,
            ),
            host=self._command_host,
            port=0,
        )
        await commands.start()
        run.commands = commands
        frontend.ibc(ibclog.COMMAND_SERVER_READY)
        waits = {
            asyncio.ensure_future(run.stop.wait()): "stop",
            asyncio.ensure_future(frontend.crashed.wait()): "crash",
        }
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        reason = waits[next(iter(done))]
        if reason == "crash":
            return EXIT_CRASHED
        if restarting["failed"]:
            return EXIT_LOGIN_FAILED
        return EXIT_OK

    async def _login(
        self, container: _Container, run: _Run, frontend: GatewayFrontEnd
    ) -> int | None:
        """IBC's login loop; an exit code, or None once logged in. A new process has no
        restart token, so the first login needs full authentication."""
        settings = container.settings
        while True:
            self._out(run, ibclog.FINDING_AUTORESTART)
            self._out(run, ibclog.AUTORESTART_NOT_FOUND)
            outcome = await frontend.start(presents_token=False)
            if outcome.kind is LoginKind.LOGGED_IN:
                return None
            if outcome.kind is LoginKind.FAILED and outcome.reason == "twofa_timed_out":
                if (
                    settings.relogin_after_twofa_timeout
                    or settings.twofa_timeout_action == "restart"
                ):
                    continue
                frontend.ibc(ibclog.exiting_with_code(EXIT_2FA_TIMEOUT))
                return EXIT_2FA_TIMEOUT
            if outcome.kind is LoginKind.EXISTING_SESSION:
                return EXIT_OK
            return EXIT_LOGIN_FAILED

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
