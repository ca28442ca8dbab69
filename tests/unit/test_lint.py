"""``ibfleet check``'s cross-field rules: each listed problem is named on a file that has it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from supervisor.alerturls import alert_url_problem
from supervisor.lint import lint, with_hints
from supervisor.settings import ConfigError, ConfigProblem, load_text
from tests.unit import fleetfiles as ff


def problems_of(data: dict[str, Any], environ: dict[str, str] | None = None) -> list[ConfigProblem]:
    env = ff.env_for(data) if environ is None else environ
    loaded = load_text(ff.dump(data), source="f.yaml", environ={})
    return lint(loaded, environ=env, file_exists=lambda p: p == Path("/exists"))


def errors(data: dict[str, Any], **kw: Any) -> dict[str, str]:
    return {p.path: p.message for p in problems_of(data, **kw) if p.severity == "error"}


def test_a_clean_fleet_has_no_problems() -> None:
    assert problems_of(ff.fleet()) == []


def test_duplicate_gateway_names() -> None:
    data = ff.fleet()
    data["gateways"][1]["name"] = "paper-a"
    assert "duplicate gateway name 'paper-a'" in errors(data)["gateways[1].name"]


def test_duplicate_strategy_names() -> None:
    data = ff.fleet(strategies=[ff.strategy("s"), ff.strategy("s", client_id=11)])
    assert "duplicate strategy name 's'" in errors(data)["strategies[1].name"]


def test_two_gateways_with_the_same_username_by_reference() -> None:
    data = ff.fleet()
    data["gateways"][1]["username"] = {"env": "USER_PAPER_A"}
    assert "same username" in errors(data)["gateways[1].username"]


def test_two_gateways_with_the_same_username_by_value() -> None:
    data = ff.fleet()
    env = ff.env_for(data)
    env["USER_PAPER_B"] = env["USER_PAPER_A"]
    assert "same username" in errors(data, environ=env)["gateways[1].username"]


def test_host_port_used_twice() -> None:
    data = ff.fleet()
    data["gateways"][1]["api_port"] = 4002
    assert "host port 4002 is already used" in errors(data)["gateways[1].api_port"]


def test_supervisor_api_port_colliding_with_a_gateway() -> None:
    data = ff.fleet(api={"listen": "127.0.0.1:4012"})
    assert "already used" in errors(data)["api.listen"]


def test_public_bind_needs_allow_public_bind() -> None:
    data = ff.fleet()
    data["gateways"][0]["bind"] = "0.0.0.0"
    assert "every interface" in errors(data)["gateways[0].bind"]
    data["gateways"][0]["allow_public_bind"] = True
    assert "gateways[0].bind" not in errors(data)


@pytest.mark.parametrize("bind", ["::1", "::", "fd00::5"])
def test_an_ipv6_bind_is_refused_on_docker_because_no_rule_filters_it(bind: str) -> None:
    data = ff.fleet()
    data["gateways"][0].update(bind=bind, allow_public_bind=True)
    message = errors(data)["gateways[0].bind"]
    assert f"IPv6 address {bind}" in message
    assert "do not filter" in message


def test_two_strategies_with_one_client_id_on_one_gateway() -> None:
    data = ff.fleet(strategies=[ff.strategy("a"), ff.strategy("b")])
    assert "both use client id 10" in errors(data)["strategies[1].client_id"]


def test_strategy_client_id_outside_the_gateway_range() -> None:
    data = ff.fleet(strategies=[ff.strategy("a", client_id=60)])
    assert "outside gateway 'paper-a'" in errors(data)["strategies[0].client_id"]


def test_strategy_client_id_equal_to_the_probe_id() -> None:
    data = ff.fleet(strategies=[ff.strategy("a", client_id=49)])
    assert "probe client id" in errors(data)["strategies[0].client_id"]


def test_failover_gateway_range_does_not_constrain_the_client_id() -> None:
    data = ff.fleet(strategies=[ff.strategy("a", gateways=["paper-a", "paper-b"])])
    data["gateways"][1]["client_ids"] = {"start": 50, "end": 99}
    assert errors(data) == {}


def test_probe_client_id_outside_the_range() -> None:
    data = ff.fleet()
    data["gateways"][0]["probe_client_id"] = 100
    assert "outside client_ids" in errors(data)["gateways[0].probe_client_id"]


def test_live_gateway_without_allow_live() -> None:
    data = ff.fleet()
    data["gateways"][1].update(mode="live", account="U7654321")
    assert "allow_live" in errors(data)["gateways[1].mode"]


def test_order_placing_strategy_on_a_read_only_gateway() -> None:
    data = ff.fleet()
    data["gateways"][0]["read_only"] = True
    assert "read-only" in errors(data)["strategies[0].gateways[0]"]
    data["strategies"][0]["read_only"] = True
    assert errors(data) == {}


def test_strategy_naming_an_unknown_gateway() -> None:
    data = ff.fleet(strategies=[ff.strategy("a", gateways=["paper-z"])])
    assert "unknown gateway 'paper-z'" in errors(data)["strategies[0].gateways[0]"]


def test_paper_gateway_with_a_live_account_id() -> None:
    data = ff.fleet()
    data["gateways"][0]["account"] = "U1234567"
    assert "not a paper account" in errors(data)["gateways[0].account"]


def test_live_gateway_with_a_paper_account_id() -> None:
    data = ff.fleet()
    data["gateways"][1].update(mode="live", allow_live=True, account="DU7654321")
    assert "paper account id" in errors(data)["gateways[1].account"]


def test_paper_and_live_gateways_sharing_an_account() -> None:
    data = ff.fleet()
    data["gateways"][0]["account"] = "F1234567"
    data["gateways"][0].update(mode="live", allow_live=True)
    data["gateways"][1].update(account="F1234567")
    found = errors(data)
    assert "used by a live gateway" in found["gateways[1].account"]


def test_unknown_timezone() -> None:
    with pytest.raises(ConfigError) as info:
        load_text(ff.dump(ff.fleet(timezone="Mars/Olympus")))
    assert info.value.problems[0].path == "timezone"
    assert "unknown timezone" in info.value.problems[0].message


@pytest.mark.parametrize("daily", ["24:00", "7pm", "23:5x"])
def test_restart_time_that_is_not_a_time(daily: str) -> None:
    data = ff.fleet()
    data["gateways"][0]["restart"] = {"daily": daily}
    with pytest.raises(ConfigError) as info:
        load_text(ff.dump(data))
    assert info.value.problems[0].path == "gateways[0].restart.daily"


@pytest.mark.parametrize(
    ("tz", "weekly", "ok"),
    [
        ("America/New_York", "Sun 01:30", True),
        ("America/New_York", "Sun 00:30", False),
        ("America/New_York", "Sat 23:00", False),
        ("Europe/London", "Sun 07:00", True),
        ("Europe/London", "Sun 05:30", False),  # 00:30 in New York in winter
        ("Asia/Tokyo", "Sun 15:00", True),  # 01:00 / 02:00 New York
        ("Asia/Tokyo", "Mon 14:30", False),  # Monday in New York
        ("Pacific/Honolulu", "Sat 22:00", False),  # Sunday in New York, Saturday for IBC
        ("Pacific/Honolulu", "Sun 10:00", True),  # 15:00 / 16:00 New York
    ],
)
def test_weekly_cold_restart_must_be_sunday_after_one_new_york(
    tz: str, weekly: str, ok: bool
) -> None:
    data = ff.fleet(timezone=tz)
    data["gateways"][0]["restart"] = {"weekly_cold": weekly}
    found = errors(data)
    assert ("gateways[0].restart.weekly_cold" not in found) is ok


def test_weekly_cold_restart_not_on_a_sunday_of_the_fleets_clock_says_what_ibc_does() -> None:
    # Saturday 22:00 in Honolulu is Sunday 03:00 in New York, but IBC would restart on Sunday
    # 22:00 Honolulu time: ColdRestartTime is always a Sunday on the container's clock.
    data = ff.fleet(timezone="Pacific/Honolulu")
    data["gateways"][0]["restart"] = {"weekly_cold": "Sat 22:00"}
    (problem,) = [p for p in problems_of(data) if p.path == "gateways[0].restart.weekly_cold"]
    assert problem.severity == "error"
    assert "Saturday in Pacific/Honolulu" in problem.message
    assert "only on Sunday" in problem.message
    assert "Sun " in problem.hint and "Pacific/Honolulu" in problem.hint
    assert problem.location.line is not None and problem.location.column is not None


def test_weekly_cold_restart_before_the_reauth_boundary_suggests_a_time_that_passes() -> None:
    data = ff.fleet(timezone="Europe/London")
    data["gateways"][0]["restart"] = {"weekly_cold": "Sun 05:30"}
    (problem,) = [p for p in problems_of(data) if p.path == "gateways[0].restart.weekly_cold"]
    assert "00:30 in New York" in problem.message
    suggested = problem.hint.split("e.g. ")[1].split(" in ")[0]
    data["gateways"][0]["restart"] = {"weekly_cold": suggested}
    assert "gateways[0].restart.weekly_cold" not in errors(data)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("xyz\nzy", "control character"),
        ("xyz\tzy", "control character"),
        (" xyzzy", "whitespace"),
        ("xyzzy ", "whitespace"),
    ],
)
@pytest.mark.parametrize("field", ["username", "password"])
def test_a_credential_ibc_cannot_pass_on_is_an_error_naming_gateway_and_field(
    field: str, value: str, reason: str
) -> None:
    data = ff.fleet()
    env = ff.env_for(data)
    env[f"{field[:4].upper()}_PAPER_B"] = value
    (problem,) = [p for p in problems_of(data, environ=env) if p.path == f"gateways[1].{field}"]
    assert problem.severity == "error"
    assert f"the {field} of gateway 'paper-b'" in problem.message
    assert reason in problem.message
    assert "xyz" not in problem.message + problem.hint


def test_tricky_but_representable_credentials_pass() -> None:
    data = ff.fleet()
    env = ff.env_for(data)
    env["PASS_PAPER_A"] = "secret\\"
    env["PASS_PAPER_B"] = "a=b:c#d p\u00e4ss"
    assert not [p for p in problems_of(data, environ=env) if p.path.endswith("password")]


def test_credentials_in_files_are_checked_when_a_reader_is_given(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("zq-first\nzq-second\n")
    data = ff.fleet()
    data["gateways"][0]["password"] = {"file": str(secret)}
    loaded = load_text(ff.dump(data), source="f.yaml", environ={})
    env = ff.env_for(data)
    unread = lint(loaded, environ=env, file_exists=Path.is_file)
    assert not [p for p in unread if p.path == "gateways[0].password"]
    read = lint(loaded, environ=env, file_exists=Path.is_file, read_file=Path.read_text)
    (problem,) = [p for p in read if p.path == "gateways[0].password"]
    assert "control character" in problem.message and "zq-" not in problem.message


def test_missing_secret_is_a_warning_for_check_and_an_error_at_run_time() -> None:
    data = ff.fleet()
    loaded = load_text(ff.dump(data), environ={})
    warned = lint(loaded, environ={}, file_exists=lambda p: False)
    assert {p.severity for p in warned} == {"warning"}
    assert any("USER_PAPER_A is not set" in p.message for p in warned)
    strict = lint(loaded, environ={}, file_exists=lambda p: False, missing_secret_severity="error")
    assert any(p.severity == "error" and "is not set" in p.message for p in strict)


def test_missing_secret_file_is_named() -> None:
    data = ff.fleet()
    data["gateways"][0]["password"] = {"file": "/run/secrets/absent"}
    msgs = [p.message for p in problems_of(data)]
    assert "secret file /run/secrets/absent does not exist" in msgs


def test_inline_gateway_secret_warns() -> None:
    data = ff.fleet()
    data["gateways"][0]["password"] = "literal-password"
    found = [p for p in problems_of(data) if p.path == "gateways[0].password"]
    assert found and found[0].severity == "warning"
    assert "literal-password" not in found[0].message


def test_api_on_a_public_interface_needs_a_token() -> None:
    data = ff.fleet(api={"listen": "0.0.0.0:8710"})
    assert "without a token" in errors(data)["api.token"]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("gateways", 0, "api_port"), 0),
        (("gateways", 0, "api_port"), 65536),
        (("gateways", 0, "client_ids"), {"start": -1, "end": 3}),
        (("strategies", 0, "client_id"), 2**31),
        (("strategies", 0, "safe_state"), {"grace": "-5s"}),
        (("alerts",), {"repeat_critical_every": "soon"}),
        (("strategies", 0, "limits"), {"max_orders_per_sec": 50}),
    ],
)
def test_values_out_of_range_are_errors(path: tuple[Any, ...], value: Any) -> None:
    data = ff.fleet()
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as info:
        load_text(ff.dump(data))
    assert info.value.problems, "an out-of-range value must be reported"
    assert not info.value.unreadable


def test_problems_point_at_the_offending_line() -> None:
    data = ff.fleet()
    data["gateways"][1]["api_port"] = 4002
    text = ff.dump(data)
    loaded = load_text(text, source="f.yaml")
    (problem,) = lint(loaded, environ=ff.env_for(data), file_exists=lambda p: True)
    line = problem.location.line
    assert line is not None
    assert text.splitlines()[line - 1].strip().startswith("api_port: 4002")


# ----------------------------------------------------------------------- no cascades


def check_problems(data: dict[str, Any]) -> list[ConfigProblem]:
    """What ``check`` reports: structural problems with hints, then the lint of the rest."""
    try:
        loaded = load_text(ff.dump(data), source="f.yaml", environ={})
    except ConfigError as exc:
        assert exc.partial is not None
        found = with_hints(exc.problems)
        return found + lint(exc.partial, environ=ff.env_for(data), file_exists=lambda p: True)
    return lint(loaded, environ=ff.env_for(data), file_exists=lambda p: True)


def seeded_fleet() -> dict[str, Any]:
    data = ff.fleet(
        strategies=[
            ff.strategy("s1", gateways=["paper-a", "paper-b"]),
            ff.strategy("s2", gateways=["paper-b"], client_id=11, extra_key=3),
            ff.strategy("s3", gateways=["paper-z"], client_id=12),
        ],
        simulator={"enabled": True, "twofa_gateways": ["paper-a"], "bogus": 1},
        runtime={"kind": "in-process"},
    )
    data["gateways"][0]["restart"] = {"daily": "25:99"}
    data["gateways"][1]["tyop"] = 1
    return data


def test_each_seeded_problem_is_reported_once_where_it_is() -> None:
    found = check_problems(seeded_fleet())
    assert sorted(p.path for p in found) == [
        "gateways[0].restart.daily",
        "gateways[1].tyop",
        "simulator.bogus",
        "strategies[1].extra_key",
        "strategies[2].gateways[0]",
    ]
    assert all(p.severity == "error" for p in found)
    assert not [p for p in found if "paper-a" in p.message or "paper-b" in p.message]


def test_a_set_aside_gateway_still_counts_for_duplicate_names() -> None:
    data = ff.fleet()
    data["gateways"][0]["tyop"] = 1
    data["gateways"][1]["name"] = "paper-a"
    paths = [p.path for p in check_problems(data)]
    assert paths.count("gateways[1].name") == 1 and "gateways[0].tyop" in paths


def test_a_broken_section_does_not_cascade_into_the_checks_that_read_it() -> None:
    data = ff.fleet(
        runtime={"kind": "in-process"},
        simulator={"enabled": True, "bogus": 1},
        api={"listen": "0.0.0.0:8710", "tokn": "x"},
    )
    assert sorted(p.path for p in check_problems(data)) == ["api.tokn", "simulator.bogus"]


def test_unknown_key_hint_names_the_key_that_was_meant() -> None:
    data = ff.fleet()
    data["gateways"][0]["api_prot"] = 4002
    (problem,) = [p for p in check_problems(data) if p.path == "gateways[0].api_prot"]
    assert "did you mean 'api_port'" in problem.hint


def test_unknown_key_far_from_any_lists_the_allowed_keys() -> None:
    data = ff.fleet()
    data["strategies"][0]["zzz"] = 1
    (problem,) = [p for p in check_problems(data) if p.path == "strategies[0].zzz"]
    assert problem.hint.startswith("remove 'zzz'") and "client_id" in problem.hint


def test_a_missing_key_says_what_to_add_and_where() -> None:
    data = ff.fleet()
    del data["gateways"][1]["account"]
    (problem,) = [p for p in check_problems(data) if p.path == "gateways[1].account"]
    assert problem.hint.startswith("add 'account:' to gateways[1]")


def test_an_unknown_gateway_hint_suggests_the_close_name() -> None:
    data = ff.fleet(strategies=[ff.strategy("a", gateways=["papr-a"])])
    (problem,) = [p for p in check_problems(data) if p.path == "strategies[0].gateways[0]"]
    assert "did you mean 'paper-a'" in problem.hint


def test_every_problem_of_the_seeded_file_has_a_hint() -> None:
    data = seeded_fleet()
    data["gateways"][0]["mode"] = "paperr"
    data["gateways"][1]["api_port"] = 99999
    for problem in check_problems(data):
        assert problem.hint or "write " in problem.message, problem


def url_errors(data: dict[str, Any], environ: dict[str, str]) -> dict[str, str]:
    loaded = load_text(ff.dump(data), source="f.yaml", environ={})
    found = lint(
        loaded, environ=environ, file_exists=lambda p: False, url_problem=alert_url_problem
    )
    return {p.path: p.message for p in found if p.severity == "error"}


def test_an_alert_url_apprise_refuses_is_an_error_naming_where_not_what() -> None:
    data = ff.fleet()
    data["alerts"] = {"routes": [{"urls": ["slack://", "json://localhost/hook"]}]}
    found = url_errors(data, ff.env_for(data))
    assert list(found) == ["alerts.routes[0].urls[0]"], found
    assert "apprise" in found["alerts.routes[0].urls[0]"]
    assert "literal:**********" in found["alerts.routes[0].urls[0]"]


def test_an_alert_url_in_the_environment_is_checked_too() -> None:
    data = ff.fleet()
    data["alerts"] = {"routes": [{"urls": [{"env": "HOOK"}]}]}
    env = {**ff.env_for(data), "HOOK": "nosuchscheme://secret-token-value"}
    found = url_errors(data, env)
    assert "secret-token-value" not in str(found)
    assert "env:HOOK" in found["alerts.routes[0].urls[0]"]


def test_an_api_beyond_loopback_warns_that_gets_are_public_and_the_token_is_clear_text() -> None:
    data = ff.fleet()
    data["api"] = {"listen": "0.0.0.0:8710", "token": {"env": "TOKEN"}}
    env = {**ff.env_for(data), "TOKEN": "t" * 32}
    warned = {p.path: p.message for p in problems_of(data, environ=env) if p.severity == "warning"}
    assert "readable by anyone" in warned["api.listen"]
    assert "clear text" in warned["api.listen"]
    assert "api.listen" not in {p.path for p in problems_of(ff.fleet()) if p.severity == "warning"}
