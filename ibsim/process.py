"""One simulated gateway container's process tree: run.sh, socat, ibcstart.sh's loop, the JVM.

The one implementation behind both the container entrypoint (``ibfleet sim gateway``) and the
in-process runtime (:class:`ibsim.runtime.InProcessRuntime`). It follows:

* gnzsnz ``stable/scripts/run.sh`` / ``run_socat.sh``: socat publishes 4003/4004 for the whole
  life of the container and relays to the Gateway; a connection while the Gateway is down is
  accepted and closed at once. The container ends when ibcstart.sh ends.
* IBC ``resources/scripts/ibcstart.sh``: every JVM exit prints ``IBC returned exit status N``;
  a COLDRESTART flag file, an ``autorestart`` file, exit 1112, and exit 1111 with
  ``--on2fatimeout=restart`` relaunch the JVM; anything else ends the loop.
* IBC's Java: SessionManager (``Starting session`` / ``Re-starting session``), LoginManager (2FA),
  the login dialog handlers (Login failed, lockout), StopTask (cold restarts),
  RestartTask (RESTART), IbcTws (ColdRestartTime on Sunday, AutoRestartTime re-applied at
  every start), CommandServer (from the JVM's start, gone with it).

Time is the gateway's wall clock: the injected base clock moved by the control API's
``clock`` fault, in the JVM's zone (TZ).

About 600 lines on purpose: ibcstart's loop, the JVM and its login sequence share one JVM state,
one restart token and one clock, and are read against IBC's scripts in the order they run; the
next split would be the login sequence (SessionManager, LoginManager, the dialog handlers).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from gateway.config import ExistingSessionAction, TradingMode, TwoFactorTimeoutAction
from ibsim import ibclog
from ibsim.api.server import FrontEndConfig, GatewayFrontEnd
from ibsim.auth import LoginKind
from ibsim.cmdserver import CommandHandlers, IbcCommandServer
from ibsim.pacing import PacingConfig
from ibsim.port import BrokerPort, LoginOutcome
from ibsim.settings import DEFAULT_GATEWAY_AUTO_RESTART, GatewaySettings
from ibsim.socat import Socat
from ibsim.wallclock import GatewayClock, next_daily, next_sunday, utc_now

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CONFIG = 2  # the simulator's env is wrong (before anything runs)
EXIT_CRASHED = 70  # the control API's crash fault: the JVM dies, ibcstart ends
EXIT_BROKER_LOST = 75  # the link to the simulated IB servers closed
EXIT_UNCAUGHT = 1  # the JVM's exit after an exception in main (a config.ini Java refuses)
EXIT_2FA_TIMEOUT = 1111  # ErrorCodes.SECOND_FACTOR_AUTH_LOGIN_TIMED_OUT (a shell sees 87)
EXIT_NO_LOGIN_DIALOG = 1112  # ErrorCodes.LOGIN_DIALOG_DISPLAY_TIMED_OUT (88)
RELOGIN_AFTER_2FA_DELAY = 5.0  # LoginManager: "in 5 second"
LOCKOUT_EXTRA = 3.0  # TooManyFailedLoginAttemptsDialogHandler waits the dialog's time + 3 s
SETTINGS_DIR = "/home/ibgateway/Jts"


async def first_of(waits: Mapping[str, Awaitable[Any]]) -> str:
    """The name of the first of ``waits`` to finish (in the mapping's order on a tie).

    The others are cancelled, also when the caller is, so no ``Event.wait`` task is left
    pending for the garbage collector to complain about.
    """
    tasks = {name: asyncio.ensure_future(aw) for name, aw in waits.items()}
    try:
        await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
        return next(name for name, task in tasks.items() if task.done())
    finally:
        for task in tasks.values():
            task.cancel()


@dataclass(frozen=True, slots=True)
class ApiOptions:
    """How the Gateway's API serves its clients (not part of the container's contract)."""

    tick_rate: float = 20.0  # price ticks per second per market data subscription
    max_msg_rate: int = 50  # IB's pacing limit per client per second (error 100 above it)
    pacing: PacingConfig = field(default_factory=PacingConfig)  # IB's history limits


@dataclass(slots=True)
class _JvmEnd:
    code: int
    cold: bool = False  # StopTask(forceColdRestart) wrote the COLDRESTART flag file
    token: bool = False  # the Gateway wrote its autorestart file before exiting


class _Exit(Exception):
    """Raised inside a JVM task to end it with an exit."""

    def __init__(self, end: _JvmEnd) -> None:
        super().__init__(end.code)
        self.end = end


class GatewayProcess:
    """A gateway container from start to exit: socat plus ibcstart.sh's JVM loop.

    ``api_host``/``command_host`` are where socat and the command server listen. ``out``
    receives every stdout line. ``stop_requested`` is SIGTERM (pass the runtime's own event
    or set it). ``on_login`` hears every answer of IB's login server to this gateway (a
    LOGGED_IN once the API is served). ``frontend`` is the current JVM's Gateway (None between
    JVMs).
    """

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        broker: BrokerPort,
        out: Callable[[str], None],
        api_host: str = "0.0.0.0",
        command_host: str = "0.0.0.0",
        clock: Callable[[], datetime] = utc_now,
        relogin_delay: float = RELOGIN_AFTER_2FA_DELAY,
        broker_closed: asyncio.Event | None = None,
        stop_requested: asyncio.Event | None = None,
        api: ApiOptions = ApiOptions(),
        on_login: Callable[[LoginOutcome], None] | None = None,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.out = out
        self.api_host = api_host
        self.command_host = command_host
        self.clock = GatewayClock(clock, settings.zone)
        self.relogin_delay = relogin_delay
        self.broker_closed = broker_closed or asyncio.Event()
        self.stop_requested = stop_requested or asyncio.Event()
        self.api = api
        self._on_login = on_login
        self._jvm_state: _JvmState | None = None
        self.frontend: GatewayFrontEnd | None = None
        self.command_server: IbcCommandServer | None = None
        self.socat: Socat | None = None
        self.jvm_starts = 0
        # The Gateway's own settings survive JVM relaunches (they live in its settings dir).
        self.gateway_restart_time: time = DEFAULT_GATEWAY_AUTO_RESTART
        self._token = False
        digest = hashlib.sha256(settings.username.encode()).hexdigest()[:20]
        self.token_dir = f"{digest}"

    # -- output --------------------------------------------------------------------------

    def ibc(self, message: str) -> None:
        """An IBC line, stamped with the gateway's wall clock."""
        self.out(ibclog.format_line(message, at=self.clock.now()))

    def _banner_error(self, message: str) -> None:
        self.out(ibclog.ERROR_BANNER)
        self.ibc(message)
        self.out(ibclog.ERROR_BANNER)

    # -- socat ---------------------------------------------------------------------------

    @property
    def api_port(self) -> int:
        """The published API port (socat's), bound for the container's whole life."""
        return self.socat.port if self.socat is not None else self.settings.api_port

    def _gateway_api_port(self) -> int | None:
        frontend = self.frontend
        if frontend is None or not frontend.ready.is_set():
            return None  # socat: "Connection refused" from 127.0.0.1:4002, client closed
        if not self.settings.socat_reaches_gateway:
            return None  # socat forwards to the other mode's port, where nothing listens
        return frontend.port

    # -- the container -------------------------------------------------------------------

    async def run(self) -> int:
        """run.sh: socat, then ibcstart.sh until its loop ends; returns the container's exit
        status (ibcstart's, already modulo 256)."""
        self.socat = Socat(
            host=self.api_host, port=self.settings.api_port, target=self._gateway_api_port
        )
        await self.socat.start()
        try:
            return await self._ibcstart()
        finally:
            self.socat.close()

    def _find_autorestart(self) -> bool:
        self.out(ibclog.FINDING_AUTORESTART)
        if self._token:
            path = f"{SETTINGS_DIR}/{self.token_dir}/autorestart"
            self.out(ibclog.autorestart_found(path))
            self.out(ibclog.autorestart_option(self.token_dir))
            return True
        self.out(ibclog.AUTORESTART_NOT_FOUND)
        self.out("")
        return False

    async def _ibcstart(self) -> int:
        restart_option = self._find_autorestart()
        while True:
            self.out(ibclog.STARTING_GATEWAY_WITH_COMMAND)
            option = f" -Drestart={self.token_dir}" if restart_option else ""
            self.out(f'"java" -cp "..."{option} ibcalpha.ibc.IbcGateway "{self.settings.ini_path}"')
            self.out("")
            end = await self._jvm(restart=restart_option)
            code = end.code % 256
            self.out(ibclog.exit_status(end.code))
            if end.code in (EXIT_CRASHED, EXIT_BROKER_LOST) or self.stop_requested.is_set():
                # Not IBC: the simulated container itself is going (SIGTERM, crash, no broker).
                self._token = False
                self.out(ibclog.GATEWAY_FINISHED)
                return EXIT_OK if self.stop_requested.is_set() else code
            self._token = self._token or end.token
            if code == EXIT_NO_LOGIN_DIALOG % 256:
                pass
            elif end.cold:
                restart_option = False
                self.out(ibclog.COLD_RESTART_SHORTLY)
            else:
                restart_option = self._find_autorestart()
                if not restart_option and not (
                    code == EXIT_2FA_TIMEOUT % 256
                    and self.settings.on_2fa_timeout is TwoFactorTimeoutAction.RESTART
                ):
                    self.out(ibclog.GATEWAY_FINISHED)
                    self.out("")
                    return code
            self.out(ibclog.RESTART_SHORTLY)
            self.out(ibclog.SLEEP_2)

    # -- one JVM -------------------------------------------------------------------------

    async def _jvm(self, *, restart: bool) -> _JvmEnd:
        """One IbcGateway JVM from main() to its exit."""
        self.jvm_starts += 1
        settings = self.settings
        if settings.config_broken is not None:
            # DefaultSettings' Properties.load throws in main; the uncaught-exception handler
            # prints two lines, then itself fails (no Settings yet): the JVM exits 1.
            log.info("sim_jvm_config_refused gateway=%s", settings.gateway_name)
            self.out(ibclog.ERROR_BANNER)
            self.ibc(ibclog.EXCEPTION_OCCURRED)
            return _JvmEnd(EXIT_UNCAUGHT)
        self.ibc("version: 3.24.1")
        frontend = GatewayFrontEnd(
            config=FrontEndConfig(
                name=settings.gateway_name,
                host="127.0.0.1",
                port=0,
                read_only=bool(settings.read_only_api),
                tick_rate=self.api.tick_rate,
                max_msg_rate=self.api.max_msg_rate,
                pacing=self.api.pacing,
            ),
            broker=self.broker,
        )
        frontend.clock_hooks.append(self.clock.move)
        self.frontend = frontend
        self.broker.subscribe(gateway=frontend.name, listener=frontend._on_event)
        ended: asyncio.Future[_JvmEnd] = asyncio.get_running_loop().create_future()

        def end(result: _JvmEnd) -> None:
            if not ended.done():
                ended.set_result(result)

        tasks: list[asyncio.Task[None]] = []

        def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
            async def guarded() -> None:
                try:
                    await coro
                except _Exit as exc:
                    end(exc.end)

            tasks.append(asyncio.create_task(guarded(), name=f"sim-jvm-{name}"))

        logged_in = asyncio.Event()
        state = _JvmState(frontend=frontend, logged_in=logged_in, end=end)
        self._jvm_state = state
        try:
            await self._start_command_server(frontend, state)
            if settings.cold_restart_time is not None:
                at = next_sunday(self.clock.now(), settings.cold_restart_time)
                self.ibc(ibclog.cold_restart_scheduled(at))
                spawn(self._cold_restart_at(at, state), "cold")
            spawn(self._session(frontend, state, restart=restart), "session")
            reason = await first_of(
                {
                    "ended": ended,
                    "stop": self.stop_requested.wait(),
                    "crash": frontend.crashed.wait(),
                    "broker": self.broker_closed.wait(),
                }
            )
            if reason == "ended":
                return ended.result()
            if reason == "crash":
                return _JvmEnd(EXIT_CRASHED)
            if reason == "broker":
                return _JvmEnd(EXIT_BROKER_LOST)
            return _JvmEnd(EXIT_OK)
        finally:
            self._jvm_state = None
            state.cancel_exit_timer()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            commands, self.command_server = self.command_server, None
            if commands is not None:
                with contextlib.suppress(Exception):
                    await commands.close()
            self.frontend = None
            with contextlib.suppress(Exception):
                await frontend.stop(logout=not self.broker_closed.is_set())

    async def _start_command_server(self, frontend: GatewayFrontEnd, state: _JvmState) -> None:
        if not self.settings.command_server_enabled:
            self.ibc(ibclog.COMMAND_SERVER_NOT_STARTED)
            return
        port = self.settings.command_port

        async def stop() -> None:
            self._stop_task(state, cold=False)

        async def restart() -> str | None:
            return await self._restart_command(state)

        async def reconnect() -> None:
            log.info("sim_gateway_command command=RECONNECT gateway=%s", frontend.name)

        server = IbcCommandServer(
            handlers=CommandHandlers(
                stop=stop, restart=restart, reconnect_account=reconnect, reconnect_data=reconnect
            ),
            host=self.settings.bind_address or self.command_host,
            port=port,
            control_from=self.settings.control_from,
            ibc_line=self.ibc,
        )
        await server.start()
        self.ibc(f"{ibclog.COMMAND_SERVER_STARTING_PREFIX}{server.port}")
        self.command_server = server
        self.ibc(ibclog.COMMAND_SERVER_READY)

    def _stop_task(self, state: _JvmState, *, cold: bool) -> None:
        """StopTask.stop: a logged-in Gateway closes via its menu, else the JVM halts."""
        if state.logged_in.is_set():
            self.ibc(ibclog.LOGIN_COMPLETED_EXITING)
        else:
            self.ibc(ibclog.LOGIN_NOT_COMPLETED_EXITING)
        state.end(_JvmEnd(EXIT_OK, cold=cold))

    async def _cold_restart_at(self, at: datetime, state: _JvmState) -> None:
        await self.clock.sleep_until(at)
        self._stop_task(state, cold=True)

    async def _restart_command(self, state: _JvmState) -> str:
        """RestartTask.restart on the Gateway (no File > Restart menu): the auto-restart time
        becomes the next minute and the Gateway restarts itself then."""
        now = self.clock.now()
        if now.second >= 58:
            await self.clock.sleep_until(
                now.replace(second=0, microsecond=0) + timedelta(minutes=1)
            )
            now = self.clock.now()
        at = (now.replace(second=0, microsecond=0) + timedelta(minutes=1)).time()
        self.ibc(ibclog.setting_auto_restart_to(at))
        self._apply_auto_restart(at)
        state.reschedule()
        return ibclog.clock_12h(at)

    def _apply_auto_restart(self, at: time) -> None:
        """ConfigureAutoLogoffOrRestartTimeTask: the Gateway's own setting, kept across JVMs."""
        self.ibc(ibclog.SETTING_AUTO_RESTART_TIME)
        if at == self.gateway_restart_time:
            self.ibc(ibclog.auto_restart_time_already(at))
        else:
            self.ibc(ibclog.auto_restart_time_changed(self.gateway_restart_time, at))
            self.gateway_restart_time = at

    async def _daily(self, state: _JvmState) -> None:
        """The Gateway's own daily auto-restart (or auto-logoff) while it runs."""
        while True:
            state.rescheduled.clear()
            logoff = self.settings.auto_logoff_time
            if self.settings.auto_restart_time is None and logoff is not None:
                target, restart = next_daily(self.clock.now(), logoff), False
            else:
                target, restart = next_daily(self.clock.now(), self.gateway_restart_time), True
            due = {"due": self.clock.sleep_until(target), "moved": state.rescheduled.wait()}
            if await first_of(due) == "due":
                log.info(
                    "sim_gateway_daily gateway=%s restart=%s", self.settings.gateway_name, restart
                )
                # The Gateway writes its autorestart file and exits; IBC prints nothing.
                state.end(_JvmEnd(EXIT_OK, token=restart))
                return

    async def _session(self, frontend: GatewayFrontEnd, state: _JvmState, *, restart: bool) -> None:
        settings = self.settings
        # The Gateway loads for a while before it shows its login dialog or restores the
        # session; the command server is already up (IBC starts it first).
        await asyncio.sleep(settings.jvm_start)
        if restart and self._token:
            # SessionManager: -Drestart; the Gateway re-establishes the session by itself.
            self._token = False  # single use
            self.ibc(ibclog.RESTARTING_SESSION)
            outcome = await self.broker.begin_login(
                gateway=frontend.name,
                username=settings.username,
                password=settings.password,
                presents_token=True,
                existing_session_action=settings.existing_session_action.value,
            )
            if outcome.kind is LoginKind.LOGGED_IN:
                await self._logged_in(frontend, state, outcome)
                return
            # The token was refused (IB's weekly reset): the Gateway shows its login dialog.
            self.ibc(ibclog.detected_dialog(ibclog.DIALOG_LOGIN_FAILED))
            self.ibc(ibclog.LOGIN_FAILED)
            self.ibc(ibclog.COLD_RESTART_IN_PROGRESS)
            self._report(outcome)
            self._stop_task(state, cold=True)
            return
        self._token = False
        self.ibc(ibclog.starting_session(timeout_seconds=settings.login_dialog_timeout))
        if frontend.no_login_dialog:
            await asyncio.sleep(settings.login_dialog_timeout)
            self._banner_error(ibclog.LOGIN_DIALOG_NOT_DISPLAYED)
            self.ibc(ibclog.exiting_with_code(EXIT_NO_LOGIN_DIALOG))
            raise _Exit(_JvmEnd(EXIT_NO_LOGIN_DIALOG))
        attempt = 0
        while True:
            attempt += 1
            self.ibc(ibclog.login_attempt(attempt))
            if settings.ibc_mode is TradingMode.LIVE:
                self.ibc(ibclog.WAITING_FOR_2FA_FRAME)
            started = self.clock.now()
            outcome = await self.broker.begin_login(
                gateway=frontend.name,
                username=settings.username,
                password=settings.password,
                presents_token=False,
                existing_session_action=settings.existing_session_action.value,
            )
            if outcome.kind is LoginKind.AWAITING_2FA:
                answered = await self._second_factor(frontend, state, started)
                if answered is None:
                    await self._relogin_pause(self.relogin_delay)
                    continue
                outcome = answered
            if outcome.kind is LoginKind.LOGGED_IN:
                await self._logged_in(frontend, state, outcome)
                return
            if outcome.kind is LoginKind.LOCKED_OUT:
                left = 0.0
                if outcome.locked_until is not None:
                    left = max((outcome.locked_until - datetime.now(UTC)).total_seconds(), 0.0)
                minutes, seconds = int(left // 60), int(left % 60)
                self.ibc(ibclog.too_many_failed_attempts(minutes=minutes, seconds=seconds))
                self._report(outcome)
                if not settings.relogin_after_2fa_timeout:
                    await asyncio.Event().wait()  # the dialog stays; nothing happens
                wait = minutes * 60 + seconds + LOCKOUT_EXTRA
                self.ibc(
                    ibclog.will_relogin_at(
                        self.clock.now() + timedelta(seconds=wait), login_number=attempt + 1
                    )
                )
                await self._relogin_pause(wait)
                continue
            if outcome.kind is LoginKind.EXISTING_SESSION:
                self._existing_session(outcome)
                self._report(outcome)
                if outcome.resolution == "user_must_choose":
                    await asyncio.Event().wait()  # the dialog waits for a human
                self._stop_task(state, cold=False)
                return
            # A failed login: LoginFailedDialogHandler (bad credentials, denied 2FA) or
            # LoginErrorDialogHandler (any other refusal), both cold-restart at once.
            if outcome.reason in ("bad_credentials", "twofa_denied", "twofa_timed_out"):
                self.ibc(ibclog.detected_dialog(ibclog.DIALOG_LOGIN_FAILED))
                self.ibc(ibclog.LOGIN_FAILED)
                self.ibc(ibclog.COLD_RESTART_IN_PROGRESS)
            else:
                for line in ibclog.login_error_message(f"Login refused ({outcome.reason})."):
                    self.ibc(line)
                self.ibc(ibclog.COLD_RESTART_IN_PROGRESS)
            self._report(outcome)
            self._stop_task(state, cold=True)
            return

    def _existing_session(self, outcome: LoginOutcome) -> None:
        """ExistingSessionDetectedDialogHandler's lines for the configured action."""
        self.ibc(ibclog.detected_dialog(ibclog.DIALOG_EXISTING_SESSION))
        if outcome.resolution == "user_must_choose":
            self.ibc(ibclog.EXISTING_SESSION_MANUAL)
        elif self.settings.existing_session_action is ExistingSessionAction.SECONDARY:
            self.ibc(ibclog.EXISTING_SESSION_SECONDARY)
        else:
            self.ibc(ibclog.EXISTING_SESSION_OTHER_IS_PRIMARY)

    def _report(self, outcome: LoginOutcome) -> None:
        if self._on_login is not None:
            self._on_login(outcome)

    def restart_now(self) -> None:
        """The Gateway's own auto-restart, now: it writes its autorestart file and exits as at
        its daily time, and the loop relaunches it with the token (a test's shortcut)."""
        state = self._jvm_state
        if state is None or not state.logged_in.is_set():
            raise RuntimeError(
                f"gateway {self.settings.gateway_name}: not logged in, nothing to restart"
            )
        log.info("sim_gateway_restart_now gateway=%s", self.settings.gateway_name)
        state.end(_JvmEnd(EXIT_OK, token=True))

    async def _relogin_pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def _second_factor(
        self, frontend: GatewayFrontEnd, state: _JvmState, started: datetime
    ) -> LoginOutcome | None:
        """LoginManager.secondFactorAuthenticationDialogClosed; None means "log in again"."""
        settings = self.settings
        self.ibc(ibclog.LOGIN_FRAME_BECAME_2FA)
        self.ibc(ibclog.detected_dialog(ibclog.DIALOG_SECOND_FACTOR))
        self.ibc(ibclog.SECOND_FACTOR_INITIATED)
        outcome = await self.broker.await_2fa(gateway=frontend.name, username=settings.username)
        elapsed = int((self.clock.now() - started).total_seconds())
        self.ibc(ibclog.duration_since_login(elapsed))
        if elapsed < settings.twofa_timeout:
            # IBC takes it that the user handled the prompt.
            if settings.relogin_after_2fa_timeout:
                self.ibc(ibclog.exit_if_not_completed(seconds=settings.twofa_exit_interval))
                state.spawn_exit_timer(self._exit_unless_logged_in(state))
            if outcome.kind is LoginKind.LOGGED_IN and frontend.login_stall:
                await asyncio.Event().wait()  # approved, but the login never completes
            if outcome.kind is LoginKind.FAILED and outcome.reason == "twofa_timed_out":
                self._report(outcome)
                await asyncio.Event().wait()  # IB gave up; IBC still thinks it is under way
            return outcome
        self._report(outcome)
        if not settings.relogin_after_2fa_timeout:
            self.ibc(ibclog.RELOGIN_AFTER_2FA_NOT_REQUIRED)
            await asyncio.Event().wait()  # waits at the login dialog, forever
        self.ibc(ibclog.RELOGIN_AFTER_2FA_TIMEOUT)
        return None

    async def _exit_unless_logged_in(self, state: _JvmState) -> None:
        await asyncio.sleep(self.settings.twofa_exit_interval)
        if state.logged_in.is_set():
            self.ibc(ibclog.ALREADY_LOGGED_IN_NO_EXIT)
            return
        self._banner_error(ibclog.CLOSING_AFTER_2FA)
        self.ibc(ibclog.exiting_with_code(EXIT_2FA_TIMEOUT))
        state.end(_JvmEnd(EXIT_2FA_TIMEOUT))

    async def _logged_in(
        self, frontend: GatewayFrontEnd, state: _JvmState, outcome: LoginOutcome
    ) -> None:
        frontend.accounts = outcome.accounts
        frontend.market_data = outcome.market_data
        self.ibc(ibclog.LOGIN_COMPLETED)
        state.logged_in.set()
        state.cancel_exit_timer()
        # IbcTws.configureAutoLogoffOrRestart runs at every start: an explicit AutoRestartTime
        # overwrites what a RESTART set; an empty one leaves the Gateway's own time.
        if self.settings.auto_restart_time is not None:
            self._apply_auto_restart(self.settings.auto_restart_time)
        self.ibc(ibclog.CONFIGURATION_TASKS_COMPLETED)
        await frontend.listen()
        self._report(outcome)
        await self._daily(state)


class _JvmState:
    """What one JVM's tasks share: login state, its end, the pending 2FA exit timer."""

    def __init__(
        self,
        *,
        frontend: GatewayFrontEnd,
        logged_in: asyncio.Event,
        end: Callable[[_JvmEnd], None],
    ) -> None:
        self.frontend = frontend
        self.logged_in = logged_in
        self._end = end
        self.rescheduled = asyncio.Event()
        self._exit_timer: asyncio.Task[None] | None = None

    def end(self, result: _JvmEnd) -> None:
        self._end(result)
        self.cancel_exit_timer()

    def reschedule(self) -> None:
        self.rescheduled.set()

    def spawn_exit_timer(self, coro: Coroutine[Any, Any, None]) -> None:
        self.cancel_exit_timer()
        self._exit_timer = asyncio.ensure_future(coro)

    def cancel_exit_timer(self) -> None:
        if self._exit_timer is not None:
            self._exit_timer.cancel()
            self._exit_timer = None
