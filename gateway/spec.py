"""A gateway's container spec, rendered from its config: pure, no I/O.

The spec follows the gnzsnz/ib-gateway image contract (which ibfleet's simulator image honours
too) with ``CUSTOM_CONFIG=yes``: the image then reads from the environment only
``TRADING_MODE`` (its socat ports), ``TWOFA_TIMEOUT_ACTION`` (ibcstart's ``--on2fatimeout``),
``TZ`` (the JVM's clock), ``JAVA_HEAP_SIZE`` and ``IBC_INI`` (where config.ini is)
(``stable/scripts/run.sh``, ``common.sh``), so everything else, credentials included, goes into
IBC's config.ini and nothing the image would ignore is rendered into the environment.
config.ini is a Java Properties file (IBC loads it with ``Properties.load``): every value is
escaped with :mod:`gateway.javaprops`, and what IBC cannot pass on (a credential with a control
character, or with leading or trailing whitespace, which IBC's ``getString`` trims) is a
:class:`SpecError` naming the gateway and the field, never the value. config.ini travels as a
:class:`SecretFile` that the runtime copies into the created-but-not-started container; the
username and password files are kept beside it for the simulator's process mode, the image
reads neither.

The ``io.ibfleet.spec-hash`` label is a stable hash of everything rendered, with each secret
file represented by a keyed fingerprint (HMAC with the supervisor's fingerprint key) instead of
its content: a password change recreates the gateway, yet the label, which anyone with access to
``docker inspect`` can read, cannot be brute-forced back into a weak password.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import SecretStr

from gateway import javaprops
from gateway.config import GatewayConfig, TradingMode, TwoFactorTimeoutAction

__all__ = [
    "API_PORT_LIVE",
    "API_PORT_PAPER",
    "COMMAND_SERVER_PORT",
    "CONFIG_INI_PATH",
    "DEFAULT_DAILY_RESTART",
    "LABEL_ACCOUNT",
    "LABEL_COMPONENT",
    "LABEL_FLEET",
    "LABEL_GATEWAY",
    "LABEL_PEER_PORTS",
    "LABEL_SPEC_HASH",
    "LABEL_TRUSTED",
    "PASSWORD_PATH",
    "RESERVED_ENV",
    "SECRETS_DIR",
    "USERNAME_PATH",
    "ContainerSpec",
    "GatewaySecrets",
    "Hardening",
    "PortBinding",
    "SecretFile",
    "SpecError",
    "container_name",
    "credential_problem",
    "hardening_of",
    "ibc_clock",
    "ibc_settings",
    "memory_bytes",
    "render_container",
    "render_ibc_config",
    "render_spec",
    "with_control_from",
]

LABEL_FLEET = "io.ibfleet.fleet"
LABEL_GATEWAY = "io.ibfleet.gateway"
LABEL_SPEC_HASH = "io.ibfleet.spec-hash"
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

SUNDAY = 6  # datetime.weekday()

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


def container_name(*, fleet: str, gateway: str) -> str:
    """``ibfleet-<fleet>-<gateway>``: the name reconcile looks for and refuses to steal."""
    return f"ibfleet-{fleet}-{gateway}"


def memory_bytes(limit: str, *, where: str = "memory_limit") -> int:
    """Docker-style ``1536m`` / ``2g`` / ``512k`` as bytes."""
    match = _MEMORY.match(limit.strip().lower())
    if match is None:
        raise SpecError(f"{where}: {limit!r} is not a memory size; write e.g. 1536m or 2g")
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2)]


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


def _fingerprint(key: bytes, path: str, content: SecretStr) -> str:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(path.encode())
    mac.update(b"\0")
    mac.update(content.get_secret_value().encode())
    return mac.hexdigest()


def _spec_hash(payload: Mapping[str, object]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def render_spec(
    gateway: GatewayConfig,
    *,
    fleet: str,
    network: str,
    image: str,
    timezone: str,
    secrets: GatewaySecrets,
    fingerprint_key: bytes,
    control_from: Sequence[str] = (),
    entrypoint: Sequence[str] | None = None,
    command: Sequence[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    default_daily_restart: dt.time = DEFAULT_DAILY_RESTART,
) -> ContainerSpec:
    """Render one gateway's container spec. Pure: secrets come in resolved, nothing is written.

    ``fingerprint_key`` keys the secrets' fingerprints in the spec hash; it must stay the same
    across supervisor restarts or every gateway would look drifted and be recreated.
    ``extra_env`` is ibfleet's own additions (the simulator's broker address), never the user's.
    ``default_daily_restart`` is the AutoRestartTime of a gateway without ``restart.daily``
    (the supervisor passes ``FleetSettings.daily_restart``'s region default).
    """
    if not fingerprint_key:
        raise SpecError("fingerprint_key is empty; the spec hash would expose password hashes")
    if gateway.mode is TradingMode.LIVE and not gateway.allow_live:
        raise SpecError(f"gateway {gateway.name!r}: mode live needs allow_live: true")
    if gateway.is_public_bind and not gateway.allow_public_bind:
        raise SpecError(
            f"gateway {gateway.name!r}: bind {gateway.bind} is public; set allow_public_bind"
        )
    clash = sorted(set(gateway.env) & RESERVED_ENV)
    if clash:
        raise SpecError(
            f"gateway {gateway.name!r}: env sets {', '.join(clash)}, which ibfleet renders "
            "itself into config.ini or the image contract (credentials never go into the "
            "environment)"
        )
    # Only what the image reads with CUSTOM_CONFIG=yes; IBC's settings are in config.ini.
    env: dict[str, str] = {
        "TRADING_MODE": gateway.mode.value,
        "TWOFA_TIMEOUT_ACTION": gateway.two_factor.timeout_action.value,
        "TZ": timezone,
        "CUSTOM_CONFIG": "yes",
        "IBC_INI": CONFIG_INI_PATH,
    }
    env.update(gateway.env)
    ini = render_ibc_config(
        gateway,
        secrets=secrets,
        control_from=control_from,
        default_daily_restart=default_daily_restart,
    )

    files = (
        SecretFile(path=USERNAME_PATH, content=secrets.username),
        SecretFile(path=PASSWORD_PATH, content=secrets.password),
        SecretFile(path=CONFIG_INI_PATH, content=SecretStr(ini)),
    )
    container_port = API_PORT_LIVE if gateway.mode is TradingMode.LIVE else API_PORT_PAPER
    ports = (
        PortBinding(
            host_ip=str(gateway.bind), host_port=gateway.api_port, container_port=container_port
        ),
    )
    mem = memory_bytes(gateway.memory_limit, where=f"gateway {gateway.name!r}: memory_limit")
    return render_container(
        fleet=fleet,
        gateway=gateway.name,
        component="gateway",
        image=image,
        env={**env, **(extra_env or {})},
        files=files,
        ports=ports,
        network=network,
        memory=mem,
        fingerprint_key=fingerprint_key,
        extra_labels={LABEL_ACCOUNT: gateway.account},
        entrypoint=entrypoint,
        command=command,
        hardening=hardening_of(gateway),
        trusted_sources=tuple(str(net) for net in gateway.trusted_ips),
    )


def hardening_of(gateway: GatewayConfig) -> Hardening:
    """The gateway's confinement from its ``resources`` settings."""
    limits = gateway.resources
    return Hardening(
        pids_limit=limits.pids,
        nano_cpus=round(limits.cpus * 1e9),
        read_only_root=limits.read_only_root,
        log_max_size=limits.log_max_size,
        log_max_files=limits.log_max_files,
    )


def render_container(
    *,
    fleet: str,
    gateway: str,
    component: str,
    image: str,
    env: Mapping[str, str],
    files: Sequence[SecretFile],
    ports: Sequence[PortBinding],
    network: str,
    memory: int,
    fingerprint_key: bytes,
    extra_labels: Mapping[str, str] | None = None,
    entrypoint: Sequence[str] | None = None,
    command: Sequence[str] | None = None,
    hardening: Hardening | None = None,
    trusted_sources: Sequence[str] = (),
    peer_ports: Sequence[int] = (),
) -> ContainerSpec:
    """Any fleet container's spec (a gateway, the simulator's broker) with its spec hash.

    The container is named ``ibfleet-<fleet>-<gateway>``, aliased ``<gateway>`` on the network
    and labelled with the fleet, so reconcile treats every such container alike.
    """
    if not fingerprint_key:
        raise SpecError("fingerprint_key is empty; the spec hash would expose password hashes")
    name = container_name(fleet=fleet, gateway=gateway)
    confinement = hardening if hardening is not None else Hardening()
    trusted = tuple(trusted_sources)
    peers = tuple(sorted(set(peer_ports)))
    for source in trusted:
        if not re.fullmatch(r"[0-9a-fA-F.:/]+", source):
            raise SpecError(f"{name}: trusted source {source!r} is not an address or network")
    base_labels = {
        LABEL_FLEET: fleet,
        LABEL_GATEWAY: gateway,
        LABEL_COMPONENT: component,
        **(extra_labels or {}),
    }
    if trusted:
        base_labels[LABEL_TRUSTED] = ",".join(trusted)
    if peers:
        base_labels[LABEL_PEER_PORTS] = ",".join(str(p) for p in peers)
    entry = tuple(entrypoint) if entrypoint is not None else None
    cmd = tuple(command) if command is not None else None
    payload: dict[str, object] = {
        "name": name,
        "image": image,
        "env": sorted(env.items()),
        "files": [
            [f.path, oct(f.mode), _fingerprint(fingerprint_key, f.path, f.content)] for f in files
        ],
        "ports": [[p.host_ip, p.host_port, p.container_port] for p in ports],
        "network": network,
        "aliases": [gateway],
        "labels": sorted(base_labels.items()),
        "memory": memory,
        "entrypoint": list(entry) if entry is not None else None,
        "command": list(cmd) if cmd is not None else None,
        "restart": "no",
        "hardening": confinement.payload(),
        "trusted": list(trusted),
        "peer_ports": list(peers),
    }
    digest = _spec_hash(payload)
    labels = {**base_labels, LABEL_SPEC_HASH: digest}
    return ContainerSpec(
        name=name,
        fleet=fleet,
        gateway=gateway,
        image=image,
        env=tuple(sorted(env.items())),
        files=tuple(files),
        ports=tuple(ports),
        network=network,
        network_aliases=(gateway,),
        labels=tuple(sorted(labels.items())),
        memory_bytes=memory,
        spec_hash=digest,
        entrypoint=entry,
        command=cmd,
        hardening=confinement,
        trusted_sources=trusted,
        peer_ports=peers,
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
