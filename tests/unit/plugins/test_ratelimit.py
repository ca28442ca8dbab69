"""The order token bucket: the rate holds over time, bursts are bounded, 45/s is the cap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.ratelimit import TokenBucket


def test_a_full_bucket_allows_a_burst_then_refuses() -> None:
    bucket = TokenBucket(rate=10)
    assert all(bucket.try_take(100.0) for _ in range(10))
    assert not bucket.try_take(100.0)
    assert bucket.wait_time(100.0) == pytest.approx(0.1)


def test_tokens_refill_at_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=1)
    assert bucket.try_take(0.0)
    assert not bucket.try_take(0.05)
    assert bucket.try_take(0.1)


def test_time_going_backwards_never_adds_tokens() -> None:
    bucket = TokenBucket(rate=10, burst=1)
    assert bucket.try_take(5.0)
    assert not bucket.try_take(4.0)
    assert not bucket.try_take(5.0)


@pytest.mark.parametrize("rate", [0, -1, 45.5, 50])
def test_rates_outside_ib_pacing_are_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        TokenBucket(rate=rate)


@given(
    rate=st.floats(min_value=0.5, max_value=45),
    steps=st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=200),
)
def test_messages_over_any_window_never_exceed_burst_plus_rate_times_elapsed(
    rate: float, steps: list[float]
) -> None:
    bucket = TokenBucket(rate=rate)
    now, taken = 0.0, 0
    for step in steps:
        now += step
        while bucket.try_take(now):
            taken += 1
    assert taken <= bucket.burst + rate * now + 1e-6
