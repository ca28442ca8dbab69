"""A gateway's :class:`gateway.spec.ContainerSpec` rendered as a Docker Swarm service. Pure.

One replicated service with one task per gateway (the simulator's broker too), in the Engine
API's ``ServiceSpec`` form, and the Swarm secrets it mounts. The choices, and why:

* **Restarts: ``RestartPolicy.Condition: none``.** On one engine the supervisor's lifecycle owns
  every restart (DESIGN.md "one owner per decision"; the containers run with ``--restart no``).
  A Swarm restart policy of ``any`` or ``on-failure`` would be a second owner: a gateway that
  exited after a failed login would be relaunched by Swarm *and* by the lifecycle, spending the
  login budget twice and risking IB's lockout. With ``none`` Swarm never replaces a task by
  itself; the lifecycle decides, and the runtime asks Swarm for a new task (a forced update,
  :func:`forced`). Swarm keeps what it does well: *where* the new task runs (constraints, a node
  that is up), so a gateway whose node died is placed on a survivor when the lifecycle restarts
  it. The cost: with no supervisor running, nothing brings a dead gateway back until a
  supervisor (the standby) leads again and reconciles.
* **Updates stop first** (``UpdateConfig.Order: stop-first``, one at a time): IB allows one
  session per username, so the old task must be gone before the new one logs in.
* **Created with 0 replicas**: the runtime port's ``create`` does not start; ``start`` scales
  to 1 (:func:`scaled`). ``stop`` scales to 0, which keeps the service, its labels and spec
  hash for reconcile, as a stopped container keeps them.
* **Labels**: the service carries the spec's labels (fleet, gateway, spec hash, parts), so
  adoption by labels and drift detection work as on one engine, plus :data:`LABEL_NAME`, the
  container name the planner sees: a rollout's rename changes that label, since Swarm cannot
  rename a service. The service's own name gets a short suffix so that a rollout's new service
  can exist beside the previous one. Task containers carry only :data:`LABEL_SERVICE`, so a
  one-engine supervisor on a node never takes them for its own.
* **Network**: the fleet's overlay network, DNS round robin (``dnsrr``) so the gateway's alias
  resolves to its running task only (a stopped previous copy answers nothing).
* **Ports**: a port the fleet file binds to loopback is not published (loopback on a Swarm node
  means nothing; the supervisor and its strategies reach the gateway on the overlay network).
  Any other bind publishes ``api_port`` in ``host`` mode on the node that runs the task, on
  every interface of it (Swarm has no host IP): the routing mesh would hide every client's
  address behind the ingress network, and publish the port on every node.
* **Secrets**: every :class:`gateway.spec.SecretFile` (IBC's config.ini, which holds the
  credentials; the username and password files of the simulator's process mode) becomes a
  Swarm secret mounted as a file at its path, owned by the image's user, mode 0400. The image
  reads config.ini from ``IBC_INI`` with ``CUSTOM_CONFIG=yes``, so no credential and no
  ``*_FILE`` variable is in the environment; ``docker service inspect`` shows secret names
  only. A secret's name carries a keyed digest of its content (:func:`secret_name`): secrets
  are immutable, so new content is a new secret, and the name gives nothing away about a weak
  password. The runtime removes the fleet's secrets no service references.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from pydantic import SecretStr

from gateway.spec import LABEL_FLEET, LABEL_GATEWAY, ContainerSpec, SpecError

__all__ = [
    "LABEL_NAME",
    "LABEL_SECRET_OF",
    "LABEL_SERVICE",
    "ServicePlan",
    "SwarmSecret",
    "forced",
    "render_service",
    "replicas_of",
    "scaled",
    "secret_name",
    "service_name",
    "tmpfs_options",
    "with_secret_ids",
]

#: The container name the reconcile planner sees (``ibfleet-<fleet>-<gateway>``, or its
#: ``-previous`` during a rollout); a service cannot be renamed, its label can.
LABEL_NAME = "io.ibfleet.name"
#: On a task's containers: the service they belong to (and no fleet label, see above).
LABEL_SERVICE = "io.ibfleet.service"
#: On a secret: the service name it was made for.
LABEL_SECRET_OF = "io.ibfleet.secret-of"  # noqa: S105 - a label name

#: Swarm names: a service name is a DNS label (63), a secret name at most 64 characters.
_SERVICE_NAME_MAX = 63
_SECRET_NAME_MAX = 64
_SUFFIX = re.compile(r"^[a-z0-9]{1,8}$")
_DEFAULT_GRACE_NS = 30 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class SwarmSecret:
    """One secret to create before the service: ``content`` never shows in a repr."""

    name: str
    path: str
    content: SecretStr
    labels: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ServicePlan:
    """What the runtime creates for one spec: the secrets first, then the service."""

    name: str
    body: dict[str, Any]
    secrets: tuple[SwarmSecret, ...]


def service_name(spec_name: str, suffix: str) -> str:
    """``ibfleet-<fleet>-<gateway>-<suffix>``, the container name shortened to fit 63."""
    if not _SUFFIX.match(suffix):
        raise SpecError(f"service suffix {suffix!r} is not 1-8 lower-case letters or digits")
    keep = _SERVICE_NAME_MAX - len(suffix) - 1
    return f"{spec_name[:keep].rstrip('-.')}-{suffix}"


def secret_name(service: str, path: str, content: SecretStr, *, key: bytes) -> str:
    """``<service>-<file>-<16 hex>``: the hex is an HMAC of the path and content under ``key``,
    so equal content gives the same name and nobody without the key learns anything from it."""
    if not key:
        raise SpecError("the secret-name key is empty; names would expose password hashes")
    # A key of its own, derived from the spec-hash key: the names then tell nothing about the
    # spec hashes (two gateways with one password do not show as such next to their labels).
    own = hmac.new(key, b"ibfleet swarm secret name", hashlib.sha256).digest()
    mac = hmac.new(own, digestmod=hashlib.sha256)
    mac.update(path.encode())
    mac.update(b"\0")
    mac.update(content.get_secret_value().encode())
    digest = mac.hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9_.-]", "-", PurePosixPath(path).name)[:16].strip("-.") or "file"
    room = _SECRET_NAME_MAX - len(stem) - len(digest) - 2
    return f"{service[:room].rstrip('-.')}-{stem}-{digest}"


_SIZE = re.compile(r"^([0-9]+)([kmg]?)$")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def tmpfs_options(options: str, *, where: str) -> dict[str, int]:
    """Docker's ``--tmpfs`` options (``rw,nosuid,size=64m,mode=1777``) as Swarm's
    ``TmpfsOptions`` (``SizeBytes``, ``Mode``); Swarm mounts a tmpfs nosuid and nodev itself."""
    out: dict[str, int] = {}
    for item in options.split(","):
        key, _, value = item.strip().partition("=")
        if key == "size":
            match = _SIZE.match(value.lower())
            if match is None:
                raise SpecError(f"{where}: tmpfs size {value!r} is not a size (e.g. 64m)")
            out["SizeBytes"] = int(match.group(1)) * _UNITS[match.group(2)]
        elif key == "mode":
            try:
                out["Mode"] = int(value, 8)
            except ValueError:
                raise SpecError(f"{where}: tmpfs mode {value!r} is not octal") from None
    return out


def _published(spec: ContainerSpec) -> list[dict[str, Any]]:
    ports = []
    for port in spec.ports:
        if port.host_ip.startswith("127.") or port.host_ip in ("::1", "localhost"):
            continue  # reached on the overlay network only
        ports.append(
            {
                "Protocol": "tcp",
                "TargetPort": port.container_port,
                "PublishedPort": port.host_port,
                "PublishMode": "host",
            }
        )
    return ports


def render_service(
    spec: ContainerSpec,
    *,
    suffix: str,
    key: bytes,
    owner: tuple[int, int, int] = (0, 0, 0o400),
    stop_grace: float = 30.0,
) -> ServicePlan:
    """The service and secrets for ``spec`` (0 replicas: created, not started).

    ``suffix`` makes the service name unique (a rollout's new service beside the previous);
    ``key`` keys the secrets' names (:func:`secret_name`); ``owner`` is (uid, gid, mode) of the
    secret files, for the image's user (:func:`gateway.secret_files.secret_owner`).
    """
    name = service_name(spec.name, suffix)
    uid, gid, mode = owner
    labels = {**spec.label_map, LABEL_NAME: spec.name}
    secret_labels = (
        (LABEL_FLEET, spec.fleet),
        (LABEL_GATEWAY, spec.gateway),
        (LABEL_SECRET_OF, name),
    )
    secrets = tuple(
        SwarmSecret(
            name=secret_name(name, item.path, item.content, key=key),
            path=item.path,
            content=item.content,
            labels=secret_labels,
        )
        for item in spec.files
    )
    references = [
        {
            "SecretName": secret.name,
            "File": {
                "Name": secret.path,
                "UID": str(uid),
                "GID": str(gid),
                "Mode": item.mode if mode == 0o400 else mode,
            },
        }
        for secret, item in zip(secrets, spec.files, strict=True)
    ]
    hard = spec.hardening
    container: dict[str, Any] = {
        "Image": spec.image,
        "Labels": {LABEL_SERVICE: name},
        "Env": [f"{k}={v}" for k, v in spec.env],
        "Secrets": references,
        "StopGracePeriod": round(stop_grace * 1e9) if stop_grace > 0 else _DEFAULT_GRACE_NS,
        "ReadOnly": hard.read_only_root,
        "CapabilityDrop": list(hard.cap_drop),
        # An engine that does not know it (Docker 20.10) ignores it; the README says so.
        "Privileges": {"NoNewPrivileges": hard.no_new_privileges},
    }
    if hard.cap_add:
        container["CapabilityAdd"] = list(hard.cap_add)
    if spec.entrypoint is not None:
        container["Command"] = list(spec.entrypoint)
    if spec.command is not None:
        container["Args"] = list(spec.command)
    if hard.read_only_root:
        container["Mounts"] = [
            {
                "Type": "tmpfs",
                "Target": target,
                "TmpfsOptions": tmpfs_options(options, where=f"{spec.name} tmpfs {target}"),
            }
            for target, options in hard.tmpfs
        ]
    placement: dict[str, Any] = {}
    if spec.constraints:
        placement["Constraints"] = list(spec.constraints)
    if spec.spread:
        placement["Preferences"] = [{"Spread": {"SpreadDescriptor": d}} for d in spec.spread]
    aliases = list(dict.fromkeys([*spec.network_aliases, spec.name]))
    task: dict[str, Any] = {
        "ContainerSpec": container,
        "Resources": {
            "Limits": {
                "MemoryBytes": spec.memory_bytes,
                "NanoCPUs": hard.nano_cpus,
                "Pids": hard.pids_limit,
            }
        },
        "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
        "Placement": placement,
        "Networks": [{"Target": spec.network, "Aliases": aliases}],
        "LogDriver": {
            "Name": "json-file",
            "Options": {"max-size": hard.log_max_size, "max-file": str(hard.log_max_files)},
        },
        "ForceUpdate": 0,
    }
    body: dict[str, Any] = {
        "Name": name,
        "Labels": labels,
        "TaskTemplate": task,
        "Mode": {"Replicated": {"Replicas": 0}},
        "UpdateConfig": {
            "Parallelism": 1,
            "Order": "stop-first",
            # The lifecycle judges a failed task; a paused update would only stall the next.
            "FailureAction": "continue",
        },
        "EndpointSpec": {"Mode": "dnsrr", "Ports": _published(spec)},
    }
    return ServicePlan(name=name, body=body, secrets=secrets)


def with_secret_ids(body: Mapping[str, Any], ids: Mapping[str, str]) -> dict[str, Any]:
    """The service body with each secret reference's ``SecretID`` (the engine's ids by name)."""
    out = copy.deepcopy(dict(body))
    for reference in out["TaskTemplate"]["ContainerSpec"].get("Secrets") or []:
        found = ids.get(reference["SecretName"])
        if found is None:
            raise SpecError(f"secret {reference['SecretName']} was not created")
        reference["SecretID"] = found
    return out


def replicas_of(body: Mapping[str, Any]) -> int:
    """The replicas a service spec asks for (0 when not replicated)."""
    replicated = (body.get("Mode") or {}).get("Replicated") or {}
    return int(replicated.get("Replicas") or 0)


def scaled(
    body: Mapping[str, Any], replicas: int, *, stop_grace: float | None = None
) -> dict[str, Any]:
    """The spec with ``replicas`` (0 stops the task, 1 starts one) and, if given, the grace a
    stopping task gets before it is killed."""
    out = copy.deepcopy(dict(body))
    out["Mode"] = {"Replicated": {"Replicas": replicas}}
    if stop_grace is not None and stop_grace > 0:
        out["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"] = round(stop_grace * 1e9)
    return out


def forced(body: Mapping[str, Any], *, stop_grace: float | None = None) -> dict[str, Any]:
    """The spec that makes Swarm replace the task now (``ForceUpdate`` + 1, one replica):
    how the runtime restarts a gateway, or starts one whose task ended."""
    out = scaled(body, 1, stop_grace=stop_grace)
    task = out["TaskTemplate"]
    task["ForceUpdate"] = int(task.get("ForceUpdate") or 0) + 1
    return out
