"""The IBC command-server client against the simulator's command server over real TCP."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest

from gateway import ibc
from ibsim import cmdserver
from ibsim.cmdserver import CommandHandlers, IbcCommandServer

pytestmark = pytest.mark.timeout(30)


class Recorder:
    """Hand-written handlers that record calls and can be told to fail."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail_reconnect = False
        self.stopped = asyncio.Event()

    def handlers(self) -> CommandHandlers:
        async def stop() -> None:
            self.calls.append("stop")
            self.stopped.set()

        async def restart() -> None:
            self.calls.append("restart")

        async def pause() -> None:
            self.calls.append("pause")

        async def reconnect_account() -> None:
            self.calls.append("reconnect_account")

        async def reconnect_data() -> None:
            if self.fail_reconnect:
                raise RuntimeError("main window not found")
            self.calls.append("reconnect_data")

        return CommandHandlers(
            stop=stop,
            restart=restart,
            pause=pause,
            reconnect_account=reconnect_account,
            reconnect_data=reconnect_data,
        )


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def server(recorder: Recorder) -> AsyncIterator[IbcCommandServer]:
    async with IbcCommandServer(handlers=recorder.handlers(), host="127.0.0.1", port=0) as srv:
        yield srv


async def talk(port: int, *lines: str, read: int) -> list[str]:
    """Send raw lines on one connection and read ``read`` reply lines (with a deadline)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        for line in lines:
            writer.write(line.encode() + b"\n")
        await writer.drain()
        out = []
        for _ in range(read):
            raw = await asyncio.wait_for(reader.readline(), 5)
            out.append(raw.decode().rstrip("\n"))
        return out
    finally:
        writer.close()


class TestServerDialogue:
    async def test_restart_acks_like_ibc_runs_the_handler_and_closes(
        self, server: IbcCommandServer, recorder: Recorder
    ) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"restart\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), 5) == b"OK RESTART in progress\n"
        # IBC closes the channel after RESTART.
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await server.wait_handlers()
        assert recorder.calls == ["restart"]

    async def test_commands_are_case_insensitive_and_connection_stays_open(
        self, server: IbcCommandServer, recorder: Recorder
    ) -> None:
        replies = await talk(
            server.port, "ReconnectData", "", "RECONNECTACCOUNT", "bogus", "EXIT", read=4
        )
        assert replies == ["OK ", "OK ", "ERROR Command invalid", "OK Goodbye"]
        assert recorder.calls == ["reconnect_data", "reconnect_account"]

    async def test_enableapi_is_rejected_on_gateway(self, server: IbcCommandServer) -> None:
        assert await talk(server.port, "ENABLEAPI", read=1) == [cmdserver.ENABLEAPI_ON_GATEWAY]

    async def test_stop_acks_then_stops_and_a_second_stop_is_refused(
        self, server: IbcCommandServer, recorder: Recorder
    ) -> None:
        assert await talk(server.port, "STOP", read=1) == ["OK Shutting down: STOP command"]
        await asyncio.wait_for(recorder.stopped.wait(), 5)
        assert await talk(server.port, "STOP", read=1) == ["ERROR STOP already in progress"]

    async def test_info_lines_when_not_suppressed(self, recorder: Recorder) -> None:
        async with IbcCommandServer(
            handlers=recorder.handlers(), port=0, suppress_info=False
        ) as srv:
            replies = await talk(srv.port, "PAUSE", read=3)
        assert replies == ["INFO IBC Command Server", "INFO Pausing TWS", "OK PAUSE in progress"]

    async def test_failing_handler_becomes_an_error_reply(
        self, server: IbcCommandServer, recorder: Recorder
    ) -> None:
        recorder.fail_reconnect = True
        assert await talk(server.port, "RECONNECTDATA", read=1) == ["ERROR main window not found"]

    async def test_client_outside_control_from_is_dropped(self, recorder: Recorder) -> None:
        # Bind on all interfaces and connect from a non-loopback address of this host.
        addr = _non_loopback_ipv4()
        if addr is None:
            pytest.skip("no non-loopback IPv4 address on this machine")
        async with IbcCommandServer(
            handlers=recorder.handlers(), host="0.0.0.0", port=0, control_from=["10.255.255.1"]
        ) as srv:
            with pytest.raises(ibc.IbcNoReply, match="ControlFrom"):
                await ibc.send("RESTART", host=addr, port=srv.port, timeout=5)
        assert recorder.calls == []


class TestClient:
    async def test_send_returns_the_ok_reply(
        self, server: IbcCommandServer, recorder: Recorder
    ) -> None:
        reply = await ibc.send("RESTART", host="127.0.0.1", port=server.port, timeout=5)
        assert reply == ibc.IbcReply(status=ibc.ReplyStatus.OK, text="RESTART in progress")
        await server.wait_handlers()
        assert recorder.calls == ["restart"]

    async def test_send_collects_info_lines(self, recorder: Recorder) -> None:
        async with IbcCommandServer(
            handlers=recorder.handlers(), port=0, suppress_info=False
        ) as srv:
            reply = await ibc.send("restart", host="127.0.0.1", port=srv.port, timeout=5)
        assert reply.infos == ("IBC Command Server", "Restarting TWS")

    async def test_error_reply_is_typed(self, server: IbcCommandServer) -> None:
        with pytest.raises(ibc.IbcErrorReply) as caught:
            await ibc.send("ENABLEAPI", host="127.0.0.1", port=server.port, timeout=5)
        assert caught.value.reply.text == "ENABLEAPI is not valid for the IB Gateway"
        assert caught.value.command == "ENABLEAPI"

    async def test_closed_port_is_unreachable(self) -> None:
        port = _closed_port()
        with pytest.raises(ibc.IbcUnreachable, match=f"127.0.0.1:{port}"):
            await ibc.send("RESTART", host="127.0.0.1", port=port, timeout=5)

    async def test_server_that_never_answers_hits_the_deadline(self) -> None:
        accepted = asyncio.Event()
        held: list[asyncio.StreamWriter] = []

        async def silent(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            held.append(w)  # accept, read nothing, answer nothing
            accepted.set()

        silent_server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = silent_server.sockets[0].getsockname()[1]
        try:
            started = time.monotonic()
            with pytest.raises(ibc.IbcTimedOut, match=r"no reply within 0\.5s"):
                await ibc.send("RESTART", host="127.0.0.1", port=port, timeout=0.5)
            elapsed = time.monotonic() - started
            assert accepted.is_set()
            assert 0.4 <= elapsed < 3.0
        finally:
            for w in held:
                w.close()
            silent_server.close()
            await silent_server.wait_closed()

    async def test_connection_closed_without_reply(self) -> None:
        async def rude(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.close()

        rude_server = await asyncio.start_server(rude, "127.0.0.1", 0)
        port = rude_server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ibc.IbcNoReply):
                await ibc.send("STOP", host="127.0.0.1", port=port, timeout=5)
        finally:
            rude_server.close()
            await rude_server.wait_closed()

    async def test_prompt_before_the_reply_is_tolerated(self) -> None:
        async def prompting(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await r.readline()
            w.write(b"ibc> OK RESTART in progress\n")
            await w.drain()
            w.close()

        srv = await asyncio.start_server(prompting, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        try:
            reply = await ibc.send("RESTART", host="127.0.0.1", port=port, timeout=5)
            assert reply.text == "RESTART in progress"
        finally:
            srv.close()
            await srv.wait_closed()

    @pytest.mark.parametrize("bad", ["", "   ", "RESTART\nSTOP", "REST\u00c4RT"])
    async def test_bad_command_is_refused_before_connecting(self, bad: str) -> None:
        with pytest.raises(ValueError, match="IBC command"):
            await ibc.send(bad, host="127.0.0.1", port=1, timeout=1)


def _closed_port() -> int:
    """A port that was just free: bind, note it, close (nothing listens there now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _non_loopback_ipv4() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET: no packet is sent for UDP connect
            addr = str(s.getsockname()[0])
        except OSError:
            return None
    return None if addr.startswith("127.") else addr
