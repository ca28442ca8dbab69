"""The broker link: a gateway container reaches the broker process over TCP.

Frames are a 4-byte big-endian length and a JSON object. A request is
``{"id": n, "op": name, "args": {...}}`` and gets ``{"id": n, "ok": true, "result": ...}`` or
``{"id": n, "ok": false, "error": text}``; the broker pushes ``{"event": ...}`` (order events
and faults for the subscribed gateway) and ``{"prices": {...}}`` without an id. Values are the
dataclasses of :mod:`ibsim.port` and :mod:`ibsim.broker`, tagged by type name.

The link stands in for the Gateway's connection to IB's servers, so it behaves as that one
does when the network under it goes (a partition; the container's address changed by a
``docker network disconnect``/``connect``): the Gateway notices the silence, tells its API
clients 1100, keeps its API socket open and its session, reconnects and says 1102 (data
maintained). Here the broker's price push (every :data:`PRICE_PUSH_INTERVAL`) is the heartbeat:
no frame for :data:`LINK_SILENCE` means the connection is dead; requests waiting on it fail at
once instead of hanging until TCP gives up (about 15 minutes), and the port reconnects until
:data:`RECONNECT_FOR` has passed. A link the broker closed itself (end of file: the broker
stopped) is not retried: the container ends, as before. The broker's side mirrors it: a link
its gateway closed (the process ended) ends the session at once, one that was reset or became
unreachable keeps the session for the gateway to link again, for :data:`RECONNECT_FOR`. A
gateway that gives up on a dead connection therefore resets it: a FIN would be retransmitted
until the network is back and then read as the process's end. A gateway that links again
after the broker ended its session is told so (as when another login displaces it), and IB
takes no order over a gateway without a session. Not modelled: IB's own reconnect timings and
its server-side session timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import itertools
import json
import logging
import socket
import struct
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ibsim import auth, contracts, port
from ibsim import broker as broker_mod
from ibsim.port import Fault, FaultEvent, GatewayEvent, LoginOutcome

log = logging.getLogger(__name__)

MAX_LINK_FRAME = 32 * 1024 * 1024
PRICE_PUSH_INTERVAL = 0.05
#: No frame from the broker for this long: the connection is dead (80 missed price pushes).
LINK_SILENCE = 4.0
#: How long a dead link is retried before the gateway gives up (the container then ends).
RECONNECT_FOR = 120.0
RECONNECT_EVERY = 1.0
SILENCE_RECHECK = 0.25

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


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close a connection with a reset (SO_LINGER 0), not a FIN.

    A gateway that gives up on a link closes it while the gateway keeps running; a FIN sent
    then is retransmitted until the network is back, and would reach the broker as "the
    gateway closed its link" (its process ended), which ends the gateway's session. A reset is
    never retransmitted, and the broker reads one as "reset or unreachable": the session is
    kept for the gateway to link again. A process that ends closes its sockets with a FIN, as
    the kernel does for it."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class BrokerLinkServer:
    """Serves a :class:`ibsim.service.BrokerService` to remote front ends."""

    def __init__(
        self,
        service: Any,
        *,
        host: str = "0.0.0.0",
        port: int = 0,
        session_grace: float = RECONNECT_FOR,
    ) -> None:
        self.service = service
        self.host = host
        self.requested_port = port
        self.session_grace = session_grace
        self._expiring: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        # Which connection holds each gateway's subscription: a gateway that reconnected after
        # its link went silent owns it now, and the dead connection's end must not log it out.
        self._owners: dict[str, asyncio.Task[None]] = {}
        # Gateways whose session the broker ended because their link closed or stayed away
        # past the grace: one that links again (still running) is told its session is over.
        self._ended: set[str] = set()

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
        for task in [*self._conns, *self._expiring]:
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
        lost: OSError | None = None

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
                    self._owners[name] = task
                    self.service.subscribe(
                        gateway=name, listener=lambda event: push({"event": to_wire(event)})
                    )
                    push({"id": req_id, "ok": True, "result": None})
                    ended = name in self._ended
                    self._ended.discard(name)
                    if ended and args.get("relink"):
                        # The gateway kept running while the broker ended its session: as
                        # when another login displaces it, its session at IB is over.
                        log.warning("sim_broker_session_gone gateway=%s", name)
                        push(
                            {
                                "event": to_wire(
                                    FaultEvent(gateway=name, fault=Fault.SESSION_ENDED, active=True)
                                )
                            }
                        )
                elif op == "unsubscribe":
                    name = str(args["gateway"])
                    if self._owners.get(name) is task:
                        del self._owners[name]
                        self.service.unsubscribe(gateway=name)
                    gateways.discard(name)
                    push({"id": req_id, "ok": True, "result": None})
                elif op in _OPS:
                    # Requests run concurrently: await_2fa may wait for minutes.
                    job = asyncio.create_task(answer(req_id, op, args))
                    pending.add(job)
                    job.add_done_callback(pending.discard)
                else:
                    push({"id": req_id, "ok": False, "error": f"unknown op {op!r}"})
        except asyncio.IncompleteReadError:
            pass
        except OSError as exc:
            # Reset or unreachable, not closed: the network under the link went, the gateway
            # may still be running and will link again (see the module's docstring).
            lost = exc
        finally:
            for job in [*pushers, *pending]:
                job.cancel()
            for name in gateways:
                if self._owners.get(name) is not task:
                    continue  # it linked again meanwhile: that connection holds the session
                del self._owners[name]
                self.service.unsubscribe(gateway=name)
                if lost is None:
                    # The gateway closed its link (its process ended): IB ends its session.
                    # (A gateway that gives up on a dead link resets it instead: see
                    # RemoteBrokerPort._read_until_dead.)
                    self._end_session(name)
                    with contextlib.suppress(Exception):
                        await self.service.logout(gateway=name)
                else:
                    log.warning("sim_broker_link_lost gateway=%s error=%r", name, lost)
                    expiry = asyncio.create_task(self._expire(name))
                    self._expiring.add(expiry)
                    expiry.add_done_callback(self._expiring.discard)
            writer.close()
            self._conns.discard(task)

    async def _expire(self, name: str) -> None:
        """A gateway whose link was lost keeps its session until it links again or this ends."""
        await asyncio.sleep(self.session_grace)
        if name not in self._owners:
            self._end_session(name)
            with contextlib.suppress(Exception):
                await self.service.logout(gateway=name)

    def _end_session(self, name: str) -> None:
        if self.service.session_of_gateway(name) is not None:
            self._ended.add(name)


class RemoteBrokerPort:
    """A :class:`ibsim.port.BrokerPort` over the link (used by gateway containers).

    ``closed`` is set when the link is gone for good: the broker closed it, or a dead link could
    not be re-established within ``reconnect_for``. A dead link meanwhile is reported to the
    subscribed front end as IB's link loss (1100) and, once back, as restored (1102).
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        connect_timeout: float = 10.0,
        silence: float = LINK_SILENCE,
        reconnect_for: float = RECONNECT_FOR,
        reconnect_every: float = RECONNECT_EVERY,
    ) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.silence = silence
        self.reconnect_for = reconnect_for
        self.reconnect_every = reconnect_every
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._listener: Callable[[GatewayEvent], None] | None = None
        self._gateway: str | None = None
        self._prices: dict[int, float] = {}
        self._last_frame = 0.0
        self._stopping = False
        self.reconnects = 0
        self.closed = asyncio.Event()

    async def connect(self) -> None:
        """Open the link; raises LinkError naming host:port when the broker is unreachable."""
        reader, writer = await self._open()
        self._attach(reader, writer)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            raise LinkError(f"broker link {self.host}:{self.port} unreachable: {exc!r}") from None

    def _attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._last_frame = asyncio.get_running_loop().time()
        self._reader_task = asyncio.create_task(self._run(reader, writer))

    async def close(self) -> None:
        """Close the link."""
        self._stopping = True
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task

    async def _run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read until the link ends; a dead one (silent, reset) is re-established."""
        while True:
            dead = await self._read_until_dead(reader, writer)
            self._fail_waiting("broker link lost" if dead else "broker link closed")
            if not dead or self._stopping:
                self.closed.set()
                return
            self._notify(FaultEvent(gateway=self._gateway or "", fault=Fault.LINK, active=True))
            reopened = await self._reconnect()
            if reopened is None:
                self.closed.set()
                return
            reader, writer = reopened
            self._writer = writer
            self._last_frame = asyncio.get_running_loop().time()
            self.reconnects += 1
            if self._gateway is not None:
                self._send(
                    {
                        "id": next(self._ids),
                        "op": "subscribe",
                        "args": {"gateway": self._gateway, "relink": True},
                    }
                )
            log.info("sim_broker_link_restored host=%s port=%s", self.host, self.port)
            self._notify(
                FaultEvent(gateway=self._gateway or "", fault=Fault.LINK, active=False, value=1102)
            )

    async def _read_until_dead(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """True when the connection died (silence, reset), False when the broker closed it."""
        watchdog = asyncio.create_task(self._watch(writer))
        dead = False
        try:
            while True:
                message = await read_frame(reader)
                self._last_frame = asyncio.get_running_loop().time()
                self._dispatch(message)
        except asyncio.IncompleteReadError as exc:
            if watchdog.done():
                dead = True  # the watchdog aborted a silent connection
                return True
            log.warning(
                "sim_broker_link_closed host=%s port=%s error=%r", self.host, self.port, exc
            )
            return False
        except (ConnectionError, OSError) as exc:
            log.warning("sim_broker_link_lost host=%s port=%s error=%r", self.host, self.port, exc)
            dead = True
            return True
        except LinkError as exc:
            log.warning(
                "sim_broker_link_closed host=%s port=%s error=%r", self.host, self.port, exc
            )
            return False
        finally:
            watchdog.cancel()
            if dead and not self._stopping:
                _reset(writer)
            else:
                writer.close()

    async def _watch(self, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        confirmed = False
        while True:
            # Sleep to the moment the link would have been silent too long, then look again.
            left = self._last_frame + self.silence - loop.time()
            if left > 0:
                confirmed = False
                await asyncio.sleep(left)
            elif not confirmed:
                # Once more after a moment: a process that was frozen (docker pause) wakes with
                # this timer due and the broker's frames already in its socket, unread yet.
                confirmed = True
                await asyncio.sleep(SILENCE_RECHECK)
            else:
                break
        log.warning(
            "sim_broker_link_silent host=%s port=%s seconds=%.1f",
            self.host,
            self.port,
            self.silence,
        )
        _reset(writer)

    async def _reconnect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.reconnect_for
        while not self._stopping and loop.time() < give_up:
            try:
                return await self._open()
            except LinkError:
                await asyncio.sleep(self.reconnect_every)
        log.error("sim_broker_link_gone host=%s port=%s", self.host, self.port)
        return None

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "prices" in message:
            self._prices = {int(k): float(v) for k, v in message["prices"].items()}
        elif "event" in message:
            self._notify(from_wire(message["event"]))
        else:
            future = self._waiting.pop(int(message.get("id", -1)), None)
            if future is not None and not future.done():
                if message.get("ok"):
                    future.set_result(from_wire(message.get("result")))
                else:
                    future.set_exception(LinkError(str(message.get("error"))))

    def _notify(self, event: GatewayEvent) -> None:
        if self._listener is not None:
            self._listener(event)

    def _fail_waiting(self, why: str) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(LinkError(why))
        self._waiting.clear()

    def _send(self, message: dict[str, Any]) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(encode(message))

    async def _call(self, op: str, **args: Any) -> Any:
        if self._writer is None or self.closed.is_set():
            raise LinkError(f"broker link {self.host}:{self.port} is not connected")
        if self._writer.is_closing():
            raise LinkError(f"broker link {self.host}:{self.port} is lost (reconnecting)")
        req_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[req_id] = future
        self._writer.write(encode({"id": req_id, "op": op, "args": to_wire(args)}))
        return await future

    # -- BrokerPort ------------------------------------------------------------------------

    def subscribe(self, *, gateway: str, listener: Callable[[GatewayEvent], None]) -> None:
        self._listener = listener
        self._gateway = gateway
        self._send({"id": next(self._ids), "op": "subscribe", "args": {"gateway": gateway}})

    def unsubscribe(self, *, gateway: str) -> None:
        self._listener = None
        self._gateway = None
        self._send({"id": next(self._ids), "op": "unsubscribe", "args": {"gateway": gateway}})

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
