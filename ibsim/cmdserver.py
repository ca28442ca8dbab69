"""An IBC-style command server for the simulated gateway, speaking IBC's exact dialogue.

IBC (CommandServer / CommandChannel / CommandDispatcher, v3.24) listens on plain TCP, reads
one command per line, case-insensitively, and answers with ``OK ...``, ``ERROR ...`` or
(unless SuppressInfoMessages, the default) ``INFO ...`` lines. The connection stays open for
more commands except after EXIT, STOP, RESTART and PAUSE, which close it. This module keeps
those replies word for word and calls the simulator's async handlers to do the work.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType

Handler = Callable[[], Awaitable[None]]
# RESTART/PAUSE: returns the "hh:mm AM" the Gateway will restart at (RestartTask's second
# reply), or None when there is nothing more to say.
RestartHandler = Callable[[], Awaitable[str | None]]

_LOG = logging.getLogger(__name__)
_MAX_COMMAND_BYTES = 4096  # IBC reads whole lines; a longer one is not a command


class Command(enum.Enum):
    """IBC's commands (CommandDispatcher.run)."""

    EXIT = "EXIT"
    STOP = "STOP"
    ENABLEAPI = "ENABLEAPI"
    RECONNECTDATA = "RECONNECTDATA"
    RECONNECTACCOUNT = "RECONNECTACCOUNT"
    RESTART = "RESTART"
    PAUSE = "PAUSE"


# IBC's reply texts, from CommandDispatcher, StopTask, RestartTask and CommandChannel.
BANNER = "INFO IBC Command Server"
GOODBYE = "OK Goodbye"
INVALID = "ERROR Command invalid"
ENABLEAPI_ON_GATEWAY = "ERROR ENABLEAPI is not valid for the IB Gateway"
STOP_ACK = "OK Shutting down: STOP command"
STOP_INFO = "INFO Closing IBC"
RESTART_ACK = "OK RESTART in progress"
RESTART_INFO = "INFO Restarting TWS"
PAUSE_ACK = "OK PAUSE in progress"
PAUSE_INFO = "INFO Pausing TWS"
RECONNECT_ACK = "OK "  # IBC's writeAck("") really sends "OK " with a trailing space


async def _nothing() -> None:
    return None


async def _no_time() -> str | None:
    return None


@dataclass(frozen=True)
class CommandHandlers:
    """What the simulated gateway does for each command; each defaults to doing nothing."""

    stop: Handler = _nothing
    restart: RestartHandler = _no_time
    pause: RestartHandler = _no_time
    reconnect_account: Handler = _nothing
    reconnect_data: Handler = _nothing
    enable_api: Handler = _nothing  # only reached when the server plays TWS, not Gateway


def java_host_address(host: str) -> str:
    """``InetAddress.getHostAddress()`` of a peer: IPv4 as is (an IPv4-mapped IPv6 peer is an
    Inet4Address in Java), IPv6 uncompressed without leading zeros, ``fd00:abcd:0:0:0:0:0:1``.
    """
    bare = host.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return ":".join(f"{int(group, 16):x}" for group in address.exploded.split(":"))
    return str(address)


@dataclass
class _Progress:
    """IBC's SwitchLocks: a second STOP (or RESTART/PAUSE) while one runs is refused."""

    stopping: bool = False
    restarting: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class IbcCommandServer:
    """Accepts IBC commands on ``host:port`` (0 picks a free port) and runs the handlers.

    ``control_from`` is IBC's ControlFrom: client IPs allowed besides loopback and the bound
    address itself; anyone else is disconnected without a word, as IBC does.
    """

    def __init__(
        self,
        *,
        handlers: CommandHandlers,
        host: str = "127.0.0.1",
        port: int = 0,
        control_from: Iterable[str] | str = (),
        ibc_line: Callable[[str], None] | None = None,
        is_gateway: bool = True,
        suppress_info: bool = True,
        idle_timeout: float | None = 300.0,
        logger: logging.Logger | None = None,
    ) -> None:
        self._handlers = handlers
        self._host = host
        self._requested_port = port
        # IBC splits ControlFrom on "," and compares each item exactly (no trimming).
        self._control_from = frozenset(
            control_from.split(",") if isinstance(control_from, str) else control_from
        )
        self._ibc_line = ibc_line
        self._is_gateway = is_gateway
        self._suppress_info = suppress_info
        self._idle_timeout = idle_timeout
        self._log = logger or _LOG
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._progress = _Progress()
        # The latest command lines, for tests and the simulator's control API.
        self.received: collections.deque[str] = collections.deque(maxlen=1000)

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("IbcCommandServer: port is known only after start()")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def host(self) -> str:
        return self._host

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_connect,
            host=self._host,
            port=self._requested_port,
            limit=_MAX_COMMAND_BYTES,
        )
        self._log.info(
            "ibc_command_server_started host=%s port=%s",
            self._host,
            self.port,
            extra={"event": "ibc_command_server_started", "host": self._host, "port": self.port},
        )

    async def close(self) -> None:
        """Stop listening and drop open connections; running handlers are left to finish."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def wait_handlers(self) -> None:
        """Wait until every handler started so far has returned (for tests and shutdown)."""
        while self._progress.tasks:
            await asyncio.gather(*list(self._progress.tasks), return_exceptions=True)

    async def __aenter__(self) -> IbcCommandServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- one connection ------------------------------------------------------------------

    def _permitted(self, writer: asyncio.StreamWriter) -> bool:
        """CommandServer.isPermittedClient: the server socket's own address, Java's loopback
        address (127.0.0.1: not ::1), or an exact ControlFrom entry, all as getHostAddress()
        spells them. (IBC also accepts a reverse-DNS host name; not simulated.)"""
        peer = writer.get_extra_info("peername")
        client = java_host_address(str(peer[0])) if peer else ""
        bound = java_host_address(self._host)
        return client in (bound, "127.0.0.1") or client in self._control_from

    def _say(self, message: str) -> None:
        if self._ibc_line is not None:
            self._ibc_line(message)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            peer_info = writer.get_extra_info("peername")
            shown = "/" + java_host_address(str(peer_info[0])) if peer_info else "/?"
            self._say(
                "CommandServer: ControlFrom setting = " + ",".join(sorted(self._control_from))
            )
            if not self._permitted(writer):
                self._say("CommandServer denied access to: " + shown)
                peer = writer.get_extra_info("peername")
                self._log.warning(
                    "ibc_command_denied client=%s",
                    peer[0] if peer else "?",
                    extra={"event": "ibc_command_denied"},
                )
                return
            self._say("CommandServer accepted connection from: " + shown)
            if not self._suppress_info:
                await self._reply(writer, BANNER)
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; IBC ignores that too
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                raw = await asyncio.wait_for(reader.readline(), timeout=self._idle_timeout)
            except TimeoutError:
                return
            except (ValueError, asyncio.LimitOverrunError):
                # An over-long line: not a command IBC could have read. Refuse and hang up.
                await self._reply(writer, INVALID)
                return
            if not raw:
                return  # EOF: the client closed
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue  # IBC skips blank lines
            self.received.append(line)
            self._log.info(
                "ibc_command_received command=%s",
                line[:64],
                extra={"event": "ibc_command_received", "command": line[:64]},
            )
            keep_open = await self._dispatch(line, writer)
            if not keep_open:
                return

    async def _dispatch(self, line: str, writer: asyncio.StreamWriter) -> bool:
        """Handle one command as CommandDispatcher does; False when IBC closes the channel."""
        try:
            command = Command(line.upper())
        except ValueError:
            await self._reply(writer, INVALID)
            return True
        if command is Command.EXIT:
            await self._reply(writer, GOODBYE)
            return False
        if command is Command.STOP:
            return await self._stop(writer)
        if command in (Command.RESTART, Command.PAUSE):
            return await self._restart(writer, pause=command is Command.PAUSE)
        if command is Command.ENABLEAPI:
            if self._is_gateway:
                await self._reply(writer, ENABLEAPI_ON_GATEWAY)
                return True
            return await self._run_then_ack(self._handlers.enable_api, writer, "OK API enabled")
        if command is Command.RECONNECTDATA:
            return await self._run_then_ack(self._handlers.reconnect_data, writer, RECONNECT_ACK)
        return await self._run_then_ack(self._handlers.reconnect_account, writer, RECONNECT_ACK)

    async def _stop(self, writer: asyncio.StreamWriter) -> bool:
        if self._progress.stopping:
            await self._reply(writer, "ERROR STOP already in progress")
            return False
        self._progress.stopping = True
        if not self._suppress_info:
            await self._reply(writer, STOP_INFO)
        # IBC acknowledges and closes the channel before it shuts the gateway down.
        await self._reply(writer, STOP_ACK)
        self._spawn(self._handlers.stop, "stop")
        return False

    async def _restart(self, writer: asyncio.StreamWriter, *, pause: bool) -> bool:
        """RestartTask: one RESTART or PAUSE per JVM (its SwitchLock is never released: the
        JVM exits); the handler moves the Gateway's auto-restart time and says when."""
        verb = "PAUSE" if pause else "RESTART"
        self._say(f"RestartTask: pauseOnly = {'true' if pause else 'false'}")
        self._say(f"RestartTask: verb = {verb}")
        if self._progress.restarting:
            self._say(f"{verb} already in progress")
            await self._reply(writer, f"ERROR {verb} already in progress")
            return False
        self._progress.restarting = True
        if not self._suppress_info:
            await self._reply(writer, PAUSE_INFO if pause else RESTART_INFO)
        await self._reply(writer, PAUSE_ACK if pause else RESTART_ACK)
        handler = self._handlers.pause if pause else self._handlers.restart
        try:
            at = await handler()
        except Exception as exc:
            self._log.warning(
                "ibc_command_handler_failed command=%s error=%s",
                verb.lower(),
                type(exc).__name__,
                extra={"event": "ibc_command_handler_failed", "command": verb.lower()},
            )
            return False
        if at:
            await self._reply(writer, f"OK {verb} at {at}")
        return False

    async def _run_then_ack(self, handler: Handler, writer: asyncio.StreamWriter, ack: str) -> bool:
        try:
            await handler()
        except Exception as exc:  # a handler's failure is the client's ERROR reply
            self._log.warning(
                "ibc_command_failed error=%s",
                type(exc).__name__,
                extra={"event": "ibc_command_failed"},
            )
            await self._reply(writer, f"ERROR {exc}")
            return True
        await self._reply(writer, ack)
        return True

    def _spawn(self, handler: Handler, name: str) -> None:
        async def run() -> None:
            try:
                await handler()
            except Exception as exc:
                # After the ack there is nobody to tell but the log.
                self._log.warning(
                    "ibc_command_handler_failed command=%s error=%s",
                    name,
                    type(exc).__name__,
                    extra={"event": "ibc_command_handler_failed", "command": name},
                )

        task = asyncio.get_running_loop().create_task(run(), name=f"ibc-{name}")
        self._progress.tasks.add(task)
        task.add_done_callback(self._progress.tasks.discard)

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, line: str) -> None:
        # BufferedWriter.newLine() on Linux is "\n".
        writer.write(line.encode("utf-8") + b"\n")
        await writer.drain()
