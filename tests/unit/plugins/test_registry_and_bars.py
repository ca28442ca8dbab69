"""Plugin discovery (entry points or module:Class, clear errors) and bars built from prices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from plugins.bar_builder import BarBuilder
from plugins.examples.pinger import Pinger
from plugins.registry import PluginError, load_strategy_class


def test_module_class_loads_a_strategy() -> None:
    assert load_strategy_class("plugins.examples.pinger:Pinger") is Pinger


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        ("no-such-entry-point", "neither an entry point"),
        ("plugins.nope:X", "cannot import plugins.nope"),
        ("plugins.examples.pinger:Nope", "has no Nope"),
        ("plugins.registry:PluginError", "not a subclass of plugins.api.Strategy"),
    ],
)
def test_bad_plugins_fail_with_a_message_naming_the_strategy(plugin: str, message: str) -> None:
    with pytest.raises(PluginError, match=message) as error:
        load_strategy_class(plugin, strategy="s1")
    assert "strategy 's1'" in str(error.value)


T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def test_a_bar_closes_when_a_price_starts_the_next_interval() -> None:
    bars = BarBuilder("AAPL", timedelta(seconds=10))
    assert bars.add(10.0, T0) is None
    assert bars.add(12.0, T0 + timedelta(seconds=3)) is None
    assert bars.add(9.0, T0 + timedelta(seconds=9)) is None
    done = bars.add(11.0, T0 + timedelta(seconds=10))
    assert done is not None
    assert (done.start, done.open, done.high, done.low, done.close, done.count) == (
        T0,
        10.0,
        12.0,
        9.0,
        9.0,
        3,
    )


def test_missing_prices_are_ignored_and_bad_intervals_refused() -> None:
    bars = BarBuilder("AAPL", timedelta(seconds=1))
    assert bars.add(float("nan"), T0) is None
    assert bars.add(-1.0, T0) is None
    with pytest.raises(ValueError, match="AAPL"):
        BarBuilder("AAPL", timedelta(0))
