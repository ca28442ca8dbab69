"""Client id leases: the probe's reserved id, strategy leases, and rotation after error 326."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.leases import ClientIdLeases, NoClientIdFree

T0 = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC)


def test_probe_id_is_reserved_and_never_leased() -> None:
    leases = ClientIdLeases(start=1, end=3, probe_id=3)
    assert leases.probe == 3
    assert {leases.lease("a", now=T0), leases.lease("b", now=T0)} == {1, 2}
    with pytest.raises(NoClientIdFree):
        leases.lease("c", now=T0)


def test_preferred_id_is_given_when_free() -> None:
    leases = ClientIdLeases(start=1, end=49, probe_id=49)
    assert leases.lease("meanrev", now=T0, prefer=10) == 10
    assert leases.lease("other", now=T0, prefer=10) == 1


def test_a_holder_keeps_its_id() -> None:
    leases = ClientIdLeases(start=1, end=49, probe_id=49)
    first = leases.lease("a", now=T0)
    assert leases.lease("a", now=T0) == first


def test_326_parks_the_id_for_a_cooldown_and_moves_the_holder() -> None:
    leases = ClientIdLeases(start=1, end=3, probe_id=3, cooldown=dt.timedelta(minutes=2))
    assert leases.lease("a", now=T0) == 1
    assert leases.rotate("a", now=T0) == 2
    leases.release("a")
    # 1 is cooling down, so the next lease skips it until the cool-down ends
    assert leases.lease("b", now=T0 + dt.timedelta(minutes=1)) == 2
    assert leases.lease("c", now=T0 + dt.timedelta(minutes=3)) == 1


def test_the_probe_rotates_within_the_range() -> None:
    leases = ClientIdLeases(start=1, end=3, probe_id=3)
    assert leases.rotate(ClientIdLeases.PROBE, now=T0) == 1
    assert leases.probe == 1


def test_rotation_with_nothing_free_keeps_the_refused_id() -> None:
    leases = ClientIdLeases(start=1, end=2, probe_id=2)
    leases.lease("a", now=T0)
    with pytest.raises(NoClientIdFree):
        leases.rotate("a", now=T0)
    assert leases.held_by("a") == 1


def test_probe_id_outside_the_range_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        ClientIdLeases(start=1, end=3, probe_id=9)
