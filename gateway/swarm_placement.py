"""Where a gateway's Swarm service may run: its placement constraints and preferences. Pure.

The fleet file writes them as Docker writes them (``docker service create --constraint`` and
``--placement-pref``): a constraint is ``ATTRIBUTE==VALUE`` or ``ATTRIBUTE!=VALUE`` over a node
attribute (``node.labels.zone``, ``node.hostname``, ``node.role``, ...), a preference is
``spread=node.labels.zone``. They are checked here, where a mistake can still name its field,
rather than by the Swarm manager at create time.

:func:`may_share_node` answers the question ``ibfleet check`` asks of a strategy's primary and
failover gateways: could the scheduler put both on one node? Only constraints keep services
apart. A preference spreads the tasks of one service over label values and says nothing about
two different services, so it never separates two gateways.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Constraint",
    "constraint_problem",
    "may_share_node",
    "parse_constraint",
    "parse_preference",
    "preference_problem",
]

#: The node attributes a Swarm constraint may name (``docker service create --constraint``).
_ATTRIBUTE = re.compile(
    r"^(node\.(id|hostname|role|platform\.os|platform\.arch)"
    r"|node\.labels\.[A-Za-z0-9_][A-Za-z0-9_.-]*"
    r"|engine\.labels\.[A-Za-z0-9_][A-Za-z0-9_.-]*)$"
)
_VALUE = re.compile(r"^[A-Za-z0-9_.:/@*-]+$")
_PREFERENCE = re.compile(r"^spread=(node\.labels\.[A-Za-z0-9_][A-Za-z0-9_.-]*)$")


@dataclass(frozen=True, slots=True)
class Constraint:
    """``attribute == value`` (``equal``) or ``attribute != value``."""

    attribute: str
    equal: bool
    value: str

    def __str__(self) -> str:
        return f"{self.attribute}{'==' if self.equal else '!='}{self.value}"


def parse_constraint(text: str) -> Constraint:
    """``node.labels.zone==a`` -> Constraint; a ValueError says what is wrong and what to write."""
    problem = constraint_problem(text)
    if problem is not None:
        raise ValueError(problem)
    operator = "==" if "==" in text else "!="
    attribute, _, value = text.partition(operator)
    return Constraint(attribute.strip(), operator == "==", value.strip())


def constraint_problem(text: str) -> str | None:
    """Why ``text`` is no Swarm constraint, or None."""
    example = "write e.g. node.labels.zone==a or node.hostname!=host-1"
    if "==" in text:
        operator = "=="
    elif "!=" in text:
        operator = "!="
    else:
        return f"constraint {text!r} has no == or !=; {example}"
    attribute, _, value = text.partition(operator)
    attribute, value = attribute.strip(), value.strip()
    if not _ATTRIBUTE.match(attribute):
        return (
            f"constraint {text!r}: {attribute!r} is not a node attribute Swarm knows (node.id, "
            "node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.NAME, "
            f"engine.labels.NAME); {example}"
        )
    if not value or "=" in value or "!" in value or not _VALUE.match(value):
        return f"constraint {text!r}: {value!r} is not one value; {example}"
    if attribute == "node.role" and value not in ("manager", "worker"):
        return f"constraint {text!r}: node.role is manager or worker"
    return None


def parse_preference(text: str) -> str:
    """``spread=node.labels.zone`` -> ``node.labels.zone`` (the spread descriptor)."""
    problem = preference_problem(text)
    if problem is not None:
        raise ValueError(problem)
    match = _PREFERENCE.match(text.strip())
    assert match is not None
    return match.group(1)


def preference_problem(text: str) -> str | None:
    """Why ``text`` is no Swarm placement preference, or None (Swarm knows spread only)."""
    if _PREFERENCE.match(text.strip()) is None:
        return (
            f"preference {text!r} is not spread=node.labels.NAME (the one placement preference "
            "Swarm has); write e.g. spread=node.labels.zone"
        )
    return None


def _excludes(a: Constraint, b: Constraint) -> bool:
    """Whether no node can satisfy both (same attribute, values that cannot both hold)."""
    if a.attribute != b.attribute:
        return False
    if a.equal and b.equal:
        return a.value != b.value
    if a.equal != b.equal:
        return a.value == b.value
    return False  # two != leave every other value open to both


def may_share_node(first: Sequence[Constraint], second: Sequence[Constraint]) -> bool:
    """Whether one node could satisfy both gateways' constraints (then both may run on it).

    Conservative in the warning's favour: only a pair of constraints on one attribute that
    contradict each other (``zone==a`` against ``zone==b`` or ``zone!=a``) proves them apart.
    """
    return not any(_excludes(a, b) for a in first for b in second)
