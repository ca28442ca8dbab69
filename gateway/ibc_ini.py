"""IBC's config.ini for one gateway: its settings, the credential rules, the ControlFrom merge.

Pure, no I/O. config.ini is a Java Properties file (IBC loads it with ``Properties.load``):
every value is escaped with :mod:`gateway.javaprops`, and what IBC cannot pass on (a credential
with a control character, or with leading or trailing whitespace, which IBC's ``getString``
trims) is a :class:`gateway.spec.SpecError` naming the gateway and the field, never the value.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import unicodedata
from collections.abc import Sequence

from pydantic import SecretStr

from gateway import javaprops
from gateway.config import GatewayConfig, TwoFactorTimeoutAction
from gateway.spec import (
    COMMAND_SERVER_PORT,
    CONFIG_INI_PATH,
    ContainerSpec,
    GatewaySecrets,
    SecretFile,
    SpecError,
)

__all__ = [
    "DEFAULT_DAILY_RESTART",
    "TWOFA_PUSH_WINDOW_SECONDS",
    "credential_problem",
    "ibc_clock",
    "ibc_settings",
    "render_ibc_config",
    "with_control_from",
]

SUNDAY = 6  # datetime.weekday()


def ibc_clock(value: dt.time) -> str:
    """IBC's ``hh:mm AM/PM``, unquoted: a quoted value was silently taken as a logoff time."""
    hour = value.hour % 12 or 12
    return f"{hour:02d}:{value.minute:02d} {'AM' if value.hour < 12 else 'PM'}"


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


#: The daily auto-restart rendered when the caller passes no default: the middle of the North
#: America reset window (23:30-01:00 New York) on a New York clock, the fleet file's default
#: region and timezone. The supervisor passes the fleet's own default
#: (``FleetSettings.daily_restart``, from ``supervisor.schedules.default_daily_restart``).
DEFAULT_DAILY_RESTART = dt.time(0, 15)

#: IB's 2FA push window in seconds; IBC's default, rendered so the file says what IBC assumes.
TWOFA_PUSH_WINDOW_SECONDS = 180

_CREDENTIAL_FIELDS = {"username": "the username", "password": "the password"}


def credential_problem(text: str) -> str | None:
    """Why IBC cannot log in with ``text`` as a username or password, or None. Never says ``text``.

    config.ini can carry any character through Properties escapes, but IBC trims every value it
    reads (``DefaultSettings.getString`` calls ``String.trim``, which drops characters up to
    U+0020 at both ends), and IB's login dialog cannot take a control character.
    """
    if not text:
        return "is empty"
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        return (
            "contains a control character (a line break, tab or the like), which IB's login "
            "cannot take"
        )
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        return "contains a lone UTF-16 surrogate, which is not text"
    if text != text.strip(_JAVA_TRIMMED):
        return (
            "starts or ends with whitespace, which IBC trims from config.ini values "
            "(the login would use a different value)"
        )
    return None


# Java's String.trim drops every character from U+0000 to U+0020 at either end.
_JAVA_TRIMMED = "".join(chr(code) for code in range(0x21))


def _credential(text: str, *, field: str, gateway: str) -> str:
    problem = credential_problem(text)
    if problem is not None:
        raise SpecError(f"gateway {gateway!r}: {_CREDENTIAL_FIELDS[field]} {problem}")
    return text


def _plain_value(text: str, *, what: str, gateway: str) -> str:
    # Any character could be escaped, but IBC trims the value and a control character in a
    # setting is a mistake, not a wish.
    if any(unicodedata.category(ch) == "Cc" for ch in text) or text != text.strip():
        raise SpecError(
            f"gateway {gateway!r}: {what} has a control character or surrounding whitespace"
        )
    return text


def _ini_text(pairs: Sequence[tuple[str, str]]) -> str:
    header = "# Rendered by ibfleet; the supervisor owns this file.\n"
    return header + javaprops.dump(pairs).decode("ascii")


def ibc_settings(
    gateway: GatewayConfig,
    *,
    secrets: GatewaySecrets,
    control_from: Sequence[str] = (),
    default_daily_restart: dt.time = DEFAULT_DAILY_RESTART,
) -> list[tuple[str, str]]:
    """IBC's config.ini settings, unescaped, in file order (``render_ibc_config`` writes them).

    ``default_daily_restart`` is the AutoRestartTime of a gateway without ``restart.daily``.
    """
    two = gateway.two_factor
    restart = gateway.restart
    username = _credential(
        secrets.username.get_secret_value(), field="username", gateway=gateway.name
    )
    password = _credential(
        secrets.password.get_secret_value(), field="password", gateway=gateway.name
    )
    device = _plain_value(two.device, what="two_factor.device", gateway=gateway.name)
    cold = ""
    if restart.weekly_cold is not None:
        if restart.weekly_cold.weekday != SUNDAY:
            raise SpecError(
                f"gateway {gateway.name!r}: restart.weekly_cold {restart.weekly_cold} is not on "
                "Sunday; IBC cold-restarts only on Sunday in the container's timezone"
            )
        cold = restart.weekly_cold.time.strftime("%H:%M")
    daily = restart.daily if restart.daily is not None else default_daily_restart
    # One mechanism per 2FA timeout: with "restart" IBC relogs in and ibcstart relaunches;
    # with "exit" IBC does neither and the supervisor restarts the container.
    ibc_restarts = two.timeout_action is TwoFactorTimeoutAction.RESTART
    return [
        ("FIX", "no"),
        ("IbLoginId", username),
        ("IbPassword", password),
        ("TradingMode", gateway.mode.value),
        ("ReadOnlyApi", _yes_no(gateway.read_only)),
        ("SecondFactorDevice", device),
        ("ReloginAfterSecondFactorAuthenticationTimeout", _yes_no(ibc_restarts)),
        ("SecondFactorAuthenticationExitInterval", str(int(two.exit_interval.total_seconds()))),
        ("SecondFactorAuthenticationTimeout", str(TWOFA_PUSH_WINDOW_SECONDS)),
        ("ExistingSessionDetectedAction", gateway.existing_session.value),
        ("AcceptIncomingConnectionAction", "reject"),
        ("AcceptNonBrokerageAccountWarning", "yes"),
        ("AutoRestartTime", ibc_clock(daily)),
        ("AutoLogoffTime", ""),
        ("ColdRestartTime", cold),
        ("CommandServerPort", str(COMMAND_SERVER_PORT)),
        ("ControlFrom", ",".join(control_from)),
        ("BindAddress", ""),
        ("CommandPrompt", ""),
        ("SuppressInfoMessages", "yes"),
        ("AllowBlindTrading", "no"),
    ]


def render_ibc_config(
    gateway: GatewayConfig,
    *,
    secrets: GatewaySecrets,
    control_from: Sequence[str] = (),
    default_daily_restart: dt.time = DEFAULT_DAILY_RESTART,
) -> str:
    """IBC's config.ini (escaped for Java Properties) with the command server on.

    For ``CUSTOM_CONFIG=yes`` images, which read their settings from this file alone.
    """
    return _ini_text(
        ibc_settings(
            gateway,
            secrets=secrets,
            control_from=control_from,
            default_daily_restart=default_daily_restart,
        )
    )


def with_control_from(spec: ContainerSpec, addresses: Sequence[str]) -> ContainerSpec:
    """The spec with ``addresses`` added to IBC's ControlFrom in its config.ini.

    A runtime learns the address the supervisor's commands come from only once the network
    exists (the fleet network's gateway IP for a supervisor on the host; its own container IP
    on the fleet network for a supervisor in a container), so it adds it at create time. The spec
    hash is left as rendered: the address is a fact of the host, not of the desired configuration.
    """
    extra = [a.strip() for a in addresses if a.strip()]
    for address in extra:
        if any(ch in address for ch in ",\r\n") or any(
            unicodedata.category(ch) == "Cc" for ch in address
        ):
            raise SpecError(f"control address {address!r} of {spec.name!r} is not one address")
    if not extra:
        return spec
    files = []
    for item in spec.files:
        if item.path != CONFIG_INI_PATH:
            files.append(item)
            continue
        # Read back as IBC would, so an escaped value is merged as the value it stands for.
        settings = javaprops.load(
            item.content.get_secret_value().encode("latin-1"), source=f"{spec.name} config.ini"
        )
        present = [a for a in settings.get("ControlFrom", "").split(",") if a]
        settings["ControlFrom"] = ",".join(present + [a for a in extra if a not in present])
        files.append(
            SecretFile(
                path=item.path,
                content=SecretStr(_ini_text(list(settings.items()))),
                mode=item.mode,
            )
        )
    return dataclasses.replace(spec, files=tuple(files))
