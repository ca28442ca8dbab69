"""Intent keys: unique, time-ordered, short enough for orderRef, attributable to a strategy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from plugins.intents import KEY_MAX_LENGTH, IntentState, belongs_to, new_intent_key, strategy_of

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def test_keys_are_unique_and_sort_by_time() -> None:
    rng = random.Random(7)
    keys = [
        new_intent_key("mr", now=T0 + timedelta(milliseconds=i), random_bits=rng.getrandbits)
        for i in range(2000)
    ]
    assert len(set(keys)) == len(keys)
    assert keys == sorted(keys)


def test_same_millisecond_keys_differ_by_their_random_part() -> None:
    rng = random.Random(1)
    a = new_intent_key("mr", now=T0, random_bits=rng.getrandbits)
    b = new_intent_key("mr", now=T0, random_bits=rng.getrandbits)
    # The first 9 of the 16 characters carry 45 of the 48 time bits.
    assert a != b and a[:12] == b[:12]


def test_key_carries_the_strategy_even_with_dashes_in_its_name() -> None:
    key = new_intent_key("mean-rev-2", now=T0, random_bits=random.Random(3).getrandbits)
    assert strategy_of(key) == "mean-rev-2"
    assert belongs_to(key, "mean-rev-2")
    assert not belongs_to(key, "mean-rev")
    assert not belongs_to(key, "rev-2")


@pytest.mark.parametrize("ref", ["", "manual", "mr-", "mr-lowercase00000", "mr-0000000000000000I"])
def test_foreign_order_refs_belong_to_no_strategy(ref: str) -> None:
    assert strategy_of(ref) is None


def test_long_strategy_names_are_refused_with_the_limit() -> None:
    with pytest.raises(ValueError, match="at most 23 characters"):
        new_intent_key("x" * 30, now=T0, random_bits=random.Random(0).getrandbits)
    assert (
        len(new_intent_key("x" * 23, now=T0, random_bits=random.Random(0).getrandbits))
        == KEY_MAX_LENGTH
    )


@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("Submitted", IntentState.ACKED),
        ("Filled", IntentState.FILLED),
        ("ApiCancelled", IntentState.CANCELLED),
        ("Inactive", IntentState.REJECTED),
        ("Weird", IntentState.UNKNOWN),
    ],
)
def test_ib_status_words_map_to_intent_states(word: str, state: IntentState) -> None:
    assert IntentState.from_ib(word) is state


def test_intent_states_mirror_the_journal() -> None:
    from supervisor.journal import IntentStatus

    assert [s.value for s in IntentState] == [s.value for s in IntentStatus]
    assert all(IntentState(s.value).terminal == s.terminal for s in IntentStatus)
