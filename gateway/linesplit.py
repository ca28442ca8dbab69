"""A byte stream -> its lines, holding at most a bounded part of one line.

A container's log arrives as chunks cut anywhere; the log follower needs lines. Anything in the
container can print, so a line may be as long as the writer likes (one of 300 MB once blinded
the follower for minutes while it re-joined and re-scanned its buffer for every chunk, and a
2FA prompt after it would have been missed). :class:`LineSplitter` scans each byte once and keeps
at most ``max_line`` bytes of the line in progress: the rest of an over-long line is dropped as
it arrives, its head (where Docker's timestamp and IBC's prefix are) is passed on when its
newline comes, and the next line is seen as soon as its own newline arrives. Pure: no I/O.
"""

from __future__ import annotations

# A log line the follower reads is cut to 10,000 characters anyway (gateway.authlog); a head of
# 64 KiB keeps every line it can classify whole while bounding what one line can cost.
MAX_LINE_BYTES = 64 * 1024


class LineSplitter:
    """Splits chunks on ``\\n`` into lines of at most ``max_line`` bytes (without the newline).

    Work is linear in the bytes fed and memory is bounded by ``max_line`` plus one chunk.
    ``cut_lines`` and ``dropped_bytes`` count what the bound took away.
    """

    def __init__(self, *, max_line: int = MAX_LINE_BYTES) -> None:
        if max_line < 1:
            raise ValueError(f"LineSplitter: max_line must be at least 1 byte, got {max_line}")
        self._max = max_line
        self._parts: list[bytes] = []  # the kept head of the line in progress
        self._kept = 0  # bytes in _parts
        self._over = False  # the line in progress has gone past max_line
        self.cut_lines = 0
        self.dropped_bytes = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        """Take the next chunk; returns the lines it completed, in order."""
        lines: list[bytes] = []
        start = 0
        end = len(chunk)
        while start < end:
            newline = chunk.find(b"\n", start)
            stop = end if newline < 0 else newline
            self._keep(chunk, start, stop)
            if newline < 0:
                break
            lines.append(self._take())
            start = newline + 1
        return lines

    def flush(self) -> bytes | None:
        """The unterminated rest at the end of the stream (bounded like a line), or None."""
        if self._kept == 0 and not self._over:
            return None
        return self._take()

    def _keep(self, chunk: bytes, start: int, stop: int) -> None:
        # Only the part of [start, stop) that fits under the bound is copied; the rest is
        # counted and dropped, so an endless line costs one scan and no memory.
        room = self._max - self._kept
        size = stop - start
        if size > room:
            self._over = True
            self.dropped_bytes += size - room
            stop = start + room
        if stop > start:
            self._parts.append(chunk[start:stop])
            self._kept += stop - start

    def _take(self) -> bytes:
        line = b"".join(self._parts)
        if self._over:
            self.cut_lines += 1
        self._parts = []
        self._kept = 0
        self._over = False
        return line
