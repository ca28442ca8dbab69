"""The status page's reads: the heartbeat ring buffer, the schedule view, open alerts, the new
endpoints (public, Host-checked, with the security headers) and the page's static files."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import httpx
import pytest

from gateway import probe as probe_mod
from supervisor import status_views
from supervisor.alertpolicy import Alert, AlertBook, AlertPolicy, Route, Severity
from supervisor.api import create_app
from supervisor.api_views import GatewayView, StrategyView
from supervisor.heartbeats import (
    HISTORY_SPAN,
    MAX_SAMPLES,
    HeartbeatHistory,
    capacity_for,
)
from supervisor.schedules import Region
from supervisor.settings import FleetSettings, load_text
from tests.unit.fake_status import NOW, FakeStatusFleet
from tests.unit.test_supervisor_owners import Harness

T0 = dt.datetime(2026, 11, 18, 17, 0, tzinfo=dt.UTC)  # Wednesday noon in New York

# -- the ring buffer --------------------------------------------------------------------------


def test_history_keeps_the_newest_samples_oldest_first_within_its_capacity() -> None:
    history = HeartbeatHistory(3)
    for i in range(5):
        history.answered(T0 + dt.timedelta(seconds=i), 0.001 * i)
    history.missed(T0 + dt.timedelta(seconds=5))
    samples = history.since(T0)
    assert len(history) == 3 == history.capacity
    assert [s.rtt for s in samples] == [0.003, 0.004, None]
    assert [s.missed for s in samples] == [False, False, True]
    assert samples == sorted(samples, key=lambda s: s.at)


def test_recent_is_the_last_span_before_now() -> None:
    history = HeartbeatHistory(100)
    for minutes in (10, 6, 4, 1):
        history.answered(T0 - dt.timedelta(minutes=minutes), 0.002)
    recent = history.recent(T0)
    assert [T0 - s.at for s in recent] == [dt.timedelta(minutes=4), dt.timedelta(minutes=1)]
    assert len(history.recent(T0, dt.timedelta(minutes=30))) == 4


@pytest.mark.parametrize(
    ("every", "expected"),
    [
        (dt.timedelta(milliseconds=500), 601),
        (dt.timedelta(seconds=60), 6),
        (dt.timedelta(milliseconds=1), MAX_SAMPLES),
    ],
)
def test_capacity_covers_the_span_and_is_bounded(every: dt.timedelta, expected: int) -> None:
    assert capacity_for(every) == expected
    assert capacity_for(every) * every >= min(HISTORY_SPAN, MAX_SAMPLES * every)


def test_bad_history_input_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="capacity"):
        HeartbeatHistory(0)
    with pytest.raises(ValueError, match="period"):
        capacity_for(dt.timedelta(0))
    with pytest.raises(ValueError, match="rtt"):
        HeartbeatHistory(2).answered(T0, float("nan"))
    with pytest.raises(ValueError, match="rtt"):
        HeartbeatHistory(2).answered(T0, -1.0)


# -- the views --------------------------------------------------------------------------------

FLEET = """
fleet: t
timezone: America/New_York
region: {region}
gateways:
  - {{name: gw-a, mode: paper, account: DU1000001, api_port: 4101, username: {{env: U}},
     password: {{env: P}}}}
  - {{name: gw-b, mode: paper, account: DU1000001, api_port: 4102, username: {{env: U}},
     password: {{env: P}}, restart: {{daily: "03:10"}}}}
"""


def _settings(region: str = "america") -> FleetSettings:
    return load_text(FLEET.format(region=region), environ={}).settings


def test_schedule_lists_the_next_window_reauth_and_each_gateways_daily_restart() -> None:
    settings = _settings()
    view = status_views.upcoming(settings, T0)
    assert view.at == T0 and view.timezone == "America/New_York" and view.region == "america"
    kinds = [(e.kind.value, e.gateway) for e in view.events]
    assert sorted(kinds, key=str) == sorted(
        [
            ("reset_window", None),
            ("weekly_reauth", None),
            ("daily_restart", "gw-a"),
            ("daily_restart", "gw-b"),
        ],
        key=str,
    )
    assert [e.at for e in view.events] == sorted(e.at for e in view.events)
    by = {(e.kind.value, e.gateway): e for e in view.events}
    ny = settings.tz
    window = by[("reset_window", None)]
    assert window.at.astimezone(ny).time() == dt.time(23, 30) and not window.active
    assert window.until is not None and window.until.astimezone(ny).time() == dt.time(1, 0)
    # gw-b's own restart.daily; gw-a the fleet's default, inside the nightly window.
    assert by[("daily_restart", "gw-b")].at.astimezone(ny).time() == dt.time(3, 10)
    assert by[("daily_restart", "gw-a")].at.astimezone(ny).time() == (
        settings.default_daily_restart
    )
    reauth = by[("weekly_reauth", None)].at.astimezone(ny)
    assert reauth.weekday() == 6 and reauth.time() == dt.time(1, 0)
    assert all(e.at > T0 for e in view.events)


def test_a_reset_window_in_progress_comes_first_and_is_active() -> None:
    inside = dt.datetime(2026, 11, 19, 5, 10, tzinfo=dt.UTC)  # 00:10 in New York
    view = status_views.upcoming(_settings(), inside)
    first = view.events[0]
    assert first.kind.value == "reset_window" and first.active
    assert first.at <= inside < (first.until or inside)
    assert sum(e.kind.value == "reset_window" for e in view.events) == 2


@pytest.mark.parametrize("region", [r.value for r in Region])
def test_every_region_has_a_schedule_view(region: str) -> None:
    assert status_views.upcoming(_settings(region), T0).region == region


def test_open_alerts_are_the_books_open_causes_redacted() -> None:
    policy = AlertPolicy(routes=(Route("ops"),))
    book = AlertBook(policy=policy)
    book.raise_(Alert("gateway:gw-a:stall", Severity.CRITICAL, "gw-a: stalled", "b"), T0)
    book.raise_(Alert("gateway:gw-b:2fa", Severity.WARNING, "gw-b: approve", "b"), T0)
    book.resolve("gateway:gw-b:2fa", T0)
    alerts = status_views.open_alerts(book)
    assert [(a.key, a.severity, a.title, a.since) for a in alerts] == [
        ("gateway:gw-a:stall", "critical", "gw-a: stalled", T0)
    ]


# -- the endpoints ----------------------------------------------------------------------------


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = create_app(FakeStatusFleet(), token=None)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


async def test_heartbeats_of_a_gateway_and_of_an_unknown_one(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/v1/gateways/paper-b/heartbeats")).json()
    assert body["gateway"] == "paper-b" and body["span_seconds"] == 300.0
    assert [s["rtt_seconds"] for s in body["samples"]] == [0.003, None]
    missing = await client.get("/api/v1/gateways/nope/heartbeats")
    assert missing.status_code == 404 and "paper-a" in missing.json()["detail"]


async def test_alerts_and_schedule_are_public_reads(client: httpx.AsyncClient) -> None:
    alerts = await client.get("/api/v1/alerts")
    assert alerts.status_code == 200 and alerts.json()[0]["severity"] == "critical"
    schedule = (await client.get("/api/v1/schedule")).json()
    assert {e["kind"] for e in schedule["events"]} == {
        "reset_window",
        "daily_restart",
        "weekly_reauth",
    }


async def test_status_is_one_read_of_everything(client: httpx.AsyncClient) -> None:
    status = (await client.get("/api/v1/status")).json()
    assert status["at"] == NOW.isoformat().replace("+00:00", "Z")
    assert [g["name"] for g in status["gateways"]] == ["paper-a", "paper-b"]
    assert [h["gateway"] for h in status["heartbeats"]] == ["paper-a", "paper-b"]
    assert status["strategies"] is None  # none configured: the page says so
    assert status["alerts"][0]["key"] == "gateway:paper-b:2fa"


class _Strategies:
    def strategies(self) -> list[StrategyView]:
        return [
            StrategyView(
                name="pinger",
                plugin="pinger",
                state="RUNNING",
                gateway="paper-a",
                client_id=60,
                open_orders=1,
                orders_sent=3,
                orders_refused=0,
                fills=0,
                safe_state_runs=2,
                failovers=1,
                unknown_intents=0,
                last_error=None,
            )
        ]


async def test_status_lists_the_strategies_when_configured() -> None:
    app = create_app(FakeStatusFleet(), token=None, strategies=_Strategies())  # type: ignore[arg-type]  # reads only
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as client:
        status = (await client.get("/api/v1/status")).json()
    (pinger,) = status["strategies"]
    assert (pinger["gateway"], pinger["safe_state_runs"], pinger["failovers"]) == ("paper-a", 2, 1)


async def test_the_page_is_served_with_a_strict_policy(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    for asset, kind in (("status.js", "text/javascript"), ("status.css", "text/css")):
        served = await client.get(f"/assets/{asset}")
        assert served.status_code == 200 and served.headers["content-type"].startswith(kind)
    # Every answer carries the headers, a JSON one too.
    assert "content-security-policy" in (await client.get("/api/v1/gateways")).headers


@pytest.mark.parametrize(
    "path", ["/assets/nope.js", "/assets/..%2f__init__.py", "/assets/%2e%2e/__init__.py"]
)
async def test_only_the_pages_own_files_are_served(client: httpx.AsyncClient, path: str) -> None:
    answer = await client.get(path)
    assert answer.status_code == 404
    assert b"import" not in answer.content


async def test_the_page_keeps_the_host_check(client: httpx.AsyncClient) -> None:
    refused = await client.get("/", headers={"Host": "evil.example"})
    assert refused.status_code == 421
    assert "content-security-policy" in refused.headers


async def test_the_page_and_reads_are_not_in_the_schema_only_the_reads() -> None:
    app = create_app(FakeStatusFleet(), token="t", docs=True)
    paths = app.openapi()["paths"]
    assert "/" not in paths and "/assets/{asset}" not in paths
    assert {"/api/v1/status", "/api/v1/alerts", "/api/v1/schedule"} <= set(paths)
    assert "/api/v1/gateways/{name}/heartbeats" in paths


async def test_docs_keep_their_own_script_when_enabled() -> None:
    app = create_app(FakeStatusFleet(), token="t", docs=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as client:
        docs = await client.get("/docs")
        page = await client.get("/")
    assert docs.status_code == 200 and "content-security-policy" not in docs.headers
    assert "content-security-policy" in page.headers


# -- the static files -------------------------------------------------------------------------

STATIC = resources.files("supervisor.status_page").joinpath("static")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def test_the_html_has_no_inline_script_or_style_and_nothing_from_elsewhere() -> None:
    parser = _Tags()
    parser.feed(STATIC.joinpath("index.html").read_text())
    for tag, attrs in parser.found:
        assert tag != "style", "inline style"
        assert "style" not in attrs, f"inline style on <{tag}>"
        assert not any(name.startswith("on") for name in attrs), f"inline handler on <{tag}>"
        if tag == "script":
            assert attrs.get("src", "").startswith("/assets/"), attrs
        for name in ("src", "href"):
            value = attrs.get(name)
            assert value is None or value.startswith("/assets/"), f"<{tag} {name}={value}>"


def test_the_script_never_parses_text_as_html() -> None:
    script = STATIC.joinpath("status.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    assert "textContent" in script
    # setAttribute("style"/"on...") would be inline code the policy refuses anyway.
    assert not re.search(r"setAttribute\(\s*[\"'](style|on)", script)


def test_the_static_files_are_package_data_of_the_wheel() -> None:
    config = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"supervisor.status_page" = ["static/*"]' in config
    names = {item.name for item in STATIC.iterdir()}
    assert {"index.html", "status.js", "status.css"} <= names


# -- the supervisor's controller feeds the ring buffer ------------------------------------------


async def test_the_supervisor_serves_its_gateways_heartbeats_and_schedule(
    tmp_path: Path,
) -> None:
    harness = Harness(tmp_path)
    running = await harness.start()
    try:
        controller = harness.controller
        controller._on_probe(probe_mod.ProbeHeartbeat(rtt=0.004))
        controller._on_probe(probe_mod.ProbeHeartbeatMissed(waited=0.8, consecutive=1))
        async with httpx.AsyncClient(base_url=running.api_url, timeout=5) as client:
            beats = (await client.get("/api/v1/gateways/gw/heartbeats")).json()
            status = (await client.get("/api/v1/status")).json()
        assert [s["rtt_seconds"] for s in beats["samples"]] == [0.004, None]
        assert status["heartbeats"][0]["samples"] == beats["samples"]
        assert {e["kind"] for e in status["schedule"]["events"]} >= {
            "daily_restart",
            "weekly_reauth",
        }
        assert status["gateways"][0]["name"] == "gw"
        assert isinstance(GatewayView.model_validate(status["gateways"][0]), GatewayView)
    finally:
        await harness.stop()
