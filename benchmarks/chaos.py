"""The long chaos run: a seeded schedule of at least a thousand overlapping faults against
simulator containers and the ``ibfleet run`` process, judged over the whole history.

    IBFLEET_TEST_IMAGE_TAG=ibfleet-sim:mine .venv/bin/python benchmarks/chaos.py \\
        [--events 1000] [--seed N] [--mean-gap 4] [--json out.json] [--keep DIR]

Prints the seed first (``--seed`` or ``IBFLEET_CHAOS_SEED`` replays one), then the figures:
events, faults by kind, violations, orders placed, duplicates, time; then each violation with
the history around it. Exit status 1 when any invariant was broken. The CI-sized run of the
same runner is ``pytest -m chaos``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
from pathlib import Path

# The runner lives in the tests package at the repository root; a script run by path does
# not have that root on its path.
_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))

import docker  # noqa: E402

from ibsim import image as sim_image  # noqa: E402
from tests.chaos.runner import run_chaos  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000, help="steps in the schedule")
    parser.add_argument("--seed", type=int, default=None, help="replay this seed")
    parser.add_argument("--mean-gap", type=float, default=4.0, help="mean seconds between steps")
    parser.add_argument("--heal-timeout", type=float, default=600.0, help="seconds to heal")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the logs and the whole history here"
    )
    args = parser.parse_args()
    chosen = args.seed if args.seed is not None else os.environ.get("IBFLEET_CHAOS_SEED")
    seed = int(chosen) if chosen is not None else random.SystemRandom().randrange(1, 2**31)
    tag = os.environ.get("IBFLEET_TEST_IMAGE_TAG", "ibfleet-sim:test")
    client = docker.from_env(timeout=120)
    try:
        info = sim_image.build_sim_image(docker_client=client, project_root=_ROOT, tag=tag)
        with tempfile.TemporaryDirectory(prefix="ibfleet-chaos-") as tmp:
            result = asyncio.run(
                run_chaos(
                    seed=seed,
                    events=args.events,
                    docker_client=client,
                    image=info.tag,
                    workdir=Path(tmp),
                    mean_gap=args.mean_gap,
                    heal_timeout=args.heal_timeout,
                    say=lambda line: print(line, flush=True),
                    keep=args.keep,
                )
            )
    finally:
        client.close()
    if args.json is not None:
        args.json.write_text(json.dumps(result.figures(), indent=2) + "\n")
    return 1 if result.violations else 0


if __name__ == "__main__":
    sys.exit(main())
