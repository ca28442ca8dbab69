"""IBC's console log lines, word for word, so the simulator prints what a real gateway prints.

Every string here was copied from IBC 3.24 (IbcAlpha/IBC: ``src/ibcalpha/ibc/*.java`` and
``resources/scripts/ibcstart.sh``); the source file is named next to each constant. The
parser in :mod:`gateway.authlog` is tested against these same constants, so the simulator and
the parser cannot drift apart silently. Pure: no I/O, time comes in as an argument.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Final

# IBC's Utils.formatMessage: DateTimeFormatter "yyyy-MM-dd HH:mm:ss:SSS" + " IBC: " + message.
# The time is the JVM's local time (the container's TIME_ZONE), with no zone in the text.
IBC_TAG: Final = "IBC"
TIMESTAMP_FORMAT: Final = "%Y-%m-%d %H:%M:%S"

# --- SessionManager.java -------------------------------------------------------------------
STARTING_SESSION_PREFIX: Final = (
    "Starting session: will exit if login dialog is not displayed within"
)
RESTARTING_SESSION: Final = "Re-starting session"

# --- AbstractLoginHandler.java ---------------------------------------------------------------
LOGIN_ATTEMPT_PREFIX: Final = "Login attempt: "
WAITING_FOR_2FA_FRAME: Final = "Waiting for Login frame to become SecondFactorAuthenticationDialog"
LOGIN_FRAME_BECAME_2FA: Final = "Login frame has now become SecondFactorAuthenticationDialog"
LOGIN_DIALOG_INVALIDATED: Final = "Login dialog has been invalidated - initiate cold restart"

# --- LoginManager.java ---------------------------------------------------------------------
SECOND_FACTOR_INITIATED: Final = "Second Factor Authentication initiated"
LOGIN_COMPLETED: Final = "Login has completed"
DURATION_SINCE_LOGIN_PREFIX: Final = "Duration since login: "
EXIT_IF_NOT_COMPLETED_PREFIX: Final = "If login has not completed, IBC will exit in "
CLOSING_AFTER_2FA: Final = (
    "IBC closing because login has not completed after Second Factor Authentication"
)
# Before IBC 3.12 (commit "Improve 2FA dialog timeout handling") the same exit read so.
CLOSING_AFTER_2FA_OLD: Final = "IBC closing after Second Factor Authentication dialog timeout"
RELOGIN_AFTER_2FA_TIMEOUT: Final = "Re-login after second factor authentication timeout in 5 second"
RELOGIN_AFTER_2FA_NOT_REQUIRED: Final = (
    "Re-login after second factor authentication timeout not required"
)
ALREADY_LOGGED_IN_NO_EXIT: Final = "Login has already completed - no need for IBC to exit"

# --- DefaultConfigDialogManager.java -------------------------------------------------------
CONFIGURATION_TASKS_COMPLETED: Final = "Configuration tasks completed"

# --- ExistingSessionDetectedDialogHandler.java ---------------------------------------------
EXISTING_SESSION_MANUAL: Final = (
    "User must choose whether to continue with this session (scenario 1)"
)
EXISTING_SESSION_SECONDARY: Final = (
    "End this session and let the other session proceed (scenario 2)"
)
EXISTING_SESSION_CONTINUE_UNKNOWN: Final = (
    "Don't know the type of the other session, so continue this one (scenario 3)"
)
EXISTING_SESSION_OTHER_IS_PRIMARY: Final = (
    "Other session must be primary or primary override, so end this session and let the "
    "other one proceed (scenario 4)"
)
EXISTING_SESSION_PRIMARY_KEEPS: Final = (
    "Continue this session and let the other session exit (scenario 5)"
)
EXISTING_SESSION_PRIMARYOVERRIDE_YIELDS: Final = (
    "Other session may be primary, so end this session and let the other one proceed (scenario 6)"
)

# --- TradingLoginHandoffDialogHandler.java ---------------------------------------------------
# IBC formats this with String.format(..., "{}"), which has no %s, so the line really ends in
# a literal "{}" whatever the setting.
TRADING_LOGIN_HANDOFF: Final = "Trading Login Handoff dialog; {}"

# --- LoginFailedDialogHandler.java / LoginErrorDialogHandler.java / GatewayDialogHandler ---
LOGIN_FAILED: Final = "Login failed"
# IBC appends a newline and the dialog's texts, so the message text arrives on the next
# line(s) without the IBC prefix.
LOGIN_ERROR_MESSAGE: Final = "Login error message:"
COLD_RESTART_IN_PROGRESS: Final = "Cold restart in progress"
CONNECTION_TO_SERVER_FAILED_PREFIX: Final = "Connection to server failed"

# --- TooManyFailedLoginAttemptsDialogHandler.java ------------------------------------------
# IBC logs the dialog's own text, e.g. the two forms quoted in its source comment.
TOO_MANY_FAILED_PREFIX: Final = "Too many failed login attempts"
WILL_RELOGIN_AT_PREFIX: Final = "Will re-login at "

# --- ReloginDialogHandler.java / TwsListener.java --------------------------------------------
RELOGIN_TO_SESSION: Final = "Re-login to session"
DIALOG_EXISTING_SESSION: Final = "Existing session detected"
DIALOG_RELOGIN_REQUIRED: Final = "Re-login is required"
DIALOG_SECOND_FACTOR: Final = "Second Factor Authentication"
DIALOG_LOGIN_FAILED: Final = "Login failed"

# --- StopTask.java ----------------------------------------------------------------------------
LOGIN_NOT_COMPLETED_EXITING: Final = "Login has not completed: exiting immediately"

# --- CommandServer.java -----------------------------------------------------------------------
COMMAND_SERVER_NOT_STARTED: Final = (
    "CommandServer is not started because the port is not configured"
)
COMMAND_SERVER_READY: Final = "CommandServer started and is ready to accept commands"

# --- Utils.java -------------------------------------------------------------------------------
EXITING_WITH_CODE_PREFIX: Final = "Exiting after error with exit code="

# --- resources/scripts/ibcstart.sh (plain echo: no timestamp, no IBC prefix) ------------------
FINDING_AUTORESTART: Final = "Finding autorestart file"
AUTORESTART_NOT_FOUND: Final = "autorestart file not found: full authentication will be required"
EXIT_STATUS_PREFIX: Final = "IBC returned exit status "
RESTART_SHORTLY: Final = "IBC will restart shortly"
COLD_RESTART_SHORTLY: Final = "IBC will cold-restart shortly"
PAUSED: Final = "IBC is paused"


def format_line(message: str, *, at: datetime) -> str:
    """One IBC console line, ``yyyy-MM-dd HH:mm:ss:SSS IBC: <message>``, at ``at``'s wall time.

    IBC prints the JVM's local wall-clock time without a zone, so an aware ``at`` is printed
    in its own zone: convert it to the gateway's TIME_ZONE first if that matters.
    """
    millis = at.microsecond // 1000
    return f"{at.strftime(TIMESTAMP_FORMAT)}:{millis:03d} {IBC_TAG}: {message}"


def starting_session(*, timeout_seconds: int) -> str:
    """SessionManager's first line of a session (default timeout 60 s in IBC)."""
    return f"{STARTING_SESSION_PREFIX} {timeout_seconds} seconds"


def login_attempt(number: int) -> str:
    """AbstractLoginHandler numbers attempts from 1 within one IBC run."""
    return f"{LOGIN_ATTEMPT_PREFIX}{number}"


def exit_if_not_completed(*, seconds: int) -> str:
    """LoginManager's warning after the 2FA dialog closed in time (the exit interval)."""
    return f"{EXIT_IF_NOT_COMPLETED_PREFIX}{seconds} seconds"


def login_error_message(text: str) -> list[str]:
    """The "Login error message:" line and the dialog text IBC prints on the following line."""
    return [LOGIN_ERROR_MESSAGE, text]


def too_many_failed_attempts(*, minutes: int, seconds: int) -> str:
    """The lockout dialog's text as IBC logs it (the two shapes quoted in IBC's source)."""
    if minutes > 0:
        wait = f"{minutes} minute{'s' if minutes != 1 else ''} & {seconds} seconds"
    else:
        wait = f"{seconds} seconds"
    return f"{TOO_MANY_FAILED_PREFIX}. Please wait {wait} before attempting to re-login again."


def will_relogin_at(when: datetime, *, login_number: int) -> str:
    """TooManyFailedLoginAttemptsDialogHandler's schedule line (IBC's own date format)."""
    millis = when.microsecond // 1000
    stamp = f"{when.strftime(TIMESTAMP_FORMAT)}:{millis:03d}"
    return f"{WILL_RELOGIN_AT_PREFIX}{stamp}; login number: {login_number}"


def detected_dialog(title: str, *, event: str = "Opened") -> str:
    """TwsListener's window log line; IBC's event names are Opened, Activated, Closed, ..."""
    return f"detected dialog entitled: {title}; event={event}"


def exiting_with_code(code: int) -> str:
    """Utils.exitWithError's last line before the JVM halts with ``code``."""
    return f"{EXITING_WITH_CODE_PREFIX}{code}"


def autorestart_found(path: str) -> str:
    """ibcstart.sh when the gateway left a restart token: no 2FA needed."""
    return f"autorestart file found at {path}: authentication will not be required"


def exit_status(status: int) -> str:
    """ibcstart.sh prints the JVM's exit code modulo 256 (so 1111 shows as 87)."""
    return f"{EXIT_STATUS_PREFIX}{status % 256}"


# --- added for the ibcstart loop and the JVM's planned exits (IBC 3.24.1) --------------------

# Utils.logError / logException frame their message with a line of 79 '!' (no IBC prefix).
ERROR_BANNER: Final = "!" * 79
# Utils.logException; an exception before Settings exist (config.ini that Properties.load
# refuses) dies right after this line: the handler itself throws, the JVM exits 1.
EXCEPTION_OCCURRED: Final = "An exception has occurred:"
# StopTask.stop for the Gateway (Arrays.deepToString of {"File", "Close"}).
LOGIN_COMPLETED_EXITING: Final = "Login has completed: exiting via [File, Close] menu"
# IbcTws.startShutdownTimerIfRequired, with SimpleDateFormat("yyyy/MM/dd HH:mm").
COLD_RESTART_SCHEDULED_PREFIX: Final = "Gateway will be cold restarted at "
# SessionManager.startSession's LoginDialogDisplayTimeout exit (exit code 1112).
LOGIN_DIALOG_NOT_DISPLAYED: Final = "IBC closing after TWS/Gateway failed to display login dialog"
# RestartTask.restart and ConfigureAutoLogoffOrRestartTimeTask.run ("hh:mm a").
SETTING_AUTO_RESTART_TO_PREFIX: Final = "Setting auto-restart time to "
SETTING_AUTO_RESTART_TIME: Final = "Setting Auto restart time"
# CommandServer.run.
COMMAND_SERVER_STARTING_PREFIX: Final = "CommandServer is starting with port "
# ibcstart.sh (plain echo).
AUTORESTART_OPTION_PREFIX: Final = "AUTORESTART_OPTION is -Drestart="
STARTING_GATEWAY_WITH_COMMAND: Final = "Starting Gateway with this command:"
# ibcstart.sh's loop really prints this (`echo sleep 2`) instead of sleeping.
SLEEP_2: Final = "sleep 2"
GATEWAY_FINISHED: Final = "Gateway finished"


def clock_12h(at: time) -> str:
    """Java's ``DateTimeFormatter.ofPattern("hh:mm a")`` in an English locale: ``09:05 PM``."""
    hour = at.hour % 12 or 12
    return f"{hour:02d}:{at.minute:02d} {'AM' if at.hour < 12 else 'PM'}"


def auto_restart_time_changed(old: time, new: time) -> str:
    """ConfigureAutoLogoffOrRestartTimeTask when the Gateway had another time."""
    return f"Auto restart time changed from {clock_12h(old)} to {clock_12h(new)}"


def auto_restart_time_already(at: time) -> str:
    return f"Auto restart time already set to {clock_12h(at)}"


def cold_restart_scheduled(at: datetime) -> str:
    return f"{COLD_RESTART_SCHEDULED_PREFIX}{at.strftime('%Y/%m/%d %H:%M')}"


def setting_auto_restart_to(at: time) -> str:
    return f"{SETTING_AUTO_RESTART_TO_PREFIX}{clock_12h(at)}"


def duration_since_login(seconds: int) -> str:
    return f"{DURATION_SINCE_LOGIN_PREFIX}{seconds} seconds"


def autorestart_option(directory: str) -> str:
    return f"{AUTORESTART_OPTION_PREFIX}{directory}"
