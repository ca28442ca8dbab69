"""A gateway in "container mode" (entrypoint logic, in this process) reaching the broker over
the TCP link: real clients trade through it, faults travel the link, IBC exit codes hold."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from gateway.config import TradingMode
from ibsim import auth, ibclog
from ibsim.entrypoint import (
    EXIT_CRASHED,
    ConfigError,
    GatewayProcess,
    run_container,
    serve_broker,
)
from ibsim.settings import image_env, parse_auto_restart_time, read_settings, sim_env
from tests.integration.ibsim.conftest import Clients
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
    base = image_env(username="simuser1", password="pw") | sim_env(
        broker=("127.0.0.1", link_port), gateway_name="container-gw", api_port=0, command_port=0
    )
    base.update(extra)
    return base


def read_env(values: dict[str, str]):
    def read_file(path: str) -> bytes:
        with open(path, "rb") as handle:
            return handle.read()

    return read_settings(values, read_file=read_file)


def users(twofa: bool = False) -> list[auth.User]:
    return [
        auth.User(
            username="simuser1",
            password="pw",
            accounts=("DU7000001",),
            twofa_required=twofa,
            mode=TradingMode.LIVE if twofa else TradingMode.PAPER,
        )
    ]


async def start_process(
    link_port: int, **extra: str
) -> tuple[GatewayProcess, asyncio.Task, list[str]]:
    lines: list[str] = []
    started: list[GatewayProcess] = []
    task = asyncio.create_task(
        run_container(
            read_env(env(link_port, **extra)),
            out=lines.append,
            host="127.0.0.1",
            connect_timeout=5,
            started=started.append,
        )
    )
    await wait_for(lambda: started, what="the process")
    return started[0], task, lines


def ready(process: GatewayProcess) -> bool:
    return process.frontend is not None and process.frontend.ready.is_set()


async def test_remote_gateway_trades_and_stops_on_command(lib, clients: Clients):
    async with broker(users()) as b:
        process, task, lines = await start_process(b.link_port)
        await wait_for(lambda: ready(process) or task.done(), what="logged in")
        ib = await clients.connect(process.api_port)
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
        # STOP through the IBC-style command server: the loop ends, the container exits 0.
        assert process.command_server is not None
        cmd_port = process.command_server.port
        _, writer = await asyncio.open_connection("127.0.0.1", cmd_port)
        writer.write(b"STOP\n")
        await writer.drain()
        assert (await asyncio.wait_for(task, 10)) == 0
        assert lines[-2] == ibclog.GATEWAY_FINISHED
        writer.close()


async def test_2fa_denied_is_a_failed_login_and_a_cold_restart_inside_the_container():
    async with broker(users(twofa=True)) as b:
        process, task, lines = await start_process(b.link_port, TRADING_MODE="live")
        await wait_for(
            lambda: any(ibclog.SECOND_FACTOR_INITIATED in line for line in lines), what="2FA"
        )
        async with httpx.AsyncClient(base_url=b.url) as http:
            assert (await http.post("/2fa/simuser1/deny")).status_code == 200
        await wait_for(lambda: ibclog.COLD_RESTART_SHORTLY in lines, what="cold restart")
        await wait_for(
            lambda: sum(ibclog.SECOND_FACTOR_INITIATED in line for line in lines) == 2,
            what="a new prompt after the relaunch",
        )
        assert not task.done()
        process.stop_requested.set()
        assert await asyncio.wait_for(task, 10) == 0


async def test_crash_fault_exits_non_zero(lib, clients: Clients):
    async with broker(users()) as b:
        process, task, _ = await start_process(b.link_port)
        await wait_for(lambda: ready(process), what="ready")
        async with httpx.AsyncClient(base_url=b.url) as http:
            response = await http.post("/gateways/container-gw/faults/crash", json={"active": True})
            assert response.status_code == 200
        assert await asyncio.wait_for(task, 10) == EXIT_CRASHED


def test_env_contract_errors_name_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="TWS_USERID"):
        read_env({"IBFLEET_SIM_BROKER": "h:1"})
    with pytest.raises(ConfigError, match="TRADING_MODE"):
        read_env(env(1, TRADING_MODE="both"))
    with pytest.raises(ConfigError, match="IBFLEET_SIM_BROKER"):
        read_env(env(1, IBFLEET_SIM_BROKER="nohost"))
    with pytest.raises(ConfigError, match="exclusive"):
        read_env({**env(1), "TWS_PASSWORD_FILE": "/x"})
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    values = env(1)
    del values["TWS_PASSWORD"]
    settings = read_env({**values, "TWS_PASSWORD_FILE": str(secret)})
    assert settings.password == "from-file" and "from-file" not in repr(settings)
    live = read_env({**env(1, TRADING_MODE="live"), "IBFLEET_SIM_API_PORT": ""})
    assert live.api_port == 4003
    assert read_env({**env(1), "IBFLEET_SIM_API_PORT": ""}).api_port == 4004


def test_password_ending_in_a_backslash_swallows_the_next_template_line():
    settings = read_env(env(1, TWS_PASSWORD="secret\\"))
    # The image's template has blank CRLF lines after IbPassword: the blank line ends it.
    assert settings.password == "secret"


def test_auto_restart_time_is_ibc_format():
    assert parse_auto_restart_time("11:45 PM").hour == 23
    with pytest.raises(ConfigError, match="quotes"):
        parse_auto_restart_time("'11:45 PM'")
    with pytest.raises(ConfigError, match="hh:mm"):
        parse_auto_restart_time("23:45")
    with pytest.raises(ConfigError, match="hh:mm"):
        parse_auto_restart_time("9:45 PM")  # Java's "hh" wants two digits
