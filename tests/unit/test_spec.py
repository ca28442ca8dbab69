"""Container spec rendering: the gnzsnz contract, secrets kept out of env, and the spec hash."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from gateway import javaprops
from gateway.config import GatewayConfig
from gateway.ibc_ini import DEFAULT_DAILY_RESTART, credential_problem, ibc_clock, with_control_from
from gateway.spec import (
    CONFIG_INI_PATH,
    LABEL_ACCOUNT,
    LABEL_FLEET,
    LABEL_GATEWAY,
    LABEL_SPEC_HASH,
    PASSWORD_PATH,
    USERNAME_PATH,
    ContainerSpec,
    GatewaySecrets,
    SpecError,
    memory_bytes,
)
from gateway.spec_render import render_container, render_spec

PASSWORD = "s3cret-Pa55word"
USERNAME = "fleetuser1"
KEY = b"k" * 32


def gateway(**overrides: Any) -> GatewayConfig:
    data: dict[str, Any] = {
        "name": "paper-1",
        "mode": "paper",
        "account": "DU1234567",
        "username": {"env": "IB_USER"},
        "password": {"env": "IB_PASS"},
        "api_port": 4102,
    }
    data.update(overrides)
    return GatewayConfig.model_validate(data)


def render(
    gw: GatewayConfig | None = None,
    *,
    password: str = PASSWORD,
    key: bytes = KEY,
    **kwargs: Any,
) -> ContainerSpec:
    params: dict[str, Any] = {
        "fleet": "prod",
        "network": "ibfleet-prod",
        "image": "ghcr.io/gnzsnz/ib-gateway:stable",
        "timezone": "America/New_York",
    }
    params.update(kwargs)
    return render_spec(
        gw or gateway(),
        secrets=GatewaySecrets(username=SecretStr(USERNAME), password=SecretStr(password)),
        fingerprint_key=key,
        **params,
    )


#: The only variables the gnzsnz image reads with CUSTOM_CONFIG=yes (run.sh, common.sh).
IMAGE_ENV = {"TRADING_MODE", "TWOFA_TIMEOUT_ACTION", "TZ", "CUSTOM_CONFIG", "IBC_INI"}


class TestImageContract:
    def test_paper_gateway_gets_only_what_the_image_reads_with_custom_config(self) -> None:
        env = render(timezone="Europe/Zurich").env_map
        assert set(env) == IMAGE_ENV
        assert env["TRADING_MODE"] == "paper"
        assert env["TWOFA_TIMEOUT_ACTION"] == "restart"
        assert env["TZ"] == "Europe/Zurich"
        assert env["CUSTOM_CONFIG"] == "yes"
        assert env["IBC_INI"] == CONFIG_INI_PATH

    def test_settings_the_image_ignores_are_not_rendered_as_env(self) -> None:
        gw = gateway(
            restart={"daily": "23:55", "weekly_cold": "Sun 01:30"},
            read_only=True,
            two_factor={"timeout_action": "exit"},
        )
        env = render(gw).env_map
        for ignored in (
            "AUTO_RESTART_TIME",
            "TWS_COLD_RESTART",
            "RELOGIN_AFTER_TWOFA_TIMEOUT",
            "TIME_ZONE",
            "TWS_USERID_FILE",
            "TWS_PASSWORD_FILE",
            "READ_ONLY_API",
            "TWOFA_DEVICE",
            "EXISTING_SESSION_DETECTED_ACTION",
        ):
            assert ignored not in env
        assert set(env) == IMAGE_ENV

    def test_extra_env_is_passed_through(self) -> None:
        env = render(gateway(env={"JAVA_HEAP_SIZE": "1024"})).env_map
        assert env["JAVA_HEAP_SIZE"] == "1024"

    @pytest.mark.parametrize(
        "key",
        ["TWS_PASSWORD", "TWS_USERID", "TRADING_MODE", "IBC_INI", "AUTO_RESTART_TIME", "TZ"],
    )
    def test_extra_env_may_not_set_reserved_keys(self, key: str) -> None:
        with pytest.raises(SpecError, match=rf"'paper-1'.*{key}"):
            render(gateway(env={key: "x"}))

    def test_paper_api_is_published_from_4004_on_the_configured_interface_only(self) -> None:
        (port,) = render(gateway(api_port=4102, bind="127.0.0.1")).ports
        assert (port.host_ip, port.host_port, port.container_port) == ("127.0.0.1", 4102, 4004)

    def test_live_api_is_published_from_4003(self) -> None:
        live = gateway(mode="live", account="U1234567", allow_live=True, bind="10.0.0.5")
        (port,) = render(live).ports
        assert (port.host_ip, port.container_port) == ("10.0.0.5", 4003)

    def test_live_gateway_without_allow_live_is_refused(self) -> None:
        with pytest.raises(SpecError, match="allow_live"):
            render(gateway(mode="live", account="U1234567"))

    def test_public_bind_without_permission_is_refused(self) -> None:
        with pytest.raises(SpecError, match="public"):
            render(gateway(bind="0.0.0.0"))

    def test_public_bind_with_permission_is_published(self) -> None:
        (port,) = render(gateway(bind="0.0.0.0", allow_public_bind=True)).ports
        assert port.host_ip == "0.0.0.0"


def settings_of(spec: ContainerSpec) -> dict[str, str]:
    """config.ini as IBC's Properties.load reads it."""
    ini = next(f for f in spec.files if f.path == CONFIG_INI_PATH).content.get_secret_value()
    return javaprops.load(ini.encode("latin-1"), source="config.ini")


class TestRestartTimes:
    def test_daily_restart_uses_ibc_format_without_quotes(self) -> None:
        spec = render(gateway(restart={"daily": "23:55"}))
        assert settings_of(spec)["AutoRestartTime"] == "11:55 PM"
        assert '"' not in _ini(spec)

    def test_without_a_daily_time_the_default_is_rendered_explicitly(self) -> None:
        assert settings_of(render())["AutoRestartTime"] == "12:15 AM"
        spec = render(default_daily_restart=dt.time(6, 15))
        assert settings_of(spec)["AutoRestartTime"] == "06:15 AM"

    def test_a_configured_daily_time_wins_over_the_default(self) -> None:
        spec = render(gateway(restart={"daily": "23:55"}), default_daily_restart=dt.time(6, 15))
        assert settings_of(spec)["AutoRestartTime"] == "11:55 PM"

    def test_the_fallback_default_is_the_schedule_default_of_the_fleet_file_defaults(self) -> None:
        from zoneinfo import ZoneInfo

        from supervisor import schedules

        assert (
            schedules.default_daily_restart(schedules.Region.AMERICA, ZoneInfo("America/New_York"))
            == DEFAULT_DAILY_RESTART
        )

    def test_the_hash_changes_only_when_the_rendered_content_does(self) -> None:
        explicit = render(gateway(restart={"daily": "00:15"}))
        assert explicit.spec_hash == render().spec_hash  # the same AutoRestartTime
        assert render(default_daily_restart=dt.time(0, 45)).spec_hash != render().spec_hash

    def test_sunday_cold_restart_is_rendered_as_ibc_reads_it(self) -> None:
        spec = render(gateway(restart={"weekly_cold": "Sun 07:05"}))
        assert settings_of(spec)["ColdRestartTime"] == "07:05"

    def test_no_cold_restart_renders_an_empty_time(self) -> None:
        assert settings_of(render())["ColdRestartTime"] == ""

    def test_a_cold_restart_not_on_sunday_is_refused(self) -> None:
        with pytest.raises(SpecError, match=r"'paper-1'.*restart\.weekly_cold Sat 23:00.*Sunday"):
            render(gateway(restart={"weekly_cold": "Sat 23:00"}))


class TestTwoFactor:
    def test_ibc_owns_the_restart_by_default(self) -> None:
        spec = render()
        assert spec.env_map["TWOFA_TIMEOUT_ACTION"] == "restart"
        assert settings_of(spec)["ReloginAfterSecondFactorAuthenticationTimeout"] == "yes"

    def test_exit_leaves_the_restart_to_the_supervisor(self) -> None:
        spec = render(gateway(two_factor={"timeout_action": "exit"}))
        assert spec.env_map["TWOFA_TIMEOUT_ACTION"] == "exit"
        assert settings_of(spec)["ReloginAfterSecondFactorAuthenticationTimeout"] == "no"

    @pytest.mark.parametrize("action", ["restart", "exit"])
    def test_never_two_mechanisms(self, action: str) -> None:
        spec = render(gateway(two_factor={"timeout_action": action}))
        ibcstart_relaunches = spec.env_map["TWOFA_TIMEOUT_ACTION"] == "restart"
        ibc_relogs_in = settings_of(spec)["ReloginAfterSecondFactorAuthenticationTimeout"] == "yes"
        assert ibcstart_relaunches == ibc_relogs_in == (action == "restart")

    def test_exit_interval_and_push_window_are_explicit(self) -> None:
        assert settings_of(render())["SecondFactorAuthenticationExitInterval"] == "60"
        assert settings_of(render())["SecondFactorAuthenticationTimeout"] == "180"
        spec = render(gateway(two_factor={"exit_interval": "2m"}))
        assert settings_of(spec)["SecondFactorAuthenticationExitInterval"] == "120"

    def test_a_fractional_exit_interval_is_refused_by_the_model(self) -> None:
        with pytest.raises(ValueError, match="whole seconds"):
            gateway(two_factor={"exit_interval": "30.5s"})


TRICKY = [
    "secret\\",
    "a=b:c#d",
    "in ner sp ace",
    "p\u00e4ss\u20ac\u00df",
    "!x",
    "\\u12",
    "\U0001f600",
]


class TestJavaPropertiesEscaping:
    @pytest.mark.parametrize("value", TRICKY)
    def test_tricky_credentials_load_back_unchanged(self, value: str) -> None:
        spec = render_spec(
            gateway(),
            fleet="prod",
            network="n",
            image="i",
            timezone="UTC",
            secrets=GatewaySecrets(username=SecretStr(value), password=SecretStr(value)),
            fingerprint_key=KEY,
        )
        loaded = settings_of(spec)
        assert loaded["IbLoginId"] == value
        assert loaded["IbPassword"] == value
        # A trailing backslash must not swallow the next line (TradingMode would default to live).
        assert loaded["TradingMode"] == "paper"
        _ini(spec).encode("ascii")  # escaped: plain ASCII, whatever Java's default charset

    @pytest.mark.parametrize(
        "value, reason",
        [
            (" leading", "whitespace"),
            ("trailing ", "whitespace"),
            ("tab\there", "control character"),
            ("two\nlines", "control character"),
            ("nul\x00", "control character"),
            ("del\x7f", "control character"),
            ("c1\x85", "control character"),
            ("", "empty"),
        ],
    )
    @pytest.mark.parametrize("field", ["username", "password"])
    def test_what_ibc_cannot_pass_on_is_refused_by_field_without_the_value(
        self, field: str, value: str, reason: str
    ) -> None:
        good = SecretStr("fine-value")
        secrets = GatewaySecrets(
            username=SecretStr(value) if field == "username" else good,
            password=SecretStr(value) if field == "password" else good,
        )
        with pytest.raises(SpecError) as info:
            render_spec(
                gateway(),
                fleet="prod",
                network="n",
                image="i",
                timezone="UTC",
                secrets=secrets,
                fingerprint_key=KEY,
            )
        message = str(info.value)
        assert f"gateway 'paper-1': the {field} " in message
        assert reason in message
        if value.strip():
            assert value.strip() not in message

    def test_credential_problem_names_no_value(self) -> None:
        assert credential_problem("ok-value") is None
        problem = credential_problem("bad\nvalue")
        assert problem is not None and "bad" not in problem and "value" not in problem.split()

    def test_ipv6_control_addresses_are_escaped_and_merged(self) -> None:
        spec = with_control_from(
            render(control_from=["fd00:1:0:0:0:0:0:9"]), ["fd00:1:0:0:0:0:0:1"]
        )
        assert settings_of(spec)["ControlFrom"] == "fd00:1:0:0:0:0:0:9,fd00:1:0:0:0:0:0:1"
        assert settings_of(spec)["IbPassword"] == PASSWORD


class TestIdentity:
    def test_name_labels_network_memory_and_restart_policy(self) -> None:
        spec = render(gateway(memory_limit="2g"))
        assert spec.name == "ibfleet-prod-paper-1"
        assert spec.label_map[LABEL_FLEET] == "prod"
        assert spec.label_map[LABEL_GATEWAY] == "paper-1"
        assert spec.label_map[LABEL_SPEC_HASH] == spec.spec_hash
        assert spec.network == "ibfleet-prod"
        assert spec.network_aliases == ("paper-1",)
        assert spec.memory_bytes == 2 * 1024**3
        assert spec.restart_policy == "no"

    def test_account_is_a_label_so_an_in_process_simulator_can_register_it(self) -> None:
        assert render(gateway(account="DU7654321")).label_map[LABEL_ACCOUNT] == "DU7654321"

    def test_memory_sizes(self) -> None:
        assert memory_bytes("1536m") == 1536 * 1024**2
        assert memory_bytes("512k") == 512 * 1024
        with pytest.raises(SpecError, match="memory size"):
            memory_bytes("lots")


class TestSecrets:
    def test_no_credential_appears_in_env_labels_or_repr(self) -> None:
        spec = render()
        visible = " ".join(
            [*(f"{k}={v}" for k, v in spec.env), *(f"{k}={v}" for k, v in spec.labels)]
        )
        assert PASSWORD not in visible
        assert USERNAME not in visible
        assert PASSWORD not in repr(spec)
        assert "TWS_PASSWORD" not in spec.env_map
        assert "TWS_USERID" not in spec.env_map

    def test_credentials_travel_as_read_only_files(self) -> None:
        files = {f.path: f for f in render().files}
        assert files[PASSWORD_PATH].content.get_secret_value() == PASSWORD
        assert files[USERNAME_PATH].content.get_secret_value() == USERNAME
        assert all(f.mode == 0o400 for f in files.values())

    def test_ibc_config_enables_the_command_server_and_carries_credentials(self) -> None:
        spec = render(control_from=["172.30.0.1"])
        ini = next(f for f in spec.files if f.path == CONFIG_INI_PATH).content.get_secret_value()
        lines = set(ini.splitlines())
        assert "CommandServerPort=7462" in lines
        assert "ControlFrom=172.30.0.1" in lines
        assert f"IbLoginId={USERNAME}" in lines
        assert f"IbPassword={PASSWORD}" in lines
        assert "TradingMode=paper" in lines
        assert "AcceptIncomingConnectionAction=reject" in lines

    def test_a_line_break_in_the_password_is_refused_without_showing_it(self) -> None:
        with pytest.raises(SpecError) as info:
            render(password="abc\nCommandServerPort=1")
        assert "line break" in str(info.value)
        assert "abc" not in str(info.value)

    def test_empty_fingerprint_key_is_refused(self) -> None:
        with pytest.raises(SpecError, match="fingerprint_key"):
            render(key=b"")


def _ini(spec: ContainerSpec) -> str:
    return next(f for f in spec.files if f.path == CONFIG_INI_PATH).content.get_secret_value()


class TestControlFrom:
    def test_runtime_address_is_added_to_the_rendered_control_from(self) -> None:
        spec = with_control_from(render(control_from=["10.1.0.9"]), ["172.30.0.1"])
        assert "ControlFrom=10.1.0.9,172.30.0.1" in _ini(spec).splitlines()

    def test_adding_keeps_the_hash_credentials_and_other_files(self) -> None:
        rendered = render()
        spec = with_control_from(rendered, ["172.30.0.1"])
        assert spec.spec_hash == rendered.spec_hash
        assert "ControlFrom=172.30.0.1" in _ini(spec).splitlines()
        assert f"IbPassword={PASSWORD}" in _ini(spec).splitlines()
        assert _ini(spec).endswith("\n")
        before = {f.path: f.content.get_secret_value() for f in rendered.files}
        after = {f.path: f.content.get_secret_value() for f in spec.files}
        assert before[PASSWORD_PATH] == after[PASSWORD_PATH]
        assert before[USERNAME_PATH] == after[USERNAME_PATH]

    def test_an_address_already_listed_is_not_repeated(self) -> None:
        spec = with_control_from(render(control_from=["172.30.0.1"]), ["172.30.0.1"])
        assert "ControlFrom=172.30.0.1" in _ini(spec).splitlines()

    def test_an_address_with_a_separator_is_refused(self) -> None:
        with pytest.raises(SpecError, match="not one address"):
            with_control_from(render(), ["1.2.3.4,5.6.7.8"])


class TestSpecHash:
    def test_same_input_gives_the_same_hash(self) -> None:
        assert render().spec_hash == render().spec_hash

    def test_password_change_changes_the_hash(self) -> None:
        assert render(password="other-password").spec_hash != render().spec_hash

    def test_hash_is_keyed_so_it_does_not_leak_a_plain_password_digest(self) -> None:
        assert render(key=b"a" * 32).spec_hash != render(key=b"b" * 32).spec_hash

    @pytest.mark.parametrize(
        "change",
        [
            {"api_port": 4200},
            {"read_only": True},
            {"memory_limit": "2g"},
            {"env": {"JAVA_HEAP_SIZE": "2048"}},
            {"restart": {"daily": "23:00"}},
        ],
    )
    def test_config_changes_change_the_hash(self, change: dict[str, Any]) -> None:
        assert render(gateway(**change)).spec_hash != render().spec_hash

    def test_image_change_changes_the_hash(self) -> None:
        assert render(image="ibfleet-sim:test").spec_hash != render().spec_hash

    def test_probe_list_is_not_part_of_the_container(self) -> None:
        # Probes are the supervisor's business: editing them must not restart a gateway.
        probed = gateway(probes=[{"symbol": "AAPL"}])
        assert render(probed).spec_hash == render().spec_hash


@given(st.times())
def test_ibc_clock_is_twelve_hour_with_am_pm(value: dt.time) -> None:
    text = ibc_clock(value)
    match = re.fullmatch(r"(\d\d):(\d\d) (AM|PM)", text)
    assert match is not None
    hour, minute, half = int(match.group(1)), int(match.group(2)), match.group(3)
    assert 1 <= hour <= 12
    assert minute == value.minute
    assert (hour % 12) + (12 if half == "PM" else 0) == value.hour


def test_ibc_clock_midnight_and_noon() -> None:
    assert ibc_clock(dt.time(0, 5)) == "12:05 AM"
    assert ibc_clock(dt.time(12, 0)) == "12:00 PM"


class TestSimulatorFleet:
    """supervisor.simfleet renders the broker and simulated gateways with this module."""

    @staticmethod
    def fleet_specs(**kwargs: Any) -> list[ContainerSpec]:
        from supervisor import simfleet

        gateways = [gateway(name="gw1", account="DU1001"), gateway(name="gw2", account="DU1002")]
        secrets = {
            gw.name: GatewaySecrets(
                username=SecretStr(f"user-{gw.name}"), password=SecretStr(f"{PASSWORD}-{gw.name}")
            )
            for gw in gateways
        }
        return simfleet.render_sim_fleet(
            gateways,
            fleet="prod",
            network="ibfleet-prod",
            image="ibfleet-sim:latest",
            timezone="UTC",
            secrets=secrets,
            fingerprint_key=KEY,
            **kwargs,
        )

    def test_broker_comes_first_with_its_users_as_a_secret_file(self) -> None:
        import json

        broker = self.fleet_specs(twofa_users={"user-gw2"})[0]
        assert broker.gateway == "sim-broker" and broker.network_aliases == ("sim-broker",)
        assert broker.label_map["io.ibfleet.component"] == "sim-broker"
        assert broker.command is not None and broker.command[0] == "broker"
        assert "--users-file" in broker.command
        (users_file,) = broker.files
        rows = json.loads(users_file.content.get_secret_value())
        assert [(r["username"], r["accounts"], r["twofa_required"]) for r in rows] == [
            ("user-gw1", ["DU1001"], False),
            ("user-gw2", ["DU1002"], True),
        ]
        visible = repr(broker) + " ".join(broker.command) + repr(broker.env)
        assert PASSWORD not in visible

    def test_broker_control_api_is_published_on_loopback_only(self) -> None:
        broker = self.fleet_specs(control_port=8799)[0]
        (binding,) = broker.ports
        assert (binding.host_ip, binding.host_port, binding.container_port) == (
            "127.0.0.1",
            8799,
            7471,
        )

    def test_gateways_run_the_simulator_image_and_reach_the_broker_by_alias(self) -> None:
        _, gw1, _ = self.fleet_specs()
        assert gw1.image == "ibfleet-sim:latest"
        assert gw1.env_map["IBFLEET_SIM_BROKER"] == "sim-broker:7470"
        assert gw1.env_map["IBFLEET_SIM_GATEWAY_NAME"] == "gw1"
        assert gw1.ports[0].container_port == 4004

    def test_the_planner_creates_the_broker_and_never_calls_it_an_orphan(self) -> None:
        from gateway.runtime import ContainerState, ObservedContainer
        from supervisor.reconcile import ActionKind, plan

        specs = self.fleet_specs()
        fresh = plan(specs, [], fleet="prod")
        assert {a.gateway for a in fresh if a.kind is ActionKind.CREATE} == {
            "sim-broker",
            "gw1",
            "gw2",
        }
        observed = [
            ObservedContainer(
                id=f"id-{s.gateway}",
                name=s.name,
                state=ContainerState.RUNNING,
                labels=s.label_map,
            )
            for s in specs
        ]
        steady = plan(specs, observed, fleet="prod")
        assert {a.kind for a in steady} == {ActionKind.ADOPT}

    def test_a_password_change_recreates_the_broker(self) -> None:
        from supervisor import simfleet

        users = [
            simfleet.SimUser(
                username=SecretStr("u"),
                password=SecretStr(pw),
                account="DU1",
                mode=gateway().mode,
            )
            for pw in ("one", "two")
        ]
        a, b = (
            simfleet.render_broker_spec(
                fleet="prod", network="n", image="i", users=[u], fingerprint_key=KEY
            )
            for u in users
        )
        assert a.spec_hash != b.spec_hash

    def test_a_gateway_named_like_the_broker_is_refused(self) -> None:
        from supervisor import simfleet

        with pytest.raises(SpecError, match="broker"):
            simfleet.render_sim_gateway_spec(
                gateway(name="sim-broker"),
                fleet="prod",
                network="n",
                image="i",
                timezone="UTC",
                secrets=GatewaySecrets(username=SecretStr("u"), password=SecretStr("p")),
                fingerprint_key=KEY,
            )


class TestHardening:
    def test_defaults_drop_every_capability_and_forbid_new_privileges(self) -> None:
        hard = render().hardening
        assert hard.cap_drop == ("ALL",) and hard.cap_add == ()
        assert hard.security_opt == ("no-new-privileges:true",)
        assert hard.pids_limit == 1024 and hard.nano_cpus == 2_000_000_000
        assert hard.read_only_root is False
        assert (hard.log_max_size, hard.log_max_files) == ("10m", 5)
        spec = render()
        assert spec.memory_swap_bytes == spec.memory_bytes

    def test_resources_come_from_the_config(self) -> None:
        gw = gateway(
            resources={"cpus": 0.5, "pids": 200, "read_only_root": True, "log_max_size": "5m"}
        )
        hard = render(gw).hardening
        assert (hard.nano_cpus, hard.pids_limit, hard.read_only_root) == (500_000_000, 200, True)
        assert hard.log_max_size == "5m"

    @pytest.mark.parametrize(
        "resources",
        [{"cpus": 1.0}, {"pids": 512}, {"read_only_root": True}, {"log_max_files": 2}],
    )
    def test_every_hardening_field_is_in_the_spec_hash(self, resources: dict[str, Any]) -> None:
        assert render(gateway(resources=resources)).spec_hash != render().spec_hash

    def test_trusted_ips_are_labelled_and_hashed(self) -> None:
        spec = render(gateway(trusted_ips=["10.1.0.0/16"]))
        assert spec.label_map["io.ibfleet.trusted"] == "10.1.0.0/16"
        assert spec.trusted_sources == ("10.1.0.0/16",)
        assert spec.spec_hash != render().spec_hash
        assert "io.ibfleet.trusted" not in render().label_map

    def test_an_ipv6_trusted_source_is_refused_by_the_renderer_too(self) -> None:
        with pytest.raises(SpecError, match="not an IPv4 address"):
            render_container(
                fleet="f",
                gateway="g",
                component="gateway",
                image="img",
                env={},
                files=(),
                ports=(),
                network="n",
                memory=1 << 30,
                fingerprint_key=b"k" * 32,
                trusted_sources=("fd00::/8",),
            )

    def test_bad_resources_are_refused_naming_the_field(self) -> None:
        with pytest.raises(ValueError, match="pids"):
            gateway(resources={"pids": 1})
