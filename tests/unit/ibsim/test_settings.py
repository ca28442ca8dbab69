"""ibsim.settings reads a container's config once, as the image and IBC do."""

from __future__ import annotations

from datetime import time

import pytest

from ibsim.settings import ConfigError, read_settings


def files(config: bytes):
    def read(path: str) -> bytes:
        if path != "/cfg/config.ini":
            raise FileNotFoundError(2, "No such file or directory", path)
        return config

    return read


CUSTOM = {"CUSTOM_CONFIG": "yes", "IBC_INI": "/cfg/config.ini", "TRADING_MODE": "paper"}


def test_custom_config_reads_ibc_settings_from_config_ini_not_the_env() -> None:
    config = (
        b"IbLoginId=u\nIbPassword=p\\\\x\nTradingMode=paper\nAutoRestartTime=11:45 PM\n"
        b"ColdRestartTime=07:05\nCommandServerPort=7462\nControlFrom=10.0.0.1,fd00:abcd:0:0:0:0:0:1\n"
        b"ReloginAfterSecondFactorAuthenticationTimeout=yes\n"
        b"SecondFactorAuthenticationExitInterval=30\n"
    )
    env = {
        **CUSTOM,
        "AUTO_RESTART_TIME": "01:00 AM",
        "TWS_USERID": "ignored",
        "TZ": "Europe/Zurich",
    }
    s = read_settings(env, read_file=files(config), need_broker=False)
    assert (s.username, s.password) == ("u", "p\\x")
    assert s.auto_restart_time == time(23, 45) and s.cold_restart_time == time(7, 5)
    assert s.command_port == 7462 and s.control_from == "10.0.0.1,fd00:abcd:0:0:0:0:0:1"
    assert s.relogin_after_2fa_timeout and s.twofa_exit_interval == 30
    assert str(s.zone) == "Europe/Zurich" and s.api_port == 4004


def test_missing_trading_mode_defaults_to_live_so_socat_reaches_nothing() -> None:
    config = b"IbLoginId=u\nIbPassword=secret\\\nTradingMode=paper\n"
    s = read_settings(CUSTOM, read_file=files(config), need_broker=False)
    assert s.password == "secretTradingMode=paper"
    assert s.ibc_mode == "live" and not s.socat_reaches_gateway


def test_malformed_unicode_escape_is_recorded_not_raised() -> None:
    s = read_settings(CUSTOM, read_file=files(b"IbPassword=\\u00zz\n"), need_broker=False)
    assert s.config_broken is not None and "line 1" in s.config_broken


def test_empty_auto_restart_time_leaves_the_gateway_default() -> None:
    s = read_settings(
        CUSTOM, read_file=files(b"IbLoginId=u\nAutoRestartTime=\n"), need_broker=False
    )
    assert s.auto_restart_time is None


def test_errors_name_what_is_wrong() -> None:
    with pytest.raises(ConfigError, match="IBC_INI"):
        read_settings({**CUSTOM, "IBC_INI": "/nope"}, read_file=files(b""), need_broker=False)
    with pytest.raises(ConfigError, match="AutoRestartTime"):
        read_settings(
            CUSTOM, read_file=files(b"IbLoginId=u\nAutoRestartTime=23:45\n"), need_broker=False
        )
    with pytest.raises(ConfigError, match="TZ"):
        read_settings(
            {**CUSTOM, "TZ": "Mars/Base"}, read_file=files(b"IbLoginId=u\n"), need_broker=False
        )
    with pytest.raises(ConfigError, match="TWOFA_TIMEOUT_ACTION"):
        read_settings(
            {**CUSTOM, "TWOFA_TIMEOUT_ACTION": "later"},
            read_file=files(b"IbLoginId=u\n"),
            need_broker=False,
        )
