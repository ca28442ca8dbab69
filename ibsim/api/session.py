"""One API client connection to the simulated Gateway: handshake, pacing, dispatch by message
id, the order events it is owed, and its market-data ticks.

The requests themselves are answered in :mod:`ibsim.api.accounts`, :mod:`ibsim.api.orders`
and :mod:`ibsim.api.market_data`, each of which offers its ``HANDLERS`` by message id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ibsim import drift, messages
from ibsim.api import accounts, historical, market_data, orders, unsupported
from ibsim.broker import BrokerOrder, OrderEvent, OrderEventKind
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
from ibsim.ledger import ledger_rows
from ibsim.link import LinkError
from ibsim.messages import In, Out
from ibsim.pacing import MessageRate

if TYPE_CHECKING:
    from ibsim.api.market_data import Subscription
    from ibsim.api.server import GatewayFrontEnd

log = logging.getLogger(__name__)

TICK_BATCH_INTERVAL = 0.01  # seconds between market-data batches; rate sets the batch size

Handler = Callable[["ApiSession", list[str]], Awaitable[None]]


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
        self.subscriptions: dict[int, Subscription] = {}
        self._rate = MessageRate(gateway.pacing_config())
        self._rate_warned_at: float | None = None
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
                except LinkError as exc:
                    # IB's link is down: the request goes unanswered, the API socket stays
                    # (the client's own timeout covers it), as the Gateway does during a 1100.
                    log.warning(
                        "sim_api_request_unanswered gateway=%s client_id=%s msg=%s error=%s",
                        self.gw.name,
                        self.client_id,
                        fields[:1],
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
        """IB's pacing: more than max_msg_rate messages in one second gets error 100 (once a
        second) and the excess is dropped; the connection stays."""
        if self.client_id is None:
            return True
        # The monotonic clock moved by the gateway's clock fault, so a test can jump it.
        now = time.monotonic() + self.gw.clock_offset
        if self._rate.admit(now):
            return True
        if self._rate_warned_at is None or now - self._rate_warned_at >= 1.0:
            self._rate_warned_at = now
            self.send_error(
                -1,
                100,
                "Max rate of messages per second has been exceeded:"
                f"max={self._rate.config.max_msg_rate} "
                f"rec={self._rate.in_window + 1} (1)",
            )
        return False

    async def handle(self, fields: list[str]) -> None:
        """Dispatch one request by its message id; what no handler takes gets IB's error or
        empty answer from :mod:`ibsim.api.unsupported`."""
        if not fields:
            return
        msg_id = FieldReader(fields, message="message").int("msgId", -1)
        if self.client_id is None and msg_id != In.START_API:
            log.warning("sim_api_request_before_start gateway=%s msg_id=%s", self.gw.name, msg_id)
            return
        handler = _HANDLERS.get(msg_id, unsupported.answer)
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
                self.gw.spawn(self.send_account_update(order.account))
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

    async def account_rows(self, account: str) -> list[tuple[str, str, str]]:
        """The account-wide rows, then every currency's ledger rows and BASE's, as
        updateAccountValue carries them."""
        rows = await self.gw.broker.account_values(account=account)
        positions = await self.gw.broker.positions(account=account)
        ledger = ledger_rows(rows, positions)
        ledger_tags = {tag for tag, _, _ in ledger}
        return [r for r in rows if r[0] not in ledger_tags] + ledger

    async def send_account_update(self, account: str) -> None:
        for tag, value, currency in await self.account_rows(account):
            self.send([Out.ACCT_VALUE, 2, tag, value, currency, account])
        for spec, qty, avg, price, realized in await self.gw.broker.positions(account=account):
            self.send(messages.portfolio_value(account, spec, qty, price, avg, realized))
        self.send([Out.ACCT_UPDATE_TIME, 1, datetime.now(UTC).strftime("%H:%M")])

    # -- market data -----------------------------------------------------------------------

    def ensure_ticker(self) -> None:
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
                chunks.extend(self._moved_stats(sub, price))
                chunks.extend(frames[i % len(frames)] for i in range(count))
                rotate += count
            if chunks and not self._closed:
                self.writer.write(b"".join(chunks))
                with contextlib.suppress(ConnectionError):
                    await self.writer.drain()

    def _tick(self, sub: Subscription, price: float, rotate: int) -> list[object]:
        """Bid, ask or last in turn: the quote around the price is never crossed (IB's
        tickPrice carries the size; sizes are never 0)."""
        kind = rotate % 3
        base = (66, 67, 68) if sub.delayed else (1, 2, 4)
        bid, ask = drift.quote(sub.spec, price)
        value = (bid, ask, price)[kind]
        return [Out.TICK_PRICE, 6, sub.req_id, base[kind], value, 100 + rotate % 7, 0]

    def _stat(self, sub: Subscription, kind: int, value: float) -> list[object]:
        """High (6), low (7) or close (9); delayed 72, 73, 75."""
        tick_type = {6: 72, 7: 73, 9: 75}[kind] if sub.delayed else kind
        return [Out.TICK_PRICE, 6, sub.req_id, tick_type, value, 0, 0]

    def _moved_stats(self, sub: Subscription, price: float) -> list[bytes]:
        frames = []
        if price > sub.high:
            sub.high = price
            frames.append(encode_frame(self._stat(sub, 6, price)))
        if price < sub.low:
            sub.low = price
            frames.append(encode_frame(self._stat(sub, 7, price)))
        return frames

    async def first_ticks(self, sub: Subscription) -> None:
        """A fresh subscription gets bid, ask, last, the session's high and low and the
        previous close at once, as IB sends a first image."""
        price = self.gw.broker.prices().get(sub.spec.con_id)
        if price is None:
            return
        for kind in range(3):
            self.send(self._tick(sub, price, kind))
        now = await self.gw.broker.now()
        sub.high, sub.low, close = market_data.day_stats(sub.spec, price, now)
        for kind, value in ((6, sub.high), (7, sub.low), (9, close)):
            self.send(self._stat(sub, kind, value))

    # -- contracts the gateway has seen ------------------------------------------------------

    def remember(self, specs: list[ContractSpec]) -> None:
        """Keep contracts the broker described, so later messages can name them."""
        for spec in specs:
            self.gw.specs.setdefault(spec.con_id, spec)

    async def contract_of(self, con_id: int) -> ContractSpec | None:
        """The contract with ``con_id`` (from the gateway's cache, else the broker)."""
        spec = self.gw.specs.get(con_id)
        if spec is None:
            found = await self.gw.broker.contracts(query={"con_id": con_id})
            self.remember(found)
            spec = found[0] if found else None
        return spec

    async def contracts(self, q: messages.ContractQuery) -> list[ContractSpec]:
        """Every contract matching a request's contract fields (remembered)."""
        specs = await self.gw.broker.contracts(
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
        self.remember(specs)
        return specs

    async def resolve(self, q: messages.ContractQuery) -> ContractSpec | None:
        """The one contract a request names, or None when none or several match."""
        specs = await self.contracts(q)
        return specs[0] if len(specs) == 1 else None


async def _no_answer(s: ApiSession, fields: list[str]) -> None:
    """Cancels of subscriptions the simulator answers at once, or does not stream."""


_NO_ANSWER = (
    In.CANCEL_POSITIONS_MULTI,
    In.CANCEL_ACCOUNT_UPDATES_MULTI,
    In.CANCEL_ACCOUNT_SUMMARY,
)


def _dispatch_table() -> dict[int, Handler]:
    table: dict[int, Handler] = dict.fromkeys(_NO_ANSWER, _no_answer)
    for part in (accounts.HANDLERS, orders.HANDLERS, market_data.HANDLERS, historical.HANDLERS):
        overlap = table.keys() & part.keys()
        if overlap:
            raise RuntimeError(f"two handlers for message ids {sorted(overlap)}")
        table.update(part)
    return table


_HANDLERS = _dispatch_table()
