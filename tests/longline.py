"""A container log with one huge line and then a 2FA prompt, as chunks, and a fake engine for it.

The unit tests and ``benchmarks/bench_follower.py`` feed the same stream: a line of ``size``
bytes (made on the fly, so nothing holds it whole) followed, in the chunk that ends it, by IBC's
2FA prompt. :class:`FakeLogEngine` stands in for the Docker client behind
:class:`gateway.docker_runtime.DockerRuntime` so its real log pump reads that stream;
:func:`printer_script` makes a real container print it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from ibsim import ibclog

#: What Docker's json-file driver stores per message (longer lines come in parts of this size).
DOCKER_CHUNK = 16 * 1024
MB = 1_000_000

STARTED = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LONG_AT = STARTED + timedelta(seconds=5)
PROMPT_AT = STARTED + timedelta(seconds=6)


def docker_stamp(at: datetime) -> str:
    """Docker's ``--timestamps`` prefix: RFC 3339 with nanoseconds, in UTC."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def prompt_line() -> bytes:
    """IBC's 2FA prompt as ``docker logs --timestamps`` prints it."""
    text = ibclog.format_line(ibclog.SECOND_FACTOR_INITIATED, at=PROMPT_AT)
    return f"{docker_stamp(PROMPT_AT)} {text}\n".encode()


def long_line_then_prompt(
    size: int,
    *,
    chunk: int = DOCKER_CHUNK,
    on_end: Callable[[], None] | None = None,
) -> Iterator[bytes]:
    """A dated line of ``size`` bytes in ``chunk``-byte pieces, then (ending it) the 2FA prompt.

    ``on_end`` is called just before the chunk that ends the long line is handed out: the
    moment from which a follower's latency to the prompt counts.
    """
    yield f"{docker_stamp(LONG_AT)} ".encode()
    block = b"A" * chunk
    left = size
    while left > 0:
        n = min(chunk, left)
        yield block if n == chunk else block[:n]
        left -= n
    if on_end is not None:
        on_end()
    yield b"\n" + prompt_line()


def printer_script(mb: int) -> str:
    """Python for a container: one line of ``mb`` megabytes in 1 MB writes, then ``argv[1]``."""
    return (
        "import sys\n"
        "out = sys.stdout.buffer\n"
        "block = b'A' * 1_000_000\n"
        f"for _ in range({mb}):\n"
        "    out.write(block)\n"
        "out.write(b'\\n' + sys.argv[1].encode() + b'\\n')\n"
        "out.flush()\n"
    )


class FakeLogEngine:
    """A Docker client whose one container's log is ``chunks`` (DockerRuntime uses ``.api``)."""

    def __init__(self, chunks: Iterable[bytes], *, started_at: datetime = STARTED) -> None:
        self.api = self
        self._chunks = chunks
        self._started = docker_stamp(started_at)
        self.opened_at: float | None = None

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        return {"Id": container_id, "State": {"StartedAt": self._started}}

    def logs(self, container_id: str, **kwargs: Any) -> Iterator[bytes]:
        assert kwargs.get("stream") and kwargs.get("timestamps"), kwargs
        self.opened_at = time.perf_counter()
        return iter(self._chunks)
