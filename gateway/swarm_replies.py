"""The Swarm manager's replies (services, tasks, nodes, service logs) read as the runtime's values.

Pure: dictionaries in, :mod:`gateway.runtime` values out. A gateway's service is seen as one
container: its id is the service's, its state, times and exit code are its current task's
(the newest), its labels the service's. The manager emits no task events, so the runtime
polls tasks and :func:`task_events` turns two snapshots into the start/die/destroy events a
container engine would have sent.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from gateway.docker_replies import datetime_from_ns, parse_docker_time_ns
from gateway.runtime import ContainerState, EventKind, ObservedContainer, RuntimeEvent
from gateway.swarm_spec import LABEL_NAME, replicas_of

__all__ = [
    "DETAIL_TASK",
    "ON_THE_WAY",
    "TO_RUN",
    "TaskView",
    "current_task",
    "log_line",
    "observe_service",
    "snapshot",
    "task_address",
    "task_events",
    "task_is_live",
    "task_may_run",
]

#: Task states before ``running``: the task is on its way (scheduled, pulling, starting).
ON_THE_WAY = frozenset(
    {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
)
#: The key of a service log line's details that names its task.
DETAIL_TASK = "com.docker.swarm.task.id"


def _ns(text: object) -> int | None:
    return parse_docker_time_ns(str(text or ""))


def current_task(tasks: Iterable[Mapping[str, object]]) -> Mapping[str, object] | None:
    """The service's newest task (a forced update or a rescheduling makes a newer one)."""

    def key(task: Mapping[str, object]) -> tuple[int, int]:
        version = task.get("Version")
        index = int(version.get("Index") or 0) if isinstance(version, Mapping) else 0
        return (_ns(task.get("CreatedAt")) or 0, index)

    ordered = sorted(tasks, key=key)
    return ordered[-1] if ordered else None


def _status(task: Mapping[str, object]) -> Mapping[str, object]:
    status = task.get("Status")
    return status if isinstance(status, Mapping) else {}


def _exit_code(task: Mapping[str, object]) -> int | None:
    container = _status(task).get("ContainerStatus")
    if not isinstance(container, Mapping) or "ExitCode" not in container:
        return None
    with contextlib.suppress(TypeError, ValueError):
        return int(str(container.get("ExitCode")))
    return None


def task_is_live(task: Mapping[str, object], down_nodes: frozenset[str]) -> bool:
    """Whether the task runs on a node the manager still hears from."""
    return _status(task).get("State") == "running" and str(task.get("NodeID")) not in down_nodes


#: Desired states of a task that is to run: ``ready`` is a stop-first update's new task, held
#: back by swarmkit's updater until the old one has stopped, then promoted to ``running``.
TO_RUN = frozenset({"running", "ready"})


def task_may_run(task: Mapping[str, object], down_nodes: frozenset[str]) -> bool:
    """Whether the task runs, or may yet start, on a node the manager still hears from: what
    must be gone before the gateway's IB username may log in anywhere else."""
    if str(task.get("NodeID")) in down_nodes:
        return False
    state = str(_status(task).get("State") or "")
    return state == "running" or (state in ON_THE_WAY and str(task.get("DesiredState")) in TO_RUN)


def _state(
    task: Mapping[str, object] | None, *, replicas: int, down_nodes: frozenset[str]
) -> ContainerState:
    if task is None:
        # No task yet: created with 0 replicas (start scales it up), or about to be scheduled.
        return ContainerState.RESTARTING if replicas > 0 else ContainerState.CREATED
    state = str(_status(task).get("State") or "")
    desired = str(task.get("DesiredState") or "")
    if state == "running":
        # A node the manager lost runs nothing it can reach: the gateway is gone with it.
        return (
            ContainerState.EXITED
            if str(task.get("NodeID")) in down_nodes
            else (ContainerState.RUNNING)
        )
    if state in ON_THE_WAY:
        return ContainerState.RESTARTING if desired in TO_RUN else ContainerState.EXITED
    return ContainerState.EXITED if state else ContainerState.UNKNOWN


def _spec(service: Mapping[str, object]) -> Mapping[str, object]:
    spec = service.get("Spec")
    return spec if isinstance(spec, Mapping) else {}


def observe_service(
    service: Mapping[str, object],
    tasks: Iterable[Mapping[str, object]],
    *,
    down_nodes: frozenset[str] = frozenset(),
) -> ObservedContainer:
    """The service as one container: its current task's state, times and exit code."""
    spec = _spec(service)
    raw_labels = spec.get("Labels")
    labels = (
        {str(k): str(v) for k, v in raw_labels.items()} if isinstance(raw_labels, Mapping) else {}
    )
    task = current_task(tasks)
    state = _state(task, replicas=replicas_of(spec), down_nodes=down_nodes)
    stamp = datetime_from_ns(_ns(_status(task).get("Timestamp"))) if task is not None else None
    template = spec.get("TaskTemplate")
    container = template.get("ContainerSpec") if isinstance(template, Mapping) else None
    image = str(container.get("Image") or "") if isinstance(container, Mapping) else ""
    return ObservedContainer(
        id=str(service.get("ID") or ""),
        name=labels.get(LABEL_NAME) or str(spec.get("Name") or ""),
        state=state,
        labels=labels,
        started_at=stamp if state is ContainerState.RUNNING else None,
        finished_at=stamp if state is ContainerState.EXITED else None,
        exit_code=_exit_code(task) if task is not None else None,
        oom_killed="oom" in str(_status(task).get("Err") or "").lower() if task else False,
        # Swarm pins the image by digest (``name@sha256:...``); the name is what the spec said.
        image=image.split("@", 1)[0],
    )


def task_address(task: Mapping[str, object], network: str) -> str | None:
    """The task's IPv4 address on ``network`` (by name or id), without its prefix length."""
    attachments = task.get("NetworksAttachments")
    if not isinstance(attachments, list):
        return None
    for attachment in attachments:
        if not isinstance(attachment, Mapping):
            continue
        net = attachment.get("Network")
        net_spec = net.get("Spec") if isinstance(net, Mapping) else None
        names = {
            str(net.get("ID") or "") if isinstance(net, Mapping) else "",
            str(net_spec.get("Name") or "") if isinstance(net_spec, Mapping) else "",
        }
        if network not in names:
            continue
        for address in attachment.get("Addresses") or []:
            ip = str(address).split("/", 1)[0]
            if ip and ":" not in ip:
                return ip
    return None


@dataclass(frozen=True, slots=True)
class TaskView:
    """One service's current task, as the event poller remembers it between polls."""

    service_id: str
    name: str
    gateway: str | None
    task_id: str | None
    live: bool
    at: datetime | None
    #: Exit codes of the service's tasks that have one (the previous task's, after a restart).
    exit_codes: tuple[tuple[str, int], ...] = ()


def snapshot(
    services: Iterable[Mapping[str, object]],
    tasks: Iterable[Mapping[str, object]],
    *,
    down_nodes: frozenset[str] = frozenset(),
) -> dict[str, TaskView]:
    """Every service's current task, by service id."""
    by_service: dict[str, list[Mapping[str, object]]] = {}
    for item in tasks:
        by_service.setdefault(str(item.get("ServiceID") or ""), []).append(item)
    out: dict[str, TaskView] = {}
    for service in services:
        sid = str(service.get("ID") or "")
        own = by_service.get(sid, [])
        observed = observe_service(service, own, down_nodes=down_nodes)
        task = current_task(own)
        codes = tuple((str(t.get("ID")), code) for t in own if (code := _exit_code(t)) is not None)
        out[sid] = TaskView(
            service_id=sid,
            name=observed.name,
            gateway=observed.gateway,
            task_id=str(task.get("ID")) if task is not None else None,
            live=task is not None and task_is_live(task, down_nodes),
            at=datetime_from_ns(_ns(_status(task).get("Timestamp"))) if task else None,
            exit_codes=codes,
        )
    return out


def task_events(
    before: Mapping[str, TaskView], after: Mapping[str, TaskView], *, now: datetime
) -> list[RuntimeEvent]:
    """The container events between two snapshots: a live task that ended (or whose node was
    lost) died, a new live task started, a service that went away was destroyed."""
    events: list[RuntimeEvent] = []
    for sid in sorted(set(before) | set(after)):
        old, new = before.get(sid), after.get(sid)
        view = new or old
        assert view is not None
        same_task = old is not None and new is not None and old.task_id == new.task_id
        if old is not None and old.live and not (same_task and new is not None and new.live):
            codes = dict(new.exit_codes) if new is not None else {}
            died_at = new.at if same_task and new is not None and new.at else now
            events.append(
                RuntimeEvent(
                    kind=EventKind.DIE,
                    container_id=sid,
                    at=died_at,
                    name=view.name,
                    gateway=view.gateway,
                    exit_code=codes.get(old.task_id or ""),
                )
            )
        died = bool(events) and events[-1].kind is EventKind.DIE and events[-1].container_id == sid
        if new is not None and not died:
            # A task that started and ended between two polls was never seen live: its end
            # is still the gateway's container dying (a broken entrypoint, a crash at start).
            seen = {tid for tid, _ in old.exit_codes} if old is not None else set()
            ended = [
                (tid, code)
                for tid, code in new.exit_codes
                if tid not in seen and tid != (old.task_id if old is not None else None)
            ]
            if ended and not (new.live and ended[-1][0] == new.task_id):
                events.append(
                    RuntimeEvent(
                        kind=EventKind.DIE,
                        container_id=sid,
                        at=new.at or now,
                        name=new.name,
                        gateway=new.gateway,
                        exit_code=ended[-1][1],
                    )
                )
        if new is not None and new.live and not (same_task and old is not None and old.live):
            events.append(
                RuntimeEvent(
                    kind=EventKind.START,
                    container_id=sid,
                    at=new.at or now,
                    name=new.name,
                    gateway=new.gateway,
                )
            )
        if new is None:
            events.append(
                RuntimeEvent(
                    kind=EventKind.DESTROY,
                    container_id=sid,
                    at=now,
                    name=view.name,
                    gateway=view.gateway,
                )
            )
    return events


def _details(text: str) -> dict[str, str] | None:
    """``k=v,k=v`` (values URL-escaped), as the engine writes a log line's details."""
    out: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key:
            return None
        out[urllib.parse.unquote(key)] = urllib.parse.unquote(value)
    return out


def log_line(raw: str, *, task_id: str | None) -> str | None:
    """A service log line asked with timestamps and details (``TIME DETAILS MESSAGE``) as the
    runtime's ``TIME MESSAGE``; None when it belongs to another task of the service."""
    stamp, _, rest = raw.partition(" ")
    details_text, sep, message = rest.partition(" ")
    details = _details(details_text) if sep or details_text else None
    if details is None or DETAIL_TASK not in details:
        return raw  # no details: the line as it came
    if task_id is not None and details[DETAIL_TASK] != task_id:
        return None
    return f"{stamp} {message}"
