"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 with an ephemeral port.

with SmtpSink() as smtp:
    url = f"mailto://alerts@127.0.0.1:{smtp.port}?smtp=127.0.0.1&from=...&to=..."
    ...
    message = smtp.wait_for(lambda m: "2FA" in m.subject, timeout=10)
"""

from __future__ import annotations

import email
import email.message
import email.policy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.waiting import wait_until

__all__ = ["ReceivedMail", "SmtpSink"]


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the server received it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: email.message.EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def text(self) -> str:
        """All text parts, decoded, joined (what a reader would see)."""
        parts = []
        for part in self.message.walk():
            if part.get_content_maintype() == "text":
                parts.append(str(part.get_content()))
        return "\n".join(parts)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        self._sink._add(
            ReceivedMail(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                raw=raw,
                message=message,
            )
        )
        return "250 Message accepted for delivery"


class _EphemeralController(Controller):
    """aiosmtpd's Controller, bound to port 0; learns the real port before its self-check."""

    def _trigger_server(self) -> None:
        if self.port == 0 and self.server is not None:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpSink:
    """Plain SMTP (no TLS, no auth) on 127.0.0.1; collects every message it receives."""

    def __init__(self, *, hostname: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        self._messages: list[ReceivedMail] = []
        self._controller = _EphemeralController(_Handler(self), hostname=hostname, port=0)
        self.hostname = hostname

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        port = self._controller.port
        if not port:
            raise RuntimeError("SmtpSink is not started")
        return int(port)

    @property
    def messages(self) -> list[ReceivedMail]:
        """A snapshot of everything received so far, in arrival order."""
        with self._lock:
            return list(self._messages)

    def _add(self, mail: ReceivedMail) -> None:
        with self._lock:
            self._messages.append(mail)

    def wait_for(
        self, predicate: Callable[[ReceivedMail], bool], timeout: float = 10.0
    ) -> ReceivedMail:
        """The first message matching ``predicate``; waits up to ``timeout`` seconds."""
        try:
            mail: ReceivedMail = wait_until(
                lambda: next((m for m in self.messages if predicate(m)), None),
                timeout,
                what="a matching mail",
                step=0.02,
            )
        except AssertionError as exc:
            subjects = [m.subject for m in self.messages]
            raise AssertionError(f"{exc}; received subjects: {subjects}") from None
        return mail

    def mailto_url(
        self, *, to: str = "ops@ibfleet.test", sender: str = "alerts@ibfleet.test"
    ) -> str:
        """An apprise URL that sends plain SMTP to this sink (insecure mode, no login)."""
        user = sender.partition("@")[0]
        return (
            f"mailto://{user}@{self.hostname}:{self.port}"
            f"?smtp={self.hostname}&from={sender}&to={to}&name=ibfleet"
        )


class WebhookSink:
    """A tiny HTTP server that records JSON POST bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                data = json.loads(self.rfile.read(length) or b"{}")
                with sink._lock:
                    sink.bodies.append(data)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict:
        """The first JSON body matching ``predicate``; waits up to ``timeout`` seconds."""

        def matching() -> dict[str, Any] | None:
            with self._lock:
                return next((b for b in self.bodies if predicate(b)), None)

        try:
            body: dict[str, Any] = wait_until(
                matching, timeout, what="a matching webhook call", step=0.02
            )
        except AssertionError as exc:
            with self._lock:
                raise AssertionError(f"{exc}; got {self.bodies}") from None
        return body
