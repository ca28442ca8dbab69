"""Reset windows, daily/weekly schedules and weekly re-auth; DST changes in March and November."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import schedules as sc

NY = ZoneInfo("America/New_York")
ZURICH = ZoneInfo("Europe/Zurich")
NA, EU, ASIA = sc.Region.AMERICA, sc.Region.EUROPE, sc.Region.ASIA


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ny(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=NY).replace(fold=fold).astimezone(UTC)


# --- reset windows ------------------------------------------------------------------------


def test_north_america_window_in_winter_is_2330_to_0100_eastern() -> None:
    window = sc.in_reset_window(NA, ny(2026, 1, 13, 23, 45))  # a Tuesday
    assert window is not None
    assert (window.start, window.end) == (utc(2026, 1, 14, 4, 30), utc(2026, 1, 14, 6, 0))


def test_north_america_window_in_summer_follows_daylight_time() -> None:
    window = sc.in_reset_window(NA, ny(2026, 7, 15, 0, 30))  # a Wednesday
    assert window is not None
    assert (window.start, window.end) == (utc(2026, 7, 15, 3, 30), utc(2026, 7, 15, 5, 0))


def test_window_start_is_inside_and_end_is_outside() -> None:
    assert sc.in_reset_window(NA, ny(2026, 1, 13, 23, 30)) is not None
    assert sc.in_reset_window(NA, ny(2026, 1, 14, 1, 0)) is None
    assert sc.in_reset_window(NA, ny(2026, 1, 13, 23, 29, 59)) is None


def test_a_weekday_noon_is_outside_every_window() -> None:
    for region in sc.Region:
        assert sc.in_reset_window(region, ny(2026, 1, 14, 12, 0)) is None


def test_europe_window_moves_in_utc_when_zurich_changes_to_summer_time() -> None:
    before = sc.in_reset_window(EU, utc(2026, 3, 24, 5, 0))  # Tue, CET: 05:30 = 04:30Z
    after = sc.in_reset_window(EU, utc(2026, 3, 31, 4, 0))  # Tue, CEST: 05:30 = 03:30Z
    assert before is not None and before.start == utc(2026, 3, 24, 4, 30)
    assert after is not None and after.start == utc(2026, 3, 31, 3, 30)
    assert after.end - after.start == timedelta(minutes=90)


def test_asia_has_an_eastern_and_a_hong_kong_window() -> None:
    et = sc.in_reset_window(ASIA, ny(2026, 1, 14, 16, 30))
    hk = sc.in_reset_window(ASIA, datetime(2026, 1, 14, 20, 30, tzinfo=ZoneInfo("Asia/Hong_Kong")))
    assert et is not None and et.name == "asia-daily-et"
    assert hk is not None and hk.name == "asia-daily-hk"
    assert hk.start == utc(2026, 1, 14, 12, 0)


def test_weekend_is_one_window_from_friday_to_sunday_1700_eastern_for_every_region() -> None:
    for region in (NA, EU):
        window = sc.in_reset_window(region, ny(2026, 1, 17, 12, 0))  # Saturday noon
        assert window is not None
        assert window.start == ny(2026, 1, 16, 17, 0)
        assert window.end == ny(2026, 1, 18, 17, 0)
    # Asia's 16:15-17:15 ET window touches both ends and merges into the weekend.
    window = sc.in_reset_window(ASIA, ny(2026, 1, 17, 12, 0))
    assert window is not None
    assert (window.start, window.end) == (ny(2026, 1, 16, 16, 15), ny(2026, 1, 18, 17, 15))
    assert window.name == "asia-daily-et+weekend"


def test_a_daily_window_inside_the_weekend_does_not_end_it_early() -> None:
    window = sc.in_reset_window(NA, ny(2026, 1, 16, 23, 45))  # Friday night
    assert window is not None
    assert window.end == ny(2026, 1, 18, 17, 0)


def test_weekend_over_the_march_change_is_an_hour_shorter() -> None:
    window = sc.in_reset_window(NA, ny(2026, 3, 7, 12, 0))
    assert window is not None
    assert window.end - window.start == timedelta(hours=47)
    assert window.end == utc(2026, 3, 8, 21, 0)  # 17:00 EDT


def test_weekend_over_the_november_change_is_an_hour_longer() -> None:
    window = sc.in_reset_window(NA, ny(2026, 10, 31, 12, 0))
    assert window is not None
    assert window.end - window.start == timedelta(hours=49)
    assert window.end == utc(2026, 11, 1, 22, 0)  # 17:00 EST


def test_north_america_window_on_the_march_change_night() -> None:
    # Sunday 8 March 23:30 EDT to Monday 01:00 EDT.
    window = sc.in_reset_window(NA, utc(2026, 3, 9, 4, 0))
    assert window is not None
    assert (window.start, window.end) == (utc(2026, 3, 9, 3, 30), utc(2026, 3, 9, 5, 0))


def test_next_window_is_the_first_that_starts_after_now() -> None:
    window = sc.next_window(NA, ny(2026, 1, 14, 12, 0))
    assert window.start == ny(2026, 1, 14, 23, 30)


def test_next_window_from_inside_a_window_is_the_following_one() -> None:
    window = sc.next_window(NA, ny(2026, 1, 13, 23, 45))
    assert window.start == ny(2026, 1, 14, 23, 30)


def test_next_window_after_a_sunday_is_the_sunday_night_window() -> None:
    window = sc.next_window(NA, ny(2026, 1, 18, 17, 0))
    assert window.start == ny(2026, 1, 18, 23, 30)


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sc.in_reset_window(NA, datetime(2026, 1, 1, 12, 0))


_INSTANTS = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=150, deadline=None)
@given(now=_INSTANTS, region=st.sampled_from(list(sc.Region)))
def test_next_window_starts_after_now_and_nothing_starts_in_between(
    now: datetime, region: sc.Region
) -> None:
    nxt = sc.next_window(region, now)
    assert nxt.start > now
    assert nxt.end > nxt.start
    assert sc.in_reset_window(region, nxt.start) == nxt
    # Windows are merged, so the instant before a window's start is never inside one that
    # touches it, and between now and the next start only the current window can hold.
    current = sc.in_reset_window(region, now)
    just_before = sc.in_reset_window(region, nxt.start - timedelta(seconds=1))
    assert just_before is None or just_before == current


# --- daily and weekly times ---------------------------------------------------------------


def test_next_daily_is_strictly_after_now() -> None:
    at = sc.parse_hhmm("04:00")
    assert sc.next_daily(at, zone=NY, now=ny(2026, 1, 14, 3, 0)) == ny(2026, 1, 14, 4, 0)
    assert sc.next_daily(at, zone=NY, now=ny(2026, 1, 14, 4, 0)) == ny(2026, 1, 15, 4, 0)


def test_next_daily_inside_the_spring_gap_fires_just_after_it() -> None:
    at = sc.parse_hhmm("02:30")  # does not exist on 8 March 2026 in New York
    first = sc.next_daily(at, zone=NY, now=ny(2026, 3, 7, 12, 0))
    assert first == utc(2026, 3, 8, 7, 30)  # 03:30 EDT
    second = sc.next_daily(at, zone=NY, now=first)
    assert second == utc(2026, 3, 9, 6, 30)  # 02:30 EDT


def test_next_daily_on_the_autumn_fallback_fires_once() -> None:
    at = sc.parse_hhmm("01:30")  # happens twice on 1 November 2026 in New York
    first = sc.next_daily(at, zone=NY, now=ny(2026, 10, 31, 12, 0))
    assert first == utc(2026, 11, 1, 5, 30)  # the first 01:30 (EDT)
    second = sc.next_daily(at, zone=NY, now=first)
    assert second == utc(2026, 11, 2, 6, 30)  # next day, EST; not the repeated 01:30


def test_next_daily_keeps_wall_clock_across_the_change() -> None:
    at = sc.parse_hhmm("23:45")
    before = sc.next_daily(at, zone=ZURICH, now=utc(2026, 3, 28, 12, 0))
    after = sc.next_daily(at, zone=ZURICH, now=before)
    assert before == utc(2026, 3, 28, 22, 45)  # CET
    assert after == utc(2026, 3, 29, 21, 45)  # CEST
    assert after - before == timedelta(hours=23)


@pytest.mark.parametrize("text", ["25:00", "12:60", "7pm", "", "12", "12:5"])
def test_parse_hhmm_rejects_bad_values_naming_them(text: str) -> None:
    with pytest.raises(sc.ScheduleError, match="daily restart"):
        sc.parse_hhmm(text, what="daily restart")


def test_parse_weekly_reads_day_and_time() -> None:
    assert sc.parse_weekly("Sun 01:30") == sc.WeeklyTime(6, time(1, 30))
    assert sc.parse_weekly("monday 7:05") == sc.WeeklyTime(0, time(7, 5))


@pytest.mark.parametrize("text", ["Funday 01:30", "Sun", "Sun 1:30 PM", "01:30 Sun"])
def test_parse_weekly_rejects_bad_values(text: str) -> None:
    with pytest.raises(sc.ScheduleError, match="cold restart"):
        sc.parse_weekly(text, what="cold restart")


def test_next_weekly_cold_restart_across_the_march_change() -> None:
    spec = sc.parse_weekly("Sun 01:30")
    assert sc.next_weekly(spec, zone=NY, now=ny(2026, 3, 4, 12, 0)) == utc(2026, 3, 8, 6, 30)
    assert sc.next_weekly(spec, zone=NY, now=ny(2026, 3, 8, 12, 0)) == utc(2026, 3, 15, 5, 30)


def test_next_weekly_cold_restart_on_the_november_change_fires_at_the_first_0130() -> None:
    spec = sc.parse_weekly("Sun 01:30")
    assert sc.next_weekly(spec, zone=NY, now=ny(2026, 10, 28, 12, 0)) == utc(2026, 11, 1, 5, 30)


def test_resolve_zone_names_an_unknown_zone() -> None:
    with pytest.raises(sc.ScheduleError, match="Mars/Olympus"):
        sc.resolve_zone("Mars/Olympus")


# --- weekly re-authentication -------------------------------------------------------------


def test_next_weekly_reauth_is_sunday_0100_eastern() -> None:
    assert sc.next_weekly_reauth(ny(2026, 1, 14, 12, 0)) == utc(2026, 1, 18, 6, 0)
    assert sc.next_weekly_reauth(ny(2026, 7, 15, 12, 0)) == utc(2026, 7, 19, 5, 0)


def test_weekly_reauth_on_dst_sundays() -> None:
    # 8 March: 01:00 is still EST (the change is at 02:00). 1 November: 01:00 happens twice;
    # the boundary is the first one (EDT), the conservative choice.
    assert sc.next_weekly_reauth(ny(2026, 3, 7, 12, 0)) == utc(2026, 3, 8, 6, 0)
    assert sc.next_weekly_reauth(ny(2026, 10, 31, 12, 0)) == utc(2026, 11, 1, 5, 0)


def test_needs_full_auth_after_the_sunday_boundary() -> None:
    saturday = ny(2026, 1, 17, 12, 0)
    sunday_late = ny(2026, 1, 18, 2, 0)
    assert sc.needs_full_auth(None, sunday_late)
    assert sc.needs_full_auth(saturday, sunday_late)
    assert not sc.needs_full_auth(saturday, ny(2026, 1, 18, 0, 59))
    assert not sc.needs_full_auth(ny(2026, 1, 18, 1, 30), ny(2026, 1, 19, 9, 0))


def test_reauth_warning_is_due_within_the_lead() -> None:
    lead = timedelta(hours=6)
    assert sc.reauth_warning_due(ny(2026, 1, 17, 20, 0), lead)
    assert not sc.reauth_warning_due(ny(2026, 1, 17, 12, 0), lead)
    with pytest.raises(ValueError, match="lead"):
        sc.reauth_warning_due(ny(2026, 1, 17, 12, 0), timedelta(hours=-1))


@settings(max_examples=150, deadline=None)
@given(now=_INSTANTS)
def test_reauth_boundaries_bracket_now_one_week_apart(now: datetime) -> None:
    last, nxt = sc.last_weekly_reauth(now), sc.next_weekly_reauth(now)
    assert last <= now < nxt
    assert timedelta(days=7) - timedelta(hours=1) <= nxt - last <= timedelta(days=7, hours=1)
    assert nxt.astimezone(NY).weekday() == 6
    assert nxt.astimezone(NY).time() == time(1, 0)


@settings(max_examples=150, deadline=None)
@given(
    now=_INSTANTS,
    hour=st.integers(min_value=0, max_value=23),
    minute=st.integers(min_value=0, max_value=59),
)
def test_next_daily_is_within_a_day_and_reads_the_wall_clock(
    now: datetime, hour: int, minute: int
) -> None:
    at = time(hour, minute)
    nxt = sc.next_daily(at, zone=NY, now=now)
    assert now < nxt <= now + timedelta(hours=25)
    local = nxt.astimezone(NY)
    # Outside the spring gap the wall clock reads exactly the configured time.
    if local.time() != at:
        assert local.month == 3 and local.weekday() == 6 and hour == 2
