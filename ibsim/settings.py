"""What one simulated gateway container is configured to do: read once, in one place.

The container entrypoint (``ibfleet sim gateway``) and the in-process runtime both call
:func:`read_settings` with the container's env and a way to read its files, so the two cannot
drift. It follows the gnzsnz image and IBC 3.24.1:

* ``CUSTOM_CONFIG=yes``: IBC's settings come only from the config.ini at ``IBC_INI``
  (``stable/scripts/common.sh`` ``apply_settings`` leaves the file alone); from the env the
  image still reads ``TRADING_MODE`` (which socat port, ``set_ports``), ``TZ`` (the JVM's zone),
  ``TWOFA_TIMEOUT_ACTION`` (ibcstart's ``--on2fatimeout``, ``run.sh``) and ``JAVA_HEAP_SIZE``.
* otherwise the image renders config.ini from the env by plain substitution (``envsubst`` of
  ``config.ini.tmpl``, CRLF lines, no escaping) and IBC reads that: so a ``TWS_PASSWORD`` ending
  in a backslash swallows the next line here exactly as it does there.

IBC loads the file with ``java.util.Properties.load`` (:mod:`gateway.javaprops`) and reads each
value through ``DefaultSettings.getString`` (trimmed; empty means the default). A file Java
cannot load (a malformed ``\\u`` escape) is not an error here: it is recorded in
:attr:`GatewaySettings.config_broken` and the simulated JVM dies on it at every launch, as the
real one does. Pure apart from the injected file reader.

It is also where that contract is written: :func:`sim_env`, :func:`image_env` and
:func:`custom_config_env` give the variables every writer (the supervisor's simulator fleet,
the process-mode fleet, tests) sets, under the names :func:`read_settings` reads.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway import javaprops
from gateway.config import ExistingSessionAction, TradingMode, TwoFactorTimeoutAction
from ibsim import auth

__all__ = [
    "DEFAULT_GATEWAY_AUTO_RESTART",
    "DEFAULT_IBC_INI",
    "ENV_API_PORT",
    "ENV_BROKER",
    "ENV_COMMAND_PORT",
    "ENV_CONTROL_FROM",
    "ENV_GATEWAY_NAME",
    "ENV_JVM_START",
    "ConfigError",
    "GatewaySettings",
    "custom_config_env",
    "image_env",
    "parse_auto_restart_time",
    "parse_cold_restart_time",
    "read_settings",
    "sim_env",
]

# The simulator's own variables (the rest of the contract is the gnzsnz image's).
ENV_BROKER = "IBFLEET_SIM_BROKER"  # host:port of the broker link; required in a container
ENV_GATEWAY_NAME = "IBFLEET_SIM_GATEWAY_NAME"  # the gateway's name at the broker (hostname)
ENV_API_PORT = "IBFLEET_SIM_API_PORT"  # socat's port instead of 4003/4004
ENV_COMMAND_PORT = "IBFLEET_SIM_COMMAND_PORT"  # the command server on this port (0 = free)
ENV_CONTROL_FROM = "IBFLEET_SIM_CONTROL_FROM"  # replaces config.ini's ControlFrom
ENV_JVM_START = "IBFLEET_SIM_JVM_START"  # seconds from a JVM's launch to its login dialog

# A real Gateway JVM takes 10-30 s from launch to its login dialog (or restored session), and
# ibcstart.sh relaunches at once (it echoes "sleep 2" but does not sleep). The simulator waits
# this long by default: short enough for tests, long enough that a supervisor reacting to
# "Login failed" can stop the container before IBC's next attempt, as it can with the real one.
DEFAULT_JVM_START = 1.5

SOCAT_LIVE_PORT = 4003  # the image's socat ports (set_ports); the Gateway's own are 4001/4002
SOCAT_PAPER_PORT = 4004
DEFAULT_IBC_INI = "/home/ibgateway/ibc/config.ini"  # the image's ENV IBC_INI
# The IB Gateway ships with its daily auto-restart at 11:45 PM; with an empty AutoRestartTime
# IBC leaves the Gateway's own setting alone, so that is when the simulated Gateway restarts.
DEFAULT_GATEWAY_AUTO_RESTART = time(23, 45)

_TIME_12H = re.compile(r"^(\d{2}):(\d{2}) ([AP]M)$")
_TIME_24H = re.compile(r"^(\d{1,2}):(\d{2})$")

# The keys of the image's config.ini.tmpl that the simulator reads, in the template's order,
# each followed by a blank line as there; CRLF as the template's own line ends.
_TEMPLATE_KEYS = (
    ("IbLoginId", "TWS_USERID"),
    ("IbPassword", "TWS_PASSWORD"),
    ("SecondFactorDevice", "TWOFA_DEVICE"),
    ("ReloginAfterSecondFactorAuthenticationTimeout", "RELOGIN_AFTER_TWOFA_TIMEOUT"),
    ("SecondFactorAuthenticationExitInterval", "TWOFA_EXIT_INTERVAL"),
    ("SecondFactorAuthenticationTimeout", None),
    ("TradingMode", "TRADING_MODE"),
    ("LoginDialogDisplayTimeout", None),
    ("ExistingSessionDetectedAction", "EXISTING_SESSION_DETECTED_ACTION"),
    ("ReadOnlyApi", "READ_ONLY_API"),
    ("AutoLogoffTime", "AUTO_LOGOFF_TIME"),
    ("AutoRestartTime", "AUTO_RESTART_TIME"),
    ("ColdRestartTime", "TWS_COLD_RESTART"),
    ("CommandServerPort", None),
    ("ControlFrom", None),
    ("BindAddress", None),
)
_TEMPLATE_FIXED = {
    "SecondFactorAuthenticationTimeout": "180",
    "LoginDialogDisplayTimeout": "60",
    "CommandServerPort": "0",
    "ControlFrom": "",
    "BindAddress": "",
}


class ConfigError(ValueError):
    """The container's environment is wrong: the message names the variable or file."""


@dataclasses.dataclass(frozen=True, slots=True)
class GatewaySettings:
    """One container's configuration as the image, ibcstart.sh and IBC see it."""

    username: str
    password: str = dataclasses.field(repr=False)
    #: IBC's TradingMode (config.ini; IBC defaults to live when it is missing).
    ibc_mode: TradingMode
    #: TRADING_MODE from the env: which port socat publishes (4003 live, 4004 paper).
    socat_mode: TradingMode
    read_only_api: bool | None
    #: AutoRestartTime as config.ini gives it; None = leave the Gateway's own time alone.
    auto_restart_time: time | None
    #: AutoLogoffTime (only when AutoRestartTime is empty: the Gateway logs off, no restart).
    auto_logoff_time: time | None
    #: ColdRestartTime, always on Sunday in the JVM's zone (IbcTws.getColdRestartTime).
    cold_restart_time: time | None
    relogin_after_2fa_timeout: bool
    twofa_exit_interval: int
    twofa_timeout: int
    login_dialog_timeout: int
    #: ExistingSessionDetectedAction as IBC reads it (an unknown value means secondary).
    existing_session_action: ExistingSessionAction
    command_server_port: int
    control_from: str
    bind_address: str
    #: ibcstart's --on2fatimeout: restart relaunches after exit 1111, exit ends the loop.
    on_2fa_timeout: TwoFactorTimeoutAction
    #: The JVM's zone (the container's TZ; UTC when unset, as in the image).
    zone: ZoneInfo
    #: Why Java's Properties.load throws on this config.ini (the JVM dies), or None.
    config_broken: str | None = None
    # -- the simulator's own placement (IBFLEET_SIM_*) --------------------------------------
    gateway_name: str = ""
    broker: tuple[str, int] | None = None
    api_port: int = 0
    command_port_override: int | None = None
    custom_config: bool = False
    ini_path: str = ""
    #: Seconds from the JVM's launch to the login dialog (the Gateway's own start-up).
    jvm_start: float = DEFAULT_JVM_START

    @property
    def api_listen_port(self) -> int:
        """The port the simulated socat publishes (IBFLEET_SIM_API_PORT overrides it)."""
        return self.api_port

    @property
    def socat_reaches_gateway(self) -> bool:
        """socat relays to 4001 (live) or 4002 (paper) by TRADING_MODE; the Gateway listens on
        the one its own TradingMode picks, so a mismatch leaves the API unreachable."""
        return self.socat_mode == self.ibc_mode

    @property
    def command_server_enabled(self) -> bool:
        """IBC starts its command server when CommandServerPort is set (the simulator's
        IBFLEET_SIM_COMMAND_PORT also starts it, on that port; 0 there = any free port)."""
        return self.command_server_port != 0 or self.command_port_override is not None

    @property
    def command_port(self) -> int:
        """Where the command server listens (0: a free port)."""
        if self.command_port_override is not None:
            return self.command_port_override
        return self.command_server_port


def parse_auto_restart_time(text: str, *, what: str = "AutoRestartTime") -> time:
    """IBC's ``hh:mm AM/PM`` (ConfigureAutoLogoffOrRestartTimeTask: ``ofPattern("hh:mm a")``).

    Java's pattern wants two-digit hours and an upper-case AM/PM; quotes are read literally.
    """
    match = _TIME_12H.match(text)
    if match is None:
        hint = " (remove the quotes: IBC reads them literally)" if text[:1] in "'\"" else ""
        raise ConfigError(f"{what}={text!r}: expected hh:mm AM or hh:mm PM{hint}")
    hour, minute = int(match.group(1)), int(match.group(2))
    if not (1 <= hour <= 12 and minute < 60):
        raise ConfigError(f"{what}={text!r}: hour 01-12, minutes 00-59")
    return time((hour % 12) + (12 if match.group(3) == "PM" else 0), minute)


def parse_cold_restart_time(text: str) -> time:
    """IBC's ColdRestartTime, ``HH:mm`` (SimpleDateFormat, lenient about one-digit hours)."""
    match = _TIME_24H.match(text)
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ConfigError(f"ColdRestartTime={text!r}: expected HH:MM, e.g. 07:05")
    return time(int(match.group(1)), int(match.group(2)))


def _getstring(props: Mapping[str, str], key: str, default: str = "") -> str:
    # DefaultSettings.getString: missing or empty means the default; the value is trimmed.
    value = props.get(key, "")
    return (value or default).strip()


def _getint(props: Mapping[str, str], key: str, default: int) -> int:
    # DefaultSettings.getInt: no trim; a bad number is logged and the default used.
    value = props.get(key, "")
    try:
        return int(value) if value and value.lstrip("-").isdigit() else default
    except ValueError:
        return default


def _getbool(props: Mapping[str, str], key: str, default: bool) -> bool:
    value = props.get(key, "").lower()
    if value in ("true", "yes"):
        return True
    if value in ("false", "no"):
        return False
    return default


def _file_env(env: Mapping[str, str], name: str, reader: Callable[[str], bytes]) -> str:
    """The image's ``file_env``: NAME or the file at NAME_FILE, never both."""
    value, path = env.get(name, ""), env.get(f"{name}_FILE", "")
    if value and path:
        raise ConfigError(f"both {name} and {name}_FILE are set (but are exclusive)")
    if value:
        return value
    if path:
        try:
            # bash's $(<file) drops trailing newlines only.
            return reader(path).decode("utf-8", errors="replace").rstrip("\n")
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={path!r}: cannot read ({exc.strerror})") from None
    return ""


def render_image_template(env: Mapping[str, str], reader: Callable[[str], bytes]) -> bytes:
    """config.ini as the image's ``envsubst < config.ini.tmpl`` writes it (no escaping)."""
    password = _file_env(env, "TWS_PASSWORD", reader)
    values = {**env, "TWS_PASSWORD": password}
    lines = ["# config.ini rendered from the env, as the gnzsnz image does", ""]
    for key, var in _TEMPLATE_KEYS:
        value = values.get(var, "") if var is not None else _TEMPLATE_FIXED[key]
        lines += [f"{key}={value}", "", ""]
    return "\r\n".join(lines).encode("utf-8")


def _port(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) > 65535:
        raise ConfigError(f"{name}={raw!r}: expected a TCP port number")
    return int(raw)


def read_settings(
    env: Mapping[str, str],
    *,
    read_file: Callable[[str], bytes],
    hostname: str = "gateway",
    need_broker: bool = True,
) -> GatewaySettings:
    """The container's configuration; raises ConfigError naming what is wrong and where.

    ``read_file`` reads a file inside the container (raising OSError); ``need_broker`` is
    False in process mode, where the broker is in the same event loop.
    """
    custom = env.get("CUSTOM_CONFIG", "") == "yes"
    ini_path = env.get("IBC_INI", "") or DEFAULT_IBC_INI
    if custom:
        try:
            data = read_file(ini_path)
        except OSError as exc:
            raise ConfigError(
                f"CUSTOM_CONFIG=yes but IBC_INI={ini_path!r} cannot be read ({exc.strerror})"
            ) from None
    else:
        data = render_image_template(env, read_file)
    broken: str | None = None
    try:
        props = javaprops.load(data, source=ini_path)
    except javaprops.PropertiesError as exc:
        broken, props = str(exc), {}

    socat_text = env.get("TRADING_MODE", "paper") or "paper"
    try:
        socat_mode = TradingMode(socat_text)
    except ValueError:
        raise ConfigError(
            f"TRADING_MODE={socat_text!r}: the simulator runs one session: paper or live"
        ) from None
    action_text = (env.get("TWOFA_TIMEOUT_ACTION", "") or "exit").lower()
    try:
        action = TwoFactorTimeoutAction(action_text)
    except ValueError:
        raise ConfigError(
            f"TWOFA_TIMEOUT_ACTION={action_text!r}: expected exit or restart"
        ) from None
    zone_name = env.get("TZ", "") or "Etc/UTC"
    try:
        zone = ZoneInfo(zone_name.removeprefix(":"))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"TZ={zone_name!r}: not a known time zone") from None

    mode = _getstring(props, "TradingMode", "live").lower()
    if mode not in ("live", "paper") and broken is None:
        raise ConfigError(f"{ini_path}: TradingMode={mode!r}: IBC accepts live or paper")
    restart_text = _getstring(props, "AutoRestartTime")
    logoff_text = _getstring(props, "AutoLogoffTime")
    cold_text = _getstring(props, "ColdRestartTime")
    read_only_text = _getstring(props, "ReadOnlyApi")

    broker: tuple[str, int] | None = None
    broker_text = env.get(ENV_BROKER, "").strip()
    if broker_text or need_broker:
        host, _, port_text = broker_text.rpartition(":")
        if not host or not port_text.isdigit():
            raise ConfigError(
                f"{ENV_BROKER}={broker_text!r}: expected host:port of the sim broker link"
            )
        broker = (host, int(port_text))
    api_port = _port(env, ENV_API_PORT)
    username = _getstring(props, "IbLoginId")
    if not username and broken is None:
        where = f"IbLoginId in {ini_path}" if custom else "TWS_USERID"
        raise ConfigError(f"no username: set {where}")
    return GatewaySettings(
        username=username,
        password=_getstring(props, "IbPassword"),
        ibc_mode=TradingMode(mode) if mode in ("live", "paper") else TradingMode.LIVE,
        socat_mode=socat_mode,
        read_only_api=None if not read_only_text else _getbool(props, "ReadOnlyApi", True),
        auto_restart_time=parse_auto_restart_time(restart_text) if restart_text else None,
        auto_logoff_time=(
            parse_auto_restart_time(logoff_text, what="AutoLogoffTime") if logoff_text else None
        ),
        cold_restart_time=parse_cold_restart_time(cold_text) if cold_text else None,
        relogin_after_2fa_timeout=_relogin_permitted(props),
        twofa_exit_interval=_getint(props, "SecondFactorAuthenticationExitInterval", 60),
        twofa_timeout=_getint(props, "SecondFactorAuthenticationTimeout", 180),
        login_dialog_timeout=_getint(props, "LoginDialogDisplayTimeout", 60),
        existing_session_action=auth.parse_existing_session_action(
            _getstring(props, "ExistingSessionDetectedAction", "manual")
        ),
        command_server_port=_getint(props, "CommandServerPort", 0),
        control_from=env.get(ENV_CONTROL_FROM, "") or _getstring(props, "ControlFrom"),
        bind_address=_getstring(props, "BindAddress"),
        on_2fa_timeout=action,
        zone=zone,
        config_broken=broken,
        gateway_name=env.get(ENV_GATEWAY_NAME, "").strip() or hostname,
        broker=broker,
        api_port=(
            api_port
            if api_port is not None
            else (SOCAT_LIVE_PORT if socat_mode is TradingMode.LIVE else SOCAT_PAPER_PORT)
        ),
        command_port_override=_port(env, ENV_COMMAND_PORT),
        jvm_start=_jvm_start(env),
        custom_config=custom,
        ini_path=ini_path,
    )


def _relogin_permitted(props: Mapping[str, str]) -> bool:
    # LoginManager.reloginPermitted: the old ExitAfter... setting counts when the new is empty.
    if not _getstring(props, "ReloginAfterSecondFactorAuthenticationTimeout"):
        if _getstring(props, "ExitAfterSecondFactorAuthenticationTimeout"):
            return _getbool(props, "ExitAfterSecondFactorAuthenticationTimeout", False)
        return False
    return _getbool(props, "ReloginAfterSecondFactorAuthenticationTimeout", False)


# -- writing the contract ----------------------------------------------------------------------


def _jvm_start(env: Mapping[str, str]) -> float:
    raw = env.get(ENV_JVM_START, "").strip()
    if not raw:
        return DEFAULT_JVM_START
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0.0 <= seconds <= 600.0:
        raise ConfigError(f"{ENV_JVM_START}={raw!r}: expected seconds between 0 and 600")
    return seconds


def sim_env(
    *,
    broker: tuple[str, int] | None = None,
    gateway_name: str | None = None,
    api_port: int | None = None,
    command_port: int | None = None,
    control_from: str | None = None,
    jvm_start: float | None = None,
) -> dict[str, str]:
    """The simulator's own variables of a gateway container (only those given)."""
    env: dict[str, str] = {}
    if jvm_start is not None:
        env[ENV_JVM_START] = f"{jvm_start:g}"
    if broker is not None:
        env[ENV_BROKER] = f"{broker[0]}:{broker[1]}"
    if gateway_name is not None:
        env[ENV_GATEWAY_NAME] = gateway_name
    if api_port is not None:
        env[ENV_API_PORT] = str(api_port)
    if command_port is not None:
        env[ENV_COMMAND_PORT] = str(command_port)
    if control_from is not None:
        env[ENV_CONTROL_FROM] = control_from
    return env


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def image_env(
    *,
    username: str,
    password: str | None = None,
    password_file: str | None = None,
    trading_mode: str = "paper",
    read_only_api: bool | None = None,
    existing_session_action: str | None = None,
    relogin_after_2fa_timeout: bool | None = None,
    twofa_exit_interval: int | None = None,
    auto_restart_time: str | None = None,
) -> dict[str, str]:
    """The gnzsnz variables from which the image renders config.ini (no CUSTOM_CONFIG).

    Exactly one of ``password`` and ``password_file`` (the image's ``file_env`` rule).
    """
    if (password is None) == (password_file is None):
        raise ValueError("image_env: give exactly one of password and password_file")
    env = {"TWS_USERID": username, "TRADING_MODE": trading_mode}
    if password is not None:
        env["TWS_PASSWORD"] = password
    if password_file is not None:
        env["TWS_PASSWORD_FILE"] = password_file
    if read_only_api is not None:
        env["READ_ONLY_API"] = _yes_no(read_only_api)
    if existing_session_action is not None:
        env["EXISTING_SESSION_DETECTED_ACTION"] = existing_session_action
    if relogin_after_2fa_timeout is not None:
        env["RELOGIN_AFTER_TWOFA_TIMEOUT"] = _yes_no(relogin_after_2fa_timeout)
    if twofa_exit_interval is not None:
        env["TWOFA_EXIT_INTERVAL"] = str(twofa_exit_interval)
    if auto_restart_time is not None:
        env["AUTO_RESTART_TIME"] = auto_restart_time
    return env


def custom_config_env(
    *,
    trading_mode: str,
    ini_path: str = DEFAULT_IBC_INI,
    twofa_timeout_action: str = "exit",
    tz: str | None = None,
) -> dict[str, str]:
    """What the image reads from the env with ``CUSTOM_CONFIG=yes`` (IBC reads config.ini)."""
    env = {
        "CUSTOM_CONFIG": "yes",
        "IBC_INI": ini_path,
        "TRADING_MODE": trading_mode,
        "TWOFA_TIMEOUT_ACTION": twofa_timeout_action,
    }
    if tz is not None:
        env["TZ"] = tz
    return env
