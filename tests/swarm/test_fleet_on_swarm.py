"""``ibfleet run`` from the supervisor image as a Swarm service on the lab (tests/swarm/supfleet.py
says where everything runs and how): a simulator fleet whose primary gw-a and failover gw-b of
one account are placed on different nodes by ``gateways[].placement``, and the pinger resting
orders on gw-a. Kill gw-a's node (the whole dind container): the pinger's resting order is
cancelled through gw-b within the fleet file's safe-state grace + 5 s, the pinger trades on
gw-b, gw-a's service gets a task on another node, and the broker saw no orderRef twice. The
supervisor runs on n1, which is never killed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.swarm import supfleet
from tests.swarm.lab import SwarmLab
from tests.swarm.supfleet import supervisor_image_id

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.swarm]

API_PORT = 18710  # the supervisor's API, host mode on n1
__all__ = ["supervisor_image_id"]  # the fixture


@pytest.fixture
def fleet(swarm_lab: SwarmLab) -> Iterator[supfleet.Fleet]:
    with supfleet.made_fleet(swarm_lab) as made:
        yield made


def grace_of(data: dict[str, Any]) -> float:
    """The pinger's safe_state.grace from the fleet file's data ("2s")."""
    strategy = data["strategies"][0]
    return float(str(strategy["safe_state"]["grace"]).removesuffix("s"))


# The lab's first start, the image loads and a failover on a loaded two-core host.
@pytest.mark.timeout(900)
def test_the_pinger_fails_over_when_its_primary_gateways_node_is_killed(
    swarm_lab: SwarmLab, supervisor_image_id: str, fleet: supfleet.Fleet
) -> None:
    lab = swarm_lab
    n1, n2 = lab.node("n1"), lab.node("n2")
    for node in lab.nodes:
        assert node.alive and lab.node_state(node) == "ready"
    data = supfleet.fleet_data(fleet.name, lab.sim_image_id)
    grace = grace_of(data)
    supfleet.prepare(fleet)
    sup = supfleet.start_supervisor(
        fleet, data, supervisor_image_id, node=n1, port=API_PORT, token=uuid.uuid4().hex
    )
    sup.wait(sup.ready, 300, "/readyz")
    where = sup.wait(lambda: supfleet.placed(fleet), 120, "the fleet's services running")
    assert where == supfleet.PLACED, where

    # The pinger trades on the primary: an order of its resting on gw-a, just placed.
    resting = sup.wait(
        lambda: supfleet.fresh_resting_order(fleet, "gw-a"), 120, "a pinger order resting on gw-a"
    )
    killed = time.time()
    lab.kill(n2)

    seen: dict[str, float] = {}

    def all_seen() -> bool:
        for row in fleet.broker_orders():
            if row["perm_id"] == resting["perm_id"] and "cancel" not in seen:
                notes = [h for h in row["history"] if "cancelled by gw-b" in (h["note"] or "")]
                if notes:
                    seen["cancel"] = supfleet.at(notes[0])
            if row["gateway"] == "gw-b" and supfleet.created(row) > killed:
                seen.setdefault("trade", supfleet.created(row))
        if "replaced" not in seen:
            tasks = lab.running_tasks(fleet.service("gw-a"))
            if any(t.get("NodeID") and t["NodeID"] != n2.node_id for t in tasks):
                seen["replaced"] = time.time()
        return len(seen) == 3

    sup.wait(all_seen, 150, "cancel through gw-b, trading on gw-b, gw-a's task elsewhere")
    moved = lab.wait_task_running(fleet.service("gw-a"), not_on=(n2,), timeout=10)
    figures = {name: round(when - killed, 2) for name, when in seen.items()}
    print(f"fleet_on_swarm seconds from the node kill: {figures}, gw-a now on {moved.key}")
    assert seen["cancel"] - killed <= grace + 5, figures
    twice = supfleet.refs_twice(fleet.broker_orders())
    assert not twice, f"orderRefs that reached the broker twice: {twice}"
    lab.restart(n2)
