"""IB's numeric codes with names: TWS API error codes, and IBC's process exit codes.

Two namespaces that must never mix: IBC's exit codes 1100-1102 are "unhandled exception",
"can't find control" and "wrong number of arguments", while TWS API codes 1100-1102 are
connectivity lost and restored. Each lives in its own IntEnum and its own helpers, so a value
can only be read in the namespace it came from. Pure: no I/O.

Also here: what makes a gateway's text (IB's messages, IBC's log lines, probe errors) inert
before anyone shows it (:func:`inert`, :func:`ib_said`, :func:`defuse`).
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass
from typing import Final


class ApiCode(enum.IntEnum):
    """TWS API codes delivered through the error callback (reqId, code, message)."""

    PACING_MESSAGES = 100  # more than 50 messages per second from one client
    DUPLICATE_ORDER_ID = 103
    HISTORICAL_DATA_ERROR = 162  # historical data service error, includes pacing violations
    NO_SECURITY_DEFINITION = 200
    ORDER_REJECTED = 201
    ORDER_CANCELLED = 202  # the confirmation of a cancel, not a failure
    SECURITY_NOT_ALLOWED = 203
    ERROR_VALIDATING_REQUEST = 321
    CLIENT_ID_IN_USE = 326
    MARKET_DATA_NOT_SUBSCRIBED = 354
    ORDER_MESSAGE_WARNING = 399
    CANNOT_CONNECT = 502
    NOT_CONNECTED = 504
    BAD_MESSAGE_LENGTH = 507
    CONNECTIVITY_LOST = 1100
    RESTORED_DATA_LOST = 1101  # market data subscriptions are gone: resubscribe
    RESTORED_DATA_MAINTAINED = 1102
    SOCKET_PORT_RESET = 1300  # the gateway dropped this connection; reconnect on the new port
    ACCOUNT_DATA_UNSUBSCRIBED = 2100
    MARKET_DATA_FARM_BROKEN = 2103
    MARKET_DATA_FARM_OK = 2104
    HISTORICAL_FARM_BROKEN = 2105
    HISTORICAL_FARM_OK = 2106
    HISTORICAL_FARM_INACTIVE = 2107
    MARKET_DATA_FARM_INACTIVE = 2108
    OUTSIDE_RTH_IGNORED = 2109
    SERVER_CONNECTIVITY_BROKEN = 2110  # gateway to IB servers; "will be restored automatically"
    MARKET_DATA_FARM_CONNECTING = 2119
    SECDEF_FARM_BROKEN = 2157
    SECDEF_FARM_OK = 2158
    NEEDS_SUBSCRIPTION_DELAYED_AVAILABLE = 10089
    PARTLY_NOT_SUBSCRIBED = 10090
    ORDER_TO_CANCEL_NOT_FOUND = 10147
    ORDER_CANNOT_BE_CANCELLED = 10148
    DELAYED_DATA_SHOWN = 10167  # not subscribed: delayed data is shown instead
    LIVE_UPDATES_FAILED_DISCONNECTED = 10182
    COMPETING_LIVE_SESSION = 10197  # no market data while another live session holds it


class CodeKind(enum.Enum):
    """What a code means for supervision: the lifecycle and alerting switch on this."""

    CONNECTIVITY_LOST = "connectivity_lost"
    CONNECTIVITY_RESTORED = "connectivity_restored"
    RECONNECT_REQUIRED = "reconnect_required"
    FARM_BROKEN = "farm_broken"
    FARM_OK = "farm_ok"
    FARM_INACTIVE = "farm_inactive"
    CLIENT_ID_IN_USE = "client_id_in_use"
    NOT_CONNECTED = "not_connected"
    PACING = "pacing"
    MARKET_DATA_PERMISSION = "market_data_permission"
    ORDER = "order"
    WARNING = "warning"
    REQUEST_ERROR = "request_error"


CONNECTIVITY_LOST: Final = frozenset(
    {ApiCode.CONNECTIVITY_LOST, ApiCode.SERVER_CONNECTIVITY_BROKEN}
)
CONNECTIVITY_RESTORED: Final = frozenset(
    {ApiCode.RESTORED_DATA_LOST, ApiCode.RESTORED_DATA_MAINTAINED}
)
# After these, market data subscriptions must be made again.
RESUBSCRIBE_NEEDED: Final = frozenset({ApiCode.RESTORED_DATA_LOST})
RECONNECT_REQUIRED: Final = frozenset({ApiCode.SOCKET_PORT_RESET})
FARM_BROKEN: Final = frozenset(
    {ApiCode.MARKET_DATA_FARM_BROKEN, ApiCode.HISTORICAL_FARM_BROKEN, ApiCode.SECDEF_FARM_BROKEN}
)
FARM_OK: Final = frozenset(
    {ApiCode.MARKET_DATA_FARM_OK, ApiCode.HISTORICAL_FARM_OK, ApiCode.SECDEF_FARM_OK}
)
# Inactive farms connect on demand: not an outage.
FARM_INACTIVE: Final = frozenset(
    {
        ApiCode.HISTORICAL_FARM_INACTIVE,
        ApiCode.MARKET_DATA_FARM_INACTIVE,
        ApiCode.MARKET_DATA_FARM_CONNECTING,
    }
)
NOT_CONNECTED: Final = frozenset(
    {ApiCode.CANNOT_CONNECT, ApiCode.NOT_CONNECTED, ApiCode.BAD_MESSAGE_LENGTH}
)
PACING: Final = frozenset({ApiCode.PACING_MESSAGES, ApiCode.HISTORICAL_DATA_ERROR})
MARKET_DATA_PERMISSION: Final = frozenset(
    {
        ApiCode.MARKET_DATA_NOT_SUBSCRIBED,
        ApiCode.NEEDS_SUBSCRIPTION_DELAYED_AVAILABLE,
        ApiCode.PARTLY_NOT_SUBSCRIBED,
        ApiCode.DELAYED_DATA_SHOWN,
        ApiCode.COMPETING_LIVE_SESSION,
    }
)
ORDER: Final = frozenset(
    {
        ApiCode.DUPLICATE_ORDER_ID,
        ApiCode.ORDER_REJECTED,
        ApiCode.ORDER_CANCELLED,
        ApiCode.SECURITY_NOT_ALLOWED,
        ApiCode.ORDER_MESSAGE_WARNING,
        ApiCode.ORDER_TO_CANCEL_NOT_FOUND,
        ApiCode.ORDER_CANNOT_BE_CANCELLED,
    }
)
# Codes that report a state, not a failed request: they must not fail the request or page.
# IB sends every 2100-2199 code as a notice; ib_async treats the same range as warnings.
WARNING_RANGE: Final = range(2100, 2200)
WARNINGS_NOT_ERRORS: Final = frozenset(
    {
        ApiCode.ORDER_CANCELLED,
        ApiCode.ORDER_MESSAGE_WARNING,
        ApiCode.DELAYED_DATA_SHOWN,
        ApiCode.RESTORED_DATA_MAINTAINED,
    }
)


def is_warning(code: int) -> bool:
    """True if ``code`` reports a state rather than a failed request."""
    return code in WARNINGS_NOT_ERRORS or code in WARNING_RANGE


def classify(code: int) -> CodeKind:
    """The supervision meaning of a TWS API code; unknown codes are request errors."""
    # Order matters: 2110 is in the warning range but means the IB link is down.
    if code in CONNECTIVITY_LOST:
        return CodeKind.CONNECTIVITY_LOST
    if code in CONNECTIVITY_RESTORED:
        return CodeKind.CONNECTIVITY_RESTORED
    if code in RECONNECT_REQUIRED:
        return CodeKind.RECONNECT_REQUIRED
    if code in FARM_BROKEN:
        return CodeKind.FARM_BROKEN
    if code in FARM_OK:
        return CodeKind.FARM_OK
    if code in FARM_INACTIVE:
        return CodeKind.FARM_INACTIVE
    if code == ApiCode.CLIENT_ID_IN_USE:
        return CodeKind.CLIENT_ID_IN_USE
    if code in NOT_CONNECTED:
        return CodeKind.NOT_CONNECTED
    if code in PACING:
        return CodeKind.PACING
    if code in MARKET_DATA_PERMISSION:
        return CodeKind.MARKET_DATA_PERMISSION
    if code in ORDER:
        return CodeKind.ORDER
    if is_warning(code):
        return CodeKind.WARNING
    return CodeKind.REQUEST_ERROR


class FarmKind(enum.Enum):
    """IB's data farms as the farm notices name them."""

    MARKET_DATA = "market_data"
    HISTORICAL = "historical"  # "HMDS"
    SECURITY_DEFINITION = "security_definition"


class FarmStatus(enum.Enum):
    BROKEN = "broken"
    OK = "ok"
    INACTIVE = "inactive"
    CONNECTING = "connecting"


@dataclass(frozen=True)
class FarmNotice:
    """One farm notice: which kind of farm, its state and its name (e.g. ``usfarm.nj``)."""

    kind: FarmKind
    status: FarmStatus
    name: str


_FARM_CODES: Final[dict[int, tuple[FarmKind, FarmStatus]]] = {
    ApiCode.MARKET_DATA_FARM_BROKEN: (FarmKind.MARKET_DATA, FarmStatus.BROKEN),
    ApiCode.MARKET_DATA_FARM_OK: (FarmKind.MARKET_DATA, FarmStatus.OK),
    ApiCode.MARKET_DATA_FARM_INACTIVE: (FarmKind.MARKET_DATA, FarmStatus.INACTIVE),
    ApiCode.MARKET_DATA_FARM_CONNECTING: (FarmKind.MARKET_DATA, FarmStatus.CONNECTING),
    ApiCode.HISTORICAL_FARM_BROKEN: (FarmKind.HISTORICAL, FarmStatus.BROKEN),
    ApiCode.HISTORICAL_FARM_OK: (FarmKind.HISTORICAL, FarmStatus.OK),
    ApiCode.HISTORICAL_FARM_INACTIVE: (FarmKind.HISTORICAL, FarmStatus.INACTIVE),
    ApiCode.SECDEF_FARM_BROKEN: (FarmKind.SECURITY_DEFINITION, FarmStatus.BROKEN),
    ApiCode.SECDEF_FARM_OK: (FarmKind.SECURITY_DEFINITION, FarmStatus.OK),
}


_MAX_FARM_NAME: Final = 64


def farm_of(code: int, message: str) -> FarmNotice | None:
    """Read a farm notice; None if ``code`` is not one.

    The farm name follows the last ':' ("Market data farm connection is OK:usfarm.nj"); the
    inactive notices put it after "on demand." instead ("...available upon demand.ushmds").
    """
    kind_status = _FARM_CODES.get(code)
    if kind_status is None:
        return None
    kind, status = kind_status
    name = ""
    if ":" in message:
        name = message.rsplit(":", 1)[1].strip()
    elif "demand." in message:
        name = message.rsplit("demand.", 1)[1].strip()
    # The name ends up in alerts and metric labels: a farm name is short and plain.
    return FarmNotice(kind=kind, status=status, name=inert(name, limit=_MAX_FARM_NAME))


class IbcExit(enum.IntEnum):
    """IBC's process exit codes (ErrorCodes.java). Not TWS API codes, whatever the numbers."""

    NORMAL = 0
    UNHANDLED_EXCEPTION = 1100
    CANT_FIND_CONTROL = 1101
    INCORRECT_NUMBER_OF_ARGS = 1102
    INI_FILE_DOES_NOT_EXIST = 1103
    INVALID_TRADING_MODE = 1104
    INVALID_SETTING_VALUE = 1105
    CANT_CREATE_TWS_SETTINGS_DIR = 1106
    CANT_FIND_ENTRYPOINT = 1107
    INVALID_JTSINI_PATH = 1108
    IO_EXCEPTION_ON_JTSINI = 1109
    INVALID_STATE = 1110
    SECOND_FACTOR_AUTH_LOGIN_TIMED_OUT = 1111
    LOGIN_DIALOG_DISPLAY_TIMED_OUT = 1112


# A shell (ibcstart.sh, the container's exit status) sees IBC's code modulo 256: 1111 -> 87.
_BY_STATUS: Final[dict[int, IbcExit]] = {int(code) % 256: code for code in IbcExit}


def ibc_exit_from_status(status: int) -> IbcExit | None:
    """The IBC exit code behind a process or container exit status, or None if not IBC's.

    Accepts the full Java code (1111) or what a shell saw (87). Statuses such as 137 (SIGKILL)
    or 143 (SIGTERM) are not IBC's and give None.
    """
    try:
        return IbcExit(status)
    except ValueError:
        pass
    if 0 <= status <= 255:
        return _BY_STATUS.get(status)
    return None


# -- untrusted text ------------------------------------------------------------------------

#: The most characters of one piece of gateway text shown anywhere.
MAX_UNTRUSTED: Final = 300

_ANSI: Final = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI (colours, cursor moves)
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC (terminal titles, hyperlinks)
    r"|\x1b[@-Z\\-_]"  # any other two-byte escape
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
# Mentions that make chat targets ping everybody (Slack, Discord, Teams, Mattermost).
_MASS_MENTION: Final = re.compile(r"@(?=(?:here|channel|everyone|all)\b)", re.IGNORECASE)


def _keep(char: str) -> str:
    if char == "\n":
        return char
    category = unicodedata.category(char)
    if category == "Cc" or char in "\u2028\u2029":
        return " "  # controls (tabs, carriage returns, bells) never reach a reader
    if category == "Cf":
        return ""  # invisible format characters: bidi overrides, zero-width joiners
    return char


def defuse(text: str) -> str:
    """``text`` with escapes, controls and chat markup made inert; newlines are kept.

    ``<`` and ``>`` become single angle quotes, U+2039 and U+203A (Slack's ``<!channel>`` and ``<https://x|label>``),
    ``](`` is split (Markdown links), ``@here``-style mass mentions get a full-width at sign.
    """
    text = _ANSI.sub("", text)
    text = "".join(_keep(c) for c in text)
    text = text.replace("<", "\u2039").replace(">", "\u203a").replace("](", "] (")
    return _MASS_MENTION.sub("\uff20", text)


def inert(text: str, *, limit: int = MAX_UNTRUSTED) -> str:
    """One piece of gateway text, safe to show: :func:`defuse`-d, on one line, capped."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    # Cap before the work too: a huge line costs no more than a long one.
    flat = " ".join(defuse(text[: limit * 4]).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


def ib_said(text: str, *, limit: int = MAX_UNTRUSTED) -> str:
    """Gateway text quoted as what IB said: ``IB said: "..."`` (inner quotes made single)."""
    return 'IB said: "' + inert(text, limit=limit).replace('"', "'") + '"'
