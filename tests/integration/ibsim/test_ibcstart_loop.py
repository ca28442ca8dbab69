"""The gateway process (socat + ibcstart.sh's loop + the JVM) over real TCP, in process mode.

Each test runs ibsim.process.GatewayProcess (the code the container entrypoint runs)
against an in-process broker, with a config.ini given as bytes, and reads its stdout lines.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from gateway.config import TradingMode
from ibsim import auth, ibclog
from ibsim.port import Fault, FaultEvent
from ibsim.process import GatewayProcess
from ibsim.service import BrokerService, InProcessBrokerPort
from ibsim.settings import custom_config_env, read_settings, sim_env
from ibsim.wallclock import next_sunday
from tests.waiting import until

USER = "loopuser"
PASSWORD = "right-pw"


def ini(**settings: str) -> bytes:
    values = {
        "IbLoginId": USER,
        "IbPassword": PASSWORD,
        "TradingMode": "paper",
        "CommandServerPort": "7462",
        "AutoRestartTime": "",
        **settings,
    }
    return "".join(f"{k}={v}\n" for k, v in values.items()).encode("latin-1")


@asynccontextmanager
async def gateway(
    config: bytes,
    *,
    twofa: bool = False,
    jvm_start: float = 0.0,
    action: str = "exit",
    password: str = PASSWORD,
    auth_config: auth.AuthorityConfig | None = None,
) -> AsyncIterator[tuple[GatewayProcess, list[str], BrokerService, asyncio.Task[int]]]:
    service = BrokerService(
        auth_config=auth_config,
        users=[
            auth.User(
                username=USER,
                password=password,
                accounts=("DU9000001",),
                mode=TradingMode.LIVE if twofa else TradingMode.PAPER,
                twofa_required=twofa,
            )
        ],
    )
    await service.start()
    env = custom_config_env(
        trading_mode="live" if twofa else "paper",
        ini_path="/cfg/config.ini",
        twofa_timeout_action=action,
    ) | sim_env(api_port=0, command_port=0, gateway_name="gw", jvm_start=jvm_start)
    settings = read_settings(env, read_file=lambda path: config, need_broker=False)
    lines: list[str] = []
    process = GatewayProcess(
        settings,
        broker=InProcessBrokerPort(service),
        out=lines.append,
        api_host="127.0.0.1",
        command_host="127.0.0.1",
        relogin_delay=0.2,
    )
    task = asyncio.create_task(process.run())
    try:
        yield process, lines, service, task
    finally:
        process.stop_requested.set()
        await asyncio.wait_for(task, 10)
        await service.stop()


def count(lines: list[str], text: str) -> int:
    return sum(text in line for line in lines)


def after(lines: list[str], text: str, nth: int = 1) -> list[str]:
    seen = 0
    for index, line in enumerate(lines):
        if text in line:
            seen += 1
            if seen == nth:
                return lines[index:]
    raise AssertionError(f"{text!r} #{nth} not in {lines}")


async def command(process: GatewayProcess, text: str) -> list[str]:
    assert process.command_server is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", process.command_server.port)
    writer.write(text.encode() + b"\n")
    await writer.drain()
    replies = []
    while line := await asyncio.wait_for(reader.readline(), 5):
        replies.append(line.decode().rstrip("\n"))
    writer.close()
    return replies


def seconds_until(process: GatewayProcess, when: datetime) -> float:
    return (when - process.clock.now()).total_seconds()


async def test_daily_auto_restart_relaunches_with_the_token_and_no_login() -> None:
    async with gateway(ini(AutoRestartTime="11:45 PM")) as (process, lines, service, _):
        await until(lambda: count(lines, ibclog.LOGIN_COMPLETED), timeout=5, what="login")
        now = process.clock.now()
        target = now.replace(hour=23, minute=45, second=0, microsecond=0)
        if target <= now:
            target += timedelta(days=1)
        service.push_fault(
            FaultEvent(
                gateway="gw",
                fault=Fault.CLOCK,
                active=True,
                value=seconds_until(process, target) - 0.3,
            )
        )
        await until(lambda: count(lines, ibclog.LOGIN_COMPLETED) == 2, timeout=5, what="relogin")
        tail = after(lines, ibclog.EXIT_STATUS_PREFIX)
        assert tail[0] == "IBC returned exit status 0"
        assert tail[1] == ibclog.FINDING_AUTORESTART
        assert tail[2].startswith("autorestart file found at /home/ibgateway/Jts/")
        assert tail[3].startswith(ibclog.AUTORESTART_OPTION_PREFIX)
        assert tail[4:6] == [ibclog.RESTART_SHORTLY, ibclog.SLEEP_2]
        assert any(line.endswith(ibclog.RESTARTING_SESSION) for line in tail)
        assert count(tail, ibclog.LOGIN_ATTEMPT_PREFIX) == 0
        assert process.jvm_starts == 2


async def test_restart_moves_the_daily_time_to_the_next_minute_once() -> None:
    async with gateway(ini()) as (process, lines, service, _):
        await until(lambda: count(lines, ibclog.LOGIN_COMPLETED), timeout=5, what="login")
        first = await command(process, "RESTART")
        assert first[0] == "OK RESTART in progress"
        assert first[1].startswith("OK RESTART at ") and first[1][-2:] in ("AM", "PM")
        assert await command(process, "RESTART") == ["ERROR RESTART already in progress"]
        moved = process.gateway_restart_time
        assert ibclog.clock_12h(moved) == first[1].removeprefix("OK RESTART at ")
        service.push_fault(FaultEvent(gateway="gw", fault=Fault.CLOCK, active=True, value=61))
        await until(lambda: count(lines, ibclog.LOGIN_COMPLETED) == 2, timeout=5, what="relogin")
        # No AutoRestartTime in config.ini: the Gateway keeps the time RESTART set.
        assert process.gateway_restart_time == moved
        assert count(lines, ibclog.RESTARTING_SESSION) == 1


async def test_explicit_auto_restart_time_is_applied_again_after_restart() -> None:
    async with gateway(ini(AutoRestartTime="11:45 PM")) as (process, lines, service, _):
        await until(lambda: count(lines, ibclog.LOGIN_COMPLETED), timeout=5, what="login")
        await command(process, "RESTART")
        service.push_fault(FaultEvent(gateway="gw", fault=Fault.CLOCK, active=True, value=61))
        await until(lambda: count(lines, ibclog.LOGIN_COMPLETED) == 2, timeout=5, what="relogin")
        assert process.gateway_restart_time.hour == 23
        assert any(
            "Auto restart time changed from" in line and "to 11:45 PM" in line for line in lines
        )


async def test_weekly_cold_restart_on_sunday_does_a_full_login() -> None:
    async with gateway(ini(ColdRestartTime="07:05")) as (process, lines, service, _):
        await until(lambda: count(lines, ibclog.LOGIN_COMPLETED), timeout=5, what="login")
        assert count(lines, ibclog.COLD_RESTART_SCHEDULED_PREFIX) == 1
        target = next_sunday(process.clock.now(), datetime(2000, 1, 1, 7, 5).time())
        assert target.weekday() == 6
        service.push_fault(
            FaultEvent(
                gateway="gw",
                fault=Fault.CLOCK,
                active=True,
                value=seconds_until(process, target) - 0.3,
            )
        )
        # Five days ahead also passes the Gateway's own daily restart (a token relaunch) first.
        await until(lambda: count(lines, "Login attempt: 1") == 2, timeout=5, what="full login")
        tail = after(lines, ibclog.LOGIN_COMPLETED_EXITING)
        assert tail[1:5] == [
            "IBC returned exit status 0",
            ibclog.COLD_RESTART_SHORTLY,
            ibclog.RESTART_SHORTLY,
            ibclog.SLEEP_2,
        ]
        assert count(tail, ibclog.COLD_RESTART_IN_PROGRESS) == 0
        assert count(tail, "Login attempt: 1") == 1


async def test_bad_password_loops_in_the_container_until_stopped() -> None:
    async with gateway(ini(), password="other") as (_process, lines, _, task):
        await until(lambda: count(lines, ibclog.LOGIN_FAILED) >= 3, timeout=5, what="3 fails")
        assert not task.done()
        tail = after(lines, ibclog.COLD_RESTART_IN_PROGRESS)
        assert tail[1].endswith(ibclog.LOGIN_NOT_COMPLETED_EXITING)
        assert tail[2:4] == ["IBC returned exit status 0", ibclog.COLD_RESTART_SHORTLY]


async def test_a_relaunched_jvm_takes_its_start_up_time_before_the_next_login() -> None:
    """ibcstart.sh relaunches at once, but the Gateway loads before its login dialog: the gap
    a supervisor has to stop a container whose password is wrong before IBC tries again."""
    async with gateway(ini(), password="other", jvm_start=0.5) as (_process, lines, _, _task):
        await until(lambda: count(lines, "Login attempt:") >= 2, timeout=10, what="2 attempts")
        failed = next(i for i, line in enumerate(lines) if line.endswith(ibclog.LOGIN_FAILED))
        again = next(i for i in range(failed, len(lines)) if "Login attempt:" in lines[i])

        def stamp(line: str) -> datetime:
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S:%f")

        # The next attempt comes a start-up after the failure, not at once.
        gap = stamp(lines[again]) - stamp(lines[failed])
        assert gap.total_seconds() >= 0.5, lines[failed : again + 1]


async def test_approved_2fa_that_never_completes_exits_1111_and_restarts() -> None:
    config = ini(
        TradingMode="live",
        ReloginAfterSecondFactorAuthenticationTimeout="yes",
        SecondFactorAuthenticationExitInterval="1",
    )
    async with gateway(config, twofa=True, action="restart") as (_process, lines, service, _):
        await until(lambda: service.authority.pending_2fa(USER), timeout=5, what="a prompt")
        service.push_fault(FaultEvent(gateway="gw", fault=Fault.LOGIN_STALL, active=True))
        service.approve_2fa(USER)
        await until(lambda: count(lines, "exit status 87"), timeout=5, what="exit 1111")
        tail = after(lines, ibclog.DURATION_SINCE_LOGIN_PREFIX)
        assert tail[1].endswith(ibclog.exit_if_not_completed(seconds=1))
        assert tail[2] == ibclog.ERROR_BANNER
        assert tail[3].endswith(ibclog.CLOSING_AFTER_2FA)
        assert tail[5].endswith(ibclog.exiting_with_code(1111))
        await until(lambda: count(lines, "Login attempt: 1") == 2, timeout=5, what="relaunch")


async def test_unanswered_2fa_logs_in_again_in_process() -> None:
    config = ini(
        TradingMode="live",
        ReloginAfterSecondFactorAuthenticationTimeout="yes",
        SecondFactorAuthenticationTimeout="0",
    )
    quick = auth.AuthorityConfig(twofa_timeout=timedelta(seconds=0.2))
    async with gateway(config, twofa=True, auth_config=quick) as (_process, lines, _service, task):
        await until(lambda: count(lines, "Login attempt: 2"), timeout=10, what="relogin")
        assert count(lines, ibclog.RELOGIN_AFTER_2FA_TIMEOUT) >= 1
        assert count(lines, ibclog.EXIT_STATUS_PREFIX) == 0 and not task.done()


async def test_malformed_unicode_escape_kills_every_jvm_and_ends_the_container() -> None:
    async with gateway(ini(IbPassword="bad\\u12zz")) as (_, lines, _, task):
        code = await asyncio.wait_for(task, 5)
        assert code == 1
        assert lines.count(ibclog.ERROR_BANNER) == 1
        assert count(lines, ibclog.LOGIN_ATTEMPT_PREFIX) == 0
        assert "IBC returned exit status 1" in lines and lines[-2] == ibclog.GATEWAY_FINISHED


async def test_socat_accepts_while_the_gateway_is_down_and_closes_at_once() -> None:
    async with gateway(ini(), password="other") as (process, lines, _, _):
        await until(lambda: count(lines, ibclog.LOGIN_FAILED), timeout=5, what="a failure")
        reader, writer = await asyncio.open_connection("127.0.0.1", process.api_port)
        assert await asyncio.wait_for(reader.read(100), 5) == b""
        writer.close()


def test_next_sunday_is_strictly_after_now() -> None:
    sunday = datetime(2026, 3, 1, 7, 5, tzinfo=UTC)
    assert sunday.weekday() == 6
    assert next_sunday(sunday, sunday.time()) == sunday + timedelta(days=7)
    assert next_sunday(sunday - timedelta(minutes=1), sunday.time()) == sunday
