"""The role state machine: lease events in, actions out (one test per transition)."""

from __future__ import annotations

import pytest

from supervisor import leadership as ld

TTL = 5.0


def leading(at: float = 100.0) -> ld.RoleMachine:
    machine = ld.RoleMachine(lease_ttl=TTL)
    machine.step(ld.LeaseTaken(epoch=3, at=at))
    machine.step(ld.LeaderUp())
    return machine


def test_a_standby_tries_for_the_lease_at_every_tick() -> None:
    machine = ld.RoleMachine(lease_ttl=TTL)
    assert machine.role is ld.Role.STANDBY
    assert machine.step(ld.Tick(now=1.0, confirmed_at=None)) == [ld.TryLead()]
    assert not machine.may_act(1.0)


def test_standby_takes_the_lease_and_starts_the_leader() -> None:
    machine = ld.RoleMachine(lease_ttl=TTL)
    assert machine.step(ld.LeaseTaken(epoch=7, at=10.0)) == [ld.StartLeader(7)]
    assert machine.role is ld.Role.STARTING and machine.epoch == 7
    # The leader's parts act while they start (adoption, probes), behind the lease.
    assert machine.may_act(10.0 + TTL - 0.01)


def test_starting_becomes_leader_once_its_parts_are_up() -> None:
    machine = leading()
    assert machine.role is ld.Role.LEADER


def test_a_renewed_lease_keeps_the_leader_acting() -> None:
    machine = leading(at=100.0)
    assert machine.step(ld.Tick(now=104.0, confirmed_at=103.0)) == []
    assert machine.step(ld.Tick(now=107.9, confirmed_at=None)) == []
    assert machine.may_act(107.9)
    assert machine.role is ld.Role.LEADER


def test_a_lease_unrenewed_past_its_length_fences_and_hands_over() -> None:
    machine = leading(at=100.0)
    actions = machine.step(ld.Tick(now=105.0, confirmed_at=100.0))
    assert [type(a) for a in actions] == [ld.Fence, ld.HandOver]
    assert "not renewed for 5.0s" in actions[0].reason  # type: ignore[union-attr]
    assert machine.role is ld.Role.HANDING_OVER
    assert not machine.may_act(105.0)


def test_another_holder_fences_the_leader_at_once() -> None:
    machine = leading()
    actions = machine.step(ld.LeaseLost("epoch 4 is held by host-b"))
    assert actions == [
        ld.Fence("epoch 4 is held by host-b"),
        ld.HandOver("epoch 4 is held by host-b"),
    ]
    assert not machine.may_act(100.1)


def test_a_lease_lost_while_starting_fences_the_start() -> None:
    machine = ld.RoleMachine(lease_ttl=TTL)
    machine.step(ld.LeaseTaken(epoch=1, at=0.0))
    assert [type(a) for a in machine.step(ld.LeaseLost("x"))] == [ld.Fence, ld.HandOver]
    # The start that finishes after the loss does not make it a leader again.
    assert machine.step(ld.LeaderUp()) == []
    assert machine.role is ld.Role.HANDING_OVER


def test_a_second_loss_while_handing_over_asks_nothing_more() -> None:
    machine = leading()
    machine.step(ld.LeaseLost("x"))
    assert machine.step(ld.LeaseLost("y")) == []
    assert machine.step(ld.Tick(now=500.0, confirmed_at=None)) == []


def test_handed_over_waits_as_a_standby_again() -> None:
    machine = leading()
    machine.step(ld.LeaseLost("x"))
    assert machine.step(ld.HandedOver()) == [ld.TryLead()]
    assert machine.role is ld.Role.STANDBY and machine.epoch is None
    assert machine.step(ld.LeaseTaken(epoch=9, at=200.0)) == [ld.StartLeader(9)]
    assert machine.may_act(200.0)


def test_stop_while_standby_exits_at_once() -> None:
    machine = ld.RoleMachine(lease_ttl=TTL)
    assert machine.step(ld.StopRequested()) == [ld.Exit(0)]
    assert machine.role is ld.Role.STOPPED
    assert machine.step(ld.LeaseTaken(epoch=1, at=0.0)) == []  # a late poll answer


def test_stop_while_leading_shuts_down_then_exits() -> None:
    machine = leading()
    assert machine.step(ld.StopRequested()) == [ld.Shutdown()]
    assert machine.role is ld.Role.STOPPING
    # The normal shutdown still acts (gates closed with their policies) under the lease.
    assert machine.may_act(100.5)
    assert machine.step(ld.Stopped()) == [ld.Exit(0)]
    assert machine.role is ld.Role.STOPPED


def test_a_lease_lost_while_stopping_fences_the_rest_of_the_shutdown() -> None:
    machine = leading()
    machine.step(ld.StopRequested())
    assert machine.step(ld.LeaseLost("x")) == [ld.Fence("x")]
    assert not machine.may_act(100.5)
    assert machine.step(ld.Stopped()) == [ld.Exit(0)]


def test_stop_while_handing_over_exits_once_handed_over() -> None:
    machine = leading()
    machine.step(ld.LeaseLost("x"))
    assert machine.step(ld.StopRequested()) == []
    assert machine.step(ld.HandedOver()) == [ld.Exit(0)]
    assert machine.role is ld.Role.STOPPED


def test_a_confirmation_older_than_the_last_does_not_shorten_the_lease() -> None:
    machine = leading(at=100.0)
    machine.step(ld.Tick(now=103.0, confirmed_at=102.0))
    assert machine.step(ld.Tick(now=106.0, confirmed_at=101.0)) == []
    assert machine.may_act(106.9) and not machine.may_act(107.0)


def test_stray_events_change_nothing() -> None:
    machine = ld.RoleMachine(lease_ttl=TTL)
    assert machine.step(ld.LeaseLost("x")) == []
    assert machine.step(ld.LeaderUp()) == []
    assert machine.step(ld.HandedOver()) == []
    assert machine.step(ld.Stopped()) == []
    assert machine.role is ld.Role.STANDBY


def test_a_lease_length_must_be_positive() -> None:
    with pytest.raises(ValueError, match="lease_ttl"):
        ld.RoleMachine(lease_ttl=0)


def test_roles_fall_in_named_groups() -> None:
    assert ld.ACTING <= ld.HOLDING
    assert not (ld.HOLDING & ld.PASSIVE)
    assert set(ld.Role) == ld.HOLDING | ld.PASSIVE
