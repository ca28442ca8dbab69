"""Logins of process-mode gateways (the container's GatewayProcess): 2FA via the control API,
lockout, existing sessions, restart tokens and the weekly boundary (injected clock), with
IBC's log lines."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from ibsim import auth, ibclog
from ibsim.fleet import GatewaySpec, SimFleet
from tests.integration.ibsim.conftest import Clients
from tests.waiting import until as wait_for

pytestmark = pytest.mark.timeout(60)
NEW_YORK = ZoneInfo("America/New_York")


class FakeClock:
    """A settable aware-UTC clock for the broker and its login authority."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def twofa_user(name: str = "tina", account: str = "DU3000001") -> auth.User:
    return auth.User(username=name, password="pw", accounts=(account,), twofa_required=True)


async def start_login(sim: SimFleet, which: int | str) -> asyncio.Task:
    task = asyncio.create_task(sim.login(which))
    await wait_for(lambda: sim.service.pending_2fa() or task.done(), what="2FA prompt")
    return task


async def approve(sim: SimFleet, username: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sim.control_url, timeout=5) as http:
        return await http.post(f"/2fa/{username}/approve")


@pytest.fixture
def clock() -> FakeClock:
    # Saturday 2026-11-21 12:00 New York: the next weekly boundary is Sunday 01:00.
    return FakeClock(datetime(2026, 11, 21, 12, 0, tzinfo=NEW_YORK).astimezone(UTC))


@pytest.fixture
async def tfa(clock: FakeClock):
    async with SimFleet.start(
        gateways=[GatewaySpec(name="gw-t", username="tina", password="pw")],
        users=[twofa_user()],
        twofa=True,
        clock=clock,
        auth_config=auth.AuthorityConfig(twofa_timeout=timedelta(seconds=180)),
    ) as fleet:
        yield fleet


async def test_2fa_approved_through_control_api_opens_the_api_port(
    lib, tfa: SimFleet, clients: Clients
):
    task = await start_login(tfa, 0)
    assert not task.done() and not tfa.gateway(0).ready.is_set()
    async with httpx.AsyncClient(base_url=tfa.control_url) as http:
        listed = (await http.get("/2fa")).json()
    assert [p["username"] for p in listed] == ["tina"]
    assert (await approve(tfa, "tina")).status_code == 200
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.kind is auth.LoginKind.LOGGED_IN
    text = "\n".join(tfa.lines)
    for expected in (ibclog.SECOND_FACTOR_INITIATED, ibclog.LOGIN_COMPLETED):
        assert expected in text
    ib = await clients.connect(tfa.ports[0])
    assert ib.managedAccounts() == ["DU3000001"]


async def test_2fa_denied_fails_the_login(tfa: SimFleet):
    task = await start_login(tfa, 0)
    async with httpx.AsyncClient(base_url=tfa.control_url) as http:
        assert (await http.post("/2fa/tina/deny")).status_code == 200
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.kind is auth.LoginKind.FAILED and outcome.reason == "twofa_denied"
    # LoginFailedDialogHandler: a cold restart, and the next JVM asks the phone again.
    await wait_for(lambda: len(tfa.service.pending_2fa()) == 1, what="a new 2FA prompt")
    text = "\n".join(tfa.lines)
    assert ibclog.COLD_RESTART_IN_PROGRESS in text and ibclog.COLD_RESTART_SHORTLY in text


async def test_unanswered_2fa_waits_without_relogin_and_never_exits(
    tfa: SimFleet, clock: FakeClock
):
    task = await start_login(tfa, 0)
    clock.advance(timedelta(seconds=181))
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.kind is auth.LoginKind.FAILED and outcome.reason == "twofa_timed_out"
    # LoginManager with relogin off: "not required", and the JVM waits at its dialog.
    await wait_for(
        lambda: any(ibclog.RELOGIN_AFTER_2FA_NOT_REQUIRED in line for line in tfa.lines),
        what="IBC's no-relogin line",
    )
    assert tfa.gateway(0).running
    assert not any(ibclog.CLOSING_AFTER_2FA in line for line in tfa.lines)


async def test_approving_unknown_username_is_404(tfa: SimFleet):
    response = await approve(tfa, "nobody")
    assert response.status_code == 404
    assert "nobody" in response.json()["detail"]


async def test_soft_restart_keeps_session_without_2fa(tfa: SimFleet, clock: FakeClock):
    task = await start_login(tfa, 0)
    await approve(tfa, "tina")
    assert (await asyncio.wait_for(task, 5)).kind is auth.LoginKind.LOGGED_IN
    clock.advance(timedelta(hours=2))
    outcome = await asyncio.wait_for(tfa.gateway(0).soft_restart(), 5)
    assert outcome.kind is auth.LoginKind.LOGGED_IN and outcome.used_token
    assert tfa.service.pending_2fa() == []
    text = "\n".join(tfa.lines)
    assert ibclog.RESTARTING_SESSION in text and ibclog.login_attempt(2) not in text


async def test_first_login_after_weekly_boundary_needs_2fa_again(tfa: SimFleet, clock: FakeClock):
    task = await start_login(tfa, 0)
    await approve(tfa, "tina")
    await asyncio.wait_for(task, 5)
    clock.now = datetime(2026, 11, 22, 2, 0, tzinfo=NEW_YORK).astimezone(UTC)  # Sunday 02:00 ET
    gateway = tfa.gateway(0)
    seen = len(gateway.outcomes)
    gateway.process.restart_now()
    # The token is refused: the Gateway's login dialog, a cold restart, a full login with 2FA.
    refused = await asyncio.wait_for(gateway.next_outcome(seen), 5)
    assert refused.kind is auth.LoginKind.AWAITING_2FA
    assert refused.reason == "weekly_reauth"
    await wait_for(
        lambda: any(ibclog.login_attempt(1) in line for line in tfa.lines[-12:]),
        what="a full login after the cold restart",
    )
    await wait_for(lambda: tfa.service.pending_2fa(), what="2FA after the boundary")
    await approve(tfa, "tina")
    outcome = await asyncio.wait_for(gateway.next_outcome(seen + 1), 5)
    assert outcome.kind is auth.LoginKind.LOGGED_IN and not outcome.used_token


async def test_a_bad_password_cold_restarts_until_locked_out_then_waits():
    specs = [GatewaySpec(name="gw-bad", username="lou", password="wrong")]
    async with SimFleet.start(
        gateways=specs,
        users=[auth.User(username="lou", password="right", accounts=("DU4000001",))],
        auth_config=auth.AuthorityConfig(max_failures=3, lockout=timedelta(minutes=5)),
        login=False,
    ) as sim:
        gateway = sim.gateway(0)
        # ibcstart.sh relaunches after every failed login by itself; nobody calls login again.
        assert (await sim.login(0)).kind is auth.LoginKind.FAILED
        kinds = [(await gateway.next_outcome(n)).kind for n in range(3)]
        assert kinds == [auth.LoginKind.FAILED, auth.LoginKind.FAILED, auth.LoginKind.LOCKED_OUT]
        await wait_for(
            lambda: any(ibclog.TOO_MANY_FAILED_PREFIX in line for line in sim.lines),
            what="the lockout dialog",
        )
        # Relogin off: the dialog stays, no further attempt and no exit.
        assert gateway.running and len(gateway.outcomes) == 3


async def test_existing_session_secondary_newcomer_gives_way(lib, clients: Clients):
    specs = [
        GatewaySpec(
            name="gw-1", username="carol", password="pw", existing_session_action="primary"
        ),
        GatewaySpec(
            name="gw-2", username="carol", password="pw", existing_session_action="secondary"
        ),
    ]
    users = [auth.User(username="carol", password="pw", accounts=("DU5000001",))]
    async with SimFleet.start(gateways=specs, users=users, login=False) as sim:
        assert (await sim.login(0)).kind is auth.LoginKind.LOGGED_IN
        outcome = await sim.login(1)
        assert outcome.kind is auth.LoginKind.EXISTING_SESSION
        assert any(ibclog.EXISTING_SESSION_SECONDARY in line for line in sim.lines)
        ib = await clients.connect(sim.ports[0])
        assert ib.isConnected()


async def test_existing_session_override_ends_the_old_session(lib, clients: Clients):
    specs = [
        GatewaySpec(
            name="gw-1", username="carol", password="pw", existing_session_action="primaryoverride"
        ),
        GatewaySpec(
            name="gw-2", username="carol", password="pw", existing_session_action="primaryoverride"
        ),
    ]
    users = [auth.User(username="carol", password="pw", accounts=("DU5000001",))]
    async with SimFleet.start(gateways=specs, users=users, login=False) as sim:
        assert (await sim.login(0)).kind is auth.LoginKind.LOGGED_IN
        ib = await clients.connect(sim.ports[0])
        codes: list[int] = []
        ib.errorEvent += lambda req_id, code, *args: codes.append(code)
        assert (await sim.login(1)).kind is auth.LoginKind.LOGGED_IN
        await wait_for(lambda: 1100 in codes, what="old session lost its link")
        assert sim.gateway(0).frontend.session_ended.is_set()
