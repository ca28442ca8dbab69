"""``GET /api/v1/rollout`` and ``POST /api/v1/rollout/apply`` on a real orchestrator over the
fake runtime: a pending change per gateway, a failed canary's block and its lifting, and the
refusals (409 with a reason, 503 before the first pass, 401 without the token)."""

from __future__ import annotations

import datetime as dt

import httpx

from supervisor import rollout_views
from supervisor.api import create_app
from supervisor.api_views import ApplyRequest, ApplyResult, GatewayView, RolloutView
from supervisor.fleet_settings import UpdateWindow
from supervisor.orchestrator import Orchestrator
from tests.unit.test_api import NOW, TOKEN, FakeFleet
from tests.unit.test_rolling import setup, spec

AUTH = {"Authorization": f"Bearer {TOKEN}"}


class RolloutFleet(FakeFleet):
    """The API tests' fake fleet, its rollout read from a real orchestrator."""

    def __init__(self, orch: Orchestrator) -> None:
        super().__init__()
        self.orch = orch
        self.views = {
            name: GatewayView(
                name=name, state="API_READY", ready=True, should_run=True, mode="paper", account="A"
            )
            for name in ("a", "b")
        }

    def gateways(self) -> list[GatewayView]:
        pending = rollout_views.pending(self.orch)
        return [
            v.model_copy(update={"pending_change": pending.get(v.name)})
            for v in self.views.values()
        ]

    def rollout(self) -> RolloutView:
        return rollout_views.rollout(self.orch, NOW)

    async def apply(self, request: ApplyRequest) -> ApplyResult:
        return rollout_views.apply(self.orch, request, NOW)


def client_of(fleet: RolloutFleet) -> httpx.AsyncClient:
    app = create_app(fleet, token=TOKEN, allowed_hosts=["api"])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def changed(orch: Orchestrator) -> None:
    orch.set_desired([spec(n, image="sim:2", port=4100 + i) for i, n in enumerate(["a", "b"])])
    await orch.reconcile_once()
    await orch.wait_rollout()


def closed_window() -> UpdateWindow:
    # Sunday 03:00 for an hour: the clock of the orchestrator tests is never inside it.
    return UpdateWindow.model_validate({"days": ["sun"], "start": "03:00", "length": "1h"})


async def test_before_the_first_pass_apply_is_unavailable_not_an_error() -> None:
    _, _, orch = setup(["a", "b"])
    async with client_of(RolloutFleet(orch)) as client:
        response = await client.post("/api/v1/rollout/apply", json={}, headers=AUTH)
    assert response.status_code == 503
    assert "not compared" in response.json()["detail"]


async def test_nothing_to_apply_is_a_conflict_with_a_reason() -> None:
    _, _, orch = setup(["a", "b"])
    await orch.reconcile_once()
    async with client_of(RolloutFleet(orch)) as client:
        response = await client.post("/api/v1/rollout/apply", json={}, headers=AUTH)
        assert response.status_code == 409
        assert "nothing to apply" in response.json()["detail"]
        unknown = await client.post("/api/v1/rollout/apply", json={"gateways": ["x"]}, headers=AUTH)
        assert unknown.status_code == 404


async def test_apply_needs_the_token() -> None:
    _, _, orch = setup(["a", "b"])
    await orch.reconcile_once()
    async with client_of(RolloutFleet(orch)) as client:
        response = await client.post("/api/v1/rollout/apply", json={})
    assert response.status_code == 401


async def test_a_change_waiting_for_the_window_shows_per_gateway_and_apply_now_runs_it() -> None:
    kit, hooks, orch = setup(["a", "b"], window=closed_window())
    await orch.reconcile_once()
    await changed(orch)
    fleet = RolloutFleet(orch)
    async with client_of(fleet) as client:
        views = (await client.get("/api/v1/gateways")).json()
        pending = {v["name"]: v["pending_change"] for v in views}
        assert {g: p["status"] for g, p in pending.items()} == {"a": "waiting", "b": "waiting"}
        assert "image" in pending["a"]["changed"] and pending["a"]["at"] is not None
        body = (await client.get("/api/v1/rollout")).json()
        assert [p["gateway"] for p in body["pending"]] == ["a", "b"]
        assert body["window_open"] is False and body["window_start"] is not None
        only_b = await client.post("/api/v1/rollout/apply", json={"gateways": ["b"]}, headers=AUTH)
        assert only_b.status_code == 200, only_b.text
        assert "replacing b now" in only_b.json()["detail"]
    await orch.reconcile_once()
    await orch.wait_rollout()
    assert [r.gateway for r in hooks.results] == ["b"]  # a still waits for the window
    await orch.reconcile_once()
    assert set(rollout_views.pending(orch)) == {"a"}
    assert kit.runtime.containers  # nothing removed by the API itself


async def test_failed_canary_shows_blocked_until_apply_lifts_it() -> None:
    _, hooks, orch = setup(["a", "b"])
    await orch.reconcile_once()
    hooks.not_ready.add("a")
    await changed(orch)
    await orch.reconcile_once()
    fleet = RolloutFleet(orch)
    async with client_of(fleet) as client:
        body = (await client.get("/api/v1/rollout")).json()
        assert body["blocked"]["gateway"] == "a" and body["blocked"]["outcome"] == "rolled_back"
        assert {p["status"] for p in body["pending"]} == {"blocked"}
        hooks.not_ready.clear()
        response = await client.post("/api/v1/rollout/apply", json={}, headers=AUTH)
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["unblocked"] == "a"
        assert "retrying after the failure of a" in result["detail"]
    await orch.reconcile_once()
    await orch.wait_rollout()
    await orch.reconcile_once()
    assert orch.blocked is None
    assert rollout_views.pending(orch) == {}
    assert [r.outcome.value for r in hooks.results] == ["rolled_back", "replaced", "replaced"]


def test_an_idle_fleet_has_no_rollout_to_show() -> None:
    view = rollout_views.rollout(setup(["a"])[2], NOW + dt.timedelta(seconds=1))
    assert view.pending == [] and view.blocked is None and view.replacing is None
