"""A gateway's real day with simulator containers on the real Docker engine.

Every test runs a two-gateway fleet (gw-a the strategy's primary, gw-b its failover) with a
strategy resting one GTC buy, brings one of the day's events about (IBC's daily restart,
Sunday's cold restart, a stall, 2FA left unanswered or stuck after approval, a wrong password,
a killed container, the supervisor stopped), and asserts the four records of
:mod:`tests.integration.realday`: the broker's orders, the pages sent, the logins counted and
where the strategy trades.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.realday import (
    MIDDAY,
    SIGKILL,
    SIGTERM,
    DayFleet,
    GatewayPlan,
    MovableClock,
    StrategyPlan,
    next_daily,
    next_weekday,
    only,
)
from tests.integration.smtp import WebhookSink
from tests.waiting import until

pytestmark = [pytest.mark.docker, pytest.mark.slow]

#: The part of a 2FA prompt's page title that names it.
PROMPT = "approve the IB Key"
SUNDAY = 6


@pytest.fixture
def hook() -> Iterator[WebhookSink]:
    with WebhookSink() as sink:
        yield sink


@pytest.fixture
async def make_fleet(
    docker_client: docker.DockerClient, sim_image: str, tmp_path: Path, hook: WebhookSink
) -> AsyncIterator[Callable[..., DayFleet]]:
    made: list[DayFleet] = []

    def make(*gateways: GatewayPlan, **kw: Any) -> DayFleet:
        fleet = DayFleet(
            docker_client=docker_client,
            image=sim_image,
            workdir=tmp_path,
            hook=hook,
            gateways=gateways or (GatewayPlan("gw-a"), GatewayPlan("gw-b")),
            **kw,
        )
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        try:
            await fleet.stop()
        finally:
            await asyncio.to_thread(fleet.cleanup)


async def logins(fleet: DayFleet, gateway: str) -> tuple[int, int, float]:
    """The three counts of password logins: IBC's, the ledger's and the metrics'."""
    return (
        await fleet.password_logins(gateway),
        fleet.ledger(gateway),
        await fleet.metric("ibfleet_logins_total", gateway=gateway, outcome="attempt"),
    )


async def trading_on(fleet: DayFleet, gateway: str) -> dict[str, Any]:
    """The strategy trades on ``gateway``: running there, never failed over, safe state unrun."""
    status = await fleet.strategy_status()
    assert status["gateway"] == gateway, status
    assert status["failovers"] == 0 and status["safe_state_runs"] == 0, status
    return status


async def settle(fleet: DayFleet, gateway: str, *, heartbeats: int = 10) -> None:
    """Let ``heartbeats`` more probe round trips pass, time enough for a second, unwanted
    restart mechanism to show itself (a condition with a deadline, not a sleep)."""
    name = "ibfleet_heartbeat_rtt_seconds_count"
    start = await fleet.metric(name, gateway=gateway)

    async def passed() -> bool:
        return await fleet.metric(name, gateway=gateway) >= start + heartbeats

    await until(passed, 60, what=f"{heartbeats} heartbeats on {gateway}", step=0.25)


async def until_restarted_and_ready(fleet: DayFleet, gateway: str, *, since_id: int) -> list[str]:
    """Wait for the lifecycle to go through RESTARTING and back to API_READY; its transitions."""

    async def back() -> list[str] | None:
        seen = await fleet.states_seen(gateway, since_id=since_id)
        restarting = [i for i, s in enumerate(seen) if "-> RESTARTING" in s]
        if restarting and any("-> API_READY" in s for s in seen[restarting[0] :]):
            return seen
        return None

    seen: list[str] = await until(
        back, 120, what=f"{gateway} through RESTARTING back to API_READY", step=0.25
    )
    return seen


def ibc_time(at: dt.time) -> str:
    return at.strftime("%I:%M %p")


# ---------------------------------------------------------------------------------------------


async def test_daily_restart_of_each_gateway_keeps_the_order_and_pages_nobody(
    make_fleet: Callable[..., DayFleet],
) -> None:
    daily = {"gw-a": dt.time(22, 0), "gw-b": dt.time(22, 30)}
    fleet = make_fleet(GatewayPlan("gw-a", daily="22:00"), GatewayPlan("gw-b", daily="22:30"))
    running = await fleet.start(MovableClock(MIDDAY))
    await fleet.until_ready()
    order = await fleet.resting_order("gw-a")
    await trading_on(fleet, "gw-a")
    await running.dispatcher.wait_idle(30)
    pages = fleet.pages.mark()

    for gateway, at in daily.items():
        identity = await fleet.identity(gateway)
        counted = await logins(fleet, gateway)
        mark = await fleet.log_mark(gateway)
        since_id = await fleet.last_event_id()
        # IBC's AutoRestartTime comes within a minute on the gateway's own clock.
        await fleet.broker.move_clock(
            gateway, next_daily(dt.datetime.now(dt.UTC), at) - dt.timedelta(seconds=3)
        )
        tail = await fleet.until_log(gateway, "Re-starting session", mark=mark)
        assert "IBC returned exit status" in tail
        assert "Login attempt" not in tail, "an auto-restart logs in with its token, no password"
        seen = await until_restarted_and_ready(fleet, gateway, since_id=since_id)
        # Named for what it is (IBC's log lines, not a clock): planned, never a failed login.
        assert any("-> RESTARTING" in s and "daily" in s for s in seen), seen
        assert not [s for s in seen if re.search(r"-> (BACKOFF|FATAL|STOPPED)", s)], seen

        assert await fleet.identity(gateway) == identity, "the container was restarted"
        assert await logins(fleet, gateway) == counted, "a token restart counted as a login"
        # The order rests at the broker all along: never cancelled, never placed again.
        record = only(await fleet.broker.orders(), "order at the broker")
        assert record["perm_id"] == order["perm_id"] and record["gateway"] == "gw-a"
        assert record["status"] not in ("Cancelled", "ApiCancelled", "Inactive"), record
        await fleet.resting_order("gw-a", timeout=30)
        await trading_on(fleet, "gw-a")

    await running.dispatcher.wait_idle(30)
    assert fleet.pages.since(pages) == [], "a planned daily restart paged someone"


async def test_sunday_cold_restart_is_a_full_login_with_one_2fa_prompt(
    make_fleet: Callable[..., DayFleet],
) -> None:
    fleet = make_fleet(
        GatewayPlan("gw-a", twofa=True, weekly_cold="Sun 07:00"), GatewayPlan("gw-b")
    )
    user = fleet.user("gw-a")
    running = await fleet.start(MovableClock(MIDDAY))
    # The first start needs the phone too.
    await fleet.pages.wait(PROMPT)
    await fleet.broker.approve(user)
    await fleet.until_ready()
    order = await fleet.resting_order("gw-a")
    await trading_on(fleet, "gw-a")
    await running.dispatcher.wait_idle(30)
    pages = fleet.pages.mark()
    identity = await fleet.identity("gw-a")
    broker, ledger, metric = await logins(fleet, "gw-a")
    mark = await fleet.log_mark("gw-a")
    since_id = await fleet.last_event_id()

    # Sunday 07:00 in the fleet's (and the container's) time zone comes within a minute.
    sunday = next_weekday(dt.datetime.now(dt.UTC), SUNDAY, dt.time(7, 0))
    await fleet.broker.move_clock("gw-a", sunday - dt.timedelta(seconds=3))
    tail = await fleet.until_log("gw-a", "IBC will cold-restart shortly", mark=mark)
    assert "Cold restart in progress" not in tail  # that line belongs to a failed login
    await until(lambda: fleet.broker.pending_2fa(user), 90, what="the Sunday 2FA prompt")
    prompt = await fleet.pages.wait(PROMPT, mark=pages)
    assert "gw-a" in prompt
    await fleet.broker.approve(user)
    await fleet.pages.wait("Resolved", mark=pages)
    await until_restarted_and_ready(fleet, "gw-a", since_id=since_id)
    tail = await fleet.logs_since("gw-a", mark)
    assert "Login attempt" in tail, "a cold restart logs in with the password"

    assert await logins(fleet, "gw-a") == (broker + 1, ledger + 1, metric + 1)
    assert await fleet.identity("gw-a") == identity, "IBC relaunches inside the container"
    await running.dispatcher.wait_idle(30)
    raised = fleet.pages.raised(pages)
    assert len(raised) == 1 and PROMPT in raised[0], fleet.pages.since(pages)
    assert len(fleet.pages.resolved(pages)) == 1, fleet.pages.since(pages)
    record = only(await fleet.broker.orders(), "order at the broker")
    assert record["perm_id"] == order["perm_id"]
    await fleet.resting_order("gw-a", timeout=30)
    await trading_on(fleet, "gw-a")


async def test_soft_restart_after_a_stall_leaves_the_daily_time_as_configured(
    make_fleet: Callable[..., DayFleet],
) -> None:
    fleet = make_fleet(GatewayPlan("gw-a", daily="22:00"), GatewayPlan("gw-b"))
    clock = MovableClock(MIDDAY)
    running = await fleet.start(clock)
    await fleet.until_ready()
    order = await fleet.resting_order("gw-a")
    await running.dispatcher.wait_idle(30)
    pages = fleet.pages.mark()
    identity = await fleet.identity("gw-a")
    counted = await logins(fleet, "gw-a")
    mark = await fleet.log_mark("gw-a")
    since_id = await fleet.last_event_id()

    await fleet.broker.fault("gw-a", "stall", active=True)
    await fleet.until_state("gw-a", "DEGRADED")
    # The stall outlasts the lifecycle's patience: the supervisor sends IBC a RESTART.
    clock.advance(dt.timedelta(minutes=3))
    # RESTART restarts at the Gateway's next minute, the time it logs: the gateway's clock is
    # brought to a second before it (a faster test, not a shorter one).
    tail = await fleet.until_log("gw-a", "Setting auto-restart time to", mark=mark)
    moved = re.findall(r"Setting auto-restart time to (\d\d:\d\d [AP]M)", tail)[-1]
    now = dt.datetime.now(dt.UTC)
    at = dt.datetime.strptime(moved, "%I:%M %p").time()
    target = next_daily(now, at) - dt.timedelta(seconds=1)
    if target - now <= dt.timedelta(minutes=1):  # not once that minute has come already
        await fleet.broker.move_clock("gw-a", target)
    tail = await fleet.until_log("gw-a", "IBC returned exit status", mark=mark)
    # The hung JVM is gone; the relaunched one answers.
    await fleet.broker.fault("gw-a", "stall", active=False)
    tail = await fleet.until_log("gw-a", "Re-starting session", mark=mark)
    await until_restarted_and_ready(fleet, "gw-a", since_id=since_id)
    tail = await fleet.logs_since("gw-a", mark)
    assert "Login attempt" not in tail, "RESTART keeps the session: no password login"

    # RESTART moved the Gateway's daily time to the next minute; the relaunch set it back.
    times = re.findall(
        r"[Aa]uto[ -][Rr]estart time (?:.*? to |already set to )(\d\d:\d\d [AP]M)", tail
    )
    assert times and times[-1] == ibc_time(dt.time(22, 0)), times
    assert await fleet.identity("gw-a") == identity
    assert await logins(fleet, "gw-a") == counted
    # A stall is not planned: past the strategy's grace its order is cancelled (through the
    # failover gateway, the stalled one answers nothing) and it trades on gw-b from then on.
    status = await fleet.strategy_status()
    assert status["gateway"] == "gw-b" and status["failovers"] == 1, status
    record = only(await fleet.broker.orders(), "order at the broker")
    assert record["perm_id"] == order["perm_id"], record
    assert record["status"] in ("Cancelled", "ApiCancelled"), record
    await running.dispatcher.wait_idle(30)
    # One page per problem: the stall opens one incident and resolves it once, naming its cause.
    raised = [t for t in fleet.pages.raised(pages) if "gw-a" in t]
    resolved = [t for t in fleet.pages.resolved(pages) if "gw-a" in t]
    assert len(raised) == 1 and len(resolved) == 1, fleet.pages.since(pages)
    assert "API stalled" in resolved[0], fleet.pages.since(pages)


@pytest.mark.parametrize("action", ["restart", "exit"])
async def test_unanswered_2fa_is_restarted_by_exactly_one_mechanism(
    make_fleet: Callable[..., DayFleet], action: str
) -> None:
    """``restart``: IBC relogs in by itself, the supervisor only waits; ``exit``: IBC waits at
    its login dialog and the supervisor restarts the container. Never both."""
    fleet = make_fleet(
        GatewayPlan("gw-a", twofa=True, twofa_timeout_action=action),
        GatewayPlan("gw-b"),
        # The strategy trades on the other gateway: a login in trouble must not disturb it.
        strategy=StrategyPlan(gateways=("gw-b", "gw-a")),
        broker_twofa_timeout=10.0,
    )
    user = fleet.user("gw-a")
    clock = MovableClock(MIDDAY)
    since = dt.datetime.now(dt.UTC)
    running = await fleet.start(clock)
    await fleet.pages.wait(PROMPT)
    await until(lambda: fleet.broker.pending_2fa(user), 10, what="the first 2FA prompt")
    first = await fleet.identity("gw-a")
    # Nobody answers the phone. IB's window (10 s here) closes while IBC's own 180 s have
    # passed on the gateway's clock, so IBC knows the prompt timed out and says what it does.
    await fleet.broker.move_clock("gw-a", dt.datetime.now(dt.UTC) + dt.timedelta(seconds=200))
    await fleet.until_log("gw-a", "Re-login after second factor authentication timeout")
    # The clock back, so the next prompt gets IB's whole window as a real one would.
    await fleet.broker.fault("gw-a", "clock", active=False)
    # IB's window is the supervisor's own 2FA deadline too (180 s): that passes as well.
    clock.advance(dt.timedelta(minutes=4))

    async def second_prompt() -> bool:
        return await fleet.password_logins("gw-a") >= 2 and await fleet.broker.pending_2fa(user)

    await until(second_prompt, 120, what="one new login with a new 2FA prompt")
    await fleet.broker.approve(user)
    await fleet.until_ready()
    await settle(fleet, "gw-a")

    assert await fleet.password_logins("gw-a") == 2
    assert fleet.ledger("gw-a") == 2
    text = await fleet.logs("gw-a")
    relogins = text.count("Re-login after second factor authentication timeout in 5 second")
    container_starts = await fleet.starts("gw-a", since=since)
    if action == "restart":
        assert (relogins, container_starts) == (1, 1), "IBC relogs in; the container stays"
        assert await fleet.identity("gw-a") == first
    else:
        assert "Re-login after second factor authentication timeout not required" in text
        assert (relogins, container_starts) == (0, 2), "the supervisor restarts the container"
    await running.dispatcher.wait_idle(30)
    view = await fleet.api("/api/v1/gateways/gw-a")
    assert view["open_alerts"] == [], (view, fleet.pages.since())
    await fleet.resting_order("gw-b")
    await trading_on(fleet, "gw-b")


@pytest.mark.parametrize("action", ["restart", "exit"])
async def test_approved_but_stalled_2fa_is_restarted_by_exactly_one_mechanism(
    make_fleet: Callable[..., DayFleet], action: str
) -> None:
    """The phone said yes but the login never completed: IBC exits 1111 after its exit
    interval; ``restart`` relaunches inside the container, ``exit`` leaves it to the
    supervisor. One new login either way, and the page says the user did approve."""
    fleet = make_fleet(
        GatewayPlan("gw-a", twofa=True, twofa_timeout_action=action, twofa_exit_interval="10s"),
        GatewayPlan("gw-b"),
        # The strategy trades on the other gateway: a login in trouble must not disturb it.
        strategy=StrategyPlan(gateways=("gw-b", "gw-a")),
    )
    user = fleet.user("gw-a")
    clock = MovableClock(MIDDAY)
    since = dt.datetime.now(dt.UTC)
    running = await fleet.start(clock)
    await fleet.pages.wait(PROMPT)
    first = await fleet.identity("gw-a")
    await fleet.broker.fault("gw-a", "login_stall", active=True)
    await fleet.broker.approve(user)
    if action == "restart":
        # IBC's relogin is on: it gives the login its exit interval, then exits 1111.
        await fleet.until_log("gw-a", "If login has not completed, IBC will exit in 10 seconds")
        await fleet.until_log("gw-a", "IBC closing because login has not completed after Second")
        await fleet.pages.wait("approved but the login did not complete")
    else:
        # IBC's relogin is off: it lets the login go on and never exits; the supervisor's
        # login deadline (5 min) is the one mechanism left.
        await fleet.until_log("gw-a", "Duration since login:")
        clock.advance(dt.timedelta(minutes=6))
    await fleet.broker.fault("gw-a", "login_stall", active=False)

    async def second_prompt() -> bool:
        return await fleet.password_logins("gw-a") >= 2 and await fleet.broker.pending_2fa(user)

    await until(second_prompt, 120, what="one new login with a new 2FA prompt")
    await fleet.broker.approve(user)
    await fleet.until_ready()
    await settle(fleet, "gw-a")

    assert await fleet.password_logins("gw-a") == 2
    assert fleet.ledger("gw-a") == 2
    relaunches = await fleet.relaunches("gw-a")
    container_starts = await fleet.starts("gw-a", since=since)
    if action == "restart":
        assert (relaunches, container_starts) == (1, 1), "ibcstart relaunches after 1111"
        assert await fleet.identity("gw-a") == first
    else:
        assert "If login has not completed" not in await fleet.logs("gw-a")
        assert container_starts == 2, "the supervisor restarts the container once"
    await running.dispatcher.wait_idle(30)
    view = await fleet.api("/api/v1/gateways/gw-a")
    assert view["open_alerts"] == [], (view, fleet.pages.since())
    await fleet.resting_order("gw-b")
    await trading_on(fleet, "gw-b")


# Two full logins, the backoff between them and a watch that nothing restarts it afterwards:
# past the suite's 300 s default on a loaded machine, with the supervisor's shutdown after it.
@pytest.mark.timeout(600)
async def test_wrong_password_stops_within_the_login_budget_and_stays_stopped(
    make_fleet: Callable[..., DayFleet],
) -> None:
    budget = 2
    fleet = make_fleet(
        GatewayPlan("gw-a", wrong_password=True, logins_per_hour=budget), GatewayPlan("gw-b")
    )
    clock = MovableClock(MIDDAY)
    running = await fleet.start(clock)
    # The first failed login's backoff (up to its 30 s base, jittered) passes in a step on the
    # supervisor's clock: the second login comes at once, well inside the budget's hour.
    if await fleet.until_state("gw-a", "BACKOFF", "FATAL", "STOPPED", timeout=120) == "BACKOFF":
        clock.advance(dt.timedelta(seconds=31))
    await fleet.until_state("gw-a", "FATAL", "STOPPED", timeout=120)

    async def stopped() -> bool:
        return await fleet.running_state("gw-a") in ("exited", "created")

    await until(stopped, 60, what="gw-a's container stopped")
    await fleet.until_state("gw-b", "API_READY")
    await settle(fleet, "gw-b")
    attempts = await fleet.password_logins("gw-a")
    assert 1 <= attempts <= budget, f"{attempts} logins\n{await fleet.story('gw-a')}"
    assert fleet.ledger("gw-a") <= budget
    await running.dispatcher.wait_idle(30)
    raised = [t for t in fleet.pages.raised() if "gw-a" in t]
    assert len(raised) == 1, fleet.pages.since()
    # The strategy's primary never came up: it trades on its failover.
    await fleet.resting_order("gw-b")
    assert (await fleet.strategy_status())["gateway"] == "gw-b"

    await fleet.stop()
    pages = fleet.pages.mark()
    await fleet.start(MovableClock(MIDDAY))
    await fleet.until_state("gw-b", "API_READY")
    await fleet.until_state("gw-a", "FATAL", "STOPPED")
    await settle(fleet, "gw-b")
    assert await fleet.running_state("gw-a") in ("exited", "created")
    assert await fleet.password_logins("gw-a") == attempts, "logged in again after a restart"
    assert fleet.ledger("gw-a") <= budget
    assert fleet.running is not None
    await fleet.running.dispatcher.wait_idle(30)
    assert fleet.pages.raised(pages) == [], fleet.pages.since(pages)


async def test_killed_container_is_restarted_once_with_one_login(
    make_fleet: Callable[..., DayFleet],
) -> None:
    # Grace longer than a container restart: the strategy waits for its primary.
    fleet = make_fleet(strategy=StrategyPlan(grace="60s"))
    running = await fleet.start(MovableClock(MIDDAY))
    await fleet.until_ready()
    order = await fleet.resting_order("gw-a")
    await running.dispatcher.wait_idle(30)
    pages = fleet.pages.mark()
    container_id, started = await fleet.identity("gw-a")
    broker, ledger, metric = await logins(fleet, "gw-a")
    since = dt.datetime.now(dt.UTC)

    await fleet.kill("gw-a")

    async def restarted() -> bool:
        return (await fleet.identity("gw-a"))[1] != started

    await until(restarted, 60, what="gw-a started again")
    await fleet.until_state("gw-a", "API_READY")
    await settle(fleet, "gw-a")

    assert await fleet.starts("gw-a", since=since) == 1
    assert (await fleet.identity("gw-a"))[0] == container_id
    assert await logins(fleet, "gw-a") == (broker + 1, ledger + 1, metric + 1)
    await running.dispatcher.wait_idle(30)
    assert not [t for t in fleet.pages.since(pages) if "login" in t.lower()], fleet.pages.since(
        pages
    )
    record = only(await fleet.broker.orders(), "order at the broker")
    assert record["perm_id"] == order["perm_id"]
    await fleet.resting_order("gw-a", timeout=60)
    await trading_on(fleet, "gw-a")


@pytest.mark.parametrize("stop", [SIGTERM, SIGKILL], ids=["sigterm", "sigkill"])
async def test_supervisor_stopped_and_started_pages_nobody_and_keeps_the_containers(
    make_fleet: Callable[..., DayFleet], stop: Any
) -> None:
    fleet = make_fleet(strategy=StrategyPlan(on_shutdown="hold"))
    fleet.start_process()
    await fleet.until_ready()
    order = await fleet.resting_order("gw-a")
    pages = fleet.pages.mark()
    identities = {g: await fleet.identity(g) for g in ("gw-a", "gw-b", "sim-broker")}
    counted = {g: await fleet.password_logins(g) for g in ("gw-a", "gw-b")}

    code = await fleet.end_process(stop)
    if stop is SIGTERM:
        assert code == 0, fleet.process_log()[-3000:]
    # on_shutdown: hold leaves the order working at IB.
    record = only(await fleet.broker.orders(), "order at the broker")
    assert record["perm_id"] == order["perm_id"] and record["status"] not in (
        "Cancelled",
        "ApiCancelled",
    ), record

    fleet.start_process()
    await fleet.until_ready()
    await settle(fleet, "gw-a")
    await fleet.resting_order("gw-a", timeout=30)
    await trading_on(fleet, "gw-a")
    assert only(await fleet.broker.orders(), "order at the broker")["perm_id"] == order["perm_id"]
    for gateway, identity in identities.items():
        assert await fleet.identity(gateway) == identity, f"{gateway} was recreated or restarted"
    for gateway, before in counted.items():
        assert await fleet.password_logins(gateway) == before
    await fleet.end_process(SIGTERM)
    assert fleet.pages.since(pages) == []
    assert "Traceback" not in fleet.process_log()


async def test_supervisor_sigterm_cancels_orders_by_default(
    make_fleet: Callable[..., DayFleet],
) -> None:
    fleet = make_fleet()
    fleet.start_process()
    await fleet.until_ready()
    order = await fleet.resting_order("gw-a")
    identities = {g: await fleet.identity(g) for g in ("gw-a", "gw-b", "sim-broker")}
    assert await fleet.end_process(SIGTERM) == 0, fleet.process_log()[-3000:]
    record = only(await fleet.broker.orders(), "order at the broker")
    assert record["perm_id"] == order["perm_id"]
    assert record["status"] in ("Cancelled", "ApiCancelled"), record

    fleet.start_process()
    await fleet.until_ready()
    await settle(fleet, "gw-a")
    # Placed once in its life: a cancelled order is not placed again after the restart.
    assert len(await fleet.broker.orders()) == 1
    for gateway, identity in identities.items():
        assert await fleet.identity(gateway) == identity
    await fleet.end_process(SIGTERM)
    assert fleet.pages.since() == []
