"""The control API's truth endpoints and its answers to bad requests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

from ibsim.fleet import SimFleet
from tests.integration.ibsim.conftest import Clients
from tests.waiting import until as wait_for
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60)


async def test_truth_endpoints_show_orders_positions_gateways(lib, sim: SimFleet, clients: Clients):
    ib = await clients.connect(sim.ports[0], client_id=4)
    contract = lib.Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(contract)
    order = lib.MarketOrder("BUY", 7)
    order.orderRef = "truth-1"
    trade = ib.placeOrder(contract, order)
    await wait_for(lambda: trade.orderStatus.status == "Filled")
    async with httpx.AsyncClient(base_url=sim.control_url) as http:
        assert (await http.get("/healthz")).json() == {"ok": True}
        orders = (await http.get("/orders", params={"order_ref": "truth-1"})).json()
        assert len(orders) == 1
        row = orders[0]
        assert (row["account"], row["gateway"], row["client_id"], row["perm_id"]) == (
            "DU1000001",
            "gw1",
            4,
            trade.order.permId,
        )
        assert [h["status"] for h in row["history"]][-1] == "Filled"
        positions = (await http.get("/positions")).json()
        assert {"account": "DU1000001", "symbol": "AAPL", "quantity": 7.0}.items() <= positions[
            0
        ].items()
        gateways = {g["name"]: g for g in (await http.get("/gateways")).json()}
        assert gateways["gw1"]["logged_in"] and gateways["gw1"]["port"] == sim.ports[0]
        assert 4 in gateways["gw1"]["api_clients"]
        response = await http.put("/prices/MSFT", json={"price": 420.5})
        assert response.status_code == 200
        assert (await http.get("/prices")).json()["MSFT"] == 420.5


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("post", "/gateways/nope/faults/stall", {"active": True}, 404, "nope"),
        ("post", "/gateways/gw1/faults/meltdown", {"active": True}, 422, "meltdown"),
        ("post", "/gateways/gw1/faults/slow", {"active": True, "value": -1}, 422, "value"),
        ("put", "/prices/ZZZZ", {"price": 1.0}, 404, "ZZZZ"),
        ("put", "/prices/AAPL", {"price": -5}, 422, "positive"),
        ("put", "/prices/AAPL", {"price": "cheap"}, 422, "price"),
        ("post", "/2fa/ghost/approve", None, 404, "ghost"),
    ],
)
async def test_bad_requests_get_clear_4xx(sim: SimFleet, method, path, body, status, needle):
    async with httpx.AsyncClient(base_url=sim.control_url) as http:
        response = (
            await getattr(http, method)(path, json=body)
            if body is not None
            else await getattr(http, method)(path)
        )
    assert response.status_code == status
    assert needle in response.text


def test_process_mode_cli_prints_ports_and_serves():
    code = "from ibsim.cli import app; app()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--gateways", "2", "--port-base", "0", "--control-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=os.getcwd(),
    )
    try:
        lines: list[str] = []

        def control_api_line() -> bool:
            line = proc.stdout.readline()
            assert line, f"the CLI ended before it printed its control API: {lines}"
            lines.append(line.strip())
            return "control API" in line

        wait_until(control_api_line, 20, what="the CLI's 'control API' line", step=0)
        assert any(line.startswith("gateway gw1") for line in lines), lines
        url = next(line.split(": ", 1)[1] for line in lines if line.startswith("control API"))
        assert httpx.get(f"{url}/healthz", timeout=5).json() == {"ok": True}
        assert len(httpx.get(f"{url}/gateways", timeout=5).json()) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0


async def test_clock_and_sticky_faults_are_accepted_for_a_relaunching_gateway() -> None:
    import httpx

    from ibsim.control import create_app
    from ibsim.port import Fault
    from ibsim.service import BrokerService

    service = BrokerService()
    app = create_app(service=service)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        reply = await http.post("/gateways/gone/faults/clock", json={"active": True, "value": 90})
        assert reply.status_code == 200
        assert service.gateway_state["gone"][Fault.CLOCK.value] == 90
        assert (await http.put("/clock", json={"offset_seconds": 30})).status_code == 200
        assert service.clock_offset == 30
        reply = await http.post("/gateways/gone/faults/stall", json={"active": True})
        assert reply.status_code == 404  # not sticky: needs the gateway connected


@pytest.mark.parametrize(("host", "dialled"), [("0.0.0.0", "127.0.0.1"), ("::", "[::1]")])
async def test_the_control_url_dials_an_every_interface_bind_on_its_familys_loopback(
    host: str, dialled: str
) -> None:
    from ibsim.control import ControlServer, create_app
    from ibsim.service import BrokerService

    server = ControlServer(create_app(service=BrokerService()), host=host, port=0)
    url = await server.start()
    try:
        assert url.startswith(f"http://{dialled}:")
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/healthz")).json() == {"ok": True}
    finally:
        await server.stop()
