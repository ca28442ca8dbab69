"""Node loss on a three-node Swarm: kill the node that runs the primary simulator gateway, time
until the failover gateway (on another node) answers and fills an order, until Swarm declares
the node down, until the primary's replacement task runs elsewhere, and until it answers the
API there.

Usage: ``.venv/bin/python benchmarks/bench_node_loss.py [--trials 10]``. Needs the Docker
engine; starts the Swarm lab of tests/swarm (three Docker-in-Docker managers, 1 s dispatcher
heartbeat) with the simulator image built (or refreshed) as ``$IBFLEET_TEST_IMAGE_TAG``
(default ibfleet-sim:bench) and removes it at the end. Between trials the killed node is
started again and the primary is moved back onto it (``docker service update --force``: the
scheduler puts the new task on the less loaded node), so every trial kills a node that runs
the primary and not the failover. Prints each trial and the median and p99 of each figure.

These are the lab's figures (Swarm and the simulator); the strategy's failover through
ibfleet's supervisor on Swarm adds its own safe-state grace on top.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ibsim import image as sim_image  # noqa: E402
from tests.swarm.lab import LabNode, SwarmLab, sweep_leftovers  # noqa: E402
from tests.swarm.simfleet import SwarmSimFleet, buy, connect  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

FIGURES = ("survivor_filled", "node_down", "task_running", "replacement_answers")
API_TIMEOUT_S = 120.0


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def watch_swarm(lab: SwarmLab, fleet: SwarmSimFleet, dead: LabNode, killed: float) -> dict:
    """Poll the manager until the node is down and the primary runs elsewhere; when each was."""
    seen: dict[str, float] = {}
    service = fleet.service("primary")

    def both() -> bool:
        if "node_down" not in seen:
            try:
                if lab.node_state(dead) == "down":
                    seen["node_down"] = time.monotonic() - killed
            except docker.errors.APIError:
                pass  # the manager may briefly lack a leader view; poll again
        if "task_running" not in seen:
            try:
                tasks = lab.running_tasks(service)
            except docker.errors.APIError:
                tasks = []
            if any(t.get("NodeID") not in (None, dead.node_id) for t in tasks):
                seen["task_running"] = time.monotonic() - killed
        return len(seen) == 2

    wait_until(both, timeout=60, what="the node down and the primary running elsewhere", step=0.1)
    return seen


async def trial(lab: SwarmLab, fleet: SwarmSimFleet, number: int) -> dict[str, float]:
    primary, failover = fleet.gateway_node("primary"), fleet.gateway_node("failover")
    if primary is failover:
        raise RuntimeError(f"trial {number}: both gateways run on {primary.name}")
    # Both gateways answer before the kill, so each figure starts from a working pair.
    for client_id, role in ((20, "primary"), (21, "failover")):
        (
            await connect(fleet.endpoint(role), client_id=client_id, timeout=API_TIMEOUT_S)
        ).disconnect()
    result: dict[str, float] = {}
    watched: dict[str, float] = {}
    killed = lab.kill(primary)
    watcher = threading.Thread(
        target=lambda: watched.update(watch_swarm(lab, fleet, primary, killed)), daemon=True
    )
    watcher.start()
    survivor = await connect(
        (failover.ip, fleet.api_ports["failover"]), client_id=30 + number, timeout=API_TIMEOUT_S
    )
    try:
        await buy(survivor, f"bench-{number}-{uuid.uuid4().hex[:6]}")
        result["survivor_filled"] = time.monotonic() - killed
    finally:
        survivor.disconnect()
    await asyncio.to_thread(watcher.join)
    if len(watched) != 2:
        raise RuntimeError(f"trial {number}: the swarm watcher saw only {sorted(watched)}")
    result.update(watched)
    moved = await asyncio.to_thread(fleet.gateway_node, "primary", not_on=(primary,))
    again = await connect(
        (moved.ip, fleet.api_ports["primary"]), client_id=60 + number, timeout=API_TIMEOUT_S
    )
    result["replacement_answers"] = time.monotonic() - killed
    again.disconnect()
    await asyncio.to_thread(restore, lab, fleet, primary, failover)
    return result


def restore(lab: SwarmLab, fleet: SwarmSimFleet, node: LabNode, failover: LabNode) -> None:
    """Start the killed node again and move the primary back onto it, away from the failover."""
    lab.restart(node)
    service = lab.manager.services.get(fleet.service("primary"))
    for _ in range(3):
        service.reload()
        service.force_update()
        try:
            lab.wait_task_running(fleet.service("primary"), not_on=(failover,), timeout=60)
            return
        except AssertionError:
            continue  # the scheduler chose the failover's node again: force once more
    raise RuntimeError(f"the primary did not move back onto {node.name}")


async def run(lab: SwarmLab, fleet: SwarmSimFleet, trials: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {name: [] for name in FIGURES}
    for number in range(1, trials + 1):
        result = await trial(lab, fleet, number)
        for name in FIGURES:
            figures[name].append(result[name])
        shown = "  ".join(f"{name}={result[name]:.2f}s" for name in FIGURES)
        print(f"trial {number:2d}: {shown}", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    tag = os.environ.get("IBFLEET_TEST_IMAGE_TAG", "ibfleet-sim:bench")
    host = docker.from_env(timeout=300)
    sim_image.build_sim_image(docker_client=host, project_root=ROOT, tag=tag)
    sweep_leftovers(host)
    lab = SwarmLab(host)
    fleet: SwarmSimFleet | None = None
    started = time.monotonic()
    try:
        lab.start()
        lab.sim_image, lab.sim_image_id = tag, lab.load_image(tag)
        fleet = SwarmSimFleet(lab).start()
        print(f"lab and fleet up in {time.monotonic() - started:.1f} s", flush=True)
        figures = asyncio.run(run(lab, fleet, args.trials))
    finally:
        if fleet is not None:
            fleet.close()
        lab.close()
    print(f"\n{args.trials} trials (seconds from the node's SIGKILL):")
    for name in FIGURES:
        values = figures[name]
        print(f"  {name:20s} median={statistics.median(values):6.2f}  p99={p99(values):6.2f}")


if __name__ == "__main__":
    main()
