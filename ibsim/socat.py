"""The image's socat (gnzsnz ``run_socat.sh``): the published API port for the container's whole
life, relayed to the Gateway's own port on 127.0.0.1 when there is one; a connection while the
Gateway is down is accepted and closed at once (socat's error lines are not printed)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

__all__ = ["Socat"]


class Socat:
    """Listens on ``host:port``; ``target`` gives the Gateway's port now, or None."""

    def __init__(self, *, host: str, port: int, target: Callable[[], int | None]) -> None:
        self.host = host
        self.requested_port = port
        self._target = target
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (the requested one until bound)."""
        if self._server is None or not self._server.sockets:
            return self.requested_port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._relay, host=self.host, port=self.requested_port
        )

    def close(self) -> None:
        """Stop listening and cut every relay (the container ends)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._relays):
            task.cancel()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._relays.add(task)
        try:
            target = self._target()
            if target is None:
                return
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
            except OSError:
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()
            if task is not None:
                self._relays.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
