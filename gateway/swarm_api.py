"""The Swarm manager's API as the Swarm runtime sees it: the Protocol its fake implements, and
the rules for adopting a fleet's overlay network.

:class:`SwarmApi` is the part of ``docker.APIClient`` that :mod:`gateway.swarm_runtime` calls,
so the unit tests drive a hand-written fake of it instead of patching the SDK.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from gateway.spec import LABEL_FLEET

__all__ = ["LABEL_SUPERVISOR_OF", "SwarmApi", "overlay_problem"]

#: On the stack's supervisor services: the fleet they supervise. Not the fleet label, which
#: would make them containers of the fleet, and orphans to remove.
LABEL_SUPERVISOR_OF = "io.ibfleet.supervisor-of"


class SwarmApi(Protocol):
    """The part of ``docker.APIClient`` this runtime uses (a Swarm manager's engine)."""

    def services(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def inspect_service(self, service: str) -> dict[str, Any]: ...

    def create_service(
        self,
        task_template: dict[str, Any],
        name: str | None = None,
        labels: dict[str, str] | None = None,
        mode: dict[str, Any] | None = None,
        update_config: dict[str, Any] | None = None,
        networks: list[Any] | None = None,
        endpoint_config: Any = None,
        endpoint_spec: dict[str, Any] | None = None,
        rollback_config: dict[str, Any] | None = None,
    ) -> dict[str, Any]: ...

    def update_service(
        self,
        service: str,
        version: int,
        task_template: dict[str, Any] | None = None,
        name: str | None = None,
        labels: dict[str, str] | None = None,
        mode: dict[str, Any] | None = None,
        update_config: dict[str, Any] | None = None,
        networks: list[Any] | None = None,
        endpoint_config: Any = None,
        endpoint_spec: dict[str, Any] | None = None,
        fetch_current_spec: bool = False,
        rollback_config: dict[str, Any] | None = None,
    ) -> Any: ...

    def remove_service(self, service: str) -> Any: ...

    def tasks(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def nodes(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def create_secret(
        self, name: str, data: bytes, labels: dict[str, str] | None = None, driver: Any = None
    ) -> dict[str, Any]: ...

    def secrets(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def remove_secret(self, id: str) -> Any: ...

    def networks(
        self,
        names: list[str] | None = None,
        ids: list[str] | None = None,
        filters: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]: ...

    def create_network(
        self,
        name: str,
        driver: str | None = None,
        options: dict[str, str] | None = None,
        ipam: Any = None,
        check_duplicate: bool | None = None,
        internal: bool = False,
        labels: dict[str, str] | None = None,
        enable_ipv6: bool = False,
        attachable: bool | None = None,
        scope: str | None = None,
        ingress: bool | None = None,
    ) -> dict[str, Any]: ...

    def inspect_network(
        self, net_id: str, verbose: bool | None = None, scope: str | None = None
    ) -> dict[str, Any]: ...

    def remove_network(self, net_id: str) -> Any: ...

    def inspect_image(self, image: str) -> dict[str, Any]: ...

    def service_logs(
        self,
        service: str,
        details: bool = False,
        follow: bool = False,
        stdout: bool = False,
        stderr: bool = False,
        since: int = 0,
        timestamps: bool = False,
        tail: str = "all",
        is_tty: bool | None = None,
    ) -> Iterable[bytes]: ...


def overlay_problem(attrs: Mapping[str, Any], *, fleet: str) -> str | None:
    """Why an existing network cannot be the fleet's overlay network, or None."""
    labels = attrs.get("Labels") or {}
    if labels.get(LABEL_FLEET) != fleet:
        owner = labels.get(LABEL_FLEET) or "no ibfleet label"
        return (
            f"exists but is not this fleet's ({LABEL_FLEET}: {owner}); refusing to adopt it. "
            f"Label it in the stack (networks: NAME: labels: {LABEL_FLEET}: {fleet}) or set "
            "runtime.network to another name"
        )
    # A manager names no driver for an overlay it has not allocated yet (seen on 20.10).
    if attrs.get("Driver") not in ("overlay", "", None) or attrs.get("Scope") != "swarm":
        return (
            f"is a {attrs.get('Driver')} network of scope {attrs.get('Scope')}; a Swarm fleet "
            "needs an overlay network (driver overlay)"
        )
    return None
