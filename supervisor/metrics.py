"""Prometheus metrics for the fleet and its strategies, in a registry this object owns.

No global registry: each :class:`FleetMetrics` has its own ``CollectorRegistry`` so tests and
several supervisors in one process never see each other's series. Label values are checked
against the fleet's :class:`~supervisor.alertpolicy.Redactor` so a secret never becomes a label.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from plugins.host.status import StrategyState
from supervisor.alertpolicy import Redactor
from supervisor.lifecycle.states import RestartKind, State

__all__ = [
    "DEFAULT_GATEWAY_STATES",
    "DEFAULT_STRATEGY_STATES",
    "HEARTBEAT_BUCKETS",
    "SAFE_STATE_BUCKETS",
    "FleetMetrics",
    "TwoFactorOutcome",
]

# The lifecycle's and the strategy host's own states, so a metric never lags behind them.
DEFAULT_GATEWAY_STATES: tuple[str, ...] = tuple(state.name for state in State)
DEFAULT_STRATEGY_STATES: tuple[str, ...] = tuple(state.name for state in StrategyState)
# 1 ms .. 5 s: a healthy local gateway answers in a few ms, the deadline is about 1 s.
HEARTBEAT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
SAFE_STATE_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

_MASKED = "redacted"

log = logging.getLogger("ibfleet.metrics")

#: What a sampled gauge reads at scrape time: label values (in the gauge's label order) -> value.
Sample = Callable[[], Mapping[tuple[str, ...], float]]


class TwoFactorOutcome(enum.Enum):
    """How a 2FA prompt ended (the ``outcome`` label)."""

    APPROVED = "approved"
    TIMED_OUT = "timed_out"
    DENIED = "denied"


def _value(label: enum.Enum | str) -> str:
    return str(label.value) if isinstance(label, enum.Enum) else str(label)


def _state_names(states: Iterable[Any]) -> tuple[str, ...]:
    names = tuple(s.name if isinstance(s, enum.Enum) else str(s) for s in states)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"metric state list must be non-empty and distinct, got {names}")
    return names


def _default_gateway_states() -> tuple[str, ...]:
    try:
        # Optional until the lifecycle module is written.
        from supervisor import lifecycle
    except ImportError:
        return DEFAULT_GATEWAY_STATES
    state = getattr(lifecycle, "State", None)
    if isinstance(state, type) and issubclass(state, enum.Enum):
        return _state_names(state)
    return DEFAULT_GATEWAY_STATES


class _HeartbeatAge(Collector):
    """``ibfleet_heartbeat_age_seconds``: computed at scrape time from the last good beat."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.last_good: dict[str, float] = {}

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "ibfleet_heartbeat_age_seconds",
            "Seconds since the last good heartbeat of a gateway's API.",
            labels=["gateway"],
        )
        now = self._clock()
        for gateway, at in sorted(self.last_good.items()):
            family.add_metric([gateway], max(0.0, now - at))
        yield family

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "ibfleet_heartbeat_age_seconds",
            "Seconds since the last good heartbeat of a gateway's API.",
            labels=["gateway"],
        )


class _Sampled(Collector):
    """A gauge read from the part that owns the fact, at scrape time.

    For facts that change with time alone (a login budget refills) or that live in one place
    already (the alert book, the strategies' unresolved intents): read where they are, never
    copied into a second place that could disagree. Scrapes run on the supervisor's loop.
    """

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], clean: Callable[[str], str]
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = list(labels)
        self._clean = clean
        self.source: Sample | None = None

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self._name, self._documentation, labels=self._labels)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        if self.source is not None:
            try:
                values = dict(self.source())
            except Exception:
                # One broken source must not fail the scrape (every other series would go too).
                log.exception("metric_source_failed metric=%s", self._name)
                values = {}
            for key, value in sorted(values.items()):
                family.add_metric([self._clean(k) for k in key], float(value))
        yield family

    def describe(self) -> Iterator[Metric]:
        yield self._family()


class FleetMetrics:
    """All ibfleet metric families; methods name what happened, not the metric type."""

    def __init__(
        self,
        *,
        version: str,
        gateway_states: Iterable[Any] | None = None,
        strategy_states: Iterable[Any] | None = None,
        clock: Callable[[], float] = time.time,
        redactor: Redactor | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._gateway_states = (
            _state_names(gateway_states)
            if gateway_states is not None
            else _default_gateway_states()
        )
        self._strategy_states = _state_names(
            strategy_states if strategy_states is not None else DEFAULT_STRATEGY_STATES
        )
        self._redactor = redactor or Redactor()
        self._cleaned: dict[str, str] = {}
        # Label tuples in use per gateway/strategy, so removing one removes all its series.
        self._series: dict[tuple[str, str], set[tuple[Any, tuple[str, ...]]]] = {}
        r = self.registry
        self.gateway_state = Gauge(
            "ibfleet_gateway_state",
            "1 for the gateway's current lifecycle state, 0 for the others.",
            ["gateway", "state"],
            registry=r,
        )
        self.gateway_ready = Gauge(
            "ibfleet_gateway_ready",
            "1 when the gateway is logged in and its API answers a probe in time.",
            ["gateway"],
            registry=r,
        )
        self.heartbeat_rtt = Histogram(
            "ibfleet_heartbeat_rtt_seconds",
            "Round trip of the API heartbeat probe.",
            ["gateway"],
            buckets=HEARTBEAT_BUCKETS,
            registry=r,
        )
        self._heartbeat_age = _HeartbeatAge(clock)
        r.register(self._heartbeat_age)
        self.restarts = Counter(
            "ibfleet_gateway_restarts",
            "Gateway restarts by kind (soft = IBC restart, hard = new login, container).",
            ["gateway", "kind"],
            registry=r,
        )
        self.logins = Counter(
            "ibfleet_logins", "Login attempts by outcome.", ["gateway", "outcome"], registry=r
        )
        self.twofa_prompts = Counter(
            "ibfleet_twofa_prompts",
            "Second-factor prompts by outcome.",
            ["gateway", "outcome"],
            registry=r,
        )
        self.farm_ok = Gauge(
            "ibfleet_farm_ok",
            "1 when the gateway reports the data farm OK, 0 when broken or inactive.",
            ["gateway", "farm"],
            registry=r,
        )
        self.alerts_sent = Counter(
            "ibfleet_alerts_sent",
            "Alert messages delivered, by route and severity.",
            ["route", "severity"],
            registry=r,
        )
        self.alerts_failed = Counter(
            "ibfleet_alerts_failed", "Alert delivery attempts that failed.", ["route"], registry=r
        )
        self.build_info = Gauge(
            "ibfleet_build_info", "Always 1; the version is the label.", ["version"], registry=r
        )
        self.build_info.labels(version=self._clean(version)).set(1)
        self.strategy_state = Gauge(
            "ibfleet_strategy_state",
            "1 for the strategy's current state, 0 for the others.",
            ["strategy", "state"],
            registry=r,
        )
        self.orders = Counter(
            "ibfleet_orders", "Orders by outcome.", ["strategy", "outcome"], registry=r
        )
        self.safe_state_runs = Counter(
            "ibfleet_safe_state_runs",
            "Safe-state runs by trigger.",
            ["strategy", "trigger"],
            registry=r,
        )
        self.safe_state_duration = Histogram(
            "ibfleet_safe_state_duration_seconds",
            "Time from safe-state trigger to a confirmed safe state.",
            ["strategy"],
            buckets=SAFE_STATE_BUCKETS,
            registry=r,
        )
        self.failovers = Counter(
            "ibfleet_failovers", "Strategy moves to a failover gateway.", ["strategy"], registry=r
        )
        self.reset_window = Gauge(
            "ibfleet_reset_window",
            "1 while the fleet's region is in one of IB's reset windows (an expected outage).",
            registry=r,
        )
        self.journal_writable = Gauge(
            "ibfleet_journal_writable",
            "1 while the journal can be written; 0 refuses new orders until it can again.",
            registry=r,
        )
        self.journal_writable.set(1)
        self._login_budget = self._sampled(
            "ibfleet_login_budget_remaining",
            "Logins the gateway's IB username may still attempt in the current hour.",
            ["gateway"],
        )
        self._intents_maybe_live = self._sampled(
            "ibfleet_intents_maybe_live",
            "Order intents of the strategy that may be live at IB and are not reconciled.",
            ["strategy"],
        )
        self._alerts_open = self._sampled(
            "ibfleet_alerts_open", "Alert causes open in ibfleet's alert book.", []
        )

    # -- helpers ---------------------------------------------------------------------------

    def _sampled(self, name: str, documentation: str, labels: Sequence[str]) -> _Sampled:
        collector = _Sampled(name, documentation, labels, self._clean)
        self.registry.register(collector)
        return collector

    def _clean(self, value: str) -> str:
        # A label value that contains a known secret is replaced whole, never partially shown.
        # Label values are few (gateway, farm, route names), so each is checked once.
        cleaned = self._cleaned.get(value)
        if cleaned is None:
            cleaned = value if self._redactor.redact(value) == value else _MASKED
            if len(self._cleaned) < 10_000:
                self._cleaned[value] = cleaned
        return cleaned

    def _labels(self, owner: tuple[str, str], metric: Any, *values: str) -> Any:
        clean = tuple(self._clean(v) for v in values)
        self._series.setdefault(owner, set()).add((metric, clean))
        return metric.labels(*clean)

    def _gw(self, gateway: str) -> tuple[str, str]:
        return ("gateway", self._clean(gateway))

    def _st(self, strategy: str) -> tuple[str, str]:
        return ("strategy", self._clean(strategy))

    # -- gateways --------------------------------------------------------------------------

    @property
    def gateway_states(self) -> tuple[str, ...]:
        """The states the one-hot gauge covers."""
        return self._gateway_states

    def set_gateway_state(self, gateway: str, state: Any) -> None:
        """One-hot: ``state`` is 1, every other known state 0."""
        name = state.name if isinstance(state, enum.Enum) else str(state)
        if name not in self._gateway_states:
            raise ValueError(
                f"gateway {gateway}: unknown lifecycle state {name!r}; "
                f"known: {', '.join(self._gateway_states)}"
            )
        owner = self._gw(gateway)
        for known in self._gateway_states:
            self._labels(owner, self.gateway_state, gateway, known).set(1 if known == name else 0)

    def set_gateway_ready(self, gateway: str, ready: bool) -> None:
        """Readiness as the supervisor judges it (logged in and answering)."""
        self._labels(self._gw(gateway), self.gateway_ready, gateway).set(1 if ready else 0)

    def observe_heartbeat(self, gateway: str, rtt_seconds: float, *, at: float) -> None:
        """A good heartbeat at ``at`` (clock seconds) that took ``rtt_seconds``."""
        self._labels(self._gw(gateway), self.heartbeat_rtt, gateway).observe(rtt_seconds)
        self._heartbeat_age.last_good[self._clean(gateway)] = at

    def gateway_restarted(self, gateway: str, kind: RestartKind) -> None:
        """Count one restart of ``kind`` (the lifecycle's: soft, hard, start, external)."""
        self._labels(self._gw(gateway), self.restarts, gateway, kind.value).inc()

    def login_attempted(self, gateway: str, outcome: enum.Enum | str) -> None:
        """Count one login attempt (``success``, ``failed``, ``twofa_timeout``, ...)."""
        self._labels(self._gw(gateway), self.logins, gateway, _value(outcome)).inc()

    def twofa_prompted(self, gateway: str, outcome: TwoFactorOutcome) -> None:
        """Count one finished 2FA prompt."""
        self._labels(self._gw(gateway), self.twofa_prompts, gateway, outcome.value).inc()

    def set_farm(self, gateway: str, farm: str, ok: bool) -> None:
        """Data farm status from codes 2103/2104, 2105/2106, 2157/2158."""
        self._labels(self._gw(gateway), self.farm_ok, gateway, farm).set(1 if ok else 0)

    def remove_gateway(self, gateway: str) -> None:
        """Drop every series labelled with ``gateway`` (it left the fleet)."""
        owner = self._gw(gateway)
        for metric, labels in self._series.pop(owner, set()):
            metric.remove(*labels)
        self._heartbeat_age.last_good.pop(owner[1], None)

    def set_reset_window(self, active: bool) -> None:
        """The fleet's region entered (True) or left (False) a reset window."""
        self.reset_window.set(1 if active else 0)

    def sample_login_budget(self, source: Callable[[], Mapping[str, int]]) -> None:
        """Read each gateway's remaining login budget at scrape time (it refills with time)."""
        self._login_budget.source = lambda: {(k,): v for k, v in source().items()}

    # -- journal ---------------------------------------------------------------------------

    def set_journal_writable(self, writable: bool) -> None:
        """The journal's health as the journal reports it."""
        self.journal_writable.set(1 if writable else 0)

    # -- alerts ----------------------------------------------------------------------------

    def sample_open_alerts(self, source: Callable[[], int]) -> None:
        """Read the number of open alert causes at scrape time."""
        self._alerts_open.source = lambda: {(): source()}

    def alert_sent(self, route: str, severity: str) -> None:
        """Count one delivered alert message."""
        self.alerts_sent.labels(route=self._clean(route), severity=severity).inc()

    def alert_failed(self, route: str) -> None:
        """Count one failed delivery attempt."""
        self.alerts_failed.labels(route=self._clean(route)).inc()

    # -- strategies ------------------------------------------------------------------------

    def set_strategy_state(self, strategy: str, state: Any) -> None:
        """One-hot over the strategy states."""
        name = state.name if isinstance(state, enum.Enum) else str(state)
        if name not in self._strategy_states:
            raise ValueError(
                f"strategy {strategy}: unknown state {name!r}; "
                f"known: {', '.join(self._strategy_states)}"
            )
        owner = self._st(strategy)
        for known in self._strategy_states:
            self._labels(owner, self.strategy_state, strategy, known).set(1 if known == name else 0)

    def order_counted(self, strategy: str, outcome: str) -> None:
        """Count one order (``sent``, ``rejected_risk``, ``rate_limited``, ``filled``, ...)."""
        self._labels(self._st(strategy), self.orders, strategy, outcome).inc()

    def safe_state_ran(self, strategy: str, trigger: str, duration_seconds: float) -> None:
        """Count one safe-state run and how long it took."""
        owner = self._st(strategy)
        self._labels(owner, self.safe_state_runs, strategy, trigger).inc()
        self._labels(owner, self.safe_state_duration, strategy).observe(duration_seconds)

    def failed_over(self, strategy: str) -> None:
        """Count one failover."""
        self._labels(self._st(strategy), self.failovers, strategy).inc()

    def sample_intents_maybe_live(self, source: Callable[[], Mapping[str, int]]) -> None:
        """Read each strategy's unresolved intents (may be live at IB) at scrape time."""
        self._intents_maybe_live.source = lambda: {(k,): v for k, v in source().items()}

    def remove_strategy(self, strategy: str) -> None:
        """Drop every series labelled with ``strategy``."""
        for metric, labels in self._series.pop(self._st(strategy), set()):
            metric.remove(*labels)

    # -- exposition ------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type, for ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
