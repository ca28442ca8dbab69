"""A gateway's config rendered into its :class:`gateway.spec.ContainerSpec`: pure, no I/O.

The ``io.ibfleet.spec-hash`` label is a stable hash of everything rendered, with each secret
file represented by a keyed fingerprint (HMAC with the supervisor's fingerprint key) instead of
its content: a password change recreates the gateway, yet the label, which anyone with access to
``docker inspect`` can read, cannot be brute-forced back into a weak password.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from typing import cast

from pydantic import SecretStr

from gateway.config import GatewayConfig, TradingMode
from gateway.ibc_ini import DEFAULT_DAILY_RESTART, render_ibc_config
from gateway.spec import (
    API_PORT_LIVE,
    API_PORT_PAPER,
    CONFIG_INI_PATH,
    LABEL_ACCOUNT,
    LABEL_COMPONENT,
    LABEL_FLEET,
    LABEL_GATEWAY,
    LABEL_PEER_PORTS,
    LABEL_SPEC_HASH,
    LABEL_SPEC_PARTS,
    LABEL_TRUSTED,
    PASSWORD_PATH,
    RESERVED_ENV,
    USERNAME_PATH,
    ContainerSpec,
    GatewaySecrets,
    Hardening,
    PortBinding,
    SecretFile,
    SpecError,
    container_name,
    memory_bytes,
)

__all__ = ["hardening_of", "render_container", "render_spec"]


def _fingerprint(key: bytes, path: str, content: SecretStr) -> str:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(path.encode())
    mac.update(b"\0")
    mac.update(content.get_secret_value().encode())
    return mac.hexdigest()


def _spec_hash(payload: Mapping[str, object]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


#: Which payload keys make up each part a plan reports (every key belongs to one part).
_PART_KEYS: dict[str, tuple[str, ...]] = {
    "image": ("image",),
    "env": ("env",),
    "limits": ("memory", "hardening"),
    "ports": ("ports", "network", "aliases", "trusted", "peer_ports"),
    "credentials": ("credential_files",),
    "settings": (
        "name",
        "settings_files",
        "labels",
        "entrypoint",
        "command",
        "restart",
        "placement",
    ),
}


def _parts_label(payload: Mapping[str, object]) -> str:
    """``image=<12 hex>,env=...``: one digest per part, from the same values the hash covers."""
    return ",".join(
        # A key a spec leaves out (placement off Swarm) leaves its part's digest as it was.
        f"{part}={_spec_hash({key: payload.get(key) for key in keys if key in payload})[:12]}"
        for part, keys in _PART_KEYS.items()
    )


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

    # The same config.ini with stand-in credentials: its digest tells a settings change from a
    # credentials change (the real file carries both) and gives away nothing secret.
    settings_ini = render_ibc_config(
        gateway,
        secrets=GatewaySecrets(username=SecretStr("-"), password=SecretStr("-")),
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
        credential_paths=(USERNAME_PATH, PASSWORD_PATH),
        settings_digest=hashlib.sha256(settings_ini.encode()).hexdigest(),
        constraints=tuple(gateway.placement.constraints) if gateway.placement else (),
        spread=tuple(gateway.placement.spread) if gateway.placement else (),
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
    credential_paths: Sequence[str] = (),
    settings_digest: str | None = None,
    constraints: Sequence[str] = (),
    spread: Sequence[str] = (),
) -> ContainerSpec:
    """Any fleet container's spec (a gateway, the simulator's broker) with its spec hash.

    The container is named ``ibfleet-<fleet>-<gateway>``, aliased ``<gateway>`` on the network
    and labelled with the fleet, so reconcile treats every such container alike.
    ``credential_paths`` name the files that hold credentials, and ``settings_digest`` stands
    for the other files (which may embed credentials too) in the ``settings`` part of the
    :data:`gateway.spec.LABEL_SPEC_PARTS` label; neither changes the spec hash.
    ``constraints`` and ``spread`` are the Swarm placement; hashed only when given, so a
    gateway without one keeps the hash it had before placement existed.
    """
    if not fingerprint_key:
        raise SpecError("fingerprint_key is empty; the spec hash would expose password hashes")
    name = container_name(fleet=fleet, gateway=gateway)
    confinement = hardening if hardening is not None else Hardening()
    trusted = tuple(trusted_sources)
    peers = tuple(sorted(set(peer_ports)))
    for source in trusted:
        if not re.fullmatch(r"[0-9.]+(/[0-9]+)?", source):
            raise SpecError(
                f"{name}: trusted source {source!r} is not an IPv4 address or network "
                "(the firewall rules filter IPv4 only)"
            )
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
    if constraints or spread:
        payload["placement"] = [list(constraints), list(spread)]
    digest = _spec_hash(payload)
    secret_paths = set(credential_paths)
    fingerprints = cast("list[list[str]]", payload["files"])
    parts_payload = {
        **payload,
        "credential_files": [f for f in fingerprints if f[0] in secret_paths],
        "settings_files": settings_digest
        if settings_digest is not None
        else [f for f in fingerprints if f[0] not in secret_paths],
    }
    labels = {**base_labels, LABEL_SPEC_HASH: digest, LABEL_SPEC_PARTS: _parts_label(parts_payload)}
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
        constraints=tuple(constraints),
        spread=tuple(spread),
    )
