"""A standby supervisor on Swarm: two ``ibfleet run`` services from the supervisor image, on n1
and on n3 (two managers), sharing one PostgreSQL journal; the pinger trades on gw-a. SIGKILL the
leader's task: the standby leads within 10 s, adopts the gateways' services (same tasks), the
pinger trades again, and the broker saw no orderRef twice.

The journal is a PostgreSQL cluster of Debian's binaries on this host (tests/pgcluster.py),
listening also on the lab bridge's gateway address, which the nodes' tasks reach through their
node (the simplest that works: no PostgreSQL image to load into the nodes).
"""

from __future__ import annotations

import contextlib
import ipaddress
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.pgcluster import Cluster, running_cluster
from tests.swarm import supfleet
from tests.swarm.lab import SwarmLab
from tests.swarm.supfleet import supervisor_image_id

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.swarm]
__all__ = ["supervisor_image_id"]  # the fixture

LEADER_PORT, STANDBY_PORT = 18711, 18712
TAKEOVER_S = 10.0


@pytest.fixture
def lab_pg(swarm_lab: SwarmLab) -> Iterator[tuple[Cluster, str]]:
    """A cluster the lab's tasks reach; (cluster, a fresh database's URL from the lab's side)."""
    subnet = ipaddress.ip_network(swarm_lab.subnet)
    gateway = str(next(subnet.hosts()))  # the host's address on the lab bridge
    with (
        running_cluster(also_listen=(gateway,), subnets=(str(subnet),)) as cluster,
        cluster.database() as url,
    ):
        yield cluster, url.replace("127.0.0.1", gateway)


@pytest.fixture
def fleet(swarm_lab: SwarmLab) -> Iterator[supfleet.Fleet]:
    with supfleet.made_fleet(swarm_lab) as made:
        yield made


@pytest.mark.timeout(900)
def test_the_standby_service_leads_within_10s_when_the_leaders_task_is_killed(
    swarm_lab: SwarmLab,
    supervisor_image_id: str,
    fleet: supfleet.Fleet,
    lab_pg: tuple[Cluster, str],
) -> None:
    lab = swarm_lab
    cluster, url = lab_pg
    n1, n3 = lab.node("n1"), lab.node("n3")
    storage: dict[str, Any] = {
        "path": "/var/lib/ibfleet/journal.sqlite",
        "url": url,
        "password": {"file": f"{supfleet.SECRETS}/pg-password"},
    }
    data = supfleet.fleet_data(fleet.name, lab.sim_image_id, storage=storage)
    supfleet.prepare(fleet)
    token = uuid.uuid4().hex
    extra = {"pg-password": cluster.password}
    one = supfleet.start_supervisor(
        fleet,
        data,
        supervisor_image_id,
        node=n1,
        port=LEADER_PORT,
        token=token,
        role="supa",
        extra_secrets=extra,
    )
    one.wait(lambda: one.role() == "leader", 300, "leading")
    one.wait(one.ready, 300, "/readyz")
    two = supfleet.start_supervisor(
        fleet,
        data,
        supervisor_image_id,
        node=n3,
        port=STANDBY_PORT,
        token=token,
        role="supb",
        extra_secrets=extra,
    )
    two.wait(lambda: two.role() == "standby", 300, "waiting as the standby")
    where = one.wait(lambda: supfleet.placed(fleet), 120, "the fleet's services running")
    assert where == supfleet.PLACED, where
    tasks_before = {gw: _task_ids(fleet, gw) for gw in supfleet.PLACED}

    one.wait(
        lambda: supfleet.fresh_resting_order(fleet, "gw-a"), 120, "a pinger order resting on gw-a"
    )
    container = one.task_container()
    killed = time.time()
    container.kill()  # SIGKILL: no shutdown, no lease handed on
    two.wait(lambda: two.role() == "leader", 30, "leading after the leader's task was killed")
    led = time.time()

    def trading_again() -> float | None:
        for row in fleet.broker_orders():
            if row["gateway"] == "gw-a" and supfleet.created(row) > led:
                return supfleet.created(row)
        return None

    traded = two.wait(trading_again, 90, "the pinger trading again under the new leader")
    figures = {
        "standby_leads_s": round(led - killed, 2),
        "trading_again_s": round(traded - killed, 2),
    }
    print(f"standby_on_swarm seconds from the leader's kill: {figures}")
    assert led - killed <= TAKEOVER_S, figures
    # Adopted, not recreated: the same tasks run.
    assert {gw: _task_ids(fleet, gw) for gw in supfleet.PLACED} == tasks_before
    twice = supfleet.refs_twice(fleet.broker_orders())
    assert not twice, f"orderRefs that reached the broker twice: {twice}"


def _task_ids(made: supfleet.Fleet, gateway: str) -> set[str]:
    with contextlib.suppress(Exception):
        return {t["ID"] for t in made.lab.running_tasks(made.service(gateway))}
    return set()
