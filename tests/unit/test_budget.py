"""Login budget per username, restart retry window and full-jitter backoff."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import budget as bg

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _ledger(limit: int, *attempts: tuple[str, datetime]) -> bg.Ledger:
    """A login ledger the way the supervisor keeps one: a budget per username."""
    ledger: bg.Ledger = {}
    for username, at in attempts:
        budget = ledger.get(username) or bg.Budget(limit=limit, window=HOUR)
        ledger[username] = budget.record(at)
    return ledger


def test_login_budget_allows_n_logins_per_hour_then_refuses() -> None:
    budget = bg.Budget(limit=3, window=HOUR)
    for minute in (0, 10, 20):
        now = T0 + timedelta(minutes=minute)
        assert budget.allows(now)
        budget = budget.record(now)
    assert not budget.allows(T0 + timedelta(minutes=30))
    assert budget.used(T0 + timedelta(minutes=30)) == 3


def test_login_budget_window_slides() -> None:
    budget = bg.Budget(limit=2, window=HOUR).record(T0).record(T0 + timedelta(minutes=40))
    assert not budget.allows(T0 + timedelta(minutes=59))
    assert budget.next_allowed(T0 + timedelta(minutes=59)) == T0 + HOUR
    assert budget.allows(T0 + HOUR)


def test_login_ledger_keeps_usernames_apart() -> None:
    ledger = _ledger(1, ("alice", T0))
    assert not ledger["alice"].allows(T0)
    assert "bob" not in ledger


def test_login_ledger_round_trips_through_json() -> None:
    ledger = _ledger(3, ("alice", T0), ("bob", T0 + HOUR / 2))
    record = json.loads(json.dumps(bg.ledger_to_record(ledger)))
    again = bg.ledger_from_record(record, limit=3)
    assert again == ledger


def test_login_ledger_record_leaves_out_usernames_without_attempts() -> None:
    ledger = {"alice": bg.Budget(limit=3, window=HOUR)}
    assert bg.ledger_to_record(ledger) == {}


def test_login_ledger_record_errors_name_the_username_and_index() -> None:
    with pytest.raises(bg.BudgetRecordError, match=r"login ledger\['alice'\]\[1\]"):
        bg.ledger_from_record({"alice": [T0.isoformat(), "yesterday"]}, limit=3)
    with pytest.raises(bg.BudgetRecordError, match="no UTC offset"):
        bg.ledger_from_record({"bob": ["2026-03-02T12:00:00"]}, limit=3)
    with pytest.raises(bg.BudgetRecordError, match="list of timestamps"):
        bg.ledger_from_record({"bob": "2026-03-02T12:00:00+00:00"}, limit=3)


def test_a_budget_prunes_attempts_older_than_its_window() -> None:
    budget = bg.Budget(limit=3, window=HOUR).record(T0).record(T0 + HOUR)
    assert budget.pruned(T0 + HOUR + timedelta(minutes=1)).events == (T0 + HOUR,)


def test_restart_window_refuses_beyond_its_budget_and_frees_up() -> None:
    window = bg.Budget(limit=2, window=timedelta(minutes=30))
    window = window.record(T0).record(T0 + timedelta(minutes=5))
    assert not window.allows(T0 + timedelta(minutes=10))
    assert window.allows(T0 + timedelta(minutes=30, seconds=1))


def test_sliding_window_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="limit"):
        bg.Budget(limit=-1, window=HOUR)
    with pytest.raises(ValueError, match="positive"):
        bg.Budget(limit=1, window=timedelta(0))
    with pytest.raises(ValueError, match="timezone-aware"):
        bg.Budget(limit=1, window=HOUR).allows(datetime(2026, 1, 1))


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    policy = bg.BackoffPolicy(base=timedelta(seconds=30), cap=timedelta(minutes=5))
    ceilings = [policy.ceiling(n).total_seconds() for n in range(6)]
    assert ceilings == [30, 60, 120, 240, 300, 300]
    assert policy.ceiling(10_000) == timedelta(minutes=5)


def test_backoff_without_rng_is_the_ceiling() -> None:
    policy = bg.BackoffPolicy(base=timedelta(seconds=10), cap=timedelta(minutes=1))
    assert policy.delay(2, rng=None) == timedelta(seconds=40)


def test_full_jitter_is_reproducible_with_a_seeded_rng() -> None:
    policy = bg.BackoffPolicy()
    first = [policy.delay(n, rng=random.Random(7)) for n in range(5)]
    again = [policy.delay(n, rng=random.Random(7)) for n in range(5)]
    other = [policy.delay(n, rng=random.Random(8)) for n in range(5)]
    assert first == again
    assert first != other


def test_backoff_policy_rejects_cap_below_base() -> None:
    with pytest.raises(ValueError, match="cap"):
        bg.BackoffPolicy(base=timedelta(minutes=2), cap=timedelta(minutes=1))
    with pytest.raises(ValueError, match="attempt"):
        bg.backoff_ceiling(-1, base=timedelta(seconds=1), cap=timedelta(seconds=2))


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(min_value=0, max_value=200),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_full_jitter_stays_within_zero_and_the_ceiling(attempt: int, seed: int) -> None:
    base, cap = timedelta(seconds=5), timedelta(minutes=10)
    delay = bg.full_jitter_delay(attempt, base=base, cap=cap, rng=random.Random(seed))
    assert timedelta(0) <= delay <= bg.backoff_ceiling(attempt, base=base, cap=cap) <= cap


@settings(max_examples=200, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=4 * 3600), max_size=40),
    limit=st.integers(min_value=1, max_value=6),
)
def test_a_window_that_only_records_when_allowed_never_exceeds_its_limit(
    offsets: list[int], limit: int
) -> None:
    window = bg.Budget(limit=limit, window=HOUR)
    for offset in sorted(offsets):
        now = T0 + timedelta(seconds=offset)
        if window.allows(now):
            window = window.record(now)
        assert window.used(now) <= limit
        if not window.allows(now):
            assert window.next_allowed(now) > now
            assert window.allows(window.next_allowed(now))
