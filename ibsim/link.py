"""The broker link: a gateway container reaches the broker process over TCP.

Frames are a 4-byte big-endian length and a JSON object. A request is
``{"id": n, "op": name, "args": {...}}`` and gets ``{"id": n, "ok": true, "result": ...}`` or
``{"id": n, "ok": false, "error": text}``; the broker pushes ``{"event": ...}`` (order events
and faults for the subscribed gateway) and ``{"prices": {...}}`` without an id. Values are the
dataclasses of :mod:`ibsim.port` and :mod:`ibsim.broker`, tagged by type name.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import itertools
import json
import logging
import struct
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ibsim import auth, contracts, port
from ibsim import broker as broker_mod
from ibsim.port import GatewayEvent, LoginOutcome

log = logging.getLogger(__name__)

MAX_LINK_FRAME = 32 * 1024 * 1024
PRICE_PUSH_INTERVAL = 0.05

_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        broker_mod.Bar,
        broker_mod.BrokerOrder,
        broker_mod.Execution,
        broker_mod.OrderEvent,
        broker_mod.OrderRequest,
        broker_mod.Reject,
        broker_mod.StatusChange,
        broker_mod.WhatIf,
        contracts.ContractSpec,
        port.FaultEvent,
        port.LoginOutcome,
    )
}
_ENUMS: dict[str, type[enum.Enum]] = {
    cls.__name__: cls
    for cls in (broker_mod.OrderState, broker_mod.OrderEventKind, auth.LoginKind, port.Fault)
}
_OPS = frozenset(
    {
        "begin_login",
        "await_2fa",
        "logout",
        "next_order_id",
        "place_order",
        "what_if",
        "cancel_order",
        "global_cancel",
        "open_orders",
        "completed_orders",
        "executions",
        "account_values",
        "positions",
        "contracts",
        "historical_bars",
        "now",
    }
)


class LinkError(RuntimeError):
    """The broker link failed or the broker refused a request."""


def to_wire(value: Any) -> Any:
    """Tag dataclasses, enums, datetimes and tuples so :func:`from_wire` can rebuild them."""
    if isinstance(value, enum.Enum):
        return {"__e": type(value).__name__, "v": value.value}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        body = {
            f.name: to_wire(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
        }
        return {"__t": type(value).__name__, **body}
    if isinstance(value, datetime):
        return {"__dt": value.isoformat()}
    if isinstance(value, tuple):
        return {"__tuple": [to_wire(v) for v in value]}
    if isinstance(value, list):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    return value


def from_wire(value: Any) -> Any:
    """Inverse of :func:`to_wire`; an unknown tag is a LinkError naming it."""
    if isinstance(value, list):
        return [from_wire(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__e" in value:
        cls = _ENUMS.get(value["__e"])
        if cls is None:
            raise LinkError(f"link: unknown enum type {value['__e']!r}")
        return cls(value["v"])
    if "__dt" in value:
        return datetime.fromisoformat(value["__dt"])
    if "__tuple" in value:
        return tuple(from_wire(v) for v in value["__tuple"])
    if "__t" in value:
        cls_t = _TYPES.get(value["__t"])
        if cls_t is None:
            raise LinkError(f"link: unknown value type {value['__t']!r}")
        return cls_t(**{k: from_wire(v) for k, v in value.items() if k != "__t"})
    return {k: from_wire(v) for k, v in value.items()}


def encode(message: dict[str, Any]) -> bytes:
    """One link frame."""
    body = json.dumps(message, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    """One link frame; raises IncompleteReadError at EOF and LinkError on a bad frame."""
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    if length > MAX_LINK_FRAME:
        raise LinkError(f"link: frame of {length} bytes above limit {MAX_LINK_FRAME}")
    try:
        message = json.loads(await reader.readexactly(length))
    except json.JSONDecodeError as exc:
        raise LinkError(f"link: frame is not JSON ({exc})") from None
    if not isinstance(message, dict):
        raise LinkError("link: frame is not a JSON object")
    return message


class BrokerLinkServer:
    """Serves a :class:`ibsim.service.BrokerService` to remote front ends."""

    def __init__(self, service: Any, *, host: str = "0.0.0.0", port: int = 0) -> None:
        self.service = service
        self.host = host
        self.requested_port = port
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port."""
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Listen for gateway links."""
        self._server = await asyncio.start_server(self._serve, self.host, self.requested_port)
        log.info("sim_broker_link_listening host=%s port=%s", self.host, self.port)

    async def stop(self) -> None:
        """Close the listener and every link."""
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        for task in list(self._conns):
            with contextlib.suppress(BaseException):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        gateways: set[str] = set()
        pushers: list[asyncio.Task[None]] = []
        pending: set[asyncio.Task[None]] = set()

        def push(message: dict[str, Any]) -> None:
            if not writer.is_closing():
                writer.write(encode(message))

        async def prices_loop() -> None:
            while True:
                push({"prices": {str(k): v for k, v in self.service.prices().items()}})
                await asyncio.sleep(PRICE_PUSH_INTERVAL)

        async def answer(req_id: Any, op: str, args: dict[str, Any]) -> None:
            try:
                result = await getattr(self.service, op)(**args)
                push({"id": req_id, "ok": True, "result": to_wire(result)})
            except Exception as exc:
                log.warning("sim_broker_link_request_failed op=%s error=%r", op, exc)
                push({"id": req_id, "ok": False, "error": f"{op}: {exc}"})

        try:
            pushers.append(asyncio.create_task(prices_loop()))
            while True:
                try:
                    message = await read_frame(reader)
                except LinkError as exc:
                    log.warning("sim_broker_link_bad_frame error=%s", exc)
                    return
                req_id = message.get("id")
                op = str(message.get("op", ""))
                args = from_wire(message.get("args") or {})
                if op == "subscribe":
                    name = str(args["gateway"])
                    gateways.add(name)
                    self.service.subscribe(
                        gateway=name, listener=lambda event: push({"event": to_wire(event)})
                    )
                    push({"id": req_id, "ok": True, "result": None})
                elif op == "unsubscribe":
                    self.service.unsubscribe(gateway=str(args["gateway"]))
                    gateways.discard(str(args["gateway"]))
                    push({"id": req_id, "ok": True, "result": None})
                elif op in _OPS:
                    # Requests run concurrently: await_2fa may wait for minutes.
                    job = asyncio.create_task(answer(req_id, op, args))
                    pending.add(job)
                    job.add_done_callback(pending.discard)
                else:
                    push({"id": req_id, "ok": False, "error": f"unknown op {op!r}"})
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for job in [*pushers, *pending]:
                job.cancel()
            for name in gateways:
                # The gateway vanished: IB sees its session end.
                self.service.unsubscribe(gateway=name)
                with contextlib.suppress(Exception):
                    await self.service.logout(gateway=name)
            writer.close()
            self._conns.discard(task)


class RemoteBrokerPort:
    """A :class:`ibsim.port.BrokerPort` over the link (used by gateway containers)."""

    def __init__(self, *, host: str, port: int, connect_timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._listener: Callable[[GatewayEvent], None] | None = None
        self._prices: dict[int, float] = {}
        self.closed = asyncio.Event()

    async def connect(self) -> None:
        """Open the link; raises LinkError naming host:port when the broker is unreachable."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            raise LinkError(f"broker link {self.host}:{self.port} unreachable: {exc!r}") from None
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read(reader))

    async def close(self) -> None:
        """Close the link."""
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await read_frame(reader)
                if "prices" in message:
                    self._prices = {int(k): float(v) for k, v in message["prices"].items()}
                elif "event" in message:
                    if self._listener is not None:
                        self._listener(from_wire(message["event"]))
                else:
                    future = self._waiting.pop(int(message.get("id", -1)), None)
                    if future is not None and not future.done():
                        if message.get("ok"):
                            future.set_result(from_wire(message.get("result")))
                        else:
                            future.set_exception(LinkError(str(message.get("error"))))
        except (asyncio.IncompleteReadError, ConnectionError, LinkError) as exc:
            log.warning(
                "sim_broker_link_closed host=%s port=%s error=%r", self.host, self.port, exc
            )
        finally:
            self.closed.set()
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(LinkError("broker link closed"))
            self._waiting.clear()

    async def _call(self, op: str, **args: Any) -> Any:
        if self._writer is None or self.closed.is_set():
            raise LinkError(f"broker link {self.host}:{self.port} is not connected")
        req_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[req_id] = future
        self._writer.write(encode({"id": req_id, "op": op, "args": to_wire(args)}))
        return await future

    # -- BrokerPort ------------------------------------------------------------------------

    def subscribe(self, *, gateway: str, listener: Callable[[GatewayEvent], None]) -> None:
        self._listener = listener
        if self._writer is not None:
            req_id = next(self._ids)
            self._writer.write(
                encode({"id": req_id, "op": "subscribe", "args": {"gateway": gateway}})
            )

    def unsubscribe(self, *, gateway: str) -> None:
        self._listener = None
        if self._writer is not None and not self._writer.is_closing():
            req_id = next(self._ids)
            self._writer.write(
                encode({"id": req_id, "op": "unsubscribe", "args": {"gateway": gateway}})
            )

    def prices(self) -> dict[int, float]:
        return self._prices

    async def begin_login(self, **kwargs: Any) -> LoginOutcome:
        result: LoginOutcome = await self._call("begin_login", **kwargs)
        return result

    async def await_2fa(self, **kwargs: Any) -> LoginOutcome:
        result: LoginOutcome = await self._call("await_2fa", **kwargs)
        return result

    def __getattr__(self, name: str) -> Any:
        if name in _OPS:

            async def call(**kwargs: Any) -> Any:
                return await self._call(name, **kwargs)

            return call
        raise AttributeError(name)
