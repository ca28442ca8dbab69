"""The rollout planner: what changes per gateway, how, at what login cost, when, in which order."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import pytest
from pydantic import SecretStr

from gateway.config import GatewayConfig
from gateway.runtime import ContainerState, ObservedContainer
from gateway.spec import LABEL_SPEC_PARTS, ContainerSpec, GatewaySecrets
from gateway.spec_render import render_spec
from plugins.config import StrategyConfig
from supervisor import reconcile, rollout
from supervisor.fleet_settings import UpdateWindow
from supervisor.rollout import Change, GatewayFacts, When

FLEET = "prod"
NY = zoneinfo.ZoneInfo("America/New_York")
# A Wednesday, 10:00 in New York.
T0 = dt.datetime(2024, 6, 5, 14, 0, tzinfo=dt.UTC)


def gw_config(name: str, **over: Any) -> GatewayConfig:
    data: dict[str, Any] = {
        "name": name,
        "mode": "paper",
        "account": "DU1234567",
        "username": {"env": "U"},
        "password": {"env": "P"},
        "api_port": 4100 + len(name),
    }
    data.update(over)
    return GatewayConfig.model_validate(data)


def spec(
    name: str, *, image: str = "ibfleet-sim:1", password: str = "pw", **over: Any
) -> ContainerSpec:
    return render_spec(
        gw_config(name, **over),
        fleet=FLEET,
        network="ibfleet-prod",
        image=image,
        timezone="UTC",
        secrets=GatewaySecrets(username=SecretStr("u"), password=SecretStr(password)),
        fingerprint_key=b"k" * 32,
    )


def running(s: ContainerSpec, **changes: Any) -> ObservedContainer:
    fields: dict[str, Any] = {
        "id": f"id-{s.gateway}",
        "name": s.name,
        "state": ContainerState.RUNNING,
        "labels": s.label_map,
        "started_at": T0,
    }
    fields.update(changes)
    return ObservedContainer(**fields)


def plan_of(
    desired: list[ContainerSpec],
    observed: list[ObservedContainer],
    *,
    facts: dict[str, GatewayFacts] | None = None,
    **kw: Any,
) -> rollout.RolloutPlan:
    actions = reconcile.plan(desired, observed, fleet=FLEET)
    return rollout.plan_rollout(actions, facts=facts or {}, now=T0, tz=NY, **kw)


def line(plan: rollout.RolloutPlan, gateway: str) -> rollout.GatewayChange:
    found = plan.of(gateway)
    assert found is not None
    return found


class TestWhatChanges:
    def test_unchanged_fleet_changes_nothing(self) -> None:
        a = spec("a")
        plan = plan_of([a], [running(a)])
        assert not plan.changes_anything
        assert line(plan, "a").change is Change.NONE
        assert line(plan, "a").when is When.NEVER

    @pytest.mark.parametrize(
        ("over", "part"),
        [
            ({"image": "ibfleet-sim:2"}, "image"),
            ({"env": {"JAVA_HEAP_SIZE": "1024"}}, "env"),
            ({"memory_limit": "2g"}, "limits"),
            ({"api_port": 4999}, "ports"),
            ({"password": "other"}, "credentials"),
            ({"read_only": True}, "settings"),
        ],
    )
    def test_each_part_is_named_alone(self, over: dict[str, Any], part: str) -> None:
        old = spec("a")
        new = spec("a", **over)
        plan = plan_of([new], [running(old)])
        got = line(plan, "a")
        assert got.change is Change.RECREATE
        assert got.changed_parts == [part]

    def test_credentials_change_is_not_a_settings_change(self) -> None:
        # config.ini carries the password too; only the credentials part may say so.
        got = line(plan_of([spec("a", password="new")], [running(spec("a"))]), "a")
        assert got.parts["settings"] is False
        assert got.parts["credentials"] is True

    def test_no_value_appears_in_the_plan(self) -> None:
        new = spec("a", image="registry.example/secret-image:9", password="hunter2-secret")
        text = str(plan_of([new], [running(spec("a"))]).to_json())
        assert "hunter2" not in text
        assert "secret-image" not in text

    def test_container_without_parts_label_reports_unknown(self) -> None:
        old = spec("a")
        labels = {k: v for k, v in old.label_map.items() if k != LABEL_SPEC_PARTS}
        got = line(plan_of([spec("a", image="x:2")], [running(old, labels=labels)]), "a")
        assert got.change is Change.RECREATE
        assert set(got.parts.values()) == {None}
        assert got.changed_parts == []

    def test_parts_label_does_not_move_the_spec_hash(self) -> None:
        # A new label of derived digests must not make every running gateway look drifted.
        old = spec("a")
        labels = {k: v for k, v in old.label_map.items() if k != LABEL_SPEC_PARTS}
        assert line(plan_of([old], [running(old, labels=labels)]), "a").change is Change.NONE


class TestLoginCost:
    def test_recreate_costs_a_full_login_and_2fa_on_live(self) -> None:
        facts = {"a": GatewayFacts(name="a", live=True, second_factor=True)}
        got = line(plan_of([spec("a", image="x:2")], [running(spec("a"))], facts=facts), "a")
        assert got.full_login
        assert got.to_json()["needs_2fa"] is True

    def test_paper_recreate_needs_no_2fa(self) -> None:
        facts = {"a": GatewayFacts(name="a")}
        got = line(plan_of([spec("a", image="x:2")], [running(spec("a"))], facts=facts), "a")
        assert got.full_login
        assert got.to_json()["needs_2fa"] is False

    def test_adopted_gateway_costs_no_login(self) -> None:
        facts = {"a": GatewayFacts(name="a", live=True, second_factor=True)}
        got = line(plan_of([spec("a")], [running(spec("a"))], facts=facts), "a")
        assert not got.full_login
        assert got.to_json()["needs_2fa"] is False

    def test_stopped_container_is_started_with_a_full_login(self) -> None:
        a = spec("a")
        got = line(plan_of([a], [running(a, state=ContainerState.EXITED)]), "a")
        assert (got.change, got.full_login, got.rolling) == (Change.START, True, False)


class TestWhen:
    WEEKEND = UpdateWindow(days=["sat"], start="02:00", length="4h")

    def test_without_window_everything_is_now(self) -> None:
        got = line(plan_of([spec("a", image="x:2")], [running(spec("a"))]), "a")
        assert (got.when, got.at) == (When.NOW, None)

    def test_running_recreate_waits_for_the_window(self) -> None:
        got = line(
            plan_of([spec("a", image="x:2")], [running(spec("a"))], window=self.WEEKEND), "a"
        )
        assert got.when is When.WINDOW
        assert got.at == dt.datetime(2024, 6, 8, 2, 0, tzinfo=NY)

    def test_apply_now_overrides_the_window(self) -> None:
        got = line(
            plan_of(
                [spec("a", image="x:2")],
                [running(spec("a"))],
                window=self.WEEKEND,
                now_anyway={"a"},
            ),
            "a",
        )
        assert got.when is When.NOW

    def test_missing_or_dead_gateway_does_not_wait(self) -> None:
        a, b = spec("a"), spec("b")
        plan = plan_of([a, b], [running(b, state=ContainerState.DEAD)], window=self.WEEKEND)
        assert line(plan, "a").when is When.NOW
        assert (line(plan, "b").change, line(plan, "b").when) == (Change.RECREATE, When.NOW)
        assert not line(plan, "b").rolling

    def test_waiting_change_still_counts_as_a_change(self) -> None:
        plan = plan_of([spec("a", image="x:2")], [running(spec("a"))], window=self.WEEKEND)
        assert plan.changes_anything
        assert [g.gateway for g in plan.waiting] == ["a"]


class TestWindowMath:
    def test_open_window_is_found_across_midnight(self) -> None:
        w = UpdateWindow(days=["tue"], start="22:00", length="4h")
        # Wednesday 00:30 New York: inside Tuesday's opening.
        now = dt.datetime(2024, 6, 5, 0, 30, tzinfo=NY)
        got = rollout.window_at(w, tz=NY, now=now)
        assert got.open
        assert got.start == dt.datetime(2024, 6, 4, 22, 0, tzinfo=NY)

    def test_next_opening_is_the_nearest_day(self) -> None:
        w = UpdateWindow(days=["mon", "thu"], start="01:00", length="1h")
        got = rollout.window_at(w, tz=NY, now=T0)
        assert not got.open
        assert got.start == dt.datetime(2024, 6, 6, 1, 0, tzinfo=NY)

    def test_window_opens_at_its_start_and_closes_at_its_end(self) -> None:
        w = UpdateWindow(start="10:00", length="1h")
        at_start = dt.datetime(2024, 6, 5, 10, 0, tzinfo=NY)
        at_end = dt.datetime(2024, 6, 5, 11, 0, tzinfo=NY)
        assert rollout.window_at(w, tz=NY, now=at_start).open
        assert not rollout.window_at(w, tz=NY, now=at_end).open

    def test_window_in_an_open_window_rolls_now(self) -> None:
        w = UpdateWindow(start="09:00", length="2h")  # 10:00 New York is inside
        got = line(plan_of([spec("a", image="x:2")], [running(spec("a"))], window=w), "a")
        assert got.when is When.NOW

    def test_naive_now_is_refused(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            rollout.window_at(
                UpdateWindow(start="09:00", length="2h"), tz=NY, now=dt.datetime(2024, 1, 1)
            )

    def test_bad_window_is_refused_by_name(self) -> None:
        with pytest.raises(ValueError, match=r"days\[1\]: 'someday'"):
            UpdateWindow(days=["sat", "someday"], start="02:00", length="4h")
        with pytest.raises(ValueError, match="length"):
            UpdateWindow(start="02:00", length="1m")


class TestOrder:
    def facts(self) -> dict[str, GatewayFacts]:
        strategies = [
            StrategyConfig.model_validate(
                {"name": "s", "plugin": "p", "gateways": ["primary", "backup"], "client_id": 1}
            )
        ]
        gws = [gw_config("primary"), gw_config("backup"), gw_config("lonely")]
        return rollout.fleet_facts(gws, strategies)

    def test_failover_goes_before_primary_and_canary_is_first(self) -> None:
        names = ["primary", "backup", "lonely"]
        old = [spec(n) for n in names]
        new = [spec(n, image="x:2") for n in names]
        plan = plan_of(new, [running(s) for s in old], facts=self.facts())
        order = [g.gateway for g in plan.rolling]
        assert order == ["lonely", "backup", "primary"]
        assert plan.rolling[0].position == 0
        assert plan.rolling[0].to_json()["canary"] is True

    def test_first_goes_before_everything(self) -> None:
        names = ["primary", "backup", "sim-broker"]
        old = [spec(n) for n in names]
        new = [spec(n, image="x:2") for n in names]
        plan = plan_of(new, [running(s) for s in old], facts=self.facts(), first={"sim-broker"})
        assert next(g.gateway for g in plan.rolling) == "sim-broker"

    def test_facts_say_live_second_factor_and_strategies(self) -> None:
        gws = [gw_config("live-a", mode="live", account="U1234567", allow_live=True)]
        facts = rollout.fleet_facts(gws)
        assert facts["live-a"].live and facts["live-a"].second_factor
        sim = rollout.fleet_facts([gw_config("p")], simulated=True, simulated_second_factor=["p"])
        assert sim["p"].second_factor and not sim["p"].live
        assert self.facts()["primary"].primary_for == ("s",)
        assert self.facts()["backup"].used_by == ("s",)
