"""A Docker engine's API on a unix socket, answering only what ibfleet asks before it acts.

``_ping``, ``version`` and ``info`` with the documents a test gives, so that ``check``,
``doctor`` and the Docker SDK's own client run unchanged against rootless or Docker Desktop
engines that this machine does not have. Every other path is a 404.
"""

from __future__ import annotations

import json
import re
import shutil
import socketserver
import tempfile
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

#: ``docker info`` of a rootful engine on Linux, trimmed to the fields ibfleet reads.
ROOTFUL: dict[str, Any] = {
    "OperatingSystem": "Ubuntu 24.04 LTS",
    "SecurityOptions": ["name=apparmor", "name=seccomp,profile=builtin", "name=cgroupns"],
    "SystemTime": "2026-03-09T14:00:00.000000000Z",
}
ROOTLESS: dict[str, Any] = {
    **ROOTFUL,
    "SecurityOptions": ["name=seccomp,profile=builtin", "name=rootless", "name=cgroupns"],
}
DOCKER_DESKTOP: dict[str, Any] = {**ROOTFUL, "OperatingSystem": "Docker Desktop"}

_VERSION = {"Version": "27.0.3", "ApiVersion": "1.46", "MinAPIVersion": "1.24"}


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    info: Mapping[str, Any] = {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the SDK keeps its connection open between calls
    server: _Server

    def do_GET(self) -> None:
        path = re.sub(r"^/v[0-9.]+", "", self.path.split("?")[0])
        if path == "/_ping":
            self._send(200, b"OK", "text/plain")
        elif path == "/version":
            self._send(200, json.dumps(_VERSION).encode(), "application/json")
        elif path == "/info":
            self._send(200, json.dumps(dict(self.server.info)).encode(), "application/json")
        else:
            self._send(404, b'{"message": "not in the fake engine"}', "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "unix"  # a unix socket's peer has no address to log

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeEngine:
    """``with FakeEngine(ROOTLESS) as engine: env["DOCKER_HOST"] = engine.url``."""

    def __init__(self, info: Mapping[str, Any]) -> None:
        # A short directory: a unix socket's path is limited to about 100 bytes.
        self._dir = Path(tempfile.mkdtemp(prefix="ibf-engine-"))
        self.path = self._dir / "docker.sock"
        self._server = _Server(str(self.path), _Handler)
        self._server.info = info
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def __enter__(self) -> FakeEngine:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        shutil.rmtree(self._dir, ignore_errors=True)
