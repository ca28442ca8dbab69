"""A blocking stream of log bytes (the engine's container or service logs) as async lines.

The runtimes' log followers share it: the SDK's stream is read in a thread of its own, split
into bounded lines (:class:`gateway.linesplit.LineSplitter`: an over-long line costs one scan,
and the line after it is seen at once) and handed to the event loop through a queue; closing
the iterator closes the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

from gateway.linesplit import LineSplitter

__all__ = ["stream_lines"]

log = logging.getLogger(__name__)


async def stream_lines(
    open_stream: Callable[[], Iterable[bytes]], *, name: str
) -> AsyncGenerator[str, None]:
    """The stream's lines, decoded, until it ends (the container's or the engine's end)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=10_000)
    holder: dict[str, Any] = {}
    done = threading.Event()

    def put(item: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def pump() -> None:
        splitter = LineSplitter()
        try:
            stream = open_stream()
            holder["stream"] = stream
            for chunk in stream:
                if done.is_set():
                    break
                for raw in splitter.feed(chunk):
                    put(raw.decode("utf-8", errors="replace"))
            rest = splitter.flush()
            if rest and not done.is_set():
                put(rest.decode("utf-8", errors="replace"))
        except Exception as exc:  # the stream ends with the container or the engine
            if not done.is_set():
                log.info("runtime_logs_ended id=%s error=%s", name, type(exc).__name__)
        finally:
            put(None)

    thread = threading.Thread(target=pump, name=f"ibfleet-logs-{name}", daemon=True)
    thread.start()
    try:
        while True:
            line = await queue.get()
            if line is None:
                return
            yield line
    finally:
        done.set()
        stream = holder.get("stream")
        close = getattr(stream, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
