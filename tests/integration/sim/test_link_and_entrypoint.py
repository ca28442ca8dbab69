"""A gateway in "container mode" (entrypoint logic, in this process) reaching the broker over
the TCP link: real clients trade through it, faults travel the link, IBC exit codes hold."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import httpx
import pytest

from gateway.sim import auth, ibclog
from gateway.sim.entrypoint import (
    EXIT_2FA_TIMEOUT,
    EXIT_CRASHED,
    ConfigError,
    GatewayProcess,
    parse_auto_restart_time,
    read_env,
    serve_broker,
)
from tests.integration.sim.conftest import Clients
from tests.waiting import until as wait_for

pytestmark = pytest.mark.timeout(60)


class Broker:
    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.link_port = 0
        self.url = ""
        self.task: asyncio.Task | None = None


@contextlib.asynccontextmanager
async def broker(users: list[auth.User], auth_config: auth.AuthorityConfig | None = None):
    b = Broker()
    ready = asyncio.Event()

    def on_ready(link: int, url: str) -> None:
        b.link_port, b.url = link, url
        ready.set()

    b.task = asyncio.create_task(
        serve_broker(
            host="127.0.0.1",
            link_port=0,
            control_port=0,
            users=users,
            auth_config=auth_config,
            ready=on_ready,
            stop=b.stop,
        )
    )
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield b
    finally:
        b.stop.set()
        await asyncio.wait_for(b.task, 10)


def env(link_port: int, **extra: str) -> dict[str, str]:
    base = {
        "TWS_USERID": "simuser1",
        "TWS_PASSWORD": "pw",
        "TRADING_MODE": "paper",
        "IBFLEET_SIM_BROKER": f"127.0.0.1:{link_port}",
        "IBFLEET_SIM_GATEWAY_NAME": "container-gw",
        "IBFLEET_SIM_API_PORT": "0",
        "IBFLEET_SIM_COMMAND_PORT": "0",
    }
    base.update(extra)
    return base


def users(twofa: bool = False) -> list[auth.User]:
    return [
        auth.User(username="simuser1", password="pw", accounts=("DU7000001",), twofa_required=twofa)
    ]


async def start_process(
    link_port: int, **extra: str
) -> tuple[GatewayProcess, asyncio.Task, list[str]]:
    lines: list[str] = []
    process = GatewayProcess(read_env(env(link_port, **extra)), out=lines.append, host="127.0.0.1")
    task = asyncio.create_task(process.run(connect_timeout=5))
    return process, task, lines


async def test_remote_gateway_trades_and_stops_on_command(lib, clients: Clients):
    async with broker(users()) as b:
        process, task, lines = await start_process(b.link_port)
        await wait_for(lambda: process.frontend.ready.is_set() or task.done(), what="logged in")
        ib = await clients.connect(process.frontend.port)
        contract = lib.Stock("AAPL", "SMART", "USD")
        await ib.qualifyContractsAsync(contract)
        order = lib.MarketOrder("BUY", 3)
        order.orderRef = "remote-1"
        trade = ib.placeOrder(contract, order)
        await wait_for(lambda: trade.orderStatus.status == "Filled", what="filled over the link")
        ticker = ib.reqMktData(contract)
        await wait_for(
            lambda: ticker.last == ticker.last and ticker.last > 0, what="ticks over link"
        )
        async with httpx.AsyncClient(base_url=b.url) as http:
            orders = (await http.get("/orders")).json()
            assert [(o["order_ref"], o["gateway"]) for o in orders] == [
                ("remote-1", "container-gw")
            ]
            codes: list[int] = []
            ib.errorEvent += lambda req_id, code, *args: codes.append(code)
            await http.post("/gateways/container-gw/link", json={"up": False})
            await wait_for(lambda: 1100 in codes, what="1100 over the link")
        assert any(ibclog.LOGIN_COMPLETED in line for line in lines)
        # STOP through the IBC-style command server
        assert process.command_server is not None
        cmd_port = process.command_server.port
        _, writer = await asyncio.open_connection("127.0.0.1", cmd_port)
        writer.write(b"STOP\n")
        await writer.drain()
        assert (await asyncio.wait_for(task, 10)) == 0
        writer.close()


async def test_2fa_timeout_exits_1111_which_a_shell_sees_as_87():
    quick = auth.AuthorityConfig(twofa_timeout=timedelta(seconds=0.3))
    async with broker(users(twofa=True), quick) as b:
        _, task, lines = await start_process(
            b.link_port, TWOFA_TIMEOUT_ACTION="exit", TWOFA_EXIT_INTERVAL="0"
        )
        code = await asyncio.wait_for(task, 10)
        assert code == EXIT_2FA_TIMEOUT and code % 256 == 87
        assert any(ibclog.CLOSING_AFTER_2FA in line for line in lines)
        assert lines[-1].endswith(ibclog.exiting_with_code(1111))


async def test_2fa_denied_is_a_failed_login_with_cold_restart():
    async with broker(users(twofa=True)) as b:
        _, task, lines = await start_process(b.link_port)
        await wait_for(
            lambda: any(ibclog.SECOND_FACTOR_INITIATED in line for line in lines), what="2FA"
        )
        async with httpx.AsyncClient(base_url=b.url) as http:
            assert (await http.post("/2fa/simuser1/deny")).status_code == 200
        assert await asyncio.wait_for(task, 10) == 1
        assert any(ibclog.COLD_RESTART_IN_PROGRESS in line for line in lines)


async def test_restart_command_relogs_without_2fa(lib, clients: Clients):
    async with broker(users(twofa=True)) as b:
        process, task, lines = await start_process(b.link_port)
        await wait_for(
            lambda: any(ibclog.SECOND_FACTOR_INITIATED in line for line in lines), what="2FA"
        )
        async with httpx.AsyncClient(base_url=b.url) as http:
            await http.post("/2fa/simuser1/approve")
        await wait_for(lambda: process.command_server is not None, what="command server")
        reader, writer = await asyncio.open_connection("127.0.0.1", process.command_server.port)
        before = sum(ibclog.SECOND_FACTOR_INITIATED in line for line in lines)
        writer.write(b"RESTART\n")
        await writer.drain()
        reply = await asyncio.wait_for(reader.readline(), 5)
        assert reply.startswith(b"OK")
        await wait_for(
            lambda: sum(ibclog.LOGIN_COMPLETED in line for line in lines) == 2, what="relogin"
        )
        assert sum(ibclog.SECOND_FACTOR_INITIATED in line for line in lines) == before
        ib = await clients.connect(process.frontend.port)
        assert ib.isConnected()
        process.stop_requested.set()
        assert await asyncio.wait_for(task, 10) == 0
        writer.close()


async def test_crash_fault_exits_non_zero(lib, clients: Clients):
    async with broker(users()) as b:
        process, task, _ = await start_process(b.link_port)
        await wait_for(lambda: process.frontend.ready.is_set(), what="ready")
        async with httpx.AsyncClient(base_url=b.url) as http:
            response = await http.post("/gateways/container-gw/faults/crash", json={"active": True})
            assert response.status_code == 200
        assert await asyncio.wait_for(task, 10) == EXIT_CRASHED


def test_env_contract_errors_name_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="TWS_USERID"):
        read_env({})
    with pytest.raises(ConfigError, match="TRADING_MODE"):
        read_env(env(1, TRADING_MODE="both"))
    with pytest.raises(ConfigError, match="IBFLEET_SIM_BROKER"):
        read_env(env(1, IBFLEET_SIM_BROKER="nohost"))
    with pytest.raises(ConfigError, match="READ_ONLY_API"):
        read_env(env(1, READ_ONLY_API="maybe"))
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    settings = read_env({**env(1), "TWS_PASSWORD_FILE": str(secret)})
    assert settings.password == "from-file" and "from-file" not in repr(settings)
    live = read_env({**env(1, TRADING_MODE="live"), "IBFLEET_SIM_API_PORT": ""})
    assert live.api_port == 4003
    assert read_env({**env(1), "IBFLEET_SIM_API_PORT": ""}).api_port == 4004


def test_auto_restart_time_is_ibc_format():
    assert parse_auto_restart_time("11:45 PM").hour == 23
    with pytest.raises(ConfigError, match="quotes"):
        parse_auto_restart_time("'11:45 PM'")
    with pytest.raises(ConfigError, match="hh:mm"):
        parse_auto_restart_time("23:45")
