"""The supervisor's journal and metrics satisfy the host's Protocols.

Statically: mypy checks the ``_as_*`` functions below (run ``mypy --strict`` on this file).
At run time: every Protocol method exists with the same parameter names and kinds.
"""

from __future__ import annotations

import inspect

import pytest

from plugins.ports import IntentStore, StrategyMetrics
from supervisor.journal import SqliteJournal
from supervisor.metrics import FleetMetrics


def _as_store(journal: SqliteJournal) -> IntentStore:
    return journal


def _as_metrics(metrics: FleetMetrics) -> StrategyMetrics:
    return metrics


def _methods(protocol: type) -> list[str]:
    return [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")]


@pytest.mark.parametrize(
    ("protocol", "implementation"),
    [(IntentStore, SqliteJournal), (StrategyMetrics, FleetMetrics)],
)
def test_implementation_has_every_protocol_method_with_the_same_parameters(
    protocol: type, implementation: type
) -> None:
    assert _methods(protocol)
    for name in _methods(protocol):
        wanted = inspect.signature(getattr(protocol, name)).parameters
        have = inspect.signature(getattr(implementation, name)).parameters
        shape = [(p.name, p.kind) for p in wanted.values()]
        assert [(p.name, p.kind) for p in have.values()] == shape, (
            f"{implementation.__name__}.{name}"
        )


def test_host_states_are_known_to_the_metrics() -> None:
    from plugins.host import StrategyState

    metrics = FleetMetrics(version="test")  # the defaults: not built from the states checked
    for state in StrategyState:
        metrics.set_strategy_state("s1", state)
        value = metrics.registry.get_sample_value(
            "ibfleet_strategy_state", {"strategy": "s1", "state": state.name}
        )
        assert value == 1, f"the metrics do not show strategy state {state.name}"
