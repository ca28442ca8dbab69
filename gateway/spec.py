"""What a gateway's container is: the spec a runtime runs, its labels and the image contract.

Pure values, no I/O. The spec follows the gnzsnz/ib-gateway image contract (which ibfleet's
simulator image honours too) with ``CUSTOM_CONFIG=yes``: the image then reads from the
environment only ``TRADING_MODE`` (its socat ports), ``TWOFA_TIMEOUT_ACTION`` (ibcstart's
``--on2fatimeout``), ``TZ`` (the JVM's clock), ``JAVA_HEAP_SIZE`` and ``IBC_INI`` (where
config.ini is) (``stable/scripts/run.sh``, ``common.sh``), so everything else, credentials
included, goes into IBC's config.ini (:mod:`gateway.ibc_ini`) and nothing the image would ignore
is rendered into the environment. config.ini travels as a :class:`SecretFile` that the runtime
copies into the created-but-not-started container; the username and password files are kept
beside it for the simulator's process mode, the image reads neither.

:mod:`gateway.spec_render` turns a gateway's config into a :class:`ContainerSpec` and its
``io.ibfleet.spec-hash`` label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import SecretStr

__all__ = [
    "API_PORT_LIVE",
    "API_PORT_PAPER",
    "COMMAND_SERVER_PORT",
    "CONFIG_INI_PATH",
    "LABEL_ACCOUNT",
    "LABEL_COMPONENT",
    "LABEL_FLEET",
    "LABEL_GATEWAY",
    "LABEL_PEER_PORTS",
    "LABEL_SPEC_HASH",
    "LABEL_SPEC_PARTS",
    "LABEL_TRUSTED",
    "PASSWORD_PATH",
    "RESERVED_ENV",
    "SECRETS_DIR",
    "SPEC_PARTS",
    "USERNAME_PATH",
    "ContainerSpec",
    "GatewaySecrets",
    "Hardening",
    "PortBinding",
    "SecretFile",
    "SpecError",
    "container_name",
    "memory_bytes",
    "parse_parts",
]

LABEL_FLEET = "io.ibfleet.fleet"
LABEL_GATEWAY = "io.ibfleet.gateway"
LABEL_SPEC_HASH = "io.ibfleet.spec-hash"
# One short digest per part of the spec (image, env, limits, ports, credentials, settings), so a
# plan can say what changed without values; derived from the hashed payload, so not hashed itself.
LABEL_SPEC_PARTS = "io.ibfleet.spec-parts"
#: The parts :data:`LABEL_SPEC_PARTS` names, in the order a plan prints them.
SPEC_PARTS = ("image", "env", "limits", "ports", "credentials", "settings")
LABEL_COMPONENT = "io.ibfleet.component"
# The IB account the gateway serves: not a secret, and what an in-process simulator registers.
LABEL_ACCOUNT = "io.ibfleet.account"
# Sources besides the supervisor admitted to the API port, and ports offered to fleet peers: the
# runtime rebuilds the fleet's firewall rules from these labels, so they survive its restarts.
LABEL_TRUSTED = "io.ibfleet.trusted"
LABEL_PEER_PORTS = "io.ibfleet.peer-ports"

# socat ports of the gnzsnz image (the gateway itself listens on 4001/4002 on loopback only).
API_PORT_LIVE = 4003
API_PORT_PAPER = 4004
COMMAND_SERVER_PORT = 7462

SECRETS_DIR = "/run/secrets/ibfleet"
USERNAME_PATH = f"{SECRETS_DIR}/username"
PASSWORD_PATH = f"{SECRETS_DIR}/password"
CONFIG_INI_PATH = f"{SECRETS_DIR}/config.ini"

# Keys the renderer owns or that would carry a credential: a gateway's extra env may not set them.
RESERVED_ENV = frozenset(
    {
        "TWS_USERID",
        "TWS_USERID_FILE",
        "TWS_PASSWORD",
        "TWS_PASSWORD_FILE",
        "TWS_USERID_PAPER",
        "TWS_PASSWORD_PAPER",
        "TWS_PASSWORD_PAPER_FILE",
        "VNC_SERVER_PASSWORD",
        "TRADING_MODE",
        "READ_ONLY_API",
        "TWOFA_TIMEOUT_ACTION",
        "RELOGIN_AFTER_TWOFA_TIMEOUT",
        "TWOFA_DEVICE",
        "AUTO_RESTART_TIME",
        "TWS_COLD_RESTART",
        "EXISTING_SESSION_DETECTED_ACTION",
        "TIME_ZONE",
        "TZ",
        "CUSTOM_CONFIG",
        "IBC_INI",
    }
)

_MEMORY = re.compile(r"^([0-9]+)([kmg])$")
_MEMORY_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3}


class SpecError(ValueError):
    """A gateway config that cannot be rendered; the message names the gateway and the field."""


@dataclass(frozen=True, slots=True)
class GatewaySecrets:
    """A gateway's resolved credentials; SecretStr keeps them out of every repr."""

    username: SecretStr
    password: SecretStr


@dataclass(frozen=True, slots=True)
class SecretFile:
    """A file the runtime places in the container before its first start (never in env)."""

    path: str
    content: SecretStr
    mode: int = 0o400


@dataclass(frozen=True, slots=True)
class PortBinding:
    """A container TCP port published on one host interface only."""

    host_ip: str
    host_port: int
    container_port: int


@dataclass(frozen=True, slots=True)
class Hardening:
    """How tightly a container is confined; every field is part of the spec hash.

    The gnzsnz image runs as an unprivileged user (uid 1000, ``stable/Dockerfile``) on ports
    above 1024, so it needs no capability at all; its passwordless ``sudo`` is exactly what
    no-new-privileges disables. Its root stays writable by default: the Gateway keeps its
    settings and the single-use autorestart file in ``/home/ibgateway/Jts``, beside its jars.
    """

    cap_drop: tuple[str, ...] = ("ALL",)
    cap_add: tuple[str, ...] = ()
    no_new_privileges: bool = True
    pids_limit: int = 1024
    nano_cpus: int = 2_000_000_000
    read_only_root: bool = False
    # Mounted only with a read-only root (the image's scratch space).
    tmpfs: tuple[tuple[str, str], ...] = (("/tmp", "rw,nosuid,nodev,size=64m,mode=1777"),)  # noqa: S108
    log_max_size: str = "10m"
    log_max_files: int = 5

    @property
    def security_opt(self) -> tuple[str, ...]:
        return ("no-new-privileges:true",) if self.no_new_privileges else ()

    def payload(self) -> dict[str, object]:
        return {
            "cap_drop": list(self.cap_drop),
            "cap_add": list(self.cap_add),
            "security_opt": list(self.security_opt),
            "pids": self.pids_limit,
            "nano_cpus": self.nano_cpus,
            "read_only": self.read_only_root,
            "tmpfs": [list(t) for t in self.tmpfs] if self.read_only_root else [],
            "log": [self.log_max_size, self.log_max_files],
        }


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """Everything a runtime needs to run one gateway; no Docker type appears here."""

    name: str
    fleet: str
    gateway: str
    image: str
    env: tuple[tuple[str, str], ...]
    files: tuple[SecretFile, ...]
    ports: tuple[PortBinding, ...]
    network: str
    network_aliases: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    memory_bytes: int
    spec_hash: str
    entrypoint: tuple[str, ...] | None = None
    command: tuple[str, ...] | None = None
    # Restarts belong to the supervisor, never to the engine.
    restart_policy: str = field(default="no")
    hardening: Hardening = field(default_factory=Hardening)
    # Networks besides the supervisor admitted to the published API port (gateways[].trusted_ips).
    trusted_sources: tuple[str, ...] = ()
    # Ports this container offers the fleet's other containers (inter-container traffic is off).
    peer_ports: tuple[int, ...] = ()
    # Swarm placement (gateways[].placement): constraints every node must meet, spread labels.
    # A runtime on one engine has one node and ignores them.
    constraints: tuple[str, ...] = ()
    spread: tuple[str, ...] = ()

    @property
    def memory_swap_bytes(self) -> int:
        """Memory plus swap equals memory: the container never swaps."""
        return self.memory_bytes

    @property
    def env_map(self) -> dict[str, str]:
        return dict(self.env)

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def parts(self) -> dict[str, str]:
        """The per-part digests of :data:`LABEL_SPEC_PARTS` (empty when absent)."""
        return parse_parts(self.label_map.get(LABEL_SPEC_PARTS))


def parse_parts(label: str | None) -> dict[str, str]:
    """``image=ab12,env=cd34`` -> ``{"image": "ab12", "env": "cd34"}``; absent or odd: ``{}``."""
    out: dict[str, str] = {}
    for item in (label or "").split(","):
        key, sep, digest = item.partition("=")
        if sep and key in SPEC_PARTS and digest:
            out[key] = digest
    return out


def container_name(*, fleet: str, gateway: str) -> str:
    """``ibfleet-<fleet>-<gateway>``: the name reconcile looks for and refuses to steal."""
    return f"ibfleet-{fleet}-{gateway}"


def memory_bytes(limit: str, *, where: str = "memory_limit") -> int:
    """Docker-style ``1536m`` / ``2g`` / ``512k`` as bytes."""
    match = _MEMORY.match(limit.strip().lower())
    if match is None:
        raise SpecError(f"{where}: {limit!r} is not a memory size; write e.g. 1536m or 2g")
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2)]
