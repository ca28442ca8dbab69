"""Process entry points: the gateway container (``ibfleet sim gateway``) and the broker
process (``ibfleet sim broker``).

The gateway reads the gnzsnz/ib-gateway env contract once, here at the edge, logs in to the
broker over the link, prints IBC's lines on stdout, serves the TWS API on 4003 (live) or 4004
(paper) and an IBC command server on 7462, and exits with IBC's codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.sim import auth, ibclog
from gateway.sim.cmdserver import CommandHandlers, IbcCommandServer
from gateway.sim.frontend import FrontEndConfig, GatewayFrontEnd
from gateway.sim.link import BrokerLinkServer, LinkError, RemoteBrokerPort
from gateway.sim.port import LoginKind

log = logging.getLogger(__name__)

LIVE_PORT = 4003
PAPER_PORT = 4004
COMMAND_PORT = 7462
# IBC's exit codes (its own namespace: they collide with TWS API codes 1100-1102).
EXIT_OK = 0
EXIT_2FA_TIMEOUT = 1111  # a shell sees 1111 % 256 == 87
EXIT_LOGIN_FAILED = 1  # IBC 3.24 stops for a cold restart after "Login failed"
EXIT_CRASHED = 70  # simulated JVM death (control API "crash")
EXIT_BROKER_LOST = 75  # the link to the simulated IB servers closed
EXIT_CONFIG = 2

_TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})\s*([AaPp][Mm])$")


class ConfigError(ValueError):
    """The container's environment is wrong: the message names the variable."""


@dataclass(slots=True)
class GatewayEnv:
    """The gnzsnz/ib-gateway env contract as the simulated gateway honours it."""

    username: str
    password: str = field(repr=False)
    trading_mode: str
    read_only: bool
    twofa_timeout_action: str
    relogin_after_twofa_timeout: bool
    twofa_exit_interval: int
    auto_restart_time: time | None
    existing_session_action: str
    time_zone: str
    broker_host: str
    broker_port: int
    gateway_name: str
    api_port: int
    command_port: int
    control_from: tuple[str, ...] = ()


def _yes_no(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("yes", "true", "1"):
        return True
    if raw in ("no", "false", "0"):
        return False
    raise ConfigError(f"{name}={env[name]!r}: expected yes or no")


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise ConfigError(f"{name}={raw!r}: expected a TCP port number")
    return int(raw)


def _seconds(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ConfigError(f"{name}={raw!r}: expected a whole number of seconds")
    return int(raw)


def parse_auto_restart_time(text: str) -> time:
    """IBC's AutoRestartTime, ``hh:mm AM/PM`` with no quotes (a quoted value is an error)."""
    if text.startswith(("'", '"')):
        raise ConfigError(
            f"AUTO_RESTART_TIME={text!r}: remove the quotes (IBC reads them literally)"
        )
    match = _TIME_RE.match(text.strip())
    if match is None:
        raise ConfigError(f"AUTO_RESTART_TIME={text!r}: expected hh:mm AM or hh:mm PM")
    hour, minute, half = int(match.group(1)), int(match.group(2)), match.group(3).upper()
    if not (1 <= hour <= 12 and minute < 60):
        raise ConfigError(f"AUTO_RESTART_TIME={text!r}: hour 1-12, minutes 00-59")
    return time((hour % 12) + (12 if half == "PM" else 0), minute)


def read_env(
    env: Mapping[str, str], *, read_text: Callable[[str], str] | None = None
) -> GatewayEnv:
    """Validate the container env; raises ConfigError naming the bad variable."""
    reader = read_text or (lambda path: Path(path).read_text(encoding="utf-8"))
    ini = _read_ibc_ini(env, reader)
    username = env.get("TWS_USERID", "").strip() or ini.get("iblogin", "")
    username_file = env.get("TWS_USERID_FILE", "").strip()
    if not username and username_file:
        try:
            username = reader(username_file).strip()
        except OSError as exc:
            raise ConfigError(
                f"TWS_USERID_FILE={username_file!r}: cannot read ({exc.strerror})"
            ) from None
    if not username:
        raise ConfigError("no username: set TWS_USERID, TWS_USERID_FILE or IbLoginId in IBC_INI")
    password_file = env.get("TWS_PASSWORD_FILE", "").strip()
    if ini.get("ibpassword"):
        password = ini["ibpassword"]
    elif password_file:
        try:
            password = reader(password_file).strip()
        except OSError as exc:
            raise ConfigError(
                f"TWS_PASSWORD_FILE={password_file!r}: cannot read ({exc.strerror})"
            ) from None
    elif "TWS_PASSWORD" in env:
        password = env["TWS_PASSWORD"]
    else:
        raise ConfigError("neither TWS_PASSWORD_FILE nor TWS_PASSWORD is set")
    mode = env.get("TRADING_MODE", "paper").strip().lower() or "paper"
    if mode not in ("paper", "live"):
        raise ConfigError(f"TRADING_MODE={mode!r}: the simulator runs one session: paper or live")
    action = env.get("TWOFA_TIMEOUT_ACTION", "exit").strip().lower() or "exit"
    if action not in ("exit", "restart"):
        raise ConfigError(f"TWOFA_TIMEOUT_ACTION={action!r}: expected exit or restart")
    restart_raw = env.get("AUTO_RESTART_TIME", "").strip()
    zone = env.get("TIME_ZONE", "").strip() or "America/New_York"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"TIME_ZONE={zone!r}: not a known time zone") from None
    broker = env.get("IBFLEET_SIM_BROKER", "").strip()
    host, _, port_text = broker.rpartition(":")
    if not host or not port_text.isdigit():
        raise ConfigError(
            f"IBFLEET_SIM_BROKER={broker!r}: expected host:port of the sim broker link"
        )
    return GatewayEnv(
        username=username,
        password=password,
        trading_mode=mode,
        read_only=_yes_no(env, "READ_ONLY_API", False),
        twofa_timeout_action=action,
        relogin_after_twofa_timeout=_yes_no(env, "RELOGIN_AFTER_TWOFA_TIMEOUT", False),
        twofa_exit_interval=_seconds(env, "TWOFA_EXIT_INTERVAL", 60),
        auto_restart_time=parse_auto_restart_time(restart_raw) if restart_raw else None,
        existing_session_action=env.get("EXISTING_SESSION_DETECTED_ACTION", "primary").strip()
        or "primary",
        time_zone=zone,
        broker_host=host,
        broker_port=int(port_text),
        gateway_name=env.get("IBFLEET_SIM_GATEWAY_NAME", "").strip() or socket.gethostname(),
        api_port=_port(env, "IBFLEET_SIM_API_PORT", LIVE_PORT if mode == "live" else PAPER_PORT),
        command_port=_port(env, "IBFLEET_SIM_COMMAND_PORT", COMMAND_PORT),
        control_from=tuple(
            a.strip()
            for a in (env.get("IBFLEET_SIM_CONTROL_FROM", "") or ini.get("controlfrom", "")).split(
                ","
            )
            if a.strip()
        ),
    )


def _read_ibc_ini(env: Mapping[str, str], reader: Callable[[str], str]) -> dict[str, str]:
    """With CUSTOM_CONFIG=yes the gnzsnz image reads IBC's config.ini (at IBC_INI) as given:
    credentials (IbLoginId, IbPassword) and ControlFrom come from there. Keys lower-cased."""
    if env.get("CUSTOM_CONFIG", "").strip().lower() != "yes":
        return {}
    path = env.get("IBC_INI", "").strip() or "/root/ibc/config.ini"
    try:
        text = reader(path)
    except OSError as exc:
        raise ConfigError(f"IBC_INI={path!r}: cannot read ({exc.strerror})") from None
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip().lower()] = value.strip()
    return values


def next_restart(now: datetime, at: time) -> datetime:
    """The next wall-clock occurrence of ``at`` in ``now``'s zone, strictly after ``now``."""
    candidate = now.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    if candidate <= now:
        candidate += timedelta(days=1)
    return candidate


class GatewayProcess:
    """One gateway container's life: login loop, API, command server, exit code."""

    def __init__(
        self, settings: GatewayEnv, *, out: Callable[[str], None], host: str = "0.0.0.0"
    ) -> None:
        self.settings = settings
        self.out = out
        self.host = host
        self.zone = ZoneInfo(settings.time_zone)
        self.port = RemoteBrokerPort(host=settings.broker_host, port=settings.broker_port)
        self.frontend = GatewayFrontEnd(
            config=FrontEndConfig(
                name=settings.gateway_name,
                username=settings.username,
                password=settings.password,
                host=host,
                port=settings.api_port,
                read_only=settings.read_only,
                existing_session_action=settings.existing_session_action,
                relogin_after_2fa_timeout=settings.relogin_after_twofa_timeout,
                twofa_exit_interval=settings.twofa_exit_interval,
            ),
            broker=self.port,
            line_sink=out,
            ibc_clock=lambda: datetime.now(self.zone),
        )
        self.stop_requested = asyncio.Event()
        self.exit_code: int | None = None
        self._token = False  # the in-container autorestart file
        self.command_server: IbcCommandServer | None = None

    async def _connect_broker(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.port.connect()
                return
            except LinkError:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def _login_until_settled(self) -> int | None:
        """Log in as IBC would; returns an exit code, or None once logged in."""
        while True:
            self.out(ibclog.FINDING_AUTORESTART)
            if self._token:
                self.out(ibclog.autorestart_found("/home/ibgateway/Jts/autorestart"))
            else:
                self.out(ibclog.AUTORESTART_NOT_FOUND)
            outcome = await self.frontend.start(presents_token=self._token)
            if outcome.kind is LoginKind.LOGGED_IN:
                self._token = True
                return None
            if outcome.kind is LoginKind.FAILED and outcome.reason == "twofa_timed_out":
                if (
                    self.settings.relogin_after_twofa_timeout
                    or self.settings.twofa_timeout_action == "restart"
                ):
                    continue
                self.frontend.ibc(ibclog.exiting_with_code(EXIT_2FA_TIMEOUT))
                return EXIT_2FA_TIMEOUT
            if outcome.kind is LoginKind.EXISTING_SESSION:
                # IBC ends this session and the JVM exits normally.
                return EXIT_OK
            return EXIT_LOGIN_FAILED

    async def _soft_restart(self) -> None:
        outcome = await self.frontend.soft_restart()
        if outcome.kind is not LoginKind.LOGGED_IN:
            self.exit_code = EXIT_LOGIN_FAILED
            self.stop_requested.set()

    async def _daily_restarts(self) -> None:
        at = self.settings.auto_restart_time
        if at is None:
            return
        while True:
            now = datetime.now(self.zone)
            wait = (next_restart(now, at) - now).total_seconds()
            await asyncio.sleep(wait)
            self.frontend.ibc(ibclog.RESTARTING_SESSION)
            await self._soft_restart()

    async def run(self, *, connect_timeout: float = 60.0) -> int:
        """Run until STOP, a crash or a lost broker; returns the process exit status."""
        loop = asyncio.get_running_loop()
        try:
            await self._connect_broker(loop.time() + connect_timeout)
        except LinkError as exc:
            log.error("sim_gateway_broker_unreachable error=%s", exc)
            return EXIT_BROKER_LOST
        code = await self._login_until_settled()
        if code is not None:
            await self.port.close()
            return code

        async def stop() -> None:
            self.exit_code = EXIT_OK
            self.stop_requested.set()

        async def reconnect_account() -> None:
            log.info("sim_gateway_command command=RECONNECTACCOUNT gateway=%s", self.frontend.name)

        async def reconnect_data() -> None:
            log.info("sim_gateway_command command=RECONNECTDATA gateway=%s", self.frontend.name)

        commands = IbcCommandServer(
            handlers=CommandHandlers(
                stop=stop,
                restart=self._soft_restart,
                reconnect_account=reconnect_account,
                reconnect_data=reconnect_data,
            ),
            host=self.host,
            port=self.settings.command_port,
            control_from=self.settings.control_from,
        )
        self.command_server = commands
        await commands.start()
        self.frontend.ibc(ibclog.COMMAND_SERVER_READY)
        daily = asyncio.create_task(self._daily_restarts())
        waits = {
            asyncio.create_task(self.stop_requested.wait()): "stop",
            asyncio.create_task(self.frontend.crashed.wait()): "crash",
            asyncio.create_task(self.port.closed.wait()): "broker",
        }
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        reason = waits[next(iter(done))]
        for task in [*pending, daily]:
            task.cancel()
        await commands.close()
        if reason == "crash":
            code = EXIT_CRASHED
        elif reason == "broker":
            code = EXIT_BROKER_LOST
        else:
            code = self.exit_code if self.exit_code is not None else EXIT_OK
        await self.frontend.stop(logout=reason != "broker")
        await self.port.close()
        self.out(ibclog.exit_status(code))
        return code


def run_gateway(env: Mapping[str, str], *, out: Callable[[str], None] | None = None) -> int:
    """The container entrypoint: returns the exit status (IBC's 1111 shows as 87 in a shell)."""
    printer = out or (lambda line: print(line, flush=True))
    try:
        settings = read_env(env)
    except ConfigError as exc:
        print(f"ibfleet sim gateway: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG

    async def main() -> int:
        process = GatewayProcess(settings, out=printer)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, process.stop_requested.set)
        return await process.run()

    return asyncio.run(main())


async def serve_broker(
    *,
    host: str,
    link_port: int,
    control_port: int,
    users: list[auth.User],
    seed: int = 7,
    auth_config: auth.AuthorityConfig | None = None,
    ready: Callable[[int, str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """The broker process: link for gateway containers plus the control API, until ``stop``."""
    from gateway.sim.broker import BrokerConfig
    from gateway.sim.control import ControlServer, create_app
    from gateway.sim.service import BrokerService

    service = BrokerService(config=BrokerConfig(seed=seed), users=users, auth_config=auth_config)
    await service.start()
    link = BrokerLinkServer(service, host=host, port=link_port)
    await link.start()
    control = ControlServer(create_app(service=service), host=host, port=control_port)
    url = await control.start()
    if ready is not None:
        ready(link.port, url)
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await control.stop()
        await link.stop()
        await service.stop()
