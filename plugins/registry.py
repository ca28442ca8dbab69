"""Finding strategy classes: an entry point (group ``ibfleet.strategies``) or ``module:Class``.

An explicit registry: nothing is discovered by scanning file names.
"""

from __future__ import annotations

import importlib
import importlib.metadata

from plugins.api import Strategy

__all__ = ["ENTRY_POINT_GROUP", "PluginError", "available", "load_strategy_class"]

ENTRY_POINT_GROUP = "ibfleet.strategies"


class PluginError(Exception):
    """A plugin could not be loaded; the message names the plugin and the cause."""


def available() -> dict[str, str]:
    """Installed strategies: entry point name -> ``module:Class``."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def load_strategy_class(plugin: str, *, strategy: str = "") -> type[Strategy]:
    """Resolve ``plugin`` (entry point name first, else ``module:Class``) to a Strategy class."""
    where = f"strategy {strategy!r}: " if strategy else ""
    target = available().get(plugin, plugin)
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        known = ", ".join(sorted(available())) or "none installed"
        raise PluginError(
            f"{where}plugin {plugin!r} is neither an entry point of group "
            f"{ENTRY_POINT_GROUP} ({known}) nor module:Class"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"{where}plugin {plugin!r}: cannot import {module_name}: {exc}") from None
    obj: object = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise PluginError(f"{where}plugin {plugin!r}: {module_name} has no {attr}")
    if not (isinstance(obj, type) and issubclass(obj, Strategy)):
        raise PluginError(
            f"{where}plugin {plugin!r}: {target} is not a subclass of plugins.api.Strategy"
        )
    return obj
