"""A service manager's end of sd_notify(3): a unix datagram socket the test binds, read by a
thread that stamps each datagram on arrival (so a blocked supervisor loop cannot hide a gap)."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Notice:
    at: float  # time.monotonic() on arrival
    assignments: tuple[str, ...]  # "READY=1", "STATUS=...", one per line of the datagram


@dataclass
class NotifyListener:
    """Binds ``NOTIFY_SOCKET``: a path under ``directory``, or an abstract ``@name``."""

    directory: Path | None = None
    notices: list[Notice] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if self.directory is None:
            name = f"ibfleet-test-notify-{secrets.token_hex(6)}"
            self._sock.bind("\0" + name)
            self.address = "@" + name
        else:
            path = self.directory / "notify.sock"
            self._sock.bind(str(path))
            self.address = str(path)
        self._sock.settimeout(0.1)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-listener", daemon=True)

    def __enter__(self) -> NotifyListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        if self.directory is not None and os.path.exists(self.address):
            os.unlink(self.address)

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            notice = Notice(time.monotonic(), tuple(data.decode("utf-8").splitlines()))
            with self._lock:
                self.notices.append(notice)

    def snapshot(self) -> list[Notice]:
        with self._lock:
            return list(self.notices)

    def times(self, assignment: str) -> list[float]:
        return [n.at for n in self.snapshot() if assignment in n.assignments]

    def values(self, name: str) -> list[str]:
        prefix = name + "="
        found = (a for n in self.snapshot() for a in n.assignments)
        return [a[len(prefix) :] for a in found if a.startswith(prefix)]
