"""Golden tests: entitlements, shared accounts across gateways, and every control API fault,
each seen by the real ib_async and ib_insync clients."""

from __future__ import annotations

import asyncio
import math
import time

import httpx
import pytest

from gateway.config import MarketDataEntitlement
from ibsim import auth, ibclog
from ibsim.broker import BrokerConfig
from ibsim.fleet import GatewaySpec, SimFleet
from tests.integration.ibsim.conftest import Clients
from tests.waiting import until as wait_for

pytestmark = pytest.mark.timeout(60)


def user(name: str, account: str, **kwargs) -> auth.User:
    return auth.User(username=name, password="pw", accounts=(account,), **kwargs)


@pytest.fixture
async def shared() -> SimFleet:
    """Two gateways logged in with two usernames on ONE account, plus entitlement users."""
    users = [
        user("alice", "DU2000001"),
        user("bob", "DU2000001"),
        user("dora", "DU2000002", market_data=MarketDataEntitlement.DELAYED),
        user("nina", "DU2000003", market_data=MarketDataEntitlement.NONE),
    ]
    specs = [
        GatewaySpec(name="gw-a", username="alice", password="pw"),
        GatewaySpec(name="gw-b", username="bob", password="pw"),
        GatewaySpec(name="gw-delayed", username="dora", password="pw"),
        GatewaySpec(name="gw-none", username="nina", password="pw"),
    ]
    async with SimFleet.start(
        gateways=specs,
        users=users,
        tick_rate=200.0,
        step_interval=0.02,
        broker_config=BrokerConfig(volatility=0.0),
    ) as fleet:
        yield fleet


async def test_second_gateway_on_same_account_sees_and_cancels_order(
    lib, shared: SimFleet, clients: Clients
):
    first = await clients.connect(shared.frontend("gw-a").port, client_id=1)
    contract = lib.Stock("AAPL", "SMART", "USD")
    await first.qualifyContractsAsync(contract)
    trade = first.placeOrder(contract, lib.LimitOrder("BUY", 5, 150.0))
    await wait_for(lambda: trade.orderStatus.status == "Submitted")
    second = await clients.connect(shared.frontend("gw-b").port, client_id=1)
    seen = await second.reqAllOpenOrdersAsync()
    assert [t.order.permId for t in seen] == [trade.order.permId]
    second.cancelOrder(seen[0].order)
    await wait_for(lambda: trade.orderStatus.status == "Cancelled", what="owner sees cancel")
    await wait_for(lambda: seen[0].orderStatus.status == "Cancelled", what="canceller sees it")
    truth = shared.broker.orders[trade.order.permId]
    assert truth.gateway == "gw-a" and "gw-b" in truth.history[-1].note


async def test_delayed_entitlement_gets_10167_then_delayed_ticks(
    lib, shared: SimFleet, clients: Clients
):
    ib = await clients.connect(shared.frontend("gw-delayed").port)
    errors = []
    ib.errorEvent += lambda req_id, code, *args: errors.append(code)
    contract = lib.Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(contract)
    ib.reqMarketDataType(3)
    ticker = ib.reqMktData(contract)
    await wait_for(lambda: not math.isnan(ticker.last), what="delayed last")
    assert 10167 in errors
    assert ticker.marketDataType == 3


async def test_delayed_entitlement_asking_live_data_gets_354(
    lib, shared: SimFleet, clients: Clients
):
    ib = await clients.connect(shared.frontend("gw-delayed").port)
    errors = []
    ib.errorEvent += lambda req_id, code, *args: errors.append(code)
    contract = lib.Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(contract)
    ib.reqMarketDataType(1)
    ticker = ib.reqMktData(contract)
    await wait_for(lambda: 354 in errors, what="error 354")
    assert 10167 not in errors and math.isnan(ticker.last)


async def test_realtime_entitlement_asking_delayed_data_gets_live_data(
    lib, shared: SimFleet, clients: Clients
):
    ib = await clients.connect(shared.frontend("gw-a").port)
    contract = lib.Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(contract)
    ib.reqMarketDataType(3)
    ticker = ib.reqMktData(contract)
    await wait_for(lambda: not math.isnan(ticker.last), what="live last")
    assert ticker.marketDataType == 1


async def test_no_entitlement_gets_354_and_no_ticks(lib, shared: SimFleet, clients: Clients):
    ib = await clients.connect(shared.frontend("gw-none").port)
    errors = []
    ib.errorEvent += lambda req_id, code, *args: errors.append(code)
    contract = lib.Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(contract)
    ticker = ib.reqMktData(contract)
    await wait_for(lambda: 354 in errors, what="error 354")
    assert math.isnan(ticker.last)


# -- faults through the HTTP control API ---------------------------------------------------


async def post(sim: SimFleet, path: str, json: dict | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sim.control_url, timeout=5) as http:
        return await http.post(path, json=json or {})


async def collect_errors(ib) -> list[int]:
    codes: list[int] = []
    ib.errorEvent += lambda req_id, code, *args: codes.append(code)
    return codes


@pytest.mark.parametrize(("data_lost", "code"), [(False, 1102), (True, 1101)])
async def test_link_lost_and_restored(lib, sim: SimFleet, clients: Clients, data_lost, code):
    ib = await clients.connect(sim.ports[0])
    codes = await collect_errors(ib)
    assert (await post(sim, "/gateways/gw1/link", {"up": False})).status_code == 200
    await wait_for(lambda: 1100 in codes, what="1100")
    assert (
        await post(sim, "/gateways/gw1/link", {"up": True, "data_lost": data_lost})
    ).status_code == 200
    await wait_for(lambda: code in codes, what=str(code))
    assert ib.isConnected()


async def test_farms_broken_and_ok(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    codes = await collect_errors(ib)
    for fault, broken, ok in (("market_farm", 2103, 2104), ("hmds_farm", 2105, 2106)):
        await post(sim, f"/gateways/gw1/faults/{fault}", {"active": True})
        await wait_for(lambda b=broken: b in codes, what=str(broken))
        await post(sim, f"/gateways/gw1/faults/{fault}", {"active": False})
        await wait_for(lambda o=ok: o in codes, what=str(ok))


async def test_stalled_gateway_keeps_socket_open_but_answers_nothing(
    lib, sim: SimFleet, clients: Clients
):
    ib = await clients.connect(sim.ports[0])
    await post(sim, "/gateways/gw1/faults/stall", {"active": True})
    pending = asyncio.ensure_future(ib.reqCurrentTimeAsync())
    done, _ = await asyncio.wait({pending}, timeout=0.5)
    assert not done, "a stalled gateway answered"
    assert ib.isConnected()
    await post(sim, "/gateways/gw1/faults/stall", {"active": False})
    answer = await asyncio.wait_for(pending, 5)
    assert answer.year >= 2024


async def test_drop_clients_disconnects_them(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    await post(sim, "/gateways/gw1/faults/drop_clients", {"active": True})
    await wait_for(lambda: not ib.isConnected(), what="disconnect")
    again = await clients.connect(sim.ports[0], client_id=1)
    assert again.isConnected()


async def test_crashed_gateway_drops_clients_and_stops_listening(
    lib, sim: SimFleet, clients: Clients
):
    ib = await clients.connect(sim.ports[0])
    port = sim.ports[0]
    await post(sim, "/gateways/gw1/faults/crash", {"active": True})
    await wait_for(lambda: not ib.isConnected(), what="disconnect")
    await wait_for(lambda: sim.gateway(0).exit_code == 70, what="the container exited 70")
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_slow_responses_delay_each_reply(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0])
    await post(sim, "/gateways/gw1/faults/slow", {"active": True, "value": 0.5})
    started = time.monotonic()
    await asyncio.wait_for(ib.reqCurrentTimeAsync(), 5)
    assert time.monotonic() - started >= 0.5
    await post(sim, "/gateways/gw1/faults/slow", {"active": False})
    started = time.monotonic()
    await asyncio.wait_for(ib.reqCurrentTimeAsync(), 5)
    assert time.monotonic() - started < 0.5


async def test_rejected_logins_fail_the_gateway_login(sim: SimFleet):
    await sim.gateway(1).stop()
    assert (await post(sim, "/logins/reject", {"active": True})).status_code == 200
    outcome = await sim.login(1)
    assert outcome.kind.value == "failed" and outcome.reason == "rejected"
    # Not bad credentials: LoginErrorDialogHandler's lines, then a cold restart.
    assert any("Login refused (rejected)" in line for line in sim.lines)
    assert any(ibclog.COLD_RESTART_IN_PROGRESS in line for line in sim.lines)
    await post(sim, "/logins/reject", {"active": False})
    assert (await sim.login(1)).kind.value == "logged_in"


async def test_tick_rate_is_settable(lib, sim: SimFleet, clients: Clients):
    response = await post(sim, "/gateways/gw1/faults/tick_rate", {"active": True, "value": 5})
    assert response.status_code == 200
    assert sim.gateway(0).frontend.config.tick_rate == 5
