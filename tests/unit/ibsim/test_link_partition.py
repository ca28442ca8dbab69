"""The broker link through a partition, over real loopback TCP (finding of chaos seed 20261201).

A ``docker network disconnect``/``connect`` that changes a gateway container's address leaves
its link to the broker silently dead: nothing is reset, nothing arrives. The link used to wait
for TCP to give up (about 15 minutes) with every request hanging, so the gateway answered no
API request and ignored IBC's RESTART; the supervisor saw a stall it could not heal without a
hard restart. Now the link reads the silence as IB's link loss (1100), fails what was waiting,
reconnects and says 1102, and the broker keeps the gateway's session across the two
connections.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from ibsim.auth import LoginKind, User
from ibsim.broker import OrderEvent, OrderRequest, Reject
from ibsim.link import BrokerLinkServer, LinkError, RemoteBrokerPort
from ibsim.port import Fault, FaultEvent, GatewayEvent
from ibsim.service import BrokerService
from tests.waiting import until

pytestmark = pytest.mark.timeout(30)


class Relay:
    """A TCP relay that can go silent: what it already relays stops, new connections pass."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.silent: list[asyncio.Event] = []
        # (partitioned?, faces the broker?, writer) for each side of each relayed connection.
        self.writers: list[tuple[asyncio.Event, bool, asyncio.StreamWriter]] = []
        # Broker-side writers of connections the gateway closed (FIN) while partitioned: TCP
        # retransmits that FIN, so it reaches the broker once the network is back.
        self.fins_held: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self.port

    def refuse(self) -> None:
        """New connections are refused too (the gateway is off the network)."""
        assert self.server is not None
        self.server.close()

    async def heal(self) -> None:
        """The network is back: held FINs arrive, new connections pass again."""
        for writer in self.fins_held:
            writer.close()
        self.fins_held.clear()
        await self.start()

    def partition(self) -> None:
        """Every open connection stops carrying bytes, without a reset (a cut cable)."""
        for event in self.silent:
            event.set()

    def close_dead(self, *, broker_side_only: bool = False) -> None:
        """The dead connections finally end (TCP gave up on them): reset, not closed."""
        for silent, to_broker, writer in self.writers:
            if silent.is_set() and not writer.is_closing() and (to_broker or not broker_side_only):
                sock = writer.get_extra_info("socket")
                # SO_LINGER 0: close() sends a reset, as a peer that is gone does.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for _, _, writer in self.writers:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        silent = asyncio.Event()
        self.silent.append(silent)
        self.writers += [(silent, False, writer), (silent, True, up_writer)]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if silent.is_set():
                        continue  # swallowed: the far side hears nothing
                    dst.write(data)
            except (ConnectionError, OSError):
                return  # a reset is not retransmitted: the far side never hears of it
            if not silent.is_set():
                dst.close()  # a cut cable carries no close either
            elif dst is up_writer:
                self.fins_held.append(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def broker() -> object:
    service = BrokerService(users=[User(username="u1", password="pw", accounts=("DU1",))])
    await service.start()
    server = BrokerLinkServer(service, host="127.0.0.1", port=0, session_grace=1.0)
    await server.start()
    yield service, server
    await server.stop()
    await service.stop()


async def test_a_silent_link_is_ib_link_loss_then_restored_with_the_session_kept(broker) -> None:
    service, server = broker
    relay = Relay(server.port)
    port = RemoteBrokerPort(
        host="127.0.0.1", port=await relay.start(), silence=0.6, reconnect_every=0.1
    )
    heard: list[GatewayEvent] = []
    try:
        await port.connect()
        port.subscribe(gateway="gw-a", listener=heard.append)
        await until(lambda: service.connected_gateways() == ["gw-a"], 5, what="subscribed")
        await _login(port)
        session = service.session_of_gateway("gw-a")
        assert session is not None

        relay.partition()
        # A request made into the dead link fails within the silence bound, it does not hang.
        with pytest.raises(LinkError):
            await asyncio.wait_for(port.now(), 5)
        await until(lambda: port.reconnects == 1, 5, what="the link re-established")
        await until(
            lambda: FaultEvent("gw-a", Fault.LINK, active=False, value=1102) in heard,
            5,
            what="1102 after the reconnect",
        )
        links = [e for e in heard if isinstance(e, FaultEvent) and e.fault is Fault.LINK]
        assert [(e.active, e.value) for e in links] == [(True, 0.0), (False, 1102)]
        assert not port.closed.is_set()
        await port.now()

        # The dead connection's end at the broker does not end the new one's subscription.
        relay.close_dead()
        await until(lambda: len(server._conns) == 1, 5, what="the dead connection ended")
        await port.now()
        assert service.connected_gateways() == ["gw-a"]
        # ... nor the session, past the broker's grace: the gateway linked again in time.
        await asyncio.sleep(1.5)  # the grace must pass with nothing happening: no condition
        assert service.session_of_gateway("gw-a") is session
    finally:
        await port.close()
        await relay.stop()


async def _login(port: RemoteBrokerPort) -> None:
    outcome = await port.begin_login(
        gateway="gw-a",
        username="u1",
        password="pw",
        presents_token=False,
        existing_session_action="primary",
    )
    assert outcome.kind is LoginKind.LOGGED_IN, outcome


async def test_a_lost_link_keeps_the_session_for_the_grace_a_closed_one_ends_it(broker) -> None:
    service, server = broker
    relay = Relay(server.port)
    port = RemoteBrokerPort(host="127.0.0.1", port=await relay.start(), silence=30)
    await port.connect()
    port.subscribe(gateway="gw-a", listener=lambda _: None)
    await _login(port)
    relay.partition()
    relay.close_dead(broker_side_only=True)  # the broker's side is reset; the gateway's is not
    await until(lambda: not server._conns, 5, what="the broker saw the reset")
    assert service.session_of_gateway("gw-a") is not None
    await until(lambda: service.session_of_gateway("gw-a") is None, 5, what="the grace ended")
    await port.close()
    await relay.stop()

    closing = RemoteBrokerPort(host="127.0.0.1", port=server.port)
    await closing.connect()
    closing.subscribe(gateway="gw-a", listener=lambda _: None)
    await _login(closing)
    await closing.close()  # the gateway's process ended: its session ends with the link
    await until(lambda: service.session_of_gateway("gw-a") is None, 0.9, what="session ended")


async def test_a_gateway_giving_up_on_a_dead_link_keeps_its_session(broker) -> None:
    """Chaos seed 20261201 again: the gateway closed the dead connection with a FIN, TCP
    delivered it once the partition healed, and the broker read it as "the gateway's process
    ended" and ended the session. The gateway linked again without one: its orders filled at
    the broker and no report reached it. A gateway that gives up on a link now resets it."""
    service, server = broker
    relay = Relay(server.port)
    port = RemoteBrokerPort(
        host="127.0.0.1", port=await relay.start(), silence=0.4, reconnect_every=0.1
    )
    heard: list[GatewayEvent] = []
    try:
        await port.connect()
        port.subscribe(gateway="gw-a", listener=heard.append)
        await _login(port)
        session = service.session_of_gateway("gw-a")
        relay.refuse()
        relay.partition()
        await until(lambda: FaultEvent("gw-a", Fault.LINK, active=True) in heard, 5, what="1100")
        await relay.heal()
        await until(lambda: port.reconnects == 1, 5, what="the link re-established")
        await until(lambda: ("gw-a", True) in _owned(server), 5, what="subscribed again")
        assert service.session_of_gateway("gw-a") is session
        assert not [e for e in heard if getattr(e, "fault", None) is Fault.SESSION_ENDED]
        placed = await port.place_order(
            gateway="gw-a", client_id=1, request=_buy(), accounts=["DU1"]
        )
        assert not isinstance(placed, Reject), placed
        await until(
            lambda: any(isinstance(e, OrderEvent) for e in heard), 5, what="the order's report"
        )
    finally:
        await port.close()
        await relay.stop()


async def test_a_gateway_back_after_its_session_ended_is_told_and_refused(broker) -> None:
    """Away past the broker's grace: the session is over, as when another login displaces
    the gateway. It hears so when it links again, and IB takes no order from it."""
    service, server = broker
    relay = Relay(server.port)
    port = RemoteBrokerPort(
        host="127.0.0.1", port=await relay.start(), silence=0.4, reconnect_every=0.1
    )
    heard: list[GatewayEvent] = []
    try:
        await port.connect()
        port.subscribe(gateway="gw-a", listener=heard.append)
        await _login(port)
        relay.refuse()
        relay.partition()
        relay.close_dead(broker_side_only=True)
        await until(lambda: service.session_of_gateway("gw-a") is None, 5, what="grace over")
        await relay.heal()
        await until(
            lambda: FaultEvent("gw-a", Fault.SESSION_ENDED, active=True) in heard,
            5,
            what="told its session ended",
        )
        refused = await port.place_order(
            gateway="gw-a", client_id=1, request=_buy(), accounts=["DU1"]
        )
        assert isinstance(refused, Reject) and refused.code == 201, refused
    finally:
        await port.close()
        await relay.stop()


def _owned(server: BrokerLinkServer) -> set[tuple[str, bool]]:
    return {(name, not task.done()) for name, task in server._owners.items()}


def _buy() -> OrderRequest:
    return OrderRequest(
        order_id=1,
        con_id=0,
        symbol="AAPL",
        sec_type="STK",
        exchange="SMART",
        currency="USD",
        action="BUY",
        total_quantity=1,
        order_type="MKT",
        order_ref="ref-1",
    )


async def test_a_link_the_broker_closes_is_not_retried(broker) -> None:
    _, server = broker
    port = RemoteBrokerPort(host="127.0.0.1", port=server.port, silence=5, reconnect_every=0.1)
    await port.connect()
    port.subscribe(gateway="gw-a", listener=lambda _: None)
    await port.now()
    await server.stop()
    await asyncio.wait_for(port.closed.wait(), 5)
    assert port.reconnects == 0
    with pytest.raises(LinkError):
        await port.now()
    await port.close()


async def test_a_link_that_stays_dead_gives_up_and_closes(broker) -> None:
    _, server = broker
    relay = Relay(server.port)
    port = RemoteBrokerPort(
        host="127.0.0.1",
        port=await relay.start(),
        silence=0.4,
        reconnect_for=0.8,
        reconnect_every=0.1,
    )
    try:
        await port.connect()
        await port.now()  # the relay carries it: the partition below cuts a live connection
        relay.partition()
        assert relay.server is not None
        relay.server.close()  # nothing answers any more: the broker is out of reach
        await asyncio.wait_for(port.closed.wait(), 5)
        assert port.reconnects == 0
    finally:
        await port.close()
        await relay.stop()
