"""Simulator fleets on Docker: the broker container and simulated gateways as desired specs.

With ``simulator: {enabled: true}`` the fleet runs against ibfleet's simulated IB servers: one
broker container (``ibfleet sim broker``) on the fleet network under the stable alias
``sim-broker``, and every gateway on the simulator image, reaching the broker at
``sim-broker:7470``. The broker is one more desired container of the fleet (gateway label
``sim-broker``), so the ordinary reconcile machinery creates, restarts and adopts it, and never
takes it for an orphan. Pure: secrets come in resolved, nothing is written.

The broker learns its users from a secret file (``users.json``: every gateway's username,
password, account and mode), copied into the container like the gateways' password files, so
no password shows in ``docker inspect``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from pydantic import SecretStr

from gateway.config import GatewayConfig, TradingMode
from gateway.ibc_ini import DEFAULT_DAILY_RESTART
from gateway.spec import (
    SECRETS_DIR,
    ContainerSpec,
    GatewaySecrets,
    PortBinding,
    SecretFile,
    SpecError,
    memory_bytes,
)
from gateway.spec_render import render_container, render_spec
from ibsim.settings import sim_env

__all__ = [
    "BROKER_ALIAS",
    "BROKER_CONTROL_PORT",
    "BROKER_GATEWAY",
    "BROKER_LINK_PORT",
    "CONTROL_HOST",
    "DEFAULT_CONTROL_PORT",
    "USERS_FILE_PATH",
    "SimUser",
    "render_broker_spec",
    "render_sim_fleet",
    "render_sim_gateway_spec",
    "render_users_file",
    "sim_users",
]

# The broker's name among the fleet's containers, and its alias on the fleet network.
BROKER_GATEWAY = "sim-broker"
BROKER_ALIAS = BROKER_GATEWAY
BROKER_COMPONENT = "sim-broker"
BROKER_LINK_PORT = 7470  # gateways' link to the simulated IB servers (inside the network only)
BROKER_CONTROL_PORT = 7471  # the broker's HTTP control API inside the container
DEFAULT_CONTROL_PORT = 8780  # where the control API is published on the host (loopback)
# The control API moves prices and injects faults: it is published on the loopback only.
CONTROL_HOST = "127.0.0.1"
USERS_FILE_PATH = f"{SECRETS_DIR}/users.json"
BROKER_MEMORY = "256m"


@dataclass(frozen=True, slots=True)
class SimUser:
    """One username the simulated IB servers know (the password never appears in repr)."""

    username: SecretStr
    password: SecretStr
    account: str
    mode: TradingMode
    twofa_required: bool = False
    market_data: str = "realtime"


def sim_users(
    gateways: Sequence[GatewayConfig],
    secrets: Mapping[str, GatewaySecrets],
    *,
    twofa_users: Collection[str] = (),
) -> list[SimUser]:
    """The broker's users: one per gateway, from its resolved credentials.

    ``twofa_users`` names usernames whose logins need a 2FA approval through the control API.
    """
    users: dict[str, SimUser] = {}
    for gateway in gateways:
        found = secrets.get(gateway.name)
        if found is None:
            raise SpecError(f"gateway {gateway.name!r}: no resolved credentials for the simulator")
        username = found.username.get_secret_value()
        user = SimUser(
            username=found.username,
            password=found.password,
            account=gateway.account,
            mode=gateway.mode,
            twofa_required=username in twofa_users,
        )
        known = users.get(username)
        if known is not None and (
            known.password.get_secret_value() != user.password.get_secret_value()
            or known.mode is not user.mode
        ):
            raise SpecError(
                f"gateway {gateway.name!r}: its username is shared with another gateway with a "
                "different password or mode"
            )
        if known is None:
            users[username] = user
    return list(users.values())


def render_users_file(users: Sequence[SimUser]) -> SecretStr:
    """``users.json`` as ``ibfleet sim broker --users-file`` reads it."""
    rows = [
        {
            "username": u.username.get_secret_value(),
            "password": u.password.get_secret_value(),
            "accounts": [u.account],
            "mode": u.mode.value,
            "twofa_required": u.twofa_required,
            "market_data": u.market_data,
        }
        for u in users
    ]
    return SecretStr(json.dumps(rows, indent=1, sort_keys=True) + "\n")


def render_broker_spec(
    *,
    fleet: str,
    network: str,
    image: str,
    users: Sequence[SimUser],
    fingerprint_key: bytes,
    control_port: int = DEFAULT_CONTROL_PORT,
    control_host: str = CONTROL_HOST,
    twofa_timeout: float | None = None,
) -> ContainerSpec:
    """The broker container: link on 7470 (network only), control API published on loopback.

    ``twofa_timeout`` (seconds; IB's 180 when None) shortens 2FA approval for tests and demos.
    """
    if not 1 <= control_port <= 65535:
        raise SpecError(f"simulator control_port {control_port}: not a TCP port (1-65535)")
    if twofa_timeout is not None and twofa_timeout <= 0:
        raise SpecError(f"simulator twofa_timeout {twofa_timeout}: must be positive seconds")
    command = [
        "broker",
        "--host",
        "0.0.0.0",
        "--link-port",
        str(BROKER_LINK_PORT),
        "--control-port",
        str(BROKER_CONTROL_PORT),
        "--users-file",
        USERS_FILE_PATH,
    ]
    if twofa_timeout is not None:
        command += ["--twofa-timeout", f"{twofa_timeout:g}"]
    return render_container(
        fleet=fleet,
        gateway=BROKER_GATEWAY,
        component=BROKER_COMPONENT,
        image=image,
        env={"PYTHONUNBUFFERED": "1"},
        files=(SecretFile(path=USERS_FILE_PATH, content=render_users_file(users)),),
        ports=(
            PortBinding(
                host_ip=control_host, host_port=control_port, container_port=BROKER_CONTROL_PORT
            ),
        ),
        network=network,
        memory=memory_bytes(BROKER_MEMORY),
        fingerprint_key=fingerprint_key,
        command=command,
        # Inter-container traffic is off on the fleet network: the gateways' link is opened.
        peer_ports=(BROKER_LINK_PORT,),
        credential_paths=(USERS_FILE_PATH,),
    )


def render_sim_gateway_spec(
    gateway: GatewayConfig,
    *,
    fleet: str,
    network: str,
    image: str,
    timezone: str,
    secrets: GatewaySecrets,
    fingerprint_key: bytes,
    control_from: Sequence[str] = (),
    default_daily_restart: dt.time = DEFAULT_DAILY_RESTART,
) -> ContainerSpec:
    """A gateway on the simulator image: the gnzsnz contract (API 4004 paper / 4003 live) plus
    the broker's address; the gateway is known to the broker by its fleet name."""
    if gateway.name == BROKER_GATEWAY:
        raise SpecError(
            f"gateway {gateway.name!r}: the name is the simulator broker's; rename the gateway"
        )
    return render_spec(
        gateway,
        fleet=fleet,
        network=network,
        image=image,
        timezone=timezone,
        secrets=secrets,
        fingerprint_key=fingerprint_key,
        control_from=control_from,
        default_daily_restart=default_daily_restart,
        extra_env=sim_env(broker=(BROKER_ALIAS, BROKER_LINK_PORT), gateway_name=gateway.name),
    )


def render_sim_fleet(
    gateways: Sequence[GatewayConfig],
    *,
    fleet: str,
    network: str,
    image: str,
    timezone: str,
    secrets: Mapping[str, GatewaySecrets],
    fingerprint_key: bytes,
    control_port: int = DEFAULT_CONTROL_PORT,
    twofa_users: Collection[str] = (),
    twofa_timeout: float | None = None,
    default_daily_restart: dt.time = DEFAULT_DAILY_RESTART,
) -> list[ContainerSpec]:
    """Every desired container of a simulator fleet: the broker first, then the gateways.

    ``image`` is the broker's image and that of every gateway without an ``image`` of its own.

    ``secrets`` maps each gateway's name to its resolved credentials. With settings at hand:
    ``render_sim_fleet(s.gateways, fleet=s.fleet, network=s.runtime.network,
    image=s.simulator.image, timezone=s.timezone, ...)``.
    """
    users = sim_users(gateways, secrets, twofa_users=twofa_users)
    broker = render_broker_spec(
        fleet=fleet,
        network=network,
        image=image,
        users=users,
        fingerprint_key=fingerprint_key,
        control_port=control_port,
        twofa_timeout=twofa_timeout,
    )
    specs = [broker]
    for gateway in gateways:
        specs.append(
            render_sim_gateway_spec(
                gateway,
                fleet=fleet,
                network=network,
                # A gateway's own image (an upgrade rolled out gateway by gateway) leaves the
                # broker's spec, and so the simulated IB servers' state, as it is.
                image=gateway.image or image,
                timezone=timezone,
                secrets=secrets[gateway.name],
                fingerprint_key=fingerprint_key,
                default_daily_restart=default_daily_restart,
            )
        )
    return specs
