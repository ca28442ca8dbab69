"""One simulated IB Gateway: logs in to the broker, then serves the TWS API on its port.

The login flow prints IBC's own log lines through an injected line sink. API clients connect
over real TCP with the handshake of the real gateway; requests are answered from the broker
through a :class:`ibsim.port.BrokerPort`, and order events and faults pushed by the
broker are relayed to the clients that own or watch them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ibsim import ibclog, messages
from ibsim.broker import (
    Bar,
    BrokerOrder,
    OrderEvent,
    OrderEventKind,
    OrderRequest,
    OrderState,
    Reject,
    WhatIf,
)
from ibsim.codec import (
    FieldReader,
    FrameDecoder,
    ProtocolError,
    encode_frame,
    negotiate_version,
    parse_handshake,
    split_fields,
)
from ibsim.contracts import ContractSpec
from ibsim.messages import In, Out
from ibsim.port import BrokerPort, Fault, FaultEvent, GatewayEvent, LoginKind, LoginOutcome

log = logging.getLogger(__name__)

LineSink = Callable[[str], None]

FARM_OK = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)
TICK_BATCH_INTERVAL = 0.01  # seconds between market-data batches; rate sets the batch size


class FrontEndState(enum.Enum):
    """Where one simulated gateway stands."""

    CREATED = "created"
    LOGGING_IN = "logging_in"
    AWAITING_2FA = "awaiting_2fa"
    READY = "ready"  # logged in and listening for API clients
    LOGIN_FAILED = "login_failed"
    STOPPED = "stopped"
    CRASHED = "crashed"


@dataclass(slots=True)
class FrontEndConfig:
    """One gateway's settings (the gnzsnz env contract maps onto these)."""

    name: str
    username: str
    password: str = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 0
    read_only: bool = False
    existing_session_action: str = "primary"
    tick_rate: float = 20.0  # price ticks per second per market data subscription
    max_msg_rate: int = 50  # IB's pacing limit per client per second (error 100 above it)
    relogin_after_2fa_timeout: bool = False
    twofa_exit_interval: int = 0  # IBC's SecondFactorAuthenticationExitInterval (IBC: 60)
    client_id_hold: float = 0.0  # seconds a client id stays "in use" after a disconnect


def _ibc_now() -> datetime:
    return datetime.now()  # IBC prints the JVM's local wall time


class GatewayFrontEnd:
    """A gateway: login flow, TWS API server, fault switches."""

    def __init__(
        self,
        *,
        config: FrontEndConfig,
        broker: BrokerPort,
        line_sink: LineSink | None = None,
        ibc_clock: Callable[[], datetime] = _ibc_now,
    ) -> None:
        self.config = config
        self.broker = broker
        self._sink = line_sink or (
            lambda line: log.info("ibc_line gateway=%s line=%s", config.name, line)
        )
        self._ibc_clock = ibc_clock
        self.state = FrontEndState.CREATED
        self.accounts: tuple[str, ...] = ()
        self.market_data = "realtime"
        self.ready = asyncio.Event()
        self.sessions: dict[int, ApiSession] = {}
        self.all_sessions: set[ApiSession] = set()
        self._server: asyncio.Server | None = None
        self._login_attempts = 0
        self.last_outcome: LoginOutcome | None = None
        # fault switches
        self.link_up = True
        self.market_farm_ok = True
        self.hmds_farm_ok = True
        self.stalled = asyncio.Event()
        self.unstalled = asyncio.Event()
        self.unstalled.set()
        self.delay = 0.0
        self.crashed = asyncio.Event()
        self.session_ended = asyncio.Event()
        self._held_ids: dict[int, float] = {}
        self.specs: dict[int, ContractSpec] = {}
        self._background: set[asyncio.Future[None]] = set()
        # Sticky faults the broker replays at subscribe (see service.STICKY_FAULTS).
        self.clock_offset = 0.0
        self.clock_hooks: list[Callable[[float], None]] = []
        self.current_time_pacing = False
        self.login_stall = False
        self.no_login_dialog = False

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a follow-up in the background, keeping a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def name(self) -> str:
        """The gateway's name at the broker."""
        return self.config.name

    @property
    def port(self) -> int:
        """The API port actually bound (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            return self.config.port
        return int(self._server.sockets[0].getsockname()[1])

    def ibc(self, message: str) -> None:
        """Emit one IBC-format line through the sink."""
        self._sink(ibclog.format_line(message, at=self._ibc_clock()))

    # -- login -----------------------------------------------------------------------------

    async def login(self, *, presents_token: bool) -> LoginOutcome:
        """Run IBC's login flow against the broker; returns the final outcome."""
        self.state = FrontEndState.LOGGING_IN
        self.broker.subscribe(gateway=self.name, listener=self._on_event)
        self.ibc(ibclog.starting_session(timeout_seconds=60))
        self._login_attempts += 1
        self.ibc(ibclog.login_attempt(self._login_attempts))
        outcome = await self.broker.begin_login(
            gateway=self.name,
            username=self.config.username,
            password=self.config.password,
            presents_token=presents_token,
            existing_session_action=self.config.existing_session_action,
        )
        if outcome.kind is LoginKind.AWAITING_2FA:
            self.state = FrontEndState.AWAITING_2FA
            self.ibc(ibclog.detected_dialog(ibclog.DIALOG_SECOND_FACTOR))
            self.ibc(ibclog.SECOND_FACTOR_INITIATED)
            self.ibc(ibclog.LOGIN_FRAME_BECAME_2FA)
            outcome = await self.broker.await_2fa(gateway=self.name, username=self.config.username)
            if outcome.kind is LoginKind.FAILED and outcome.reason == "twofa_timed_out":
                # IBC waits SecondFactorAuthenticationExitInterval after the dialog closes.
                self.ibc(ibclog.exit_if_not_completed(seconds=self.config.twofa_exit_interval))
                if self.config.twofa_exit_interval > 0:
                    await asyncio.sleep(self.config.twofa_exit_interval)
                self.ibc(ibclog.CLOSING_AFTER_2FA)
                if self.config.relogin_after_2fa_timeout:
                    self.ibc(ibclog.RELOGIN_AFTER_2FA_TIMEOUT)
                else:
                    self.ibc(ibclog.RELOGIN_AFTER_2FA_NOT_REQUIRED)
            elif outcome.kind is LoginKind.LOGGED_IN:
                self.ibc(ibclog.exit_if_not_completed(seconds=self.config.twofa_exit_interval))
        self.last_outcome = outcome
        self._log_outcome(outcome)
        if outcome.kind is LoginKind.LOGGED_IN:
            self.accounts = outcome.accounts
            self.market_data = outcome.market_data
        else:
            self.state = FrontEndState.LOGIN_FAILED
        return outcome

    def _log_outcome(self, outcome: LoginOutcome) -> None:
        if outcome.kind is LoginKind.LOGGED_IN:
            self.ibc(ibclog.LOGIN_COMPLETED)
            self.ibc(ibclog.CONFIGURATION_TASKS_COMPLETED)
        elif outcome.kind is LoginKind.FAILED and outcome.reason != "twofa_timed_out":
            self.ibc(ibclog.detected_dialog(ibclog.DIALOG_LOGIN_FAILED))
            self.ibc(ibclog.LOGIN_FAILED)
            # IBC 3.24's LoginFailedDialogHandler stops for a cold restart after this dialog.
            self.ibc(ibclog.COLD_RESTART_IN_PROGRESS)
            for line in ibclog.login_error_message(
                "Invalid username or password."
                if outcome.reason == "bad_credentials"
                else f"Login refused ({outcome.reason})."
            ):
                self.ibc(line)
        elif outcome.kind is LoginKind.LOCKED_OUT:
            left = 0.0
            if outcome.locked_until is not None:
                left = max((outcome.locked_until - datetime.now(UTC)).total_seconds(), 0.0)
            self.ibc(
                ibclog.too_many_failed_attempts(minutes=int(left // 60), seconds=int(left % 60))
            )
        elif outcome.kind is LoginKind.EXISTING_SESSION:
            self.ibc(ibclog.detected_dialog(ibclog.DIALOG_EXISTING_SESSION))
            if outcome.resolution == "user_must_choose":
                self.ibc(ibclog.EXISTING_SESSION_MANUAL)
            elif self.config.existing_session_action.lower() == "secondary":
                self.ibc(ibclog.EXISTING_SESSION_SECONDARY)
            else:
                self.ibc(ibclog.EXISTING_SESSION_OTHER_IS_PRIMARY)

    # -- serving ---------------------------------------------------------------------------

    async def start(self, *, presents_token: bool = False) -> LoginOutcome:
        """Log in, then listen for API clients if the login succeeded."""
        outcome = await self.login(presents_token=presents_token)
        if outcome.kind is LoginKind.LOGGED_IN:
            await self.listen()
        return outcome

    async def listen(self) -> None:
        """Open the API port (a real gateway opens it only once logged in)."""
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve_client, host=self.config.host, port=self.config.port
            )
            self.config.port = self.port
        self.state = FrontEndState.READY
        self.ready.set()
        log.info("sim_gateway_listening gateway=%s port=%s", self.name, self.port)

    async def stop(self, *, logout: bool = True) -> None:
        """Close the port, drop every client, end the broker session."""
        await self._close_server()
        if logout:
            with contextlib.suppress(Exception):
                await self.broker.logout(gateway=self.name)
            self.broker.unsubscribe(gateway=self.name)
        self.state = FrontEndState.STOPPED
        self.ready.clear()

    async def _close_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.drop_clients()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    def drop_clients(self) -> None:
        """Close every API socket (fault: drop, crash, stop)."""
        for session in list(self.all_sessions):
            session.close()

    async def soft_restart(self) -> LoginOutcome:
        """IBC's RESTART: the session ends and logs in again presenting the restart token."""
        await self._close_server()
        await self.broker.logout(gateway=self.name)
        self.ibc(ibclog.RESTARTING_SESSION)
        return await self.start(presents_token=True)

    async def crash(self) -> None:
        """Fault: the gateway process dies; clients lose their sockets, the session is gone."""
        await self._close_server()
        with contextlib.suppress(Exception):
            await self.broker.logout(gateway=self.name)
        self.broker.unsubscribe(gateway=self.name)
        self.state = FrontEndState.CRASHED
        self.ready.clear()
        self.crashed.set()

    # -- broker events ---------------------------------------------------------------------

    def _on_event(self, event: GatewayEvent) -> None:
        if isinstance(event, OrderEvent):
            for session in list(self.all_sessions):
                session.on_order_event(event)
            return
        self._on_fault(event)

    def _on_fault(self, event: FaultEvent) -> None:
        log.info(
            "sim_gateway_fault gateway=%s fault=%s active=%s value=%s",
            self.name,
            event.fault.value,
            event.active,
            event.value,
        )
        if event.fault is Fault.LINK:
            self.link_up = not event.active
            if event.active:
                self._broadcast(
                    1100, "Connectivity between IB and Trader Workstation has been lost."
                )
            elif int(event.value) == 1101:
                self._broadcast(
                    1101,
                    "Connectivity between IB and Trader Workstation has been restored - data lost.",
                )
            else:
                self._broadcast(
                    1102,
                    "Connectivity between IB and Trader Workstation has been restored - "
                    "data maintained.",
                )
        elif event.fault is Fault.MARKET_FARM:
            self.market_farm_ok = not event.active
            if event.active:
                self._broadcast(2103, "Market data farm connection is broken:usfarm")
            else:
                self._broadcast(2104, "Market data farm connection is OK:usfarm")
        elif event.fault is Fault.HMDS_FARM:
            self.hmds_farm_ok = not event.active
            if event.active:
                self._broadcast(2105, "HMDS data farm connection is broken:ushmds")
            else:
                self._broadcast(2106, "HMDS data farm connection is OK:ushmds")
        elif event.fault is Fault.STALL:
            if event.active:
                self.unstalled.clear()
                self.stalled.set()
            else:
                self.stalled.clear()
                self.unstalled.set()
        elif event.fault is Fault.DROP_CLIENTS:
            self.drop_clients()
        elif event.fault is Fault.CRASH:
            self.spawn(self.crash())
        elif event.fault is Fault.SLOW:
            self.delay = event.value if event.active else 0.0
        elif event.fault is Fault.TICK_RATE:
            self.config.tick_rate = event.value
        elif event.fault is Fault.CLOCK:
            self.clock_offset = event.value if event.active else 0.0
            for hook in list(self.clock_hooks):
                hook(self.clock_offset)
        elif event.fault is Fault.CURRENT_TIME_PACING:
            self.current_time_pacing = event.active
        elif event.fault is Fault.LOGIN_STALL:
            self.login_stall = event.active
        elif event.fault is Fault.NO_LOGIN_DIALOG:
            self.no_login_dialog = event.active
        elif event.fault is Fault.SESSION_ENDED:
            # Another login took the username: IB ends this session; clients lose the link.
            self.session_ended.set()
            self.link_up = False
            self._broadcast(1100, "Connectivity between IB and Trader Workstation has been lost.")

    def _broadcast(self, code: int, message: str) -> None:
        for session in list(self.all_sessions):
            session.send_error(-1, code, message)

    # -- API clients -----------------------------------------------------------------------

    def client_id_in_use(self, client_id: int) -> bool:
        """True while a live client (or a recently gone one, if held) owns the id."""
        if client_id in self.sessions:
            return True
        held_until = self._held_ids.get(client_id)
        return held_until is not None and held_until > time.monotonic()

    def release_client_id(self, client_id: int, session: ApiSession) -> None:
        """A client left; optionally keep its id "in use" for a while, as gateways do."""
        if self.sessions.get(client_id) is session:
            del self.sessions[client_id]
            if self.config.client_id_hold > 0:
                self._held_ids[client_id] = time.monotonic() + self.config.client_id_hold

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        session = ApiSession(gateway=self, reader=reader, writer=writer)
        self.all_sessions.add(session)
        try:
            await session.run()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("sim_api_session_failed gateway=%s", self.name)
        finally:
            self.all_sessions.discard(session)
            session.close()


@dataclass(slots=True)
class _Subscription:
    req_id: int
    spec: ContractSpec
    delayed: bool
    snapshot: bool
    sent: int = 0


class ApiSession:
    """One API client connection: handshake, startApi, then requests until the socket closes."""

    def __init__(
        self,
        *,
        gateway: GatewayFrontEnd,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.gw = gateway
        self.reader = reader
        self.writer = writer
        self.version = 0
        self.client_id: int | None = None
        self.md_type = 1
        self.watching: set[int] = set()  # permIds learnt through open-order requests
        self.auto_open = False
        self.account_updates: str | None = None
        self.positions_subscribed = False
        self.subscriptions: dict[int, _Subscription] = {}
        self._stamps: deque[float] = deque()
        self._rate_warned_at = 0.0
        self._ticker: asyncio.Task[None] | None = None
        self._closed = False
        self.last_current_time: float | None = None
        self.peer = str(writer.get_extra_info("peername"))

    @property
    def accounts(self) -> list[str]:
        """The accounts of the gateway's login."""
        return list(self.gw.accounts)

    # -- output ----------------------------------------------------------------------------

    def send(self, fields: list[object]) -> None:
        """Write one message unless the socket is gone or the gateway is stalled."""
        if self._closed or self.gw.stalled.is_set():
            return
        self.writer.write(encode_frame(fields))

    def send_error(self, req_id: int, code: int, message: str) -> None:
        """An error message in this client's version layout."""
        self.send(messages.error(req_id, code, message, server_version=self.version))

    def close(self) -> None:
        """Drop the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
        if self.client_id is not None:
            self.gw.release_client_id(self.client_id, self)
        with contextlib.suppress(Exception):
            self.writer.close()

    # -- the connection --------------------------------------------------------------------

    async def run(self) -> None:
        decoder = FrameDecoder(expect_api_sign=True)
        handshake_done = False
        while not self._closed:
            data = await self.reader.read(65536)
            if not data:
                return
            try:
                frames = decoder.feed(data)
            except ProtocolError as exc:
                log.warning(
                    "sim_api_bad_frame gateway=%s peer=%s error=%s", self.gw.name, self.peer, exc
                )
                return
            for payload in frames:
                if not handshake_done:
                    try:
                        hs = parse_handshake(payload)
                        self.version = negotiate_version(hs)
                    except ProtocolError as exc:
                        log.warning("sim_api_bad_handshake gateway=%s error=%s", self.gw.name, exc)
                        return
                    handshake_done = True
                    # A stalled gateway does not even finish the handshake.
                    await self.gw.unstalled.wait()
                    now = await self.gw.broker.now()
                    self.writer.write(encode_frame([self.version, messages.connection_time(now)]))
                    continue
                fields = split_fields(payload)
                if not self.gw.unstalled.is_set():
                    await self.gw.unstalled.wait()
                if self.gw.delay > 0:
                    await asyncio.sleep(self.gw.delay)
                if self._closed:
                    return
                if not self._within_rate(fields):
                    continue
                try:
                    await self.handle(fields)
                except ProtocolError as exc:
                    log.warning(
                        "sim_api_bad_message gateway=%s client_id=%s error=%s",
                        self.gw.name,
                        self.client_id,
                        exc,
                    )
                except (ValueError, IndexError, KeyError) as exc:
                    log.warning(
                        "sim_api_bad_message gateway=%s client_id=%s msg=%s error=%r",
                        self.gw.name,
                        self.client_id,
                        fields[:1],
                        exc,
                    )
            if not self._closed:
                with contextlib.suppress(ConnectionError):
                    await self.writer.drain()

    def _within_rate(self, fields: list[str]) -> bool:
        """IB's pacing: more than max_msg_rate messages in one second gets error 100."""
        if self.client_id is None:
            return True
        now = time.monotonic()
        self._stamps.append(now)
        while self._stamps and now - self._stamps[0] > 1.0:
            self._stamps.popleft()
        if len(self._stamps) <= self.gw.config.max_msg_rate:
            return True
        if now - self._rate_warned_at > 1.0:
            self._rate_warned_at = now
            self.send_error(
                -1,
                100,
                "Max rate of messages per second has been exceeded:"
                f"max={self.gw.config.max_msg_rate} "
                f"rec={len(self._stamps)} (1)",
            )
        return False

    async def handle(self, fields: list[str]) -> None:
        """Dispatch one request by its message id; unknown ids are logged and ignored."""
        if not fields:
            return
        msg_id = FieldReader(fields, message="message").int("msgId", -1)
        if self.client_id is None and msg_id != In.START_API:
            log.warning("sim_api_request_before_start gateway=%s msg_id=%s", self.gw.name, msg_id)
            return
        handler = _HANDLERS.get(msg_id)
        if handler is None:
            log.info("sim_api_unhandled gateway=%s msg_id=%s", self.gw.name, msg_id)
            return
        await handler(self, fields)

    # -- order events from the broker ------------------------------------------------------

    def _concerns(self, order: BrokerOrder) -> bool:
        if order.account not in self.gw.accounts or self.client_id is None:
            return False
        owner = order.gateway == self.gw.name and order.client_id == self.client_id
        return owner or order.perm_id in self.watching or (self.auto_open and self.client_id == 0)

    def on_order_event(self, event: OrderEvent) -> None:
        """Relay one broker order event if it is this client's business."""
        order = event.order
        if not self._concerns(order):
            return
        owner = order.gateway == self.gw.name and order.client_id == self.client_id
        if event.kind is OrderEventKind.OPEN_ORDER:
            self.send(messages.open_order(order, server_version=self.version))
        elif event.kind is OrderEventKind.STATUS:
            self.send(messages.order_status(order))
        elif event.kind is OrderEventKind.EXECUTION and event.execution is not None:
            self.send(
                messages.exec_details(
                    -1, event.execution, order.contract, server_version=self.version
                )
            )
            if self.account_updates == order.account:
                self.gw.spawn(self._send_account_update(order.account))
            if self.positions_subscribed:
                self.gw.spawn(self._send_position(order.account, order.contract))
        elif event.kind is OrderEventKind.COMMISSION and event.execution is not None:
            self.send(messages.commission_report(event.execution))
        elif event.kind is OrderEventKind.CANCELLED_NOTICE and owner:
            self.send_error(order.order_id, 202, "Order Canceled - reason:")

    async def _send_position(self, account: str, spec: ContractSpec) -> None:
        for row_spec, qty, avg, _price, _realized in await self.gw.broker.positions(
            account=account
        ):
            if row_spec.con_id == spec.con_id:
                self.send(messages.position(account, row_spec, qty, avg))
                return
        self.send(messages.position(account, spec, 0.0, 0.0))

    async def _send_account_update(self, account: str) -> None:
        for tag, value, currency in await self.gw.broker.account_values(account=account):
            self.send([Out.ACCT_VALUE, 2, tag, value, currency, account])
        for spec, qty, avg, price, realized in await self.gw.broker.positions(account=account):
            self.send(messages.portfolio_value(account, spec, qty, price, avg, realized))
        self.send([Out.ACCT_UPDATE_TIME, 1, datetime.now(UTC).strftime("%H:%M")])

    # -- market data -----------------------------------------------------------------------

    def _ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick_loop())

    async def _tick_loop(self) -> None:
        owed = 0.0
        last = time.monotonic()
        rotate = 0
        while not self._closed and self.subscriptions:
            await asyncio.sleep(TICK_BATCH_INTERVAL)
            now = time.monotonic()
            owed += (now - last) * self.gw.config.tick_rate
            last = now
            count = int(owed)
            if count <= 0:
                continue
            owed -= count
            if not self.gw.market_farm_ok or not self.gw.link_up or self.gw.stalled.is_set():
                continue
            prices = self.gw.broker.prices()
            chunks: list[bytes] = []
            for sub in list(self.subscriptions.values()):
                price = prices.get(sub.spec.con_id)
                if price is None:
                    continue
                # Pre-encoded frames: at 100k ticks/s the generic encoder is the bottleneck.
                frames = [encode_frame(self._tick(sub, price, rotate + k)) for k in range(3 * 7)]
                chunks.extend(frames[i % len(frames)] for i in range(count))
                rotate += count
            if chunks and not self._closed:
                self.writer.write(b"".join(chunks))
                with contextlib.suppress(ConnectionError):
                    await self.writer.drain()

    def _tick(self, sub: _Subscription, price: float, rotate: int) -> list[object]:
        kind = rotate % 3
        tick = sub.spec.min_tick
        base = (66, 67, 68) if sub.delayed else (1, 2, 4)
        value = (price - tick, price + tick, price)[kind]
        return [Out.TICK_PRICE, 6, sub.req_id, base[kind], round(value, 10), 100 + rotate % 7, 0]

    async def first_ticks(self, sub: _Subscription) -> None:
        """A fresh subscription gets bid, ask and last at once, as IB sends a first image."""
        price = self.gw.broker.prices().get(sub.spec.con_id)
        if price is None:
            return
        for kind in range(3):
            self.send(self._tick(sub, price, kind))


# ---------------------------------------------------------------------------------------
# Request handlers
# ---------------------------------------------------------------------------------------


async def _start_api(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="startApi")
    r.skip(2, "msgId/version")
    client_id = r.int("clientId")
    if s.gw.client_id_in_use(client_id):
        s.send_error(
            -1,
            326,
            "Unable to connect as the client id is already in use. Retry with a unique client id.",
        )
        with contextlib.suppress(ConnectionError):
            await s.writer.drain()
        s.close()
        return
    s.client_id = client_id
    s.gw.sessions[client_id] = s
    next_id = await s.gw.broker.next_order_id(gateway=s.gw.name, client_id=client_id)
    s.send([Out.NEXT_VALID_ID, 1, next_id])
    s.send([Out.MANAGED_ACCTS, 1, ",".join(s.accounts)])
    if not s.gw.link_up:
        s.send_error(-1, 1100, "Connectivity between IB and Trader Workstation has been lost.")
        return
    for code, text in FARM_OK:
        s.send_error(-1, code, text)


async def _current_time(s: ApiSession, fields: list[str]) -> None:
    # Reported of Gateway 10.16+ (unverified): a reqCurrentTime less than a second after the
    # previous one is not answered. The current_time_pacing fault switches that on.
    previous, s.last_current_time = s.last_current_time, time.monotonic()
    if s.gw.current_time_pacing and previous is not None and s.last_current_time - previous < 1.0:
        return
    now = await s.gw.broker.now()
    s.send([Out.CURRENT_TIME, 1, int(now.timestamp())])


async def _req_ids(s: ApiSession, fields: list[str]) -> None:
    assert s.client_id is not None
    next_id = await s.gw.broker.next_order_id(gateway=s.gw.name, client_id=s.client_id)
    s.send([Out.NEXT_VALID_ID, 1, next_id])


async def _managed_accounts(s: ApiSession, fields: list[str]) -> None:
    s.send([Out.MANAGED_ACCTS, 1, ",".join(s.accounts)])


async def _positions(s: ApiSession, fields: list[str]) -> None:
    s.positions_subscribed = True
    for account in s.accounts:
        for spec, qty, avg, _price, _realized in await s.gw.broker.positions(account=account):
            s.send(messages.position(account, spec, qty, avg))
    s.send([Out.POSITION_END, 1])


async def _cancel_positions(s: ApiSession, fields: list[str]) -> None:
    s.positions_subscribed = False


async def _positions_multi(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqPositionsMulti")
    r.skip(2, "msgId/version")
    req_id = r.int("reqId")
    account = r.str("account")
    for acct in [account] if account else s.accounts:
        for spec, qty, avg, _price, _realized in await s.gw.broker.positions(account=acct):
            pos = messages.position(acct, spec, qty, avg)
            s.send([Out.POSITION_MULTI, 1, req_id, *pos[2:], ""])
    s.send([Out.POSITION_MULTI_END, 1, req_id])


async def _account_updates(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqAccountUpdates")
    r.skip(2, "msgId/version")
    subscribe = r.bool("subscribe")
    account = r.str("acctCode") or (s.accounts[0] if s.accounts else "")
    if not subscribe:
        s.account_updates = None
        return
    s.account_updates = account
    s.send([Out.ACCT_VALUE, 2, "AccountCode", account, "", account])
    await s._send_account_update(account)
    s.send([Out.ACCT_DOWNLOAD_END, 1, account])


async def _account_updates_multi(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqAccountUpdatesMulti")
    r.skip(2, "msgId/version")
    req_id = r.int("reqId")
    account = r.str("account")
    model = r.str("modelCode")
    for acct in [account] if account else s.accounts:
        for tag, value, currency in await s.gw.broker.account_values(account=acct):
            s.send([Out.ACCOUNT_UPDATE_MULTI, 1, req_id, acct, model, tag, value, currency])
    s.send([Out.ACCOUNT_UPDATE_MULTI_END, 1, req_id])


async def _account_summary(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqAccountSummary")
    r.skip(2, "msgId/version")
    req_id = r.int("reqId")
    r.str("groupName")
    tags = {t.strip() for t in r.opt_str("tags").split(",") if t.strip()}
    for account in s.accounts:
        for tag, value, currency in await s.gw.broker.account_values(account=account):
            if not tags or "All" in tags or tag in tags:
                s.send([Out.ACCOUNT_SUMMARY, 1, req_id, account, tag, value, currency])
    s.send([Out.ACCOUNT_SUMMARY_END, 1, req_id])


async def _noop(s: ApiSession, fields: list[str]) -> None:
    """Cancels of subscriptions the simulator does not stream need no answer."""


def _send_open(s: ApiSession, order: BrokerOrder) -> None:
    s.watching.add(order.perm_id)
    s.send(messages.open_order(order, server_version=s.version))
    s.send(messages.order_status(order))


async def _open_orders(s: ApiSession, fields: list[str]) -> None:
    for order in await s.gw.broker.open_orders(accounts=s.accounts):
        mine = order.gateway == s.gw.name and order.client_id == s.client_id
        if mine or s.client_id == 0:
            _send_open(s, order)
    s.send([Out.OPEN_ORDER_END, 1])


async def _all_open_orders(s: ApiSession, fields: list[str]) -> None:
    for order in await s.gw.broker.open_orders(accounts=s.accounts):
        _send_open(s, order)
    s.send([Out.OPEN_ORDER_END, 1])


async def _auto_open_orders(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqAutoOpenOrders")
    r.skip(2, "msgId/version")
    s.auto_open = r.bool("bAutoBind")


async def _completed_orders(s: ApiSession, fields: list[str]) -> None:
    for order in await s.gw.broker.completed_orders(accounts=s.accounts):
        s.send(messages.completed_order(order, server_version=s.version))
    s.send([Out.COMPLETED_ORDERS_END])


async def _executions(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqExecutions")
    r.skip(2, "msgId/version")
    req_id = r.int("reqId")
    client_id = r.opt_str("clientId")
    account = r.opt_str("acctCode")
    since = r.opt_str("time")
    symbol = r.opt_str("symbol")
    sec_type = r.opt_str("secType")
    exchange = r.opt_str("exchange")
    side = r.opt_str("side")
    after: datetime | None = None
    if since:
        with contextlib.suppress(ValueError):
            after = datetime.strptime(since[:17].replace("-", " "), "%Y%m%d %H:%M:%S").replace(
                tzinfo=UTC
            )
    sent = []
    for ex in await s.gw.broker.executions(accounts=s.accounts):
        order_spec = await _spec_of(s, ex.con_id)
        if order_spec is None:
            continue
        if client_id not in ("", "0") and str(ex.client_id) != client_id:
            continue
        if account and ex.account != account:
            continue
        if after is not None and ex.time < after:
            continue
        if symbol and order_spec.symbol != symbol.upper():
            continue
        if sec_type and order_spec.sec_type != sec_type.upper():
            continue
        if exchange and order_spec.exchange != exchange.upper():
            continue
        if side and not _side_matches(side, ex.side):
            continue
        s.send(messages.exec_details(req_id, ex, order_spec, server_version=s.version))
        sent.append(ex)
    s.send([Out.EXECUTION_DATA_END, 1, req_id])
    for ex in sent:
        s.send(messages.commission_report(ex))


def _side_matches(wanted: str, side: str) -> bool:
    wanted = wanted.upper()
    return (
        side == wanted
        or (wanted == "BUY" and side == "BOT")
        or (wanted == "SELL" and side == "SLD")
    )


async def _spec_of(s: ApiSession, con_id: int) -> ContractSpec | None:
    spec = s.gw.specs.get(con_id)
    if spec is None:
        found = await s.gw.broker.contracts(query={"con_id": con_id})
        _remember(s, found)
        spec = found[0] if found else None
    return spec


def _remember(s: ApiSession, specs: list[ContractSpec]) -> None:
    for spec in specs:
        s.gw.specs.setdefault(spec.con_id, spec)


async def _contract_details(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqContractDetails")
    r.skip(2, "msgId/version")
    req_id = r.int("reqId")
    q = messages.ContractQuery(r)
    specs = await s.gw.broker.contracts(
        query={
            "con_id": q.con_id,
            "symbol": q.symbol,
            "sec_type": q.sec_type,
            "currency": q.currency,
            "exchange": q.exchange,
            "local_symbol": q.local_symbol,
            "last_trade_date": q.last_trade_date,
        }
    )
    _remember(s, specs)
    if not specs:
        s.send_error(req_id, 200, "No security definition has been found for the request")
        return
    for spec in specs:
        s.send(messages.contract_details(req_id, spec, server_version=s.version))
    s.send([Out.CONTRACT_DATA_END, 1, req_id])


async def _resolve(s: ApiSession, q: messages.ContractQuery) -> ContractSpec | None:
    specs = await s.gw.broker.contracts(
        query={
            "con_id": q.con_id,
            "symbol": q.symbol,
            "sec_type": q.sec_type,
            "currency": q.currency,
            "exchange": q.exchange,
            "local_symbol": q.local_symbol,
            "last_trade_date": q.last_trade_date,
        }
    )
    _remember(s, specs)
    return specs[0] if len(specs) == 1 else None


async def _mkt_data(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqMktData")
    r.skip(2, "msgId/version")
    req_id = r.int("reqId")
    q = messages.ContractQuery(r)
    if q.sec_type == "BAG":
        r.skip(r.int("comboLegs") * 4, "comboLeg")
    if r.bool("deltaNeutralContract"):
        r.skip(3, "deltaNeutralContract")
    r.str("genericTickList")
    snapshot = r.bool("snapshot")
    spec = await _resolve(s, q)
    if spec is None:
        s.send_error(req_id, 200, "No security definition has been found for the request")
        return
    entitlement = s.gw.market_data
    if entitlement == "none":
        s.send_error(
            req_id,
            354,
            "Requested market data is not subscribed.Delayed market data is not available.",
        )
        return
    # As at IB: a user with the subscription gets live data whatever type was asked for (type 3
    # means "delayed where live is not permitted"); one without it gets delayed data only if it
    # asked for delayed (3 or 4), and error 354 otherwise.
    delayed = entitlement == "delayed"
    if delayed and s.md_type not in (3, 4):
        s.send_error(
            req_id,
            354,
            "Requested market data is not subscribed. Delayed market data is available.",
        )
        return
    if entitlement == "delayed":
        s.send_error(
            req_id,
            10167,
            "Requested market data is not subscribed. Displaying delayed market data.",
        )
    s.send([Out.MARKET_DATA_TYPE, 1, req_id, 3 if delayed else 1])
    sub = _Subscription(req_id=req_id, spec=spec, delayed=delayed, snapshot=snapshot)
    await s.first_ticks(sub)
    if snapshot:
        s.send([Out.TICK_SNAPSHOT_END, 1, req_id])
        return
    s.subscriptions[req_id] = sub
    s._ensure_ticker()


async def _cancel_mkt_data(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="cancelMktData")
    r.skip(2, "msgId/version")
    s.subscriptions.pop(r.int("reqId"), None)


async def _market_data_type(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqMarketDataType")
    r.skip(2, "msgId/version")
    s.md_type = r.int("marketDataType", 1)


_BAR_SECONDS = {
    "sec": 1,
    "secs": 1,
    "min": 60,
    "mins": 60,
    "hour": 3600,
    "hours": 3600,
    "day": 86_400,
    "days": 86_400,
    "week": 604_800,
    "weeks": 604_800,
    "month": 2_592_000,
    "months": 2_592_000,
}
_DURATION_SECONDS = {"S": 1, "D": 86_400, "W": 604_800, "M": 2_592_000, "Y": 31_536_000}


def bar_count(duration: str, bar_size: str) -> tuple[int, int]:
    """(number of bars, seconds per bar) for IB's duration and bar size strings."""
    amount, _, unit = duration.strip().partition(" ")
    size, _, size_unit = bar_size.strip().partition(" ")
    try:
        total = int(amount) * _DURATION_SECONDS[unit.strip().upper()]
        seconds = int(size) * _BAR_SECONDS[size_unit.strip().lower()]
    except (KeyError, ValueError):
        raise ProtocolError(
            f"reqHistoricalData: bad duration {duration!r} or bar size {bar_size!r}"
        ) from None
    if unit.strip().upper() == "D" and seconds < 86_400:
        total = int(amount) * 6 * 3600 + 1800  # one regular trading day is 6.5 hours
    return max(1, min(total // seconds, 5000)), seconds


async def _historical_data(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="reqHistoricalData")
    r.str("msgId")
    req_id = r.int("reqId")
    q = messages.ContractQuery(r)
    r.str("includeExpired")
    end_text = r.str("endDateTime")
    bar_size = r.str("barSizeSetting")
    duration = r.str("durationStr")
    r.str("useRTH")
    r.str("whatToShow")
    format_date = r.int("formatDate", 1)
    spec = await _resolve(s, q)
    if spec is None:
        s.send_error(req_id, 200, "No security definition has been found for the request")
        return
    if not s.gw.hmds_farm_ok:
        s.send_error(
            req_id, 162, "Historical Market Data Service error message:HMDS query returned no data"
        )
        return
    try:
        count, seconds = bar_count(duration, bar_size)
    except ProtocolError as exc:
        s.send_error(req_id, 321, f"Error validating request.-'bP' : cause - {exc}")
        return
    end = await s.gw.broker.now()
    if end_text:
        with contextlib.suppress(ValueError):
            end = datetime.strptime(end_text[:17].replace("-", " "), "%Y%m%d %H:%M:%S").replace(
                tzinfo=UTC
            )
    bars = await s.gw.broker.historical_bars(
        con_id=spec.con_id, count=count, bar_seconds=seconds, end=end
    )
    if format_date != 2 and seconds < 86_400:
        bars = [
            _replace_date(
                b, datetime.fromtimestamp(int(b.date), UTC).strftime("%Y%m%d %H:%M:%S") + " UTC"
            )
            for b in bars
        ]
    start = end - timedelta(seconds=count * seconds)
    s.send(
        messages.historical_data(
            req_id, bars, start.strftime("%Y%m%d %H:%M:%S"), end.strftime("%Y%m%d %H:%M:%S")
        )
    )


def _replace_date(bar: Bar, date: str) -> Bar:
    return dataclasses.replace(bar, date=date)


def _order_stub(request: OrderRequest, spec: ContractSpec, s: ApiSession) -> BrokerOrder:
    """A BrokerOrder-shaped view of a what-if request, for the openOrder layout."""
    assert s.client_id is not None
    return BrokerOrder(
        perm_id=0,
        gateway=s.gw.name,
        client_id=s.client_id,
        order_id=request.order_id,
        account=request.account or (s.accounts[0] if s.accounts else ""),
        contract=spec,
        action=request.action,
        total_quantity=request.total_quantity,
        order_type=request.order_type,
        lmt_price=request.lmt_price,
        aux_price=request.aux_price,
        tif=request.tif,
        oca_group=request.oca_group,
        order_ref=request.order_ref,
        parent_id=request.parent_id,
        parent_perm_id=0,
        transmit=request.transmit,
        status=OrderState.PRE_SUBMITTED,
        created_at=datetime.now(UTC),
    )


async def _place_order(s: ApiSession, fields: list[str]) -> None:
    request = messages.parse_place_order(fields, server_version=s.version)
    assert s.client_id is not None
    if s.gw.config.read_only:
        s.send_error(
            request.order_id,
            321,
            "Error validating request.-'bN' : cause - "
            "The API interface is currently in Read-Only mode.",
        )
        return
    if request.what_if:
        result = await s.gw.broker.what_if(request=request, accounts=s.accounts)
        if isinstance(result, Reject):
            s.send_error(request.order_id, result.code, result.message)
            return
        assert isinstance(result, WhatIf)
        specs = await s.gw.broker.contracts(
            query={
                "con_id": request.con_id,
                "symbol": request.symbol,
                "sec_type": request.sec_type,
                "currency": request.currency,
                "exchange": request.exchange,
                "local_symbol": request.local_symbol,
            }
        )
        stub = _order_stub(request, specs[0], s)
        s.send(messages.open_order(stub, server_version=s.version, what_if=result))
        return
    placed = await s.gw.broker.place_order(
        gateway=s.gw.name, client_id=s.client_id, request=request, accounts=s.accounts
    )
    if isinstance(placed, Reject):
        s.send_error(request.order_id, placed.code, placed.message)
    else:
        _remember(s, [placed.contract])


async def _cancel_order(s: ApiSession, fields: list[str]) -> None:
    r = FieldReader(fields, message="cancelOrder")
    r.skip(2, "msgId/version")
    order_id = r.int("orderId")
    assert s.client_id is not None
    result = await s.gw.broker.cancel_order(
        gateway=s.gw.name, client_id=s.client_id, order_id=order_id, accounts=s.accounts
    )
    if isinstance(result, Reject):
        s.send_error(order_id, result.code, result.message)
    elif result.perm_id not in s.watching and not (
        result.gateway == s.gw.name and result.client_id == s.client_id
    ):
        # The canceller learnt of this order elsewhere; tell it the outcome too.
        s.watching.add(result.perm_id)
        s.send(messages.order_status(result))


async def _global_cancel(s: ApiSession, fields: list[str]) -> None:
    await s.gw.broker.global_cancel(accounts=s.accounts)


_HANDLERS: dict[int, Callable[[ApiSession, list[str]], Awaitable[None]]] = {
    In.START_API: _start_api,
    In.REQ_CURRENT_TIME: _current_time,
    In.REQ_IDS: _req_ids,
    In.REQ_MANAGED_ACCTS: _managed_accounts,
    In.REQ_POSITIONS: _positions,
    In.CANCEL_POSITIONS: _cancel_positions,
    In.REQ_POSITIONS_MULTI: _positions_multi,
    In.CANCEL_POSITIONS_MULTI: _noop,
    In.REQ_ACCOUNT_UPDATES: _account_updates,
    In.REQ_ACCOUNT_UPDATES_MULTI: _account_updates_multi,
    In.CANCEL_ACCOUNT_UPDATES_MULTI: _noop,
    In.REQ_ACCOUNT_SUMMARY: _account_summary,
    In.CANCEL_ACCOUNT_SUMMARY: _noop,
    In.REQ_OPEN_ORDERS: _open_orders,
    In.REQ_ALL_OPEN_ORDERS: _all_open_orders,
    In.REQ_AUTO_OPEN_ORDERS: _auto_open_orders,
    In.REQ_COMPLETED_ORDERS: _completed_orders,
    In.REQ_EXECUTIONS: _executions,
    In.REQ_CONTRACT_DATA: _contract_details,
    In.REQ_MKT_DATA: _mkt_data,
    In.CANCEL_MKT_DATA: _cancel_mkt_data,
    In.REQ_MARKET_DATA_TYPE: _market_data_type,
    In.REQ_HISTORICAL_DATA: _historical_data,
    In.CANCEL_HISTORICAL_DATA: _noop,
    In.PLACE_ORDER: _place_order,
    In.CANCEL_ORDER: _cancel_order,
    In.REQ_GLOBAL_CANCEL: _global_cancel,
}
