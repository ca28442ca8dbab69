"""The one root settings object: the fleet file, overridden by ``IBFLEET_*`` environment variables.

``load_settings`` is the only entry point. It reads the YAML file (keeping every key's line and
column so problems can point into the file), applies environment overrides and validates the
result into ``FleetSettings``. Failures come back as ``ConfigError`` with every problem listed,
never as a traceback and never with a secret in the text.

The model itself is in :mod:`supervisor.fleet_settings`; its names are importable from here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.bounded_read import read_bounded_file
from supervisor.alertpolicy import Severity
from supervisor.fleet_settings import (
    ENV_DELIMITER,
    ENV_PREFIX,
    AlertRoute,
    AlertSettings,
    ApiSettings,
    FleetSettings,
    HealthSettings,
    RuntimeKind,
    RuntimeSettings,
    SimulatorSettings,
    StorageSettings,
    UpdateWindow,
)

__all__ = [
    "DEFAULT_CONFIG",
    "ENV_DELIMITER",
    "ENV_PREFIX",
    "MAX_FILE_BYTES",
    "AlertRoute",
    "AlertSettings",
    "ApiSettings",
    "ConfigError",
    "ConfigProblem",
    "FleetSettings",
    "HealthSettings",
    "LoadedFleet",
    "Location",
    "RuntimeKind",
    "RuntimeSettings",
    "Severity",
    "SimulatorSettings",
    "StorageSettings",
    "UpdateWindow",
    "apply_env_overrides",
    "format_path",
    "load_settings",
    "load_text",
    "parse_yaml",
    "read_fleet_file",
]

DEFAULT_CONFIG = Path("fleet.yaml")
#: The largest fleet file read: a real fleet is a few kilobytes; the cap keeps a wrong path
#: (a log, a device) from being read whole.
MAX_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Location:
    """Where a value sits in the fleet file (1-based), or which variable set it."""

    line: int | None = None
    column: int | None = None
    env: str | None = None

    def render(self, source: str) -> str:
        if self.env is not None:
            return f"${self.env}"
        if self.line is None:
            return source
        return f"{source}:{self.line}:{self.column}"


@dataclass(frozen=True)
class ConfigProblem:
    """One problem with the fleet file: what, where, and how to fix it."""

    severity: str  # "error" | "warning"
    path: str  # e.g. "gateways[1].client_ids"
    message: str
    hint: str = ""
    location: Location = field(default_factory=Location)


class ConfigError(Exception):
    """The fleet file cannot be used. ``unreadable`` is true when it could not be read or parsed.

    ``partial`` holds the structurally valid rest of the file, when there is one, so that the
    cross-field checks can still report their problems in the same run.
    """

    def __init__(
        self,
        problems: list[ConfigProblem],
        *,
        unreadable: bool = False,
        partial: LoadedFleet | None = None,
    ) -> None:
        super().__init__("; ".join(f"{p.path}: {p.message}" for p in problems))
        self.problems = problems
        self.unreadable = unreadable
        self.partial = partial


@dataclass
class LoadedFleet:
    """Validated settings plus what the lint needs to point into the file.

    A *partial* fleet is what remains of a file with structural errors once the broken items
    are set aside; ``gateway_positions`` and ``strategy_positions`` keep each remaining item's
    index in the file so problems still point at the right place.
    """

    settings: FleetSettings
    source: str
    locations: dict[str, Location]
    raw: dict[str, Any]
    gateway_positions: list[int] = field(default_factory=list)
    strategy_positions: list[int] = field(default_factory=list)
    partial: bool = False

    def __post_init__(self) -> None:
        if not self.gateway_positions:
            self.gateway_positions = list(range(len(self.settings.gateways)))
        if not self.strategy_positions:
            self.strategy_positions = list(range(len(self.settings.strategies)))


def format_path(parts: tuple[str | int, ...] | list[str | int]) -> str:
    """``("gateways", 1, "client_ids")`` -> ``gateways[1].client_ids``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _locate(node: yaml.Node, path: tuple[str | int, ...], out: dict[str, Location]) -> None:
    out[format_path(path)] = Location(node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            # Point a key's problems at the key itself, which is where a reader looks.
            _locate(value_node, (*path, key), out)
            out[format_path((*path, key))] = Location(
                key_node.start_mark.line + 1, key_node.start_mark.column + 1
            )
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _locate(item, (*path, index), out)


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases: a few bytes of aliases expand to gigabytes."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        is_alias = isinstance(event, yaml.AliasEvent)
        if is_alias:
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a fleet file", event.start_mark
            )
        if getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "anchors (&name) are not allowed in a fleet file", event.start_mark
            )
        return super().compose_node(parent, index)


def parse_yaml(text: str, *, source: str) -> tuple[Any, dict[str, Location]]:
    """Parse YAML text; a syntax error becomes a ``ConfigError`` with its line and column.

    Anchors and aliases are refused, since they let a tiny file expand without bound.
    """
    try:
        loader = _NoAliasLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        loc = Location(mark.line + 1, mark.column + 1) if mark is not None else Location()
        what = exc.problem or "invalid YAML"
        raise ConfigError(
            [ConfigProblem("error", "(file)", f"YAML syntax: {what}", location=loc)],
            unreadable=True,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            [ConfigProblem("error", "(file)", f"YAML: {exc}")], unreadable=True
        ) from None
    except RecursionError:
        raise ConfigError(
            [ConfigProblem("error", "(file)", "YAML nests too deeply")], unreadable=True
        ) from None
    locations: dict[str, Location] = {}
    if node is not None:
        _locate(node, (), locations)
    return data, locations


def _norm(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").upper()


def _scalar(text: str) -> Any:
    """An environment value is read as a YAML scalar or flow value: ``4002``, ``true``, ``[a]``."""
    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text


def apply_env_overrides(
    data: dict[str, Any],
    environ: Mapping[str, str],
    locations: dict[str, Location],
) -> list[ConfigProblem]:
    """Merge ``IBFLEET_A__B__C=value`` into ``data`` in place.

    Only variables whose first part names a top-level key are overrides
    (``IBFLEET_API__LISTEN``); others, such as ``IBFLEET_API_TOKEN``, are left for secrets.

    List items are addressed by index (``IBFLEET_GATEWAYS__0__API_PORT``) or by their ``name``
    (``IBFLEET_GATEWAYS__PAPER_A__API_PORT``; dashes become underscores). An override that names
    no existing list item is reported, not silently dropped.
    """
    problems: list[ConfigProblem] = []
    top_level = set(FleetSettings.model_fields)
    for var in sorted(environ):
        if not var.upper().startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in var[len(ENV_PREFIX) :].split(ENV_DELIMITER)]
        if not keys or any(not k for k in keys) or keys[0] not in top_level:
            # Not an override: IBFLEET_CONFIG, or a secret such as IBFLEET_API_TOKEN that the
            # fleet file references with {env: ...}.
            continue
        node: Any = data
        path: list[str | int] = []
        ok = True
        for depth, key in enumerate(keys):
            last = depth == len(keys) - 1
            if isinstance(node, list):
                index = _list_index(node, key)
                if index is None:
                    problems.append(
                        ConfigProblem(
                            "error",
                            format_path(path),
                            f"{var} names no item {key!r} of {format_path(path)}",
                            hint="address list items by index or by their name",
                            location=Location(env=var),
                        )
                    )
                    ok = False
                    break
                path.append(index)
                if last:
                    node[index] = _scalar(environ[var])
                else:
                    node = node[index]
                continue
            if not isinstance(node, dict):
                ok = False
                break
            path.append(key)
            if last:
                node[key] = _scalar(environ[var])
            else:
                child = node.get(key)
                if not isinstance(child, dict | list):
                    child = {}
                    node[key] = child
                node = child
        if ok:
            locations[format_path(path)] = Location(env=var)
    return problems


def _list_index(items: list[Any], key: str) -> int | None:
    if key.isdigit():
        index = int(key)
        return index if index < len(items) else None
    for index, item in enumerate(items):
        if isinstance(item, dict) and _norm(str(item.get("name", ""))) == _norm(key):
            return index
    return None


def _validation_problems(
    exc: ValidationError, locations: dict[str, Location], source: str
) -> list[ConfigProblem]:
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # pydantic names union members and validators in loc; keep only data keys.
        loc = tuple(p for p in loc if p not in ("literal", "SecretRef"))
        path = format_path(loc)
        message = str(err["msg"]).removeprefix("Value error, ")
        hint = ""
        if err["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}" if loc else "unknown key"
            hint = "check the spelling against the fleet file reference in the README"
        elif err["type"] == "missing":
            message = "is required"
        problems.append(
            ConfigProblem("error", path, message, hint=hint, location=_nearest(locations, loc))
        )
    return problems


def _nearest(locations: dict[str, Location], loc: tuple[Any, ...]) -> Location:
    for cut in range(len(loc), -1, -1):
        found = locations.get(format_path(loc[:cut]))
        if found is not None:
            return found
    return Location()


def load_text(
    text: str, *, source: str = "<fleet>", environ: Mapping[str, str] | None = None
) -> LoadedFleet:
    """Validate fleet file text. ``environ`` supplies ``IBFLEET_*`` overrides (none if None)."""
    data, locations = parse_yaml(text, source=source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [
                ConfigProblem(
                    "error",
                    "(top level)",
                    "the fleet file must be a mapping of keys (fleet:, gateways:, ...)",
                    location=Location(1, 1),
                )
            ],
            unreadable=True,
        )
    data = {str(k): v for k, v in data.items()}
    problems = apply_env_overrides(data, environ or {}, locations)
    try:
        settings = FleetSettings(**data)
    except ValidationError as exc:
        problems.extend(_validation_problems(exc, locations, source))
        partial = _partial(data, exc, source=source, locations=locations)
        raise ConfigError(problems, partial=partial) from None
    except (TypeError, ValueError, RecursionError) as exc:
        problems.append(ConfigProblem("error", "(top level)", f"cannot be read: {exc}"))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return LoadedFleet(settings=settings, source=source, locations=locations, raw=data)


def _partial(
    data: dict[str, Any], exc: ValidationError, *, source: str, locations: dict[str, Location]
) -> LoadedFleet | None:
    """The file minus the items and keys that failed validation, or None if even that fails."""
    bad_items: dict[str, set[int]] = {"gateways": set(), "strategies": set()}
    bad_keys: set[str] = set()
    for err in exc.errors(include_input=False, include_url=False):
        loc = err["loc"]
        if not loc:
            return None
        head = str(loc[0])
        if head in bad_items and len(loc) > 1 and isinstance(loc[1], int):
            bad_items[head].add(loc[1])
        else:
            bad_keys.add(head)
    if "fleet" in bad_keys or bad_keys & set(bad_items):
        return None
    trimmed = {k: v for k, v in data.items() if k not in bad_keys}
    positions: dict[str, list[int]] = {}
    for section, bad in bad_items.items():
        items = data.get(section) or []
        if not isinstance(items, list):
            return None
        positions[section] = [i for i in range(len(items)) if i not in bad]
        trimmed[section] = [items[i] for i in positions[section]]
    try:
        settings = FleetSettings(**trimmed)
    except (ValidationError, TypeError, ValueError):
        return None
    return LoadedFleet(
        settings=settings,
        source=source,
        locations=locations,
        raw=data,
        gateway_positions=positions["gateways"],
        strategy_positions=positions["strategies"],
        partial=True,
    )


def load_settings(
    path: Path | None = None, *, environ: Mapping[str, str] | None = None
) -> LoadedFleet:
    """Read and validate the fleet file at ``path`` (default ``$IBFLEET_CONFIG`` or fleet.yaml)."""
    env = os.environ if environ is None else environ
    if path is None:
        path = Path(env.get("IBFLEET_CONFIG") or DEFAULT_CONFIG)
    text = read_fleet_file(path)
    return load_text(text, source=str(path), environ=env)


def _unreadable(path: Path, reason: str, hint: str = "") -> ConfigError:
    return ConfigError(
        [ConfigProblem("error", "(file)", f"cannot read {path}: {reason}", hint=hint)],
        unreadable=True,
    )


def read_fleet_file(path: Path) -> str:
    """The fleet file's text: a regular UTF-8 file of at most :data:`MAX_FILE_BYTES`."""
    try:
        data = read_bounded_file(path, limit=MAX_FILE_BYTES, what="the fleet file")
    except FileNotFoundError:
        raise ConfigError(
            [ConfigProblem("error", "(file)", f"{path} does not exist", hint="pass -c FILE")],
            unreadable=True,
        ) from None
    except ValueError as exc:
        raise _unreadable(path, str(exc)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [
                ConfigProblem(
                    "error",
                    "(file)",
                    f"cannot read {path}: it is not UTF-8 text (byte {exc.start + 1})",
                    location=Location(line, exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1),
                )
            ],
            unreadable=True,
        ) from None
