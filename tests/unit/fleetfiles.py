"""Builders of fleet file text for the settings and lint tests."""

from __future__ import annotations

import copy
from typing import Any

import yaml


def gateway(name: str, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "mode": "paper",
        "account": "DU1234567",
        "username": {"env": f"USER_{name.upper().replace('-', '_')}"},
        "password": {"env": f"PASS_{name.upper().replace('-', '_')}"},
        "api_port": 4002,
        "client_ids": {"start": 1, "end": 49},
    }
    base.update(over)
    return base


def strategy(name: str, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "plugin": "meanrev",
        "gateways": ["paper-a"],
        "client_id": 10,
    }
    base.update(over)
    return base


def fleet(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "fleet": "test",
        "timezone": "America/New_York",
        "gateways": [gateway("paper-a"), gateway("paper-b", api_port=4012)],
        "strategies": [strategy("meanrev")],
    }
    base.update(over)
    return copy.deepcopy(base)


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)


def env_for(data: dict[str, Any]) -> dict[str, str]:
    """An environment in which every {env: NAME} secret of ``data`` is set (to distinct values)."""
    out: dict[str, str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if set(node) == {"env"}:
                out[node["env"]] = "value-of-" + node["env"].lower()
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data)
    return out
