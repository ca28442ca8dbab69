"""The simulator as containers: a broker and gnzsnz-contract gateways on a user-defined network.

Real parts only: the Docker engine, the simulator image, the broker's HTTP control API and the
real ib_async client over TCP. Every wait polls a condition until a deadline.

The CLI contract these tests assume is gathered in the constants and `broker_command` below
(written before `ibsim/cli.py` landed); align it there if the sim's CLI differs.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from ib_async import IB

from ibsim.settings import SOCAT_PAPER_PORT, image_env, sim_env
from tests.waiting import until

pytestmark = [pytest.mark.docker]

# --- the `ibfleet sim` container contract (ibsim.settings) ----------------------------------
BROKER_LINK_PORT = 7470  # gateways reach the broker here (IBFLEET_SIM_BROKER=<name>:<port>)
CONTROL_PORT = 7471  # the broker's HTTP control API
PAPER_API_PORT = f"{SOCAT_PAPER_PORT}/tcp"
COMMAND_SERVER_PORT = "7462/tcp"
PASSWORD = "sim-password"  # a simulator's fixed test password, never a real one
ACCOUNT = "DU1000001"
USERS = {
    # username: (account, needs 2FA)
    "primary": (ACCOUNT, False),
    "failover": (ACCOUNT, False),
    "phoneuser": ("DU1000002", True),
}


def broker_command() -> list[str]:
    args = [
        "broker",
        "--host",
        "0.0.0.0",
        "--link-port",
        str(BROKER_LINK_PORT),
        "--control-port",
        str(CONTROL_PORT),
        # The 2FA-timeout test must not wait IB's 180 s.
        "--twofa-timeout",
        "8",
    ]
    for username, (account, twofa) in USERS.items():
        spec = f"{username}:{PASSWORD}:{account}" + (":2fa" if twofa else "")
        args += ["--user", spec]
    return args


# --- helpers ---------------------------------------------------------------------------------

LOGIN_COMPLETED = r"Login has completed"
TWOFA_INITIATED = r"Second Factor Authentication initiated"


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "tws_password"
    path.write_text(PASSWORD + "\n", encoding="utf-8")
    # The container runs as uid 10001: the mounted file must be readable by it.
    path.chmod(0o644)
    tmp_path.chmod(0o755)
    return path


@pytest.fixture
def broker(containers, sim_image: str):
    """A broker container on a fresh network; returns (container, network, control URL)."""
    network = containers.network()
    container = containers.run(
        sim_image,
        broker_command(),
        network=network.name,
        ports={f"{CONTROL_PORT}/tcp": ("127.0.0.1", None)},
    )
    control_url = f"http://127.0.0.1:{containers.host_port(container, f'{CONTROL_PORT}/tcp')}"

    def healthy() -> bool:
        container.reload()
        if container.status == "exited":
            raise AssertionError(f"broker exited:\n{containers.logs(container)[-3000:]}")
        try:
            return httpx.get(f"{control_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    containers.wait_until(healthy, timeout=60, what="the broker's control API")
    return container, network, control_url


def run_gateway(containers, sim_image: str, broker, password_file: Path, *, user: str, **env):
    container, network, _ = broker
    network.reload()
    # Commands sent to the published port arrive from the network's gateway address (IBC's
    # ControlFrom must allow it, as it must allow the supervisor in a real fleet).
    bridge = network.attrs["IPAM"]["Config"][0]["Gateway"]
    environment = {
        **image_env(username=user, password_file="/run/secrets/tws_password"),
        **sim_env(
            broker=(container.name, BROKER_LINK_PORT),
            gateway_name=f"gw-{user}",
            # The image's env template leaves the command server off; the simulator's switch.
            command_port=7462,
            control_from=bridge,
        ),
        **{key: str(value) for key, value in env.items()},
    }
    return containers.run(
        sim_image,
        ["gateway"],
        environment=environment,
        network=network.name,
        volumes={str(password_file): {"bind": "/run/secrets/tws_password", "mode": "ro"}},
        ports={PAPER_API_PORT: ("127.0.0.1", None), COMMAND_SERVER_PORT: ("127.0.0.1", None)},
    )


async def connect(port: int, *, client_id: int) -> IB:
    ib = IB()
    await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=15)
    return ib


def command_server(port: int, command: str, *, timeout: float = 10.0) -> str:
    """Send one IBC command-server line and return the first reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(command.encode() + b"\n")
        reply = b""
        while b"\n" not in reply:
            chunk = conn.recv(4096)
            if not chunk:
                break
            reply += chunk
    # IBC may send its next line (RESTART's "OK RESTART at ...") in the same segment.
    return reply.partition(b"\n")[0].decode("utf-8", errors="replace").strip()


# --- tests -----------------------------------------------------------------------------------


async def test_two_gateways_on_one_account_answer_the_real_client(
    containers, sim_image: str, broker, password_file: Path
) -> None:
    gateways = [
        run_gateway(containers, sim_image, broker, password_file, user=user)
        for user in ("primary", "failover")
    ]
    for gateway in gateways:
        await asyncio.to_thread(containers.wait_log, gateway, LOGIN_COMPLETED, timeout=60)
    ports = [containers.host_port(gateway, PAPER_API_PORT) for gateway in gateways]
    assert len(set(ports)) == 2
    for client_id, port in enumerate(ports, start=1):
        ib = await connect(port, client_id=client_id)
        try:
            assert ACCOUNT in ib.managedAccounts()
        finally:
            ib.disconnect()


async def test_2fa_login_completes_after_approval_through_the_control_api(
    containers, sim_image: str, broker, password_file: Path
) -> None:
    _, _, control_url = broker
    gateway = run_gateway(containers, sim_image, broker, password_file, user="phoneuser")
    await asyncio.to_thread(containers.wait_log, gateway, TWOFA_INITIATED, timeout=60)
    assert "Login has completed" not in containers.logs(gateway)
    async with httpx.AsyncClient(base_url=control_url, timeout=10) as client:
        reply = await client.post("/2fa/phoneuser/approve")
    assert reply.status_code == 200, reply.text
    await asyncio.to_thread(containers.wait_log, gateway, LOGIN_COMPLETED, timeout=60)
    ib = await connect(containers.host_port(gateway, PAPER_API_PORT), client_id=7)
    try:
        assert "DU1000002" in ib.managedAccounts()
    finally:
        ib.disconnect()


async def test_daily_restart_relaunches_inside_the_running_container(
    containers, sim_image: str, broker, password_file: Path
) -> None:
    _, _, control_url = broker
    gateway = run_gateway(
        containers, sim_image, broker, password_file, user="primary", AUTO_RESTART_TIME="11:45 PM"
    )
    first = await asyncio.to_thread(containers.wait_log, gateway, LOGIN_COMPLETED, timeout=60)
    gateway.reload()
    started_at = gateway.attrs["State"]["StartedAt"]
    # The container's TZ is UTC: bring its wall clock to a second before 23:45.
    now = datetime.now(UTC)
    target = now.replace(hour=23, minute=45, second=0, microsecond=0)
    if target <= now:
        target += timedelta(days=1)
    offset = (target - now).total_seconds() - 1.0
    async with httpx.AsyncClient(base_url=control_url, timeout=10) as client:
        reply = await client.post(
            "/gateways/gw-primary/faults/clock", json={"active": True, "value": offset}
        )
        assert reply.status_code == 200, reply.text
    await asyncio.to_thread(
        containers.wait_log, gateway, r"Re-starting session", timeout=60, after=first.end()
    )
    await asyncio.to_thread(
        containers.wait_log, gateway, LOGIN_COMPLETED, timeout=60, after=first.end()
    )
    logs = containers.logs(gateway)[first.end() :]
    assert "IBC returned exit status 0" in logs and "autorestart file found at" in logs
    assert "Login attempt" not in logs
    gateway.reload()
    assert gateway.status == "running"
    assert gateway.attrs["State"]["StartedAt"] == started_at
    assert gateway.attrs["RestartCount"] == 0


async def test_failed_login_cold_restarts_inside_the_container(
    containers, sim_image: str, broker, password_file: Path
) -> None:
    password_file.write_text("not-the-password\n", encoding="utf-8")
    gateway = run_gateway(containers, sim_image, broker, password_file, user="primary")
    first = await asyncio.to_thread(containers.wait_log, gateway, r"Login failed", timeout=60)
    await asyncio.to_thread(
        containers.wait_log, gateway, r"IBC will cold-restart shortly", timeout=60
    )
    await asyncio.to_thread(
        containers.wait_log, gateway, r"Login attempt: 1", timeout=60, after=first.end()
    )
    gateway.reload()
    assert gateway.status == "running"
    assert "Login has completed" not in containers.logs(gateway)


async def test_command_server_restart_comes_back_without_2fa(
    containers, sim_image: str, broker, password_file: Path
) -> None:
    _, _, control_url = broker
    gateway = run_gateway(containers, sim_image, broker, password_file, user="phoneuser")
    await asyncio.to_thread(containers.wait_log, gateway, TWOFA_INITIATED, timeout=60)
    async with httpx.AsyncClient(base_url=control_url, timeout=10) as client:
        assert (await client.post("/2fa/phoneuser/approve")).status_code == 200
    first = await asyncio.to_thread(containers.wait_log, gateway, LOGIN_COMPLETED, timeout=60)
    twofa_lines = containers.logs(gateway).count("Second Factor Authentication initiated")

    cmd_port = containers.host_port(gateway, COMMAND_SERVER_PORT)
    reply = await asyncio.to_thread(command_server, cmd_port, "RESTART")
    assert reply == "OK RESTART in progress", reply
    # IBC restarts at the next minute: move the gateway's clock there.
    async with httpx.AsyncClient(base_url=control_url, timeout=10) as client:
        moved = await client.post(
            "/gateways/gw-phoneuser/faults/clock", json={"active": True, "value": 61}
        )
        assert moved.status_code == 200, moved.text

    await asyncio.to_thread(
        containers.wait_log, gateway, LOGIN_COMPLETED, timeout=60, after=first.end()
    )
    # A soft restart keeps the token: no new 2FA prompt, and the container never stopped.
    assert containers.logs(gateway).count("Second Factor Authentication initiated") == twofa_lines
    gateway.reload()
    assert gateway.status == "running"
    assert gateway.attrs["RestartCount"] == 0

    async def api_answers() -> IB | None:
        try:
            return await connect(containers.host_port(gateway, PAPER_API_PORT), client_id=9)
        except (OSError, TimeoutError, ConnectionError):
            return None

    ib = await until(api_answers, 30, what="the API after the soft restart", step=0.2)
    try:
        assert "DU1000002" in ib.managedAccounts()
    finally:
        ib.disconnect()
