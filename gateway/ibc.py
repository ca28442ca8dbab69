"""The supervisor's client for IBC's command server: one command, one reply, a hard deadline.

IBC answers each command with one ``OK ...`` or ``ERROR ...`` line, possibly preceded by
``INFO ...`` lines when SuppressInfoMessages=no. :func:`send` connects, sends one line, reads
until the first OK/ERROR, and closes. It never hangs: connect and read each run under the
deadline, and every failure is a typed :class:`IbcCommandError` that says what and where.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
from dataclasses import dataclass

from gateway.aio import within

_LOG = logging.getLogger(__name__)
_MAX_REPLY_LINE = 64 * 1024
# A reply line; a configured CommandPrompt (written without a newline) may sit in front of it.
_REPLY = re.compile(r"^(?P<prompt>.*?)(?<![A-Za-z])(?P<status>OK|ERROR)(?: (?P<text>.*))?$")


class ReplyStatus(enum.Enum):
    OK = "OK"
    ERROR = "ERROR"


@dataclass(frozen=True)
class IbcReply:
    """IBC's answer: ``text`` is the reply after "OK " (e.g. "RESTART in progress")."""

    status: ReplyStatus
    text: str
    infos: tuple[str, ...] = ()


class IbcCommandError(Exception):
    """A command did not get an OK; the message names the command and the server."""

    def __init__(self, message: str, *, command: str, host: str, port: int) -> None:
        super().__init__(message)
        self.command = command
        self.host = host
        self.port = port


class IbcUnreachable(IbcCommandError):
    """Nothing accepted the connection (refused, no route, name not found)."""


class IbcTimedOut(IbcCommandError):
    """The connect or the reply did not arrive before the deadline."""


class IbcNoReply(IbcCommandError):
    """The server closed the connection without a reply (e.g. ControlFrom denied us)."""


class IbcErrorReply(IbcCommandError):
    """IBC answered ``ERROR ...``; ``reply`` holds its text."""

    def __init__(self, message: str, *, command: str, host: str, port: int, reply: IbcReply):
        super().__init__(message, command=command, host=host, port=port)
        self.reply = reply


def _check_command(command: str) -> str:
    text = command.strip()
    if not text or any(ch in text for ch in "\r\n\0") or not text.isascii():
        raise ValueError(
            f"IBC command must be one printable ASCII word such as RESTART, got {command!r}"
        )
    return text


async def send(
    command: str,
    *,
    host: str,
    port: int,
    timeout: float = 10.0,
    connect_timeout: float | None = None,
) -> IbcReply:
    """Send one command to IBC's command server at ``host:port`` and return its OK reply.

    ``connect_timeout`` (default: ``timeout``) bounds the TCP connect; ``timeout`` bounds the
    whole exchange. Raises IbcUnreachable, IbcTimedOut, IbcNoReply or IbcErrorReply.
    """
    text = _check_command(command)
    if timeout <= 0:
        raise ValueError(f"ibc.send: timeout must be positive seconds, got {timeout}")
    where = f"{host}:{port}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    connect_limit = min(timeout, connect_timeout) if connect_timeout else timeout

    try:
        async with asyncio.timeout(connect_limit):
            reader, writer = await asyncio.open_connection(host, port, limit=_MAX_REPLY_LINE)
    except TimeoutError:
        raise IbcTimedOut(
            f"IBC command {text} to {where}: connect timed out after {connect_limit:g}s",
            command=text,
            host=host,
            port=port,
        ) from None
    except OSError as exc:
        raise IbcUnreachable(
            f"IBC command {text} to {where}: cannot connect ({exc.strerror or exc})",
            command=text,
            host=host,
            port=port,
        ) from None

    infos: list[str] = []
    try:
        async with asyncio.timeout_at(deadline):
            writer.write(text.encode("ascii") + b"\n")
            await writer.drain()
            while True:
                raw = await reader.readline()
                if not raw:
                    raise IbcNoReply(
                        f"IBC command {text} to {where}: connection closed without a reply "
                        "(is this client allowed by ControlFrom?)",
                        command=text,
                        host=host,
                        port=port,
                    )
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if line.startswith("INFO "):
                    infos.append(line[5:].strip())
                    continue
                found = _REPLY.match(line)
                if found is not None:
                    reply = IbcReply(
                        status=ReplyStatus(found["status"]),
                        text=(found["text"] or "").strip(),
                        infos=tuple(infos),
                    )
                    return _finish(reply, text=text, host=host, port=port)
    except TimeoutError:
        raise IbcTimedOut(
            f"IBC command {text} to {where}: no reply within {timeout:g}s",
            command=text,
            host=host,
            port=port,
        ) from None
    except (ConnectionError, OSError) as exc:
        raise IbcNoReply(
            f"IBC command {text} to {where}: connection lost before a reply ({exc}); "
            "is this client allowed by ControlFrom?",
            command=text,
            host=host,
            port=port,
        ) from None
    except ValueError:
        raise IbcNoReply(
            f"IBC command {text} to {where}: reply line too long",
            command=text,
            host=host,
            port=port,
        ) from None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await within(writer.wait_closed(), timeout=1.0)


def _finish(reply: IbcReply, *, text: str, host: str, port: int) -> IbcReply:
    _LOG.info(
        "ibc_command_sent host=%s port=%s command=%s status=%s",
        host,
        port,
        text,
        reply.status.value,
        extra={"event": "ibc_command_sent", "command": text, "status": reply.status.value},
    )
    if reply.status is ReplyStatus.ERROR:
        raise IbcErrorReply(
            f"IBC command {text} to {host}:{port} refused: {reply.text}",
            command=text,
            host=host,
            port=port,
            reply=reply,
        )
    return reply
