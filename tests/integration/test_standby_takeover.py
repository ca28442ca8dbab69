"""A standby supervisor takes over: two ``ibfleet run`` processes on one real PostgreSQL journal
and one fleet of simulator containers on the real Docker engine (the containers must outlive
the leader, so the in-process runtime, whose gateways die with their process, cannot stand in).

One leads and the pinger trades through it; the other answers as a standby and touches nothing.
SIGKILL the leader: the standby leads within 10 s, adopts the containers (same ids), pages
nobody again for the open 2FA incident, finds the pinger's live order, and sends no orderRef
twice. Then a frozen leader (SIGSTOP, a third process takes over, SIGCONT) writes no intent
once fenced and steps down to standby.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import httpx
import psycopg
import pytest

from gateway.spec import LABEL_FLEET
from tests.integration.smtp import WebhookSink
from tests.integration.standby_pair import EXE, broker_orders, make_pair, monotonic
from tests.waiting import wait_until

pytestmark = pytest.mark.docker

TWOFA = "approve the IB Key"


@pytest.fixture
def hook() -> Iterator[WebhookSink]:
    with WebhookSink() as sink:
        yield sink


def remove_fleet(client: docker.DockerClient, fleet: str) -> None:
    for filters in ({"label": f"{LABEL_FLEET}={fleet}"}, {"name": f"ibfleet-{fleet}-"}):
        for item in client.api.containers(all=True, filters=filters):
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(item["Id"], force=True, v=True)
    for net in client.api.networks(names=[f"ibfleet-{fleet}"]):
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_network(net["Id"])


def container_ids(client: docker.DockerClient, fleet: str) -> dict[str, str]:
    items = client.api.containers(filters={"label": f"{LABEL_FLEET}={fleet}"})
    return {item["Names"][0]: item["Id"] for item in items}


def assert_no_order_ref_twice(data: dict) -> None:
    refs = [o["order_ref"] for o in broker_orders(data)]
    assert refs and len(refs) == len(set(refs)), "an intent reached the broker twice"


def pages(hook: WebhookSink, text: str) -> int:
    return sum(1 for body in list(hook.bodies) if text in body.get("title", ""))


def test_standby_takes_over_a_killed_leader_and_fences_a_frozen_one(
    tmp_path: Path,
    sim_image: str,
    docker_client: docker.DockerClient,
    pg_cluster,
    pg_url: str,
    hook: WebhookSink,
) -> None:
    data, (one, two, three) = make_pair(
        tmp_path, image=sim_image, pg_url=pg_url, pg_password=pg_cluster.password, hook_url=hook.url
    )
    try:
        one.start()
        one.wait_role("leader", 60)
        two.start()
        two.wait_role("standby", 60)
        # The standby answers: alive, not ready, and it names the leader.
        health = two.health()
        assert health is not None and health["leader"]["holder"] == one.health()["holder"]
        ready = httpx.get(f"{two.url}/readyz", timeout=5)
        assert ready.status_code == 503 and "standby" in ready.json()["problems"]
        status = subprocess.run(
            [EXE, "status", "-c", str(two.config)],
            capture_output=True,
            text=True,
            env=two.environ,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        assert "this supervisor: standby" in status.stdout
        assert f"epoch {health['leader']['epoch']}" in status.stdout

        # The pinger trades through the leader; gw-b's 2FA prompt is paged once.
        wait_until(
            lambda: (one.pinger() or {}).get("orders_sent", 0) >= 3, 120, what="pinger trading"
        )
        wait_until(lambda: pages(hook, TWOFA) == 1, 120, what="the 2FA page")
        ids = container_ids(docker_client, data["fleet"])
        assert len(ids) == 3, ids  # the broker and two gateways
        # Nothing of the standby reached the broker, the engine or the alert routes.
        assert "reconcile" not in two.output() and "probe_" not in two.output()

        # SIGKILL the leader: the standby leads within 10 s.
        killed_at = monotonic()
        one.signal(signal.SIGKILL)
        two.wait_role("leader", 10.0 + 2.0)
        took = monotonic() - killed_at
        assert took <= 10.0, f"took {took:.1f}s"
        wait_until(
            lambda: (two.pinger() or {}).get("orders_sent", 0) >= 3,
            60,
            what="the pinger trading on the new leader",
        )
        assert container_ids(docker_client, data["fleet"]) == ids, "a container was recreated"
        assert_no_order_ref_twice(data)
        assert pages(hook, TWOFA) == 1, [b.get("title") for b in hook.bodies]

        # A frozen leader: SIGSTOP it, a third supervisor takes over, SIGCONT it.
        three.start()
        three.wait_role("standby", 60)
        with psycopg.connect(pg_url, password=pg_cluster.password) as conn:
            (frozen_epoch,) = conn.execute("SELECT epoch FROM leader_lease").fetchone()
        two.signal(signal.SIGSTOP)
        three.wait_role("leader", 15)
        two.signal(signal.SIGCONT)
        two.wait_role("standby", 30)
        wait_until(
            lambda: (three.pinger() or {}).get("orders_sent", 0) >= 3,
            90,
            what="the pinger trading on the third leader",
        )
        with psycopg.connect(pg_url, password=pg_cluster.password) as conn:
            (epoch,) = conn.execute("SELECT epoch FROM leader_lease").fetchone()
            last_stale = conn.execute(
                "SELECT max(created_at) FROM order_intents WHERE epoch = %s", (frozen_epoch,)
            ).fetchone()[0]
            first_new = conn.execute(
                "SELECT min(created_at) FROM order_intents WHERE epoch = %s", (epoch,)
            ).fetchone()[0]
        assert epoch > frozen_epoch
        # No intent of the frozen leader's epoch after the new leader's first.
        assert last_stale is None or first_new is None or last_stale < first_new
        assert "leader_fenced" in two.output() or "leader_stepping_down" in two.output()
        assert_no_order_ref_twice(data)
        assert container_ids(docker_client, data["fleet"]) == ids
    finally:
        codes = [p.stop() for p in (one, two, three)]
        remove_fleet(docker_client, data["fleet"])
        for p in (one, two, three):
            assert "Traceback" not in p.output(), p.output()[-6000:]
    assert codes[1] == 0 and codes[2] == 0, codes
