"""Reading a file that must be a small regular file: the fleet file and secret files.

A FIFO, a device or a huge file is refused with a reason instead of hanging or filling memory.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def read_bounded_file(path: Path, *, limit: int, what: str) -> bytes:
    """A regular file's bytes, at most ``limit``.

    Opened with ``O_NONBLOCK`` so that a FIFO or a device never hangs the caller, then checked
    with ``fstat`` on the opened descriptor (no race with a swapped path). Raises
    ``FileNotFoundError`` for a missing file and ``ValueError`` with the reason otherwise.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{what} must be a regular file, not a {_kind(info.st_mode)}")
        if info.st_size > limit:
            raise ValueError(f"{what} is {info.st_size} bytes; the limit is {limit}")
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise ValueError(exc.strerror or str(exc)) from None
            if not chunk:
                break
            size += len(chunk)
            if size > limit:  # grew while being read
                raise ValueError(f"{what} is larger than the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"
