"""deploy/prometheus and deploy/grafana checked by the real tools.

``promtool`` tests every alerting rule; then Debian's Prometheus (started here on a free loopback
port, with a temporary config and data directory) scrapes a live ``ibfleet run`` on the
in-process simulator, evaluates the rules itself and every rule expression and dashboard query
through its HTTP API; any error, and any metric name ibfleet does not export, fails the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.config import GatewayConfig
from supervisor.lifecycle import State
from tests.integration.sim_fleet_file import free_port, sim_fleet, terminate

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "ibfleet-rules.yml"
RULE_TESTS = sorted((REPO / "deploy" / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = REPO / "deploy" / "grafana" / "ibfleet.json"
EXE = str(Path(sys.executable).with_name("ibfleet"))
#: Series Prometheus makes itself, which rules and panels may use beside ibfleet's own.
PROMETHEUS_OWN = {"up", "ALERTS"}
#: Grafana's variables, as a Prometheus with a 1 s scrape interval can evaluate them.
GRAFANA_VARS = {"$__rate_interval": "10s", "$__interval": "2s", "$__range": "1m", "$instance": ".*"}


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: .ci/run installs Debian's prometheus package")
        pytest.skip(f"{name} is not installed (Debian: apt-get install prometheus)")
    return found


def rule_exprs() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_exprs() -> dict[str, str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {f"{p['title']} [{t['refId']}]": t["expr"] for p in panels for t in p.get("targets", [])}


def grafana_free(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
    return expr


_FUNCTIONS_AND_WORDS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metric_names(expr: str) -> set[str]:
    """The series names an expression selects (labels, functions and keywords removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = _FUNCTIONS_AND_WORDS.sub(" ", text)
    words = set(re.findall(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()", text))
    return words - {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def exported_names(exposition: str) -> set[str]:
    """Every sample name /metrics can carry, from its TYPE lines (a labelled counter with no
    series yet still has its TYPE line)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "gauge": ("",),
        "summary": ("", "_count", "_sum", "_created"),
        "info": ("_info",),
    }
    out: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            if kind == "counter":
                # The text format names a counter's family with its _total already.
                name = name.removesuffix("_total")
            out.update(name + s for s in suffixes.get(kind, ("",)))
    return out


def test_metric_names_are_parsed_out_of_expressions() -> None:
    expr = (
        'sum by (gateway, le) (rate(ibfleet_heartbeat_rtt_seconds_bucket{instance=~"a|b"}[1m]))'
        ' unless on(job) up{job="ibfleet"} == 0 or absent(ALERTS)'
    )
    assert metric_names(expr) == {"ibfleet_heartbeat_rtt_seconds_bucket", "up", "ALERTS"}


def test_every_rule_has_a_promtool_case_that_fires_it() -> None:
    fired: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    assert set(rule_exprs()) - fired == set()


def test_promtool_checks_and_tests_the_rules() -> None:
    promtool = tool("promtool")
    check = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    result = subprocess.run(
        [promtool, "test", "rules", *map(str, RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_the_dashboard_names_every_lifecycle_state() -> None:
    panel = next(
        p for p in json.loads(DASHBOARD.read_text())["panels"] if p["title"] == "Gateway state"
    )
    texts = {o["text"] for o in panel["fieldConfig"]["defaults"]["mappings"][0]["options"].values()}
    assert texts == {s.name for s in State}


# ------------------------------------------------------------------------------ live


def wait(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[str]:
    """``ibfleet run`` on deploy/sim.yaml (free ports, no 2FA) with the pinger strategy."""
    data, api = sim_fleet(tmp_path)
    data["strategies"] = [
        {
            "name": "pinger",
            "plugin": "pinger",
            "gateways": ["sim-a", "sim-b"],
            "client_id": 10,
            "params": {"interval_seconds": 0.5},
        }
    ]
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "IBFLEET_API_TOKEN": "token-for-the-prometheus-test"}
    # A file, not a pipe: nobody reads a pipe while the test runs, and a full one blocks.
    log = (tmp_path / "ibfleet.log").open("w+")
    proc = subprocess.Popen([EXE, "run", "-c", str(path)], env=env, stderr=log, text=True)
    url = f"http://127.0.0.1:{api}"
    try:
        wait(
            lambda: (
                proc.poll() is None and httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            ),
            60,
            "the supervisor's /readyz",
        )
        yield url
    finally:
        terminate(proc)
        stderr = (tmp_path / "ibfleet.log").read_text()
        log.close()
        assert "Traceback" not in stderr, stderr[-3000:]


@pytest.fixture
def prometheus(tmp_path: Path, supervisor: str) -> Iterator[str]:
    binary = tool("prometheus")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "ibfleet",
                "static_configs": [{"targets": [supervisor.removeprefix("http://")]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait(
            lambda: (
                proc.poll() is None and httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
            ),
            60,
            "Prometheus to be ready",
        )
        yield url
    finally:
        terminate(proc)
        log.close()
        assert proc.returncode == 0, (tmp_path / "prometheus.log").read_text()[-3000:]


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


def value(prom: str, expr: str) -> dict[str, float]:
    return {
        r["metric"].get("gateway") or r["metric"].get("strategy") or "": float(r["value"][1])
        for r in query(prom, expr)
    }


@pytest.mark.slow  # about 40 s: a supervisor, Prometheus and a dozen scrapes
def test_rules_and_dashboard_evaluate_on_a_live_supervisor(
    supervisor: str, prometheus: str
) -> None:
    exposition = httpx.get(f"{supervisor}/metrics", timeout=5).text
    exported = exported_names(exposition) | PROMETHEUS_OWN

    # Scraped for a while, both gateways ready, the pinger's orders seen.
    wait(
        lambda: value(prometheus, 'count_over_time(up{job="ibfleet"}[1m])').get("", 0) >= 12,
        60,
        "scrapes",
    )
    wait(lambda: len(value(prometheus, "ibfleet_gateway_ready == 1")) == 2, 60, "ready gateways")
    wait(lambda: query(prometheus, 'ibfleet_orders_total{outcome="sent"}'), 60, "a sent order")

    unknown: dict[str, set[str]] = {}
    expressions = {**{f"rule {k}": v for k, v in rule_exprs().items()}, **dashboard_exprs()}
    for where, expr in expressions.items():
        names = metric_names(expr)
        assert names, f"{where}: no metric name found in {expr}"
        if names - exported:
            unknown[where] = names - exported
        query(prometheus, grafana_free(expr))
    assert unknown == {}, f"names ibfleet does not export: {unknown}"

    # Prometheus evaluated every rule itself, without an error; a healthy fleet fires none.
    def evaluated() -> list[dict[str, Any]] | None:
        body = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()
        rules = [r for g in body["data"]["groups"] for r in g["rules"]]
        done = all(r.get("lastEvaluation", "").startswith("20") for r in rules)
        return rules if done and len(rules) == len(rule_exprs()) else None

    rules = wait(evaluated, 30, "every rule evaluated")
    assert {r["name"]: (r["health"], r.get("lastError", "")) for r in rules} == {
        name: ("ok", "") for name in rule_exprs()
    }
    firing = {r["name"] for r in rules if r.get("state") == "firing"}
    assert firing == set(), firing

    # The panels show the fleet as it is.
    panels = dashboard_exprs()
    codes = value(prometheus, grafana_free(panels["Gateway state [A]"]))
    ready_code = [s.name for s in State].index("API_READY")
    assert codes == {"sim-a": ready_code, "sim-b": ready_code}
    assert len(value(prometheus, grafana_free(panels["Heartbeat round trip (p50, p95) [B]"]))) == 2
    limit = GatewayConfig.model_fields["logins_per_hour"].default
    assert value(prometheus, "ibfleet_login_budget_remaining") == {
        "sim-a": limit - 1,
        "sim-b": limit - 1,
    }
    assert value(prometheus, "ibfleet_journal_writable") == {"": 1.0}
    assert value(prometheus, grafana_free(panels["Orders that may be live at IB [A]"])) == {
        "pinger": 0
    }
    assert value(prometheus, 'ibfleet_strategy_state{state="RUNNING"}') == {"pinger": 1}
