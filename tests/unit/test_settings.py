"""The fleet file model: defaults, units, env overrides, secrets, and located errors."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest

from gateway import secret_refs
from gateway.secret_refs import SecretError, SecretRef
from gateway.time_fields import parse_duration, parse_weekly_time
from supervisor import settings as settings_mod
from supervisor.settings import ConfigError, load_settings, load_text
from tests.unit import fleetfiles as ff


def test_contract_example_loads_with_documented_defaults() -> None:
    loaded = load_text(ff.dump(ff.fleet()))
    s = loaded.settings
    assert s.fleet == "test"
    assert s.region == "america"
    assert s.runtime.image == "ghcr.io/gnzsnz/ib-gateway:stable"
    assert s.alerts.repeat_critical_every == dt.timedelta(minutes=10)
    assert s.api.listen == "127.0.0.1:8710"
    gw = s.gateways[0]
    assert str(gw.bind) == "127.0.0.1" and not gw.allow_public_bind
    assert gw.effective_probe_client_id == 49
    assert s.strategies[0].safe_state.grace == dt.timedelta(seconds=5)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("250ms", 0.25), (7, 7)],
)
def test_durations_accept_units(text: object, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["5", "5x", "m5", "", "-1s", "1h 2"])
def test_bad_durations_are_rejected_with_an_example(text: str) -> None:
    if text == "5":
        return  # a bare number in text form is not a duration, but as YAML it is an int
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_unquoted_yaml_time_is_read_as_a_clock_time() -> None:
    text = ff.dump(ff.fleet()).replace(
        "api_port: 4002", "api_port: 4002\n  restart: {daily: 23:55}", 1
    )
    gw = load_text(text).settings.gateways[0]
    assert gw.restart.daily == dt.time(23, 55)


def test_weekly_time_parses_day_names() -> None:
    assert parse_weekly_time("Sun 01:30").weekday == 6
    assert parse_weekly_time("sunday 01:30").time == dt.time(1, 30)
    with pytest.raises(ValueError, match="day of the week"):
        parse_weekly_time("Sud 01:30")


def test_env_override_reaches_a_gateway_by_name() -> None:
    loaded = load_text(ff.dump(ff.fleet()), environ={"IBFLEET_GATEWAYS__PAPER_B__API_PORT": "4999"})
    assert loaded.settings.gateways[1].api_port == 4999
    assert loaded.locations["gateways[1].api_port"].env == "IBFLEET_GATEWAYS__PAPER_B__API_PORT"


def test_env_override_reaches_a_gateway_by_index_and_nested_sections() -> None:
    loaded = load_text(
        ff.dump(ff.fleet()),
        environ={
            "IBFLEET_GATEWAYS__0__CLIENT_IDS__END": "30",
            "IBFLEET_ALERTS__REPEAT_CRITICAL_EVERY": "2m",
            "IBFLEET_REGION": "europe",
            "IBFLEET_SIMULATOR__ENABLED": "true",
        },
    )
    s = loaded.settings
    assert s.gateways[0].client_ids.end == 30
    assert s.alerts.repeat_critical_every == dt.timedelta(minutes=2)
    assert s.region == "europe"
    assert s.simulator.enabled is True


def test_secret_variables_with_the_prefix_are_not_overrides() -> None:
    loaded = load_text(
        ff.dump(ff.fleet()),
        environ={"IBFLEET_API_TOKEN": "t", "IBFLEET_CONFIG": "x.yaml", "IBFLEET_SLACK_URL": "u"},
    )
    assert loaded.settings.api.token is None


def test_env_override_naming_no_gateway_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_text(ff.dump(ff.fleet()), environ={"IBFLEET_GATEWAYS__NOPE__API_PORT": "1"})
    assert "IBFLEET_GATEWAYS__NOPE__API_PORT" in info.value.problems[0].message


def test_env_override_with_a_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_text(ff.dump(ff.fleet()), environ={"IBFLEET_GATEWAYS__0__API_PORT": "abc"})
    problem = info.value.problems[0]
    assert problem.path == "gateways[0].api_port"
    assert problem.location.render("f.yaml") == "$IBFLEET_GATEWAYS__0__API_PORT"


def test_unknown_keys_are_errors_everywhere() -> None:
    data = ff.fleet(alerts={"routes": [], "repeat_critical_evry": "1m"})
    data["gateways"][0]["two_factor"] = {"devise": "IB Key"}
    with pytest.raises(ConfigError) as info:
        load_text(ff.dump(data))
    paths = {p.path for p in info.value.problems}
    assert "alerts.repeat_critical_evry" in paths
    assert "gateways[0].two_factor.devise" in paths
    assert all("unknown key" in p.message for p in info.value.problems)


def test_every_structural_problem_is_reported_with_its_line() -> None:
    data = ff.fleet()
    data["gateways"][0]["api_port"] = 70000
    data["gateways"][1]["client_ids"] = {"start": 60, "end": 49}
    data["strategies"][0]["client_id"] = -1
    text = ff.dump(data)
    with pytest.raises(ConfigError) as info:
        load_text(text, source="f.yaml")
    by_path = {p.path: p for p in info.value.problems}
    assert set(by_path) >= {
        "gateways[0].api_port",
        "gateways[1].client_ids",
        "strategies[0].client_id",
    }
    line = by_path["gateways[0].api_port"].location.line
    assert line is not None and "api_port: 70000" in text.splitlines()[line - 1]


def test_yaml_syntax_error_is_unreadable_with_line_and_column() -> None:
    with pytest.raises(ConfigError) as info:
        load_text("fleet: a\ngateways: [\n  - x: 1\n", source="f.yaml")
    assert info.value.unreadable
    loc = info.value.problems[0].location
    assert loc.line is not None and loc.column is not None


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "absent.yaml", environ={})
    assert info.value.unreadable
    assert "does not exist" in info.value.problems[0].message


def test_config_path_comes_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(ff.dump(ff.fleet()))
    loaded = load_settings(None, environ={"IBFLEET_CONFIG": str(path)})
    assert loaded.source == str(path)


def test_secret_literal_is_redacted_in_repr_and_errors() -> None:
    data = ff.fleet()
    data["gateways"][0]["password"] = "hunter2-very-secret"
    data["gateways"][0]["api_port"] = "not-a-port"
    text = ff.dump(data)
    with pytest.raises(ConfigError) as info:
        load_text(text)
    assert "hunter2" not in str(info.value)
    data["gateways"][0]["api_port"] = 4002
    loaded = load_text(ff.dump(data))
    assert "hunter2" not in repr(loaded.settings)
    assert "hunter2" not in str(loaded.settings.gateways[0])
    ref = loaded.settings.gateways[0].password
    assert ref.resolve(environ={}).get_secret_value() == "hunter2-very-secret"


def test_secret_reference_resolves_from_env_and_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-file\n")
    assert SecretRef(file=secret_file).resolve(environ={}).get_secret_value() == "from-file"
    assert SecretRef(env="X").resolve(environ={"X": "from-env"}).get_secret_value() == "from-env"
    with pytest.raises(SecretError, match="X is not set"):
        SecretRef(env="X").resolve(environ={})
    with pytest.raises(SecretError, match="cannot read"):
        SecretRef(file=tmp_path / "absent").resolve(environ={})


def test_secret_reference_needs_exactly_one_source() -> None:
    data = ff.fleet()
    data["gateways"][0]["password"] = {"env": "A", "file": "/b"}
    with pytest.raises(ConfigError) as info:
        load_text(ff.dump(data))
    assert info.value.problems[0].path.startswith("gateways[0].password")


@pytest.mark.parametrize("source", ["::1/128", "2001:db8::/32"])
def test_an_ipv6_trusted_source_is_refused_with_its_path(source: str) -> None:
    data = ff.fleet()
    data["gateways"][1]["trusted_ips"] = ["10.0.0.0/8", source]
    with pytest.raises(ConfigError) as info:
        load_text(ff.dump(data), source="f.yaml")
    by_path = {p.path: p.message for p in info.value.problems}
    assert "IPv6" in by_path["gateways[1].trusted_ips"]
    assert "filter IPv4 only" in by_path["gateways[1].trusted_ips"]


def test_live_and_public_bind_fields_parse() -> None:
    data = ff.fleet()
    data["gateways"][1].update(mode="live", account="U1234567", allow_live=True, bind="::")
    gw = load_text(ff.dump(data)).settings.gateways[1]
    assert gw.is_public_bind and gw.mode == "live"


# --------------------------------------------------------------------- the default daily restart


@pytest.mark.parametrize(
    ("region", "timezone", "expected"),
    [
        ("america", "America/New_York", dt.time(0, 15)),
        ("europe", "Europe/Zurich", dt.time(6, 15)),
        ("asia", "Asia/Hong_Kong", dt.time(20, 37)),
        ("america", "Europe/London", dt.time(4, 45)),
    ],
)
def test_default_daily_restart_is_the_middle_of_the_regions_window_on_the_fleets_clock(
    region: str, timezone: str, expected: dt.time
) -> None:
    # The values the `restart.daily` field description quotes.
    s = load_text(ff.dump(ff.fleet(region=region, timezone=timezone))).settings
    assert s.default_daily_restart == expected
    assert s.daily_restart(s.gateways[0]) == expected


def test_a_configured_daily_restart_wins_over_the_default() -> None:
    data = ff.fleet()
    data["gateways"][0]["restart"] = {"daily": "23:55"}
    s = load_text(ff.dump(data)).settings
    assert s.daily_restart(s.gateways[0]) == dt.time(23, 55)
    assert s.daily_restart(s.gateways[1]) == dt.time(0, 15)


@pytest.mark.parametrize("region", ["america", "europe", "asia"])
@pytest.mark.parametrize(
    "timezone", ["America/New_York", "Europe/London", "Europe/Zurich", "Asia/Tokyo", "UTC"]
)
def test_default_daily_restart_is_inside_a_reset_window_on_every_day_of_the_year(
    region: str, timezone: str
) -> None:
    from zoneinfo import ZoneInfo

    from supervisor import schedules

    s = load_text(ff.dump(ff.fleet(region=region, timezone=timezone))).settings
    clock = s.default_daily_restart
    zone = ZoneInfo(timezone)
    day = dt.date(2027, 1, 1)  # another year than the one the default is computed from
    while day.year == 2027:
        at = dt.datetime.combine(day, clock, tzinfo=zone)
        window = schedules.in_reset_window(s.region, at)
        assert window is not None, f"{clock} {timezone} on {day} is outside every window"
        day += dt.timedelta(days=1)


def test_health_defaults_detect_a_stall_within_a_second_and_a_half() -> None:
    h = load_text(ff.dump(ff.fleet())).settings.health
    assert h.heartbeat_every + h.heartbeat_deadline <= dt.timedelta(seconds=1.5)


def test_a_heartbeat_faster_than_200ms_is_refused_with_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        load_text(ff.dump(ff.fleet(health={"heartbeat_every": "100ms"})))
    assert info.value.problems[0].path == "health.heartbeat_every"


# -- bounded input ----------------------------------------------------------------------------

ALIAS_BOMB = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{c}: &{c} [{','.join(['*' + p] * 9)}]" for p, c in zip("abcdefg", "bcdefgh", strict=True)]
)


def test_an_alias_bomb_is_refused_at_once_with_its_line() -> None:
    assert len(ALIAS_BOMB) < 400
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_text(ALIAS_BOMB, source="bomb.yaml")
    assert time.perf_counter() - t0 < 1.0
    assert info.value.unreadable
    problem = info.value.problems[0]
    assert "anchors" in problem.message
    assert problem.location.line == 1


def test_an_alias_without_an_anchor_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_text("fleet: a\nx: *nowhere\n", source="f.yaml")
    assert info.value.unreadable


def test_merge_keys_and_anchors_inside_a_real_fleet_are_refused_with_the_line() -> None:
    text = ff.dump(ff.fleet()) + "defaults: &d {mode: paper}\n"
    with pytest.raises(ConfigError) as info:
        load_text(text, source="f.yaml")
    assert info.value.problems[0].location.line == text.count("\n")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fleet.yaml"
    os.mkfifo(fifo)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_settings(fifo, environ={})
    assert time.perf_counter() - t0 < 1.0
    assert "regular file, not a FIFO" in info.value.problems[0].message


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        load_settings(tmp_path, environ={})


def test_an_oversized_fleet_file_is_refused_by_its_size(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(ff.dump(ff.fleet()) + "#" * (settings_mod.MAX_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match="the limit is"):
        load_settings(path, environ={})


def test_a_non_utf8_fleet_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_bytes(b"fleet: a\n# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert "not UTF-8" in info.value.problems[0].message
    assert info.value.problems[0].location.line == 2


def test_secret_files_are_capped_regular_utf8_files(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_text("x" * (secret_refs.MAX_SECRET_BYTES + 1))
    with pytest.raises(SecretError, match="the limit is"):
        SecretRef(file=big).resolve(environ={})
    latin = tmp_path / "latin"
    latin.write_bytes(b"p\xe4ss\n")
    with pytest.raises(SecretError, match="not UTF-8") as info:
        SecretRef(file=latin).resolve(environ={})
    assert "p\xe4ss" not in str(info.value)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(SecretError, match="regular file"):
        SecretRef(file=fifo).resolve(environ={})
