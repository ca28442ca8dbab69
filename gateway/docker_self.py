"""Whether this process runs in a container of the Docker engine it drives, and which one.

A supervisor in a container reaches the gateways from its own address on the fleet network, not
from the network's gateway IP as the host does, so ControlFrom, the firewall rules and the
address it dials all depend on knowing its container. The engine writes each container's
``/etc/hostname``, ``/etc/hosts`` and ``/etc/resolv.conf`` from
``<data-root>/containers/<id>/``, and those bind mounts show the id in ``/proc/self/mountinfo``
whatever the cgroup version; cgroup v1 paths (``/docker/<id>``) and the hostname (the short id
unless ``--hostname`` was given) are the fallbacks. A candidate counts only once the engine
confirms it: a container of *another* engine (this host itself in a container) is not ours.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import docker.errors

__all__ = ["EngineApi", "container_candidates", "own_container", "read_own_container"]

_MOUNTED = re.compile(r"/containers/([0-9a-f]{64})/(?:hostname|hosts|resolv\.conf)(?:\s|$)")
_CGROUP = re.compile(r"(?:/docker/|/docker-)([0-9a-f]{64})(?:\.scope)?(?:/|$)", re.MULTILINE)
_HOSTNAME = re.compile(r"^[0-9a-f]{12}$")


class EngineApi(Protocol):
    """The part of ``docker.APIClient`` this needs."""

    def inspect_container(self, container: str) -> dict[str, Any]: ...


def container_candidates(*, mountinfo: str, cgroup: str, hostname: str) -> list[str]:
    """Container ids (or the short-id hostname) this process may run in, most telling first."""
    found: list[str] = []
    for match in _MOUNTED.finditer(mountinfo):
        found.append(match.group(1))
    for match in _CGROUP.finditer(cgroup):
        found.append(match.group(1))
    if _HOSTNAME.fullmatch(hostname.strip()):
        found.append(hostname.strip())
    return list(dict.fromkeys(found))


def own_container(
    api: EngineApi, candidates: Iterable[str], *, hostname: str
) -> dict[str, Any] | None:
    """The engine's inspect of the first candidate it runs with this hostname, or None."""
    for candidate in candidates:
        try:
            attrs = api.inspect_container(candidate)
        except docker.errors.NotFound:
            continue
        running = bool((attrs.get("State") or {}).get("Running"))
        same_host = str((attrs.get("Config") or {}).get("Hostname") or "") == hostname.strip()
        if running and same_host:
            return attrs
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def read_own_container(api: EngineApi, *, proc: Path = Path("/proc/self")) -> dict[str, Any] | None:
    """:func:`own_container` for this process (reads its mountinfo, cgroup and hostname)."""
    hostname = socket.gethostname()
    candidates = container_candidates(
        mountinfo=_read(proc / "mountinfo"), cgroup=_read(proc / "cgroup"), hostname=hostname
    )
    return own_container(api, candidates, hostname=hostname) if candidates else None
