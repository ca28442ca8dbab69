"""FleetMetrics: names, labels and values as a Prometheus scrape sees them."""

from __future__ import annotations

import enum

import pytest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.alertpolicy import Redactor
from supervisor.lifecycle import RestartKind
from supervisor.metrics import FleetMetrics, TwoFactorOutcome

STATES = ("STARTING", "AWAITING_2FA", "API_READY", "FATAL")


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def scrape(metrics: FleetMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Sample name + sorted labels -> value, parsed from the exposition text."""
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def names(metrics: FleetMetrics) -> set[str]:
    return {name for name, _ in scrape(metrics)}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000.0)


@pytest.fixture
def metrics(clock: FakeClock) -> FleetMetrics:
    return FleetMetrics(version="0.1.0", gateway_states=STATES, clock=clock)


def test_gateway_state_is_one_hot_over_all_states(metrics: FleetMetrics) -> None:
    metrics.set_gateway_state("paper-a", "AWAITING_2FA")
    metrics.set_gateway_state("paper-a", "API_READY")
    samples = scrape(metrics)
    values = {
        state: samples[("ibfleet_gateway_state", (("gateway", "paper-a"), ("state", state)))]
        for state in STATES
    }
    assert values == {"STARTING": 0, "AWAITING_2FA": 0, "API_READY": 1, "FATAL": 0}


def test_states_may_come_from_an_enum(clock: FakeClock) -> None:
    class State(enum.Enum):
        UP = 1
        DOWN = 2

    m = FleetMetrics(version="x", gateway_states=State, clock=clock)
    m.set_gateway_state("g", State.DOWN)
    s = scrape(m)
    assert s[("ibfleet_gateway_state", (("gateway", "g"), ("state", "DOWN")))] == 1
    assert s[("ibfleet_gateway_state", (("gateway", "g"), ("state", "UP")))] == 0


def test_unknown_state_is_refused_naming_gateway_and_state(metrics: FleetMetrics) -> None:
    with pytest.raises(ValueError, match=r"paper-a.*'SLEEPING'"):
        metrics.set_gateway_state("paper-a", "SLEEPING")


def test_heartbeat_rtt_histogram_buckets_span_1ms_to_5s(metrics: FleetMetrics) -> None:
    metrics.observe_heartbeat("paper-a", 0.004, at=990.0)
    s = scrape(metrics)
    le = {
        dict(labels)["le"] for name, labels in s if name == "ibfleet_heartbeat_rtt_seconds_bucket"
    }
    assert "0.001" in le and "5.0" in le and "+Inf" in le
    bucket = ("ibfleet_heartbeat_rtt_seconds_bucket", (("gateway", "paper-a"), ("le", "0.005")))
    assert s[bucket] == 1
    below = ("ibfleet_heartbeat_rtt_seconds_bucket", (("gateway", "paper-a"), ("le", "0.0025")))
    assert s[below] == 0
    assert s[("ibfleet_heartbeat_rtt_seconds_count", (("gateway", "paper-a"),))] == 1


def test_heartbeat_age_is_computed_at_scrape_time(metrics: FleetMetrics, clock: FakeClock) -> None:
    metrics.observe_heartbeat("paper-a", 0.002, at=995.0)
    key = ("ibfleet_heartbeat_age_seconds", (("gateway", "paper-a"),))
    assert scrape(metrics)[key] == pytest.approx(5.0)
    clock.now = 1_012.5
    assert scrape(metrics)[key] == pytest.approx(17.5)


def test_counters_use_total_suffix_and_labels(metrics: FleetMetrics) -> None:
    metrics.gateway_restarted("paper-a", RestartKind.SOFT)
    metrics.gateway_restarted("paper-a", RestartKind.SOFT)
    metrics.gateway_restarted("paper-a", RestartKind.START)
    metrics.gateway_restarted("paper-a", RestartKind.EXTERNAL)
    metrics.login_attempted("paper-a", "failed")
    metrics.twofa_prompted("paper-a", TwoFactorOutcome.TIMED_OUT)
    metrics.alert_sent("routes[0]", "critical")
    metrics.alert_failed("routes[1]")
    s = scrape(metrics)
    gw = ("gateway", "paper-a")
    assert s[("ibfleet_gateway_restarts_total", (gw, ("kind", "soft")))] == 2
    assert s[("ibfleet_gateway_restarts_total", (gw, ("kind", "start")))] == 1
    assert s[("ibfleet_gateway_restarts_total", (gw, ("kind", "external")))] == 1
    assert s[("ibfleet_logins_total", (gw, ("outcome", "failed")))] == 1
    assert s[("ibfleet_twofa_prompts_total", (gw, ("outcome", "timed_out")))] == 1
    assert s[("ibfleet_alerts_sent_total", (("route", "routes[0]"), ("severity", "critical")))] == 1
    assert s[("ibfleet_alerts_failed_total", (("route", "routes[1]"),))] == 1


def test_ready_farm_and_build_info(metrics: FleetMetrics) -> None:
    metrics.set_gateway_ready("paper-a", True)
    metrics.set_farm("paper-a", "usfarm", False)
    s = scrape(metrics)
    assert s[("ibfleet_gateway_ready", (("gateway", "paper-a"),))] == 1
    assert s[("ibfleet_farm_ok", (("farm", "usfarm"), ("gateway", "paper-a")))] == 0
    assert s[("ibfleet_build_info", (("version", "0.1.0"),))] == 1


def test_strategy_metrics(metrics: FleetMetrics) -> None:
    metrics.set_strategy_state("mr", "SAFE_STATE")
    metrics.order_counted("mr", "sent")
    metrics.safe_state_ran("mr", "gateway_lost", 2.0)
    metrics.failed_over("mr")
    s = scrape(metrics)
    st = ("strategy", "mr")
    assert s[("ibfleet_strategy_state", (("state", "SAFE_STATE"), st))] == 1
    assert s[("ibfleet_strategy_state", (("state", "RUNNING"), st))] == 0
    assert s[("ibfleet_orders_total", (("outcome", "sent"), st))] == 1
    assert s[("ibfleet_safe_state_runs_total", (st, ("trigger", "gateway_lost")))] == 1
    assert s[("ibfleet_safe_state_duration_seconds_sum", (st,))] == 2.0
    assert s[("ibfleet_failovers_total", (st,))] == 1


def test_removing_a_gateway_removes_all_its_series(metrics: FleetMetrics) -> None:
    for gw in ("paper-a", "paper-b"):
        metrics.set_gateway_state(gw, "API_READY")
        metrics.set_gateway_ready(gw, True)
        metrics.observe_heartbeat(gw, 0.01, at=999.0)
        metrics.gateway_restarted(gw, RestartKind.HARD)
        metrics.set_farm(gw, "usfarm", True)
    metrics.remove_gateway("paper-a")
    labelled = [labels for _, labels in scrape(metrics) if ("gateway", "paper-a") in labels]
    assert labelled == []
    still = [labels for _, labels in scrape(metrics) if ("gateway", "paper-b") in labels]
    assert len(still) > 10


def test_removing_a_strategy_removes_its_series(metrics: FleetMetrics) -> None:
    metrics.set_strategy_state("mr", "RUNNING")
    metrics.order_counted("mr", "sent")
    metrics.remove_strategy("mr")
    assert [k for k in scrape(metrics) if ("strategy", "mr") in k[1]] == []


def test_two_instances_do_not_share_series(clock: FakeClock) -> None:
    a = FleetMetrics(version="1", gateway_states=STATES, clock=clock)
    b = FleetMetrics(version="2", gateway_states=STATES, clock=clock)
    a.login_attempted("g", "ok")
    assert ("ibfleet_logins_total", (("gateway", "g"), ("outcome", "ok"))) in scrape(a)
    assert ("ibfleet_logins_total", (("gateway", "g"), ("outcome", "ok"))) not in scrape(b)


def test_a_secret_never_appears_in_a_label(clock: FakeClock) -> None:
    secret = "hunter2-secret-password"
    m = FleetMetrics(
        version="1",
        gateway_states=STATES,
        clock=clock,
        redactor=Redactor(secrets=frozenset({secret})),
    )
    m.login_attempted(f"gw-{secret}", "ok")
    m.alert_failed(f"slack://{secret}")
    body, _ = m.render()
    assert secret not in body.decode()
    assert ("ibfleet_logins_total", (("gateway", "redacted"), ("outcome", "ok"))) in scrape(m)


def test_default_states_are_the_lifecycle_states(clock: FakeClock) -> None:
    from supervisor import lifecycle

    m = FleetMetrics(version="1", clock=clock)
    assert m.gateway_states == tuple(s.name for s in lifecycle.State)
    m.set_gateway_state("g", lifecycle.State.API_READY)
    assert scrape(m)[("ibfleet_gateway_state", (("gateway", "g"), ("state", "API_READY")))] == 1


def test_reset_window_and_journal_health_are_plain_gauges(metrics: FleetMetrics) -> None:
    assert scrape(metrics)[("ibfleet_journal_writable", ())] == 1
    assert scrape(metrics)[("ibfleet_reset_window", ())] == 0
    metrics.set_journal_writable(False)
    metrics.set_reset_window(True)
    assert scrape(metrics)[("ibfleet_journal_writable", ())] == 0
    assert scrape(metrics)[("ibfleet_reset_window", ())] == 1


def test_sampled_gauges_read_their_owner_at_scrape_time(metrics: FleetMetrics) -> None:
    budget = {"gw-a": 4}
    metrics.sample_login_budget(lambda: budget)
    metrics.sample_intents_maybe_live(lambda: {"meanrev": 2})
    metrics.sample_open_alerts(lambda: 3)
    assert scrape(metrics)[("ibfleet_login_budget_remaining", (("gateway", "gw-a"),))] == 4
    budget["gw-a"] = 0
    got = scrape(metrics)
    assert got[("ibfleet_login_budget_remaining", (("gateway", "gw-a"),))] == 0
    assert got[("ibfleet_intents_maybe_live", (("strategy", "meanrev"),))] == 2
    assert got[("ibfleet_alerts_open", ())] == 3


def test_a_broken_sample_source_leaves_the_rest_of_the_scrape(metrics: FleetMetrics) -> None:
    def broken() -> dict[str, int]:
        raise RuntimeError("owner gone")

    metrics.sample_login_budget(broken)
    metrics.set_gateway_ready("gw-a", True)
    got = scrape(metrics)
    assert got[("ibfleet_gateway_ready", (("gateway", "gw-a"),))] == 1
    assert not [k for k in got if k[0] == "ibfleet_login_budget_remaining"]


def test_sampled_label_values_are_redacted(clock: FakeClock) -> None:
    metrics = FleetMetrics(version="0.1.0", clock=clock, redactor=Redactor(["hunter2"]))
    metrics.sample_intents_maybe_live(lambda: {"s-hunter2": 1})
    assert scrape(metrics)[("ibfleet_intents_maybe_live", (("strategy", "redacted"),))] == 1
