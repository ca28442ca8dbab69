"""A chaos schedule is the seed's, and keeps its pacing rules."""

from __future__ import annotations

import itertools

import pytest

from tests.chaos.schedule import HOUR, FaultKind, FleetShape, counts, plan

SHAPE = FleetShape(gateways=("gw-a1", "gw-a2", "gw-b"), twofa=("gw-b",), restarts_per_hour=3)
CONTAINER = {
    FaultKind.KILL,
    FaultKind.PAUSE,
    FaultKind.PARTITION,
    FaultKind.DAILY_RESTART,
    FaultKind.TWOFA_UNANSWERED,
    FaultKind.LOGIN_REFUSED,
}
RESTARTS = {FaultKind.KILL, FaultKind.TWOFA_UNANSWERED, FaultKind.LOGIN_REFUSED}


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    assert plan(11, events=200, shape=SHAPE) == plan(11, events=200, shape=SHAPE)
    assert plan(11, events=200, shape=SHAPE) != plan(12, events=200, shape=SHAPE)


@pytest.mark.parametrize("seed", range(20))
def test_a_long_schedule_keeps_the_pacing_rules(seed: int) -> None:
    steps = plan(seed, events=1000, shape=SHAPE)
    assert len(steps) == 1000
    assert [s.index for s in steps] == list(range(1000))
    assert all(a.at <= b.at for a, b in itertools.pairwise(steps))
    for gateway in SHAPE.gateways:
        held = [s for s in steps if s.gateway == gateway and s.kind in CONTAINER]
        for a, b in itertools.pairwise(held):
            assert b.at >= a.end, (a.describe(), b.describe())
        restarts = [s.at for s in steps if s.gateway == gateway and s.kind in RESTARTS]
        for i, start in enumerate(restarts):
            assert len([r for r in restarts[i:] if r < start + HOUR]) <= 3
    stops = [s for s in steps if s.kind.value.startswith("supervisor")]
    for a, b in itertools.pairwise(stops):
        assert b.at >= a.end + SHAPE.supervisor_spacing
    assert all(s.gateway in SHAPE.twofa for s in steps if s.kind is FaultKind.TWOFA_UNANSWERED)


def test_every_kind_is_drawn_and_overlaps_happen() -> None:
    steps = plan(3, events=1000, shape=SHAPE)
    assert all(n > 0 for n in counts(steps).values()), counts(steps)
    overlapping = sum(1 for a, b in itertools.pairwise(steps) if b.at < a.end)
    assert overlapping > 50


def test_bad_shapes_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="2FA gateways"):
        FleetShape(gateways=("gw-a",), twofa=("gw-x",))
    with pytest.raises(ValueError, match="at least one gateway"):
        FleetShape(gateways=())
    with pytest.raises(ValueError, match="mean_gap"):
        plan(1, events=3, shape=SHAPE, mean_gap=0)
