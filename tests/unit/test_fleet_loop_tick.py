"""The supervisor's schedule ticks: every region's reset windows are found, the Gateway's own
daily restart is expected (never sent) at the AutoRestartTime ibfleet renders."""

from __future__ import annotations

import datetime as dt
import types

import pytest

from gateway.config import GatewayConfig, RestartConfig
from supervisor import lifecycle as lc
from supervisor import schedules
from supervisor.fleet_loop import Supervisor
from supervisor.metrics import FleetMetrics
from supervisor.schedules import Region
from supervisor.settings import load_text

NY = dt.timezone(dt.timedelta(hours=-5))
T_NOW = dt.datetime(2026, 11, 18, 12, 0, tzinfo=NY)


@pytest.mark.parametrize("region", list(Region))
def test_every_fleet_region_has_a_schedule(region: Region) -> None:
    # The fleet file's region is the schedule's own: one enum, no mapping to fall out of step.
    assert schedules.windows_between(region, T_NOW, T_NOW + dt.timedelta(days=1))


class _Recorder:
    """Stands in for a gateway controller: records what the ticks post."""

    def __init__(self, daily: dt.time | None) -> None:
        self.gw = GatewayConfig.model_construct(restart=RestartConfig(daily=daily))
        self.events: list[lc.Event] = []

    def post(self, event: lc.Event) -> None:
        self.events.append(event)


def _ticking(region: Region, daily: dt.time | None = None) -> tuple[Supervisor, _Recorder]:
    """A Supervisor with one recording controller; only ``tick`` is exercised."""
    sup = Supervisor.__new__(Supervisor)
    sup.settings = load_text(f"fleet: t\nregion: {region.value}\n").settings
    sup._window = None
    sup._daily_next = {}
    sup._reauth_warned = None
    sup.deps = types.SimpleNamespace(metrics=FleetMetrics(version="t"))  # type: ignore[assignment]
    recorder = _Recorder(daily)
    sup.controllers = {"gw": recorder}  # type: ignore[dict-item]
    return sup, recorder


def test_the_reset_window_gauge_follows_the_ticks() -> None:
    sup, _ = _ticking(Region.AMERICA)
    gauge = sup.deps.metrics.registry
    sup.tick(dt.datetime(2026, 11, 18, 23, 0, tzinfo=NY))
    assert gauge.get_sample_value("ibfleet_reset_window") == 0
    sup.tick(dt.datetime(2026, 11, 18, 23, 50, tzinfo=NY))
    assert gauge.get_sample_value("ibfleet_reset_window") == 1
    sup.tick(dt.datetime(2026, 11, 19, 1, 30, tzinfo=NY))
    assert gauge.get_sample_value("ibfleet_reset_window") == 0


def test_entering_and_leaving_the_nightly_window_is_posted_once_each() -> None:
    sup, rec = _ticking(Region.AMERICA)
    sup.tick(dt.datetime(2026, 11, 18, 23, 0, tzinfo=NY))
    sup.tick(dt.datetime(2026, 11, 18, 23, 45, tzinfo=NY))
    sup.tick(dt.datetime(2026, 11, 18, 23, 50, tzinfo=NY))
    sup.tick(dt.datetime(2026, 11, 19, 1, 30, tzinfo=NY))
    kinds = [
        type(e).__name__
        for e in rec.events
        if isinstance(e, lc.ResetWindowEntered | lc.ResetWindowLeft)
    ]
    assert kinds == ["ResetWindowEntered", "ResetWindowLeft"]
    (entered,) = [e for e in rec.events if isinstance(e, lc.ResetWindowEntered)]
    assert entered.until == dt.datetime(2026, 11, 19, 1, 0, tzinfo=NY)


@pytest.mark.parametrize("region", list(Region))
def test_ticks_run_in_every_region(region: Region) -> None:
    sup, rec = _ticking(region)
    sup.tick(dt.datetime(2026, 11, 18, 12, 0, tzinfo=NY))
    assert any(isinstance(e, lc.Tick) for e in rec.events)


def test_daily_restart_is_expected_when_its_time_passes() -> None:
    sup, rec = _ticking(Region.EUROPE, daily=dt.time(23, 55))
    sup.tick(dt.datetime(2026, 11, 18, 23, 50, tzinfo=NY))
    sup.tick(dt.datetime(2026, 11, 18, 23, 56, tzinfo=NY))
    assert sum(isinstance(e, lc.DailyRestartExpected) for e in rec.events) == 1


def test_without_restart_daily_the_fleets_default_time_is_expected() -> None:
    sup, rec = _ticking(Region.AMERICA)
    default = sup.settings.default_daily_restart
    day = dt.datetime(2026, 11, 18, tzinfo=sup.settings.tz)
    at = dt.datetime.combine(day.date(), default, tzinfo=sup.settings.tz)
    sup.tick(at - dt.timedelta(minutes=5))
    sup.tick(at + dt.timedelta(seconds=1))
    sup.tick(at + dt.timedelta(seconds=2))
    assert sum(isinstance(e, lc.DailyRestartExpected) for e in rec.events) == 1


def test_weekly_reauth_warning_is_posted_once_ahead_of_sunday() -> None:
    sup, rec = _ticking(Region.ASIA)
    saturday = dt.datetime(2026, 11, 21, 20, 0, tzinfo=NY)
    sup.tick(saturday)
    sup.tick(saturday + dt.timedelta(minutes=1))
    warned = [e for e in rec.events if isinstance(e, lc.WeeklyReauthDue)]
    assert len(warned) == 1
    assert warned[0].at.astimezone(NY).weekday() == 6
