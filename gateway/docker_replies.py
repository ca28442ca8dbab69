"""The engine's replies (inspect, listings, events, timestamps) read as the runtime's values.

Pure: dictionaries in, :mod:`gateway.runtime` values out, so each reading is tested without an
engine.
"""

from __future__ import annotations

import contextlib
import re
import time
from datetime import UTC, datetime
from typing import Any

from gateway.runtime import ContainerState, EventKind, ObservedContainer, RuntimeEvent
from gateway.spec import LABEL_GATEWAY

__all__ = [
    "EVENT_KINDS",
    "event_from",
    "observe",
    "observe_summary",
    "parse_docker_time_ns",
]

EVENT_KINDS = {
    "start": EventKind.START,
    "die": EventKind.DIE,
    "oom": EventKind.OOM,
    "destroy": EventKind.DESTROY,
}
_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")
_ZERO_TIME = "0001-01-01T00:00:00Z"


def parse_docker_time_ns(text: str) -> int | None:
    """RFC 3339 with up to nanoseconds -> integer nanoseconds since the epoch (None if unset)."""
    if not text or text == _ZERO_TIME:
        return None
    match = _TS.match(text.strip())
    if match is None:
        return None
    base = datetime.fromisoformat(
        match.group(1) + ("+00:00" if match.group(3) == "Z" else match.group(3))
    )
    fraction = (match.group(2) or "").ljust(9, "0")
    return int(base.timestamp()) * 1_000_000_000 + int(fraction or 0)


def datetime_from_ns(value: int | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value / 1e9, tz=UTC)


def observe(attrs: dict[str, Any]) -> ObservedContainer:
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    return ObservedContainer(
        id=attrs["Id"],
        name=str(attrs.get("Name", "")).lstrip("/"),
        state=ContainerState.parse(str(state.get("Status", "unknown"))),
        labels=dict(config.get("Labels") or {}),
        started_at=datetime_from_ns(parse_docker_time_ns(str(state.get("StartedAt", "")))),
        finished_at=datetime_from_ns(parse_docker_time_ns(str(state.get("FinishedAt", "")))),
        exit_code=state.get("ExitCode"),
        oom_killed=bool(state.get("OOMKilled", False)),
        image=str(config.get("Image", "")),
    )


def observe_summary(item: dict[str, Any]) -> ObservedContainer:
    names = item.get("Names") or [""]
    return ObservedContainer(
        id=item["Id"],
        name=str(names[0]).lstrip("/"),
        state=ContainerState.parse(str(item.get("State", "unknown"))),
        labels=dict(item.get("Labels") or {}),
        image=str(item.get("Image", "")),
    )


def event_from(item: dict[str, Any]) -> RuntimeEvent | None:
    kind = EVENT_KINDS.get(str(item.get("Action") or item.get("status") or ""))
    if kind is None:
        return None
    actor = item.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    nanos = item.get("timeNano")
    at = (
        datetime.fromtimestamp(nanos / 1e9, tz=UTC)
        if isinstance(nanos, int)
        else datetime.fromtimestamp(float(item.get("time", time.time())), tz=UTC)
    )
    exit_code: int | None = None
    if kind is EventKind.DIE:
        with contextlib.suppress(TypeError, ValueError):
            exit_code = int(str(attributes.get("exitCode")))
    return RuntimeEvent(
        kind=kind,
        container_id=str(actor.get("ID") or item.get("id") or ""),
        at=at,
        name=str(attributes.get("name", "")),
        gateway=attributes.get(LABEL_GATEWAY),
        exit_code=exit_code,
    )
