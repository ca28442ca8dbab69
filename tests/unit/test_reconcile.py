"""The pure reconcile planner: desired specs vs observed containers -> actions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from gateway.config import GatewayConfig
from gateway.runtime import ContainerState, ObservedContainer
from gateway.spec import LABEL_FLEET, LABEL_GATEWAY, ContainerSpec, GatewaySecrets
from gateway.spec_render import render_spec
from supervisor.reconcile import Action, ActionKind, PlanError, plan

FLEET = "prod"
T0 = datetime(2024, 6, 3, 14, 0, tzinfo=UTC)


def spec(name: str, *, port: int = 4100, fleet: str = FLEET, password: str = "pw") -> ContainerSpec:
    gw = GatewayConfig.model_validate(
        {
            "name": name,
            "mode": "paper",
            "account": "DU1234567",
            "username": {"env": "U"},
            "password": {"env": "P"},
            "api_port": port,
        }
    )
    return render_spec(
        gw,
        fleet=fleet,
        network=f"ibfleet-{fleet}",
        image="ibfleet-sim:test",
        timezone="UTC",
        secrets=GatewaySecrets(username=SecretStr("u"), password=SecretStr(password)),
        fingerprint_key=b"k" * 32,
    )


def observed(
    s: ContainerSpec,
    *,
    cid: str | None = None,
    state: ContainerState = ContainerState.RUNNING,
    **changes: Any,
) -> ObservedContainer:
    fields: dict[str, Any] = {
        "id": cid or f"id-{s.gateway}",
        "name": s.name,
        "state": state,
        "labels": s.label_map,
        "started_at": T0,
    }
    fields.update(changes)
    return ObservedContainer(**fields)


def kinds(actions: list[Action]) -> list[tuple[ActionKind, str]]:
    return [(a.kind, a.gateway) for a in actions]


class TestCreateStartAdopt:
    def test_missing_gateway_is_created(self) -> None:
        a = spec("a")
        (action,) = plan([a], [], fleet=FLEET)
        assert (action.kind, action.spec) == (ActionKind.CREATE, a)

    def test_matching_running_container_is_adopted_untouched(self) -> None:
        a = spec("a")
        (action,) = plan([a], [observed(a)], fleet=FLEET)
        assert action.kind is ActionKind.ADOPT
        assert not action.kind.changes_something

    @pytest.mark.parametrize("state", [ContainerState.EXITED, ContainerState.CREATED])
    def test_stopped_container_that_should_run_is_started(self, state: ContainerState) -> None:
        a = spec("a")
        (action,) = plan([a], [observed(a, state=state)], fleet=FLEET)
        assert action.kind is ActionKind.START
        assert action.container is not None and action.container.id == "id-a"

    def test_dead_container_is_recreated(self) -> None:
        a = spec("a")
        (action,) = plan([a], [observed(a, state=ContainerState.DEAD)], fleet=FLEET)
        assert action.kind is ActionKind.RECREATE

    def test_removing_container_is_waited_for(self) -> None:
        a = spec("a")
        (action,) = plan([a], [observed(a, state=ContainerState.REMOVING)], fleet=FLEET)
        assert action.kind is ActionKind.WAIT


class TestDrift:
    def test_changed_spec_recreates_only_that_gateway(self) -> None:
        a, b = spec("a"), spec("b", port=4101)
        b_new = spec("b", port=4200)
        actions = plan([a, b_new], [observed(a), observed(b)], fleet=FLEET)
        assert kinds(actions) == [(ActionKind.RECREATE, "b"), (ActionKind.ADOPT, "a")]
        recreate = next(x for x in actions if x.kind is ActionKind.RECREATE)
        assert recreate.spec == b_new
        assert recreate.container is not None and recreate.container.id == "id-b"

    def test_password_change_is_drift(self) -> None:
        old, new = spec("a", password="one"), spec("a", password="two")
        (action,) = plan([new], [observed(old)], fleet=FLEET)
        assert action.kind is ActionKind.RECREATE

    def test_drifted_container_of_a_held_gateway_is_left_alone(self) -> None:
        old, new = spec("a", port=1), spec("a", port=2)
        (action,) = plan([new], [observed(old)], fleet=FLEET, hold=frozenset({"a"}))
        assert action.kind is ActionKind.ADOPT

    def test_duplicate_containers_keep_the_matching_one(self) -> None:
        a = spec("a")
        stale = observed(
            a, cid="old", name="ibfleet-prod-a-old", labels=spec("a", port=9).label_map
        )
        actions = plan([a], [observed(a, cid="new"), stale], fleet=FLEET)
        assert [(x.kind, x.container.id if x.container else None) for x in actions] == [
            (ActionKind.REMOVE, "old"),
            (ActionKind.ADOPT, "new"),
        ]


class TestOwnership:
    def test_orphan_of_this_fleet_is_removed(self) -> None:
        a, gone = spec("a"), spec("gone")
        actions = plan([a], [observed(a), observed(gone)], fleet=FLEET)
        assert kinds(actions) == [(ActionKind.REMOVE, "gone"), (ActionKind.ADOPT, "a")]

    def test_container_of_another_fleet_is_never_touched(self) -> None:
        other = spec("a", fleet="other")
        actions = plan([], [observed(other)], fleet=FLEET)
        assert actions == []

    def test_unlabelled_container_with_our_name_is_a_conflict_not_a_target(self) -> None:
        a = spec("a")
        squatter = ObservedContainer(
            id="squat", name=a.name, state=ContainerState.EXITED, labels={"x": "y"}
        )
        (action,) = plan([a], [squatter], fleet=FLEET)
        assert action.kind is ActionKind.CONFLICT
        assert action.container is squatter
        assert "no ibfleet label" in action.reason

    def test_other_fleets_container_with_our_name_is_a_conflict(self) -> None:
        a = spec("a")
        squatter = observed(a, cid="x", labels={LABEL_FLEET: "other", LABEL_GATEWAY: "a"})
        (action,) = plan([a], [squatter], fleet=FLEET)
        assert action.kind is ActionKind.CONFLICT
        assert "other" in action.reason

    def test_container_labelled_for_fleet_without_gateway_label_is_an_orphan(self) -> None:
        odd = ObservedContainer(
            id="odd",
            name="ibfleet-prod-x",
            state=ContainerState.RUNNING,
            labels={LABEL_FLEET: FLEET},
        )
        (action,) = plan([], [odd], fleet=FLEET)
        assert (action.kind, action.gateway) == (ActionKind.REMOVE, "ibfleet-prod-x")


class TestHold:
    def test_held_absent_gateway_is_not_created(self) -> None:
        (action,) = plan([spec("a")], [], fleet=FLEET, hold=frozenset({"a"}))
        assert action.kind is ActionKind.WAIT

    def test_held_stopped_gateway_is_not_started(self) -> None:
        a = spec("a")
        actions = plan(
            [a], [observed(a, state=ContainerState.EXITED)], fleet=FLEET, hold=frozenset({"a"})
        )
        assert kinds(actions) == [(ActionKind.WAIT, "a")]


class TestInputErrors:
    def test_spec_of_another_fleet_is_refused_with_its_index(self) -> None:
        with pytest.raises(PlanError, match=r"desired\[1\].*'b'.*'other'"):
            plan([spec("a"), spec("b", fleet="other")], [], fleet=FLEET)

    def test_duplicate_gateway_is_refused(self) -> None:
        with pytest.raises(PlanError, match="appears twice"):
            plan([spec("a"), spec("a", port=9)], [], fleet=FLEET)


def test_removals_come_before_creations() -> None:
    actions = plan([spec("new")], [observed(spec("old"))], fleet=FLEET)
    assert kinds(actions) == [(ActionKind.REMOVE, "old"), (ActionKind.CREATE, "new")]


_NAMES = st.sampled_from(["a", "b", "c", "d"])
_STATES = st.sampled_from(list(ContainerState))


@given(
    desired=st.sets(_NAMES),
    present=st.dictionaries(
        _NAMES, st.tuples(_STATES, st.booleans(), st.sampled_from([FLEET, "other", None]))
    ),
    hold=st.frozensets(_NAMES),
)
def test_plan_invariants(
    desired: set[str],
    present: dict[str, tuple[ContainerState, bool, str | None]],
    hold: frozenset[str],
) -> None:
    specs = [spec(n) for n in sorted(desired)]
    containers = []
    for name, (state, drifted, fleet) in present.items():
        labels = dict(spec(name, port=9 if drifted else 4100).label_map)
        if fleet is None:
            labels = {}
        elif fleet != FLEET:
            labels[LABEL_FLEET] = fleet
        containers.append(observed(spec(name), state=state, labels=labels))
    actions = plan(specs, containers, fleet=FLEET, hold=hold)
    for action in actions:
        # Never touch a container this fleet does not own.
        if action.container is not None and action.container.fleet != FLEET:
            assert action.kind is ActionKind.CONFLICT
        # Never start or create a held gateway.
        if action.gateway in hold:
            assert not action.starts_container
    # Every desired gateway gets exactly one decision about its main container.
    main = [a for a in actions if a.kind is not ActionKind.REMOVE]
    assert sorted(a.gateway for a in main) == sorted(desired)
    # Mutations come first.
    flags = [a.kind.changes_something for a in actions]
    assert flags == sorted(flags, reverse=True)
