"""iptables for a supervisor in a container: run in a helper container in the host's network
namespace.

The fleet's rules (:mod:`gateway.firewall`) live in the host's filter table, next to the
engine's own ``DOCKER-USER`` chain. A supervisor that joins the fleet network has a network
namespace of its own, so its iptables would edit the wrong table, and giving it the host's
network instead (``--network host``) would take it off the fleet network it must be on. So the
supervisor keeps its own namespace and no capability, and runs each iptables command with
``docker exec`` in a small helper container made from its own image with ``--network host`` and
only ``NET_ADMIN`` and ``NET_RAW``. That adds no power the supervisor lacks: whoever holds the
Docker socket can start such a container anyway (the socket is root on the host); it does make
the helper a privileged container that stays while the supervisor runs.

:class:`HelperRunner` is a :class:`gateway.firewall.Runner`, so ``Iptables(HelperRunner(...))``
is the same rule code as on the host.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Any

import docker
import docker.errors

__all__ = ["HELPER_COMPONENT", "LABEL_HELPER_FLEET", "HelperRunner", "fleet_helpers", "helper_name"]

log = logging.getLogger(__name__)

HELPER_COMPONENT = "firewall-helper"
LABEL_COMPONENT = "io.ibfleet.component"
LABEL_HELPER_OF = "io.ibfleet.helper-of"
# The fleet whose rules the helper keeps, so ``fleet down`` takes it along. Not the fleet label
# itself: the orchestrator would take a container with that label for an orphan gateway.
LABEL_HELPER_FLEET = "io.ibfleet.helper-fleet"
# The restore script travels in the environment: exec has no stdin without a raw socket.
_INPUT_ENV = "IBFLEET_IPTABLES_INPUT"


def fleet_helpers(api: docker.APIClient, fleet: str) -> list[tuple[str, str]]:
    """(id, name) of the helpers that keep ``fleet``'s rules, running or not."""
    found = api.containers(all=True, filters={"label": f"{LABEL_HELPER_FLEET}={fleet}"})
    return sorted(
        (str(c["Id"]), str((c.get("Names") or ["/" + str(c["Id"])[:12]])[0]).lstrip("/"))
        for c in found
    )


def helper_name(supervisor_name: str) -> str:
    """The helper's container name: one per supervisor container, never a fleet's prefix."""
    return f"ibfleet_firewall_{supervisor_name.lstrip('/')}"


class HelperRunner:
    """Runs iptables programs in the helper container, creating (or adopting) it on first use.

    Blocking, like :func:`gateway.firewall.subprocess_runner`; the runtime calls it from its
    worker threads.
    """

    def __init__(
        self, api: docker.APIClient, *, image: str, supervisor_name: str, fleet: str = ""
    ) -> None:
        self._api = api
        self._image = image
        self._fleet = fleet
        self._supervisor = supervisor_name.lstrip("/")
        self._name = helper_name(supervisor_name)
        self._id: str | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    def _ensure(self) -> str:
        with self._lock:
            if self._id is not None and self._running(self._id):
                return self._id
            with contextlib.suppress(docker.errors.NotFound):
                attrs = self._api.inspect_container(self._name)
                if str(attrs.get("Image") or "") == self._image:
                    if not (attrs.get("State") or {}).get("Running"):
                        self._api.start(attrs["Id"])
                    self._id = str(attrs["Id"])
                    return self._id
                # Made from another image (the supervisor was updated): replace it.
                self._api.remove_container(attrs["Id"], force=True)
            host_config = self._api.create_host_config(
                network_mode="host",
                cap_drop=["ALL"],
                cap_add=["NET_ADMIN", "NET_RAW"],
                security_opt=["no-new-privileges:true"],
                restart_policy={"Name": "unless-stopped"},
                pids_limit=64,
                mem_limit="64m",
                read_only=True,
                tmpfs={"/run": "rw,size=1m"},  # the xtables lock file
            )
            created = self._api.create_container(
                self._image,
                entrypoint=["/bin/sleep", "infinity"],
                command=[],
                user="0:0",
                name=self._name,
                labels={
                    LABEL_COMPONENT: HELPER_COMPONENT,
                    LABEL_HELPER_OF: self._supervisor,
                    LABEL_HELPER_FLEET: self._fleet,
                },
                host_config=host_config,
                healthcheck={"Test": ["NONE"]},
                detach=True,
            )
            self._id = str(created["Id"])
            self._api.start(self._id)
            log.info("firewall_helper_started container=%s image=%s", self._name, self._image)
            return self._id

    def _running(self, container_id: str) -> bool:
        try:
            attrs = self._api.inspect_container(container_id)
        except docker.errors.NotFound:
            return False
        return bool((attrs.get("State") or {}).get("Running"))

    def problem(self) -> str | None:
        """Why the helper cannot run here (the engine refused it), or None."""
        try:
            self._ensure()
        except docker.errors.DockerException as exc:
            return f"the engine refused the firewall helper {self._name} ({exc})"
        return None

    def __call__(self, argv: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]:
        try:
            container = self._ensure()
            command = list(argv)
            env: dict[str, str] | None = None
            if stdin is not None:
                command = ["/bin/sh", "-c", f'printf %s "${_INPUT_ENV}" | exec "$@"', "sh", *argv]
                env = {_INPUT_ENV: stdin}
            created: dict[str, Any] = self._api.exec_create(
                container, command, environment=env, user="0:0", stdout=True, stderr=True
            )
            out, err = self._api.exec_start(created["Id"], demux=True)
            code = self._api.exec_inspect(created["Id"]).get("ExitCode")
        except docker.errors.DockerException as exc:
            return 127, "", f"firewall helper {self._name}: {type(exc).__name__}: {exc}"
        text = (out or b"").decode("utf-8", errors="replace")
        error = (err or b"").decode("utf-8", errors="replace").strip()
        return (int(code) if isinstance(code, int) else 127), text, error

    def remove(self) -> None:
        """Remove the helper (the supervisor's container is going away); gone is fine."""
        with contextlib.suppress(docker.errors.NotFound):
            self._api.remove_container(self._name, force=True)
        self._id = None
