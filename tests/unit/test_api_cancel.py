"""Cancel by criteria over the HTTP API: authenticated like kill, 4xx/409 with a reason, never a
500; against a fake strategy host, then the real host on the fake broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from plugins import api
from plugins.host import StrategyState
from supervisor.api import create_app
from supervisor.api_views import StrategyView
from supervisor.strategy_wiring import HostControl
from tests.unit.plugins.host_harness import rig
from tests.unit.test_api import AUTH, TOKEN, FakeFleet
from tests.waiting import until


def view(name: str) -> StrategyView:
    return StrategyView(
        name=name,
        plugin="p",
        state="RUNNING",
        gateway="gw-a",
        client_id=11,
        open_orders=1,
        orders_sent=1,
        orders_refused=0,
        fills=0,
        safe_state_runs=0,
        failovers=0,
        unknown_intents=0,
        last_error=None,
    )


class FakeHost:
    def __init__(self) -> None:
        self.calls: list[tuple[str | None, str | None, bool, bool]] = []
        self.ok = True
        self.error: Exception | None = None

    def strategies(self) -> list[StrategyView]:
        return [view("s1"), view("s2")]

    async def halt(self, name: str) -> StrategyView:
        return view(name)

    async def resume(self, name: str, *, gateway: str | None) -> StrategyView:
        return view(name)

    async def kill(self, name: str | None, *, flatten: bool) -> list[dict[str, object]]:
        return []

    async def cancel(
        self, name: str | None, *, symbol: str | None, all_orders_on_account: bool, dry_run: bool
    ) -> list[dict[str, object]]:
        self.calls.append((name, symbol, all_orders_on_account, dry_run))
        if self.error is not None:
            raise self.error
        return [{"strategy": name, "ok": self.ok, "detail": "" if self.ok else "no session"}]


@pytest.fixture
def host() -> FakeHost:
    return FakeHost()


@pytest.fixture
async def client(host: FakeHost) -> Any:
    app = create_app(FakeFleet(), token=TOKEN, strategies=host)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as c:
        yield c


async def test_cancel_endpoints_need_the_bearer_token(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/cancel", "/api/v1/strategies/s1/cancel"):
        assert (await client.post(path, json={})).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.post(path, json={}, headers=wrong)).status_code == 401


async def test_a_strategys_cancel_passes_its_symbol_filter(
    client: httpx.AsyncClient, host: FakeHost
) -> None:
    answer = await client.post(
        "/api/v1/strategies/s1/cancel", json={"symbol": "AAPL"}, headers=AUTH
    )
    assert answer.status_code == 200 and answer.json()["runs"][0]["strategy"] == "s1"
    assert (await client.post("/api/v1/strategies/s2/cancel", headers=AUTH)).status_code == 200
    assert host.calls == [("s1", "AAPL", False, False), ("s2", None, False, False)]


async def test_the_fleet_cancel_filters_by_strategy_and_symbol_and_the_account_variant_is_explicit(
    client: httpx.AsyncClient, host: FakeHost
) -> None:
    await client.post("/api/v1/cancel", json={}, headers=AUTH)
    await client.post("/api/v1/cancel", json={"strategy": "s2", "symbol": "MSFT"}, headers=AUTH)
    body = {"all_orders_on_account": True, "dry_run": True}
    await client.post("/api/v1/cancel", json=body, headers=AUTH)
    assert host.calls == [
        (None, None, False, False),
        ("s2", "MSFT", False, False),
        (None, None, True, True),
    ]


async def test_bad_cancel_requests_are_4xx_naming_the_problem(
    client: httpx.AsyncClient, host: FakeHost
) -> None:
    unknown = await client.post("/api/v1/strategies/nope/cancel", headers=AUTH)
    assert unknown.status_code == 404 and "s1, s2" in unknown.json()["detail"]
    both = {"strategy": "s1", "all_orders_on_account": True}
    clash = await client.post("/api/v1/cancel", json=both, headers=AUTH)
    assert clash.status_code == 400 and "no strategy" in clash.json()["detail"]
    assert host.calls == []


async def test_nothing_reaching_ib_is_a_409_with_the_reason_never_a_500(
    client: httpx.AsyncClient, host: FakeHost
) -> None:
    host.ok = False
    answer = await client.post("/api/v1/strategies/s1/cancel", headers=AUTH)
    assert answer.status_code == 409 and "no session" in answer.json()["detail"]
    host.error = ConnectionError("no strategy has an open API session to IB")
    body = {"all_orders_on_account": True}
    answer = await client.post("/api/v1/cancel", json=body, headers=AUTH)
    assert answer.status_code == 409 and "open API session" in answer.json()["detail"]
    host.error = RuntimeError("journal locked")
    answer = await client.post("/api/v1/cancel", json={}, headers=AUTH)
    assert answer.status_code == 503 and "journal locked" in answer.json()["detail"]


async def test_the_real_host_cancels_one_symbol_through_the_api(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.host.start()
        runner = r.runner()
        await until(lambda: runner.state is StrategyState.RUNNING, what="running")
        spec = api.OrderSpec(api.Instrument("AAPL"), api.Side.BUY, 1, limit_price=100.0)
        key = (await runner.ctx.place(spec)).key
        app = create_app(FakeFleet(), token=TOKEN, strategies=HostControl(r.host))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as c:
            body = {"symbol": "AAPL", "dry_run": True}
            preview = await c.post("/api/v1/strategies/s1/cancel", json=body, headers=AUTH)
            [run] = preview.json()["runs"]
            assert run["dry_run"] and [o["order_ref"] for o in run["orders"]] == [key]
            assert r.ib.open_refs() == [key]
            done = await c.post("/api/v1/cancel", json={"symbol": "AAPL"}, headers=AUTH)
            assert done.status_code == 200 and done.json()["runs"][0]["ok"] is True
            assert r.ib.open_refs() == []
