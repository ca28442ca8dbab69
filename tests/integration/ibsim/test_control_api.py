"""The control API's truth endpoints and its answers to bad requests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from ibsim.fleet import SimFleet
from tests.integration.ibsim.conftest import Clients
from tests.waiting import until as wait_for

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
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("control API" in line for line in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
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
