"""The gateway never crashes on input: garbage frames and malformed requests are logged and
ignored, and the gateway keeps serving (raw sockets, then a real client)."""

from __future__ import annotations

import asyncio
import random
import struct

import pytest

from ibsim import codec
from ibsim.fleet import SimFleet
from ibsim.messages import In
from tests.waiting import until as wait_for

pytestmark = pytest.mark.timeout(60)


async def handshake(port: int, client_id: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"API\0" + codec.frame_payload(b"v157..178"))
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    fields = codec.split_fields(await reader.readexactly(length))
    assert fields[0] == "178"
    writer.write(codec.encode_frame([In.START_API, 2, client_id, ""]))
    return reader, writer


async def read_until(reader: asyncio.StreamReader, msg_id: int) -> list[str]:
    while True:
        (length,) = struct.unpack(">I", await reader.readexactly(4))
        fields = codec.split_fields(await reader.readexactly(length))
        if fields and fields[0] == str(msg_id):
            return fields


async def test_malformed_requests_are_ignored_and_the_session_survives():
    rng = random.Random(1234)
    alphabet = ["", "0", "1", "-1", "abc", "1e400", "nan", "BAG", "STK", "9" * 30, "\x01", "LMT"]
    # pacing off so every malformed message is really parsed
    async with SimFleet.start(gateways=1, control_port=None, max_msg_rate=1_000_000) as sim:
        reader, writer = await handshake(sim.ports[0], client_id=3)
        await read_until(reader, 9)
        ids = [int(i) for i in In if i != In.START_API] + [0, 999, -5]
        for _ in range(400):
            fields = [rng.choice(ids)] + [rng.choice(alphabet) for _ in range(rng.randint(0, 40))]
            writer.write(codec.encode_frame(fields))
            if _ % 40 == 39:
                await writer.drain()
                writer.write(codec.encode_frame([In.REQ_CURRENT_TIME, 1]))
                await asyncio.wait_for(read_until(reader, 49), 5)
        writer.write(codec.encode_frame([In.REQ_CURRENT_TIME, 1]))
        fields = await asyncio.wait_for(read_until(reader, 49), 5)
        assert int(fields[2]) > 0
        writer.close()


async def test_garbage_bytes_close_only_that_socket(lib):
    async with SimFleet.start(gateways=1, control_port=None) as sim:
        _, bad = await asyncio.open_connection("127.0.0.1", sim.ports[0])
        bad.write(b"\xff" * 64)
        await bad.drain()
        ib = lib.IB()
        await ib.connectAsync("127.0.0.1", sim.ports[0], clientId=1, timeout=5)
        assert await asyncio.wait_for(ib.reqCurrentTimeAsync(), 5)
        ib.disconnect()
        bad.close()
        await wait_for(lambda: not sim.frontend(0).sessions, what="sessions gone")
