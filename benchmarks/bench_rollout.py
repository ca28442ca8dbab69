"""How long a rolling image upgrade takes on simulator containers, and how it scales.

    IBFLEET_TEST_IMAGE_TAG=ibfleet-sim:test .venv/bin/python benchmarks/bench_rollout.py
    .venv/bin/python benchmarks/bench_rollout.py --gateways 2,4,6 --image ibfleet-sim:test

For each fleet size N: a simulator fleet of N paper gateways on one account (the broker plus N
gateway containers on the real Docker engine) is brought up by the in-process supervisor
(``supervisor.wiring.start_supervisor``, the test suite's real-day harness) until every gateway
is API_READY. The supervisor is then stopped, the fleet file's gateways are given a new image
tag (the same image under another name: a recreate that costs a full login, no build) and the
supervisor started again, as an operator upgrades. The clock runs from that start until the
rollout has replaced all N gateways, one at a time, and every one is API_READY again.

Printed per N: the whole upgrade (seconds), seconds per gateway, and the median and maximum of
one replacement as the rollout measured it (stop with IBC's logoff, create, start, login, first
probe answer, removal of the previous container). The simulator logs in within a second or
two; a real Gateway's login (and on live an IB Key prompt per replacement) adds its own time
to every replacement, so the real figure is N x (login time + a few seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import docker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.realday import (  # noqa: E402
    MIDDAY,
    DayFleet,
    GatewayPlan,
    MovableClock,
    image_tag,
    set_image,
)
from tests.integration.smtp import WebhookSink  # noqa: E402
from tests.waiting import until  # noqa: E402


async def one_size(client: docker.DockerClient, image: str, n: int) -> dict[str, Any]:
    names = [f"gw-{i + 1}" for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp, WebhookSink() as hook:
        fleet = DayFleet(
            docker_client=client,
            image=image,
            workdir=Path(tmp),
            hook=hook,
            gateways=[GatewayPlan(name) for name in names],
            strategy=None,
        )
        try:
            clock = MovableClock(MIDDAY)
            await fleet.start(clock)
            await fleet.until_ready(timeout=60.0 + 30.0 * n)
            with image_tag(client, image, f"bench-{fleet.fleet}", broken=False) as upgraded:
                await fleet.stop()
                fleet.reconfigure(set_image(upgraded, *names))
                began = time.monotonic()
                await fleet.start(clock)

                async def done() -> dict[str, Any] | None:
                    body: dict[str, Any] = await fleet.api("/api/v1/rollout")
                    if body["blocked"] is not None:
                        raise AssertionError(f"the rollout stopped: {body['blocked']}")
                    return body if len(body["replacements"]) >= n else None

                body = await until(done, 60.0 + 60.0 * n, what="every gateway replaced", step=0.2)
                await fleet.until_ready(timeout=60.0)
                total = time.monotonic() - began
        finally:
            await fleet.stop()
            await asyncio.to_thread(fleet.cleanup)
    seconds = [float(r["seconds"]) for r in body["replacements"]]
    return {
        "gateways": n,
        "total": total,
        "per_gateway": total / n,
        "median": statistics.median(seconds),
        "max": max(seconds),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", default="2,4,6", help="Fleet sizes, comma-separated.")
    parser.add_argument(
        "--image",
        default=os.environ.get("IBFLEET_TEST_IMAGE_TAG", "ibfleet-sim:test"),
        help="The simulator image (built by the integration tests or `ibfleet sim image`).",
    )
    args = parser.parse_args()
    client = docker.from_env(timeout=120)
    client.images.get(args.image)  # fails early, naming the image, when it is not built
    rows = [await one_size(client, args.image, int(n)) for n in args.gateways.split(",")]
    print(f"rolling image upgrade on the simulator ({args.image}), one gateway at a time")
    print(f"{'gateways':>8} {'total s':>8} {'s/gateway':>10} {'replace p50':>12} {'max':>6}")
    for row in rows:
        print(
            f"{row['gateways']:>8} {row['total']:>8.1f} {row['per_gateway']:>10.1f} "
            f"{row['median']:>12.1f} {row['max']:>6.1f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
