"""Leader loss -> standby acting: two ``ibfleet run`` on one PostgreSQL journal, SIGKILL the
leader, time until the standby leads, probes a gateway ready and the pinger trades again.

Usage: ``.venv/bin/python benchmarks/bench_takeover.py [--trials 10] [--lease 5]``. Needs the
Docker engine (simulator containers: they outlive the killed leader) and Debian's PostgreSQL
server binaries (a throwaway cluster, as the tests start). Prints per trial and the median and
p99 of each figure; the simulator image is built (or refreshed) as
``$IBFLEET_TEST_IMAGE_TAG`` (default ibfleet-sim:bench).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import docker
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ibsim import image as sim_image  # noqa: E402
from tests.integration.smtp import WebhookSink  # noqa: E402
from tests.integration.standby_pair import Supervisor, make_pair  # noqa: E402
from tests.integration.test_standby_takeover import remove_fleet  # noqa: E402
from tests.pgcluster import running_cluster  # noqa: E402
from tests.waiting import wait_until  # noqa: E402


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def gateway_ready(sup: Supervisor, name: str = "gw-a") -> bool:
    try:
        rows = sup.get("/api/v1/gateways")
    except Exception:
        return False
    return any(r["name"] == name and r["ready"] for r in rows)


def trading_since(sup: Supervisor, sent: int) -> bool:
    row = sup.pinger() or {}
    return row.get("state") == "RUNNING" and row.get("orders_sent", 0) > sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--lease", type=float, default=5.0, help="storage.lease in seconds")
    args = parser.parse_args()
    tag = os.environ.get("IBFLEET_TEST_IMAGE_TAG", "ibfleet-sim:bench")
    client = docker.from_env(timeout=120)
    sim_image.build_sim_image(docker_client=client, project_root=ROOT, tag=tag)
    figures: dict[str, list[float]] = {"leader": [], "probe_ready": [], "trading": []}
    with (
        running_cluster() as cluster,
        cluster.database() as url,
        WebhookSink() as hook,
        tempfile.TemporaryDirectory(prefix="ibfleet-bench-takeover-") as tmp,
    ):
        data, sups = make_pair(
            Path(tmp),
            image=tag,
            pg_url=url,
            pg_password=cluster.password,
            hook_url=hook.url,
            twofa=False,
        )
        for sup in sups:
            fleet = yaml.safe_load(sup.config.read_text())
            fleet["storage"]["lease"] = f"{args.lease}s"
            sup.config.write_text(yaml.safe_dump(fleet))
        leader, standby = sups[0], sups[1]
        try:
            leader.start()
            leader.wait_role("leader", 120)
            standby.start()
            standby.wait_role("standby", 120)
            for trial in range(1, args.trials + 1):
                wait_until(partial(trading_since, leader, 2), 120, what="the leader trading")
                killed = time.monotonic()
                leader.kill()
                standby.wait_role("leader", 60, step=0.02)
                led = time.monotonic() - killed
                wait_until(partial(gateway_ready, standby), 60, what="a probe", step=0.02)
                probed = time.monotonic() - killed
                # orders_sent counts from 0 in the new leader: its first order.
                wait_until(partial(trading_since, standby, 0), 60, what="trading", step=0.02)
                traded = time.monotonic() - killed
                figures["leader"].append(led)
                figures["probe_ready"].append(probed)
                figures["trading"].append(traded)
                print(
                    f"trial {trial:2d}: leader {led:5.2f}s  probe ready {probed:5.2f}s  "
                    f"trading {traded:5.2f}s",
                    flush=True,
                )
                # The killed host comes back as the standby of the next trial.
                leader.start()
                leader.wait_role("standby", 120)
                leader, standby = standby, leader
        finally:
            for sup in sups:
                with contextlib.suppress(Exception):
                    sup.stop()
            remove_fleet(client, data["fleet"])
    print(f"lease {args.lease:g}s, {args.trials} trials (seconds from SIGKILL of the leader):")
    for name, values in figures.items():
        if values:
            print(f"  {name:12s} median {statistics.median(values):5.2f}  p99 {p99(values):5.2f}")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
