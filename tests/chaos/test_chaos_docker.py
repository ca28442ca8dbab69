"""The CI-sized chaos run: a fixed seed and a random one, each a short seeded schedule of
overlapping faults against simulator containers and the ``ibfleet run`` process, judged by
:mod:`tests.chaos.invariants` over the whole history.

Each run prints its seed; ``IBFLEET_CHAOS_SEED=N`` replays seed N in place of the random one,
``IBFLEET_CHAOS_EVENTS`` changes the number of events per run, ``IBFLEET_CHAOS_KEEP=DIR``
keeps each run's logs and whole history under DIR/<seed>. The long run is
``benchmarks/chaos.py``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import docker
import pytest

from tests.chaos.runner import run_chaos

pytestmark = [pytest.mark.docker, pytest.mark.chaos, pytest.mark.timeout(600)]

FIXED_SEED = 20261201
EVENTS = int(os.environ.get("IBFLEET_CHAOS_EVENTS", "25"))


def _random_seed() -> int:
    chosen = os.environ.get("IBFLEET_CHAOS_SEED")
    return int(chosen) if chosen else random.SystemRandom().randrange(1, 2**31)


@pytest.mark.parametrize("seed", [FIXED_SEED, _random_seed()], ids=["fixed", "random"])
async def test_a_seeded_chaos_schedule_keeps_every_invariant(
    seed: int, docker_client: docker.DockerClient, sim_image: str, tmp_path: Path
) -> None:
    keep = os.environ.get("IBFLEET_CHAOS_KEEP")
    result = await run_chaos(
        seed=seed,
        events=EVENTS,
        docker_client=docker_client,
        image=sim_image,
        workdir=tmp_path,
        keep=Path(keep) / str(seed) if keep else None,
    )
    assert not result.violations, result.text()
