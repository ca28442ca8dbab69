"""The supervisor's HTTP API against a hand-written fake of the running supervisor."""

from __future__ import annotations

import datetime as dt
import socket

import httpx
import pytest

from supervisor.api import ApiError, ApiServer, create_app
from supervisor.api_views import Action, CommandResult, EventView, GatewayView

TOKEN = "t0ken-for-tests"
NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


class FakeFleet:
    def __init__(self) -> None:
        self.views = {
            "paper-a": GatewayView(
                name="paper-a",
                state="API_READY",
                ready=True,
                should_run=True,
                mode="paper",
                account="DU1",
                since=NOW,
            ),
            "paper-b": GatewayView(
                name="paper-b",
                state="AWAITING_2FA",
                ready=False,
                should_run=True,
                mode="paper",
                account="DU1",
                since=NOW,
                reason="approve the IB Key prompt",
            ),
        }
        self.commands: list[tuple[str, Action]] = []
        self.refuse = False

    def gateways(self) -> list[GatewayView]:
        return list(self.views.values())

    async def events(
        self, *, since_id: int | None, limit: int, gateway: str | None
    ) -> list[EventView]:
        events = [
            EventView(id=i, at=NOW, kind="state", gateway=g, message=f"event {i}")
            for i, g in enumerate(["paper-a", "paper-b", "paper-a"], start=1)
        ]
        events = [e for e in events if since_id is None or e.id > since_id]
        events = [e for e in events if gateway is None or e.gateway == gateway]
        return events[:limit]

    async def command(self, gateway: str, action: Action) -> CommandResult:
        self.commands.append((gateway, action))
        if self.refuse:
            return CommandResult(gateway=gateway, action=action, accepted=False, detail="FATAL")
        return CommandResult(gateway=gateway, action=action, accepted=True, detail="done")

    def metrics(self) -> tuple[bytes, str]:
        return b'ibfleet_gateway_ready{gateway="paper-a"} 1.0\n', "text/plain; version=0.0.4"


@pytest.fixture
def fleet() -> FakeFleet:
    return FakeFleet()


@pytest.fixture
async def client(fleet: FakeFleet) -> httpx.AsyncClient:
    app = create_app(fleet, token=TOKEN, docs=True, allowed_hosts=["api"])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as c:
        yield c


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_healthz_says_the_supervisor_is_alive(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert r.json()["role"] == "leader"


async def test_readyz_is_503_naming_gateways_not_ready(
    client: httpx.AsyncClient, fleet: FakeFleet
) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {"ready": False, "not_ready": ["paper-b"], "problems": []}
    fleet.views["paper-b"] = fleet.views["paper-b"].model_copy(update={"ready": True})
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["ready"] is True


async def test_readyz_ignores_gateways_an_operator_stopped(
    client: httpx.AsyncClient, fleet: FakeFleet
) -> None:
    fleet.views["paper-b"] = fleet.views["paper-b"].model_copy(
        update={"should_run": False, "state": "STOPPED"}
    )
    assert (await client.get("/readyz")).status_code == 200


async def test_metrics_are_served_as_prometheus_text(client: httpx.AsyncClient) -> None:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "ibfleet_gateway_ready" in r.text


async def test_gateways_list_and_one(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/gateways")
    assert [g["name"] for g in r.json()] == ["paper-a", "paper-b"]
    r = await client.get("/api/v1/gateways/paper-b")
    assert r.json()["state"] == "AWAITING_2FA"


async def test_unknown_gateway_is_404_naming_known_ones(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/gateways/nope")
    assert r.status_code == 404
    assert "nope" in r.json()["detail"] and "paper-a" in r.json()["detail"]


async def test_events_filter_by_gateway_and_since(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/events", params={"gateway": "paper-a", "since_id": 1})
    assert [e["id"] for e in r.json()] == [3]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": "many"}, {"since_id": -1}])
async def test_bad_event_queries_are_4xx(client: httpx.AsyncClient, params: dict) -> None:
    r = await client.get("/api/v1/events", params=params)
    assert 400 <= r.status_code < 500


async def test_commands_need_the_bearer_token(client: httpx.AsyncClient, fleet: FakeFleet) -> None:
    r = await client.post("/api/v1/gateways/paper-a/restart")
    assert r.status_code == 401
    r = await client.post(
        "/api/v1/gateways/paper-a/restart", headers={"Authorization": "Bearer wrong"}
    )
    assert r.status_code == 401
    assert fleet.commands == []
    r = await client.post("/api/v1/gateways/paper-a/restart", headers=AUTH)
    assert r.status_code == 200 and r.json()["accepted"] is True
    assert fleet.commands == [("paper-a", Action.RESTART)]


async def test_unknown_action_or_gateway_is_4xx(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/v1/gateways/paper-a/explode", headers=AUTH)).status_code == 422
    assert (await client.post("/api/v1/gateways/nope/stop", headers=AUTH)).status_code == 404


async def test_refused_command_is_409_with_the_reason(
    client: httpx.AsyncClient, fleet: FakeFleet
) -> None:
    fleet.refuse = True
    r = await client.post("/api/v1/gateways/paper-a/start", headers=AUTH)
    assert r.status_code == 409 and r.json()["detail"] == "FATAL"


async def test_commands_are_refused_without_a_configured_token(fleet: FakeFleet) -> None:
    app = create_app(fleet, token=None, allowed_hosts=["api"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        r = await c.post("/api/v1/gateways/paper-a/stop", headers=AUTH)
    assert r.status_code == 403 and "api.token" in r.json()["detail"]
    assert fleet.commands == []


async def test_openapi_document_lists_every_endpoint(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/gateways",
        "/api/v1/gateways/{name}",
        "/api/v1/events",
        "/api/v1/gateways/{name}/{action}",
    } <= set(paths)


async def test_server_runs_in_the_loop_over_real_tcp(fleet: FakeFleet) -> None:
    server = ApiServer(create_app(fleet, token=TOKEN), host="127.0.0.1", port=0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as c:
            assert (await c.get("/healthz")).status_code == 200
    finally:
        await server.stop()


async def test_port_in_use_is_a_clear_error(fleet: FakeFleet) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ApiServer(create_app(fleet, token=TOKEN), host="127.0.0.1", port=port)
        with pytest.raises(ApiError, match=f"127.0.0.1:{port}"):
            await server.start()


# -- hygiene ----------------------------------------------------------------------------------


def _client(app: object, base_url: str = "http://127.0.0.1:8710") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)  # type: ignore[arg-type]


async def test_a_foreign_host_name_is_refused_and_ip_literals_and_localhost_pass(
    fleet: FakeFleet,
) -> None:
    app = create_app(fleet, token=TOKEN, allowed_hosts=["ops.example"])
    async with _client(app) as c:
        for host in ("127.0.0.1:8710", "[::1]:8710", "localhost", "ops.example:8710", "10.0.0.5"):
            assert (await c.get("/healthz", headers={"Host": host})).status_code == 200, host
        for host in ("evil.example", "evil.example:8710", "localhost.evil.example"):
            r = await c.get("/api/v1/gateways", headers={"Host": host})
            assert r.status_code == 421, host
            assert "Host" in r.json()["detail"]
        r = await c.post(
            "/api/v1/gateways/paper-a/restart", headers={"Host": "evil.example", **AUTH}
        )
        assert r.status_code == 421
    assert fleet.commands == []


async def test_docs_and_the_schema_are_off_unless_enabled(fleet: FakeFleet) -> None:
    async with _client(create_app(fleet, token=TOKEN)) as c:
        for path in ("/docs", "/openapi.json", "/redoc"):
            assert (await c.get(path)).status_code == 404, path
    async with _client(create_app(fleet, token=TOKEN, docs=True)) as c:
        assert (await c.get("/docs")).status_code == 200
        assert (await c.get("/openapi.json")).status_code == 200


async def test_a_failing_dependency_is_503_with_a_reason_and_a_refusal_409(
    fleet: FakeFleet,
) -> None:
    class Broken(FakeFleet):
        async def events(
            self, *, since_id: int | None, limit: int, gateway: str | None
        ) -> list[EventView]:
            raise RuntimeError("journal: locked by another process for more than 0.5s")

        async def command(self, gateway: str, action: Action) -> CommandResult:
            raise ValueError("gateway paper-a is down")

    async with _client(create_app(Broken(), token=TOKEN)) as c:
        r = await c.get("/api/v1/events")
        assert r.status_code == 503
        assert "locked" in r.json()["detail"]
        r = await c.post("/api/v1/gateways/paper-a/restart", headers=AUTH)
        assert r.status_code == 409
        assert "down" in r.json()["detail"]
        r = await c.get("/api/v1/events", params={"since_id": 2**64})
        assert r.status_code == 422


async def test_readyz_is_503_while_the_supervisor_has_a_problem(fleet: FakeFleet) -> None:
    fleet.views["paper-b"] = fleet.views["paper-b"].model_copy(update={"ready": True})
    own: list[str] = []
    async with _client(create_app(fleet, token=TOKEN, problems=lambda: list(own))) as c:
        assert (await c.get("/readyz")).status_code == 200
        own.append("journal: the disk is full")
        r = await c.get("/readyz")
        assert r.status_code == 503
        assert r.json() == {"ready": False, "not_ready": [], "problems": own}
