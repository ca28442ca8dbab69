"""A hand-written stand-in for a Swarm manager's API (:class:`gateway.swarm_runtime.SwarmApi`).

It keeps services, tasks, nodes, secrets and networks as the manager reports them, and plays
the orchestrator's part the runtime relies on: a service that asks for a replica and has no
task on its way gets one (placed on an up node), a forced update or a scale to 0 shuts the old
task down, and with restart condition none an ended task is never replaced by itself. Fault
switches: :meth:`exit_task`, :meth:`node_down`, ``start_pending`` (tasks wait unscheduled),
``stop_slowly`` (a stopping task keeps running until :meth:`settle`).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import docker.errors


def _refused(text: str) -> docker.errors.APIError:
    """The manager's refusal, with the explanation the engine would give."""
    return docker.errors.APIError(text, explanation=text)


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


class FakeSwarm:
    def __init__(self, nodes: Iterable[str] = ("node-1", "node-2", "node-3")) -> None:
        self.nodes_up = {node: True for node in nodes}
        self.services_by_id: dict[str, dict[str, Any]] = {}
        self.task_list: list[dict[str, Any]] = []
        self.secret_store: dict[str, dict[str, Any]] = {}
        self.secret_data: dict[str, bytes] = {}
        self.network_store: dict[str, dict[str, Any]] = {}
        self.images: dict[str, dict[str, Any]] = {}
        self.log_lines: dict[str, list[bytes]] = {}
        self.calls: list[str] = []
        self.start_pending = False
        self.stop_slowly = False
        self._ids = itertools.count(1)
        self.clock = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
        self._next_node = itertools.cycle(list(self.nodes_up))

    # -- helpers for tests ------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def _tick(self) -> str:
        self.clock += timedelta(seconds=1)
        return _stamp(self.clock)

    def tasks_of(self, service_id: str) -> list[dict[str, Any]]:
        return [t for t in self.task_list if t["ServiceID"] == service_id]

    def live_task(self, service_id: str) -> dict[str, Any] | None:
        for task in self.tasks_of(service_id):
            if task["Status"]["State"] == "running" and task["DesiredState"] == "running":
                return task
        return None

    def exit_task(self, service_id: str, code: int) -> None:
        """The gateway process exits: the task fails (and, restart none, stays failed)."""
        task = self.live_task(service_id)
        assert task is not None
        task["Status"] = {
            "State": "failed" if code else "complete",
            "Timestamp": self._tick(),
            "ContainerStatus": {"ExitCode": code},
        }
        task["DesiredState"] = "shutdown"

    def node_down(self, node: str) -> None:
        """The manager stops hearing from ``node``: its tasks still say running."""
        self.nodes_up[node] = False

    def settle(self) -> None:
        """Tasks told to stop finish stopping."""
        for task in self.task_list:
            if task["DesiredState"] != "running" and task["Status"]["State"] == "running":
                task["Status"] = {
                    "State": "shutdown",
                    "Timestamp": self._tick(),
                    "ContainerStatus": {"ExitCode": 0},
                }

    def _reconcile(self, service_id: str) -> None:
        service = self.services_by_id[service_id]
        spec = service["Spec"]
        replicas = spec["Mode"]["Replicated"]["Replicas"]
        wanted = spec["TaskTemplate"].get("ForceUpdate", 0)
        for task in self.tasks_of(service_id):
            stale = task["ForceUpdate"] != wanted or replicas == 0
            if task["DesiredState"] == "running" and stale:
                task["DesiredState"] = "shutdown"
        if not self.stop_slowly:
            self.settle()
        on_its_way = [t for t in self.tasks_of(service_id) if t["DesiredState"] == "running"]
        if replicas and not on_its_way:
            up = [n for n in self.nodes_up if self.nodes_up[n]]
            node = next(n for n in self._next_node if n in up)
            network = spec["TaskTemplate"]["Networks"][0]["Target"]
            task_id = self._id("task")
            self.task_list.append(
                {
                    "ID": task_id,
                    "ServiceID": service_id,
                    "NodeID": node,
                    "CreatedAt": self._tick(),
                    "Version": {"Index": next(self._ids)},
                    "DesiredState": "running",
                    "ForceUpdate": wanted,
                    "Status": {
                        "State": "pending" if self.start_pending else "running",
                        "Timestamp": _stamp(self.clock),
                    },
                    "NetworksAttachments": [
                        {
                            "Network": {"ID": network, "Spec": {"Name": network}},
                            "Addresses": [f"10.0.9.{len(self.task_list) + 2}/24"],
                        }
                    ],
                }
            )

    def _service(self, service: str) -> dict[str, Any]:
        for item in self.services_by_id.values():
            if service in (item["ID"], item["Spec"]["Name"]):
                return item
        raise docker.errors.NotFound(f"service {service} not found")

    # -- the API -----------------------------------------------------------------------------

    def services(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        self.calls.append("services")
        out = []
        for item in self.services_by_id.values():
            labels = item["Spec"].get("Labels") or {}
            label = (filters or {}).get("label")
            if label is not None:
                key, _, value = str(label).partition("=")
                if labels.get(key) != value:
                    continue
            name = (filters or {}).get("name")
            if name is not None and str(name) not in item["Spec"]["Name"]:
                continue
            out.append(copy.deepcopy(item))
        return out

    def inspect_service(self, service: str) -> dict[str, Any]:
        return copy.deepcopy(self._service(service))

    def create_service(self, task_template: dict[str, Any], **kw: Any) -> dict[str, Any]:
        self.calls.append("create_service")
        for ref in task_template["ContainerSpec"].get("Secrets") or []:
            if ref.get("SecretID") not in self.secret_store:
                raise _refused(f"secret {ref.get('SecretName')} not found")
        for net in task_template.get("Networks") or []:
            if net["Target"] not in self.network_store:
                raise _refused(f"network {net['Target']} not found")
        if any(s["Spec"]["Name"] == kw["name"] for s in self.services_by_id.values()):
            raise _refused(f"name {kw['name']} in use")
        service_id = self._id("svc")
        spec = {
            "Name": kw["name"],
            "Labels": kw.get("labels") or {},
            "TaskTemplate": copy.deepcopy(task_template),
            "Mode": kw.get("mode") or {"Replicated": {"Replicas": 1}},
            "UpdateConfig": kw.get("update_config"),
            "EndpointSpec": kw.get("endpoint_spec"),
        }
        self.services_by_id[service_id] = {
            "ID": service_id,
            "Version": {"Index": 1},
            "Spec": spec,
        }
        self._reconcile(service_id)
        return {"ID": service_id}

    def update_service(self, service: str, version: int, **kw: Any) -> Any:
        self.calls.append("update_service")
        item = self._service(service)
        if version != item["Version"]["Index"]:
            raise _refused("update out of sequence")
        if kw.get("name") not in (None, item["Spec"]["Name"]):
            raise _refused("renaming services is not supported")
        spec = item["Spec"]
        spec["TaskTemplate"] = copy.deepcopy(kw["task_template"])
        spec["Labels"] = kw.get("labels") or {}
        spec["Mode"] = kw.get("mode") or spec["Mode"]
        spec["UpdateConfig"] = kw.get("update_config")
        spec["EndpointSpec"] = kw.get("endpoint_spec")
        item["Version"]["Index"] += 1
        self._reconcile(item["ID"])
        return {}

    def remove_service(self, service: str) -> Any:
        self.calls.append("remove_service")
        item = self._service(service)
        del self.services_by_id[item["ID"]]
        self.task_list = [t for t in self.task_list if t["ServiceID"] != item["ID"]]
        return True

    def tasks(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        self.calls.append("tasks")
        wanted = set((filters or {}).get("service") or [])
        for service in wanted:
            self._service(service)  # the manager resolves the filter: a gone service is a 404
        desired = (filters or {}).get("desired-state")
        return [
            copy.deepcopy(t)
            for t in self.task_list
            if (not wanted or t["ServiceID"] in wanted)
            and (desired is None or t["DesiredState"] == desired)
        ]

    def nodes(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return [
            {"ID": node, "Status": {"State": "ready" if up else "down"}}
            for node, up in self.nodes_up.items()
        ]

    def create_secret(
        self, name: str, data: bytes, labels: dict[str, str] | None = None, driver: Any = None
    ) -> dict[str, Any]:
        self.calls.append("create_secret")
        if any(s["Spec"]["Name"] == name for s in self.secret_store.values()):
            raise _refused(f"secret {name} exists")
        secret_id = self._id("sec")
        self.secret_store[secret_id] = {"ID": secret_id, "Spec": {"Name": name, "Labels": labels}}
        self.secret_data[secret_id] = data
        return {"ID": secret_id}

    def secrets(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        out = []
        for item in self.secret_store.values():
            name = (filters or {}).get("name")
            if name is not None and name not in item["Spec"]["Name"]:
                continue
            label = (filters or {}).get("label")
            if label is not None:
                key, _, value = str(label).partition("=")
                if (item["Spec"].get("Labels") or {}).get(key) != value:
                    continue
            out.append(copy.deepcopy(item))
        return out

    def remove_secret(self, id: str) -> Any:
        for service in self.services_by_id.values():
            refs = service["Spec"]["TaskTemplate"]["ContainerSpec"].get("Secrets") or []
            if any(ref["SecretID"] == id for ref in refs):
                raise _refused(f"secret {id} is in use")
        del self.secret_store[id]
        del self.secret_data[id]
        return True

    def networks(
        self,
        names: list[str] | None = None,
        ids: list[str] | None = None,
        filters: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        out = []
        for item in self.network_store.values():
            if names is not None and item["Name"] not in names:
                continue
            label = (filters or {}).get("label")
            if label is not None:
                key, _, value = str(label).partition("=")
                if (item.get("Labels") or {}).get(key) != value:
                    continue
            out.append(copy.deepcopy(item))
        return out

    def create_network(self, name: str, **kw: Any) -> dict[str, Any]:
        self.calls.append("create_network")
        self.network_store[name] = {
            "Name": name,
            "Id": f"net-{name}",
            "Driver": kw.get("driver"),
            "Scope": kw.get("scope") or "local",
            "Labels": kw.get("labels") or {},
            "Options": kw.get("options") or {},
            "Attachable": kw.get("attachable"),
        }
        return {"Id": f"net-{name}"}

    def inspect_network(
        self, net_id: str, verbose: bool | None = None, scope: str | None = None
    ) -> dict[str, Any]:
        for item in self.network_store.values():
            if net_id in (item["Name"], item["Id"]):
                return copy.deepcopy(item)
        raise docker.errors.NotFound(f"network {net_id} not found")

    def remove_network(self, net_id: str) -> Any:
        for service in self.services_by_id.values():
            if any(n["Target"] == net_id for n in service["Spec"]["TaskTemplate"]["Networks"]):
                raise _refused(f"network {net_id} is in use")
        self.network_store.pop(net_id)
        return True

    def inspect_image(self, image: str) -> dict[str, Any]:
        if image not in self.images:
            raise docker.errors.ImageNotFound(f"no such image {image}")
        return self.images[image]

    def service_logs(self, service: str, **kw: Any) -> Iterator[bytes]:
        self.calls.append("service_logs")
        item = self._service(service)
        assert kw.get("details") and kw.get("timestamps") and kw.get("follow")
        yield from self.log_lines.get(item["ID"], [])
