"""Log follower figure: latency from the end of a 300 MB log line to the 2FA prompt after it.

    .venv/bin/python benchmarks/bench_follower.py                  # 300 MB, 3 trials, ~5 s
    .venv/bin/python benchmarks/bench_follower.py --mb 1000 --trials 1
    .venv/bin/python benchmarks/bench_follower.py --compare-mb 4 8 16   # and the old splitter
    .venv/bin/python benchmarks/bench_follower.py --engine ibfleet-sim:test   # real engine too

The stream is what ``docker logs --follow --timestamps`` hands the supervisor: one dated line of
``--mb`` megabytes in 16 KiB pieces (the size Docker's json-file driver stores a long line in),
made on the fly, then IBC's "Second Factor Authentication initiated" line in the piece that ends
it. It goes through the real path: :class:`gateway.docker_runtime.DockerRuntime`'s log pump
thread (with a stand-in engine, :class:`tests.longline.FakeLogEngine`), its asyncio queue and
timestamp filter, and :class:`gateway.authlog.AuthLogFollower`. A trial measures

* latency: from the moment the piece ending the long line is handed to the pump to the moment
  the follower returns the 2FA event (the issue's figure: a prompt must not wait);
* read-through: from opening the stream to that event (the whole long line's cost);
* CPU: the process's CPU time over the trial (pump thread and event loop together);
* peak RSS of the process at the end (bounded: it must not grow with ``--mb``).

``--engine IMAGE`` also runs one container of that image (it needs ``/opt/ibfleet/bin/python``,
as the simulator image has) that prints the same line and prompt through the real Docker engine,
and measures from the engine's own timestamp on the prompt line (when the daemon received it)
to the follower's event, plus the whole read-through and CPU. It writes the line into the
container's json log (about ``--mb`` MB of disk until the container is removed).

``--compare-mb`` also times the splitter the follower had before (join the pending bytes with
each chunk, split all of it again) on smaller lines, to show how its cost grew with the square
of the line's length (300 MB took it about 6 minutes at 100 % CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import resource
import statistics
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway import authlog  # noqa: E402
from gateway.docker_runtime import DockerRuntime, parse_docker_time_ns  # noqa: E402
from ibsim import ibclog  # noqa: E402
from tests.longline import (  # noqa: E402
    MB,
    STARTED,
    FakeLogEngine,
    long_line_then_prompt,
    printer_script,
)


@dataclass(frozen=True)
class Trial:
    latency_s: float
    read_through_s: float
    cpu_s: float


async def one_trial(size: int, chunk: int) -> Trial:
    ended: list[float] = []
    engine = FakeLogEngine(
        long_line_then_prompt(size, chunk=chunk, on_end=lambda: ended.append(time.perf_counter()))
    )
    runtime = DockerRuntime(engine, isolate=False)  # type: ignore[arg-type]
    follower = authlog.AuthLogFollower(started_at=STARTED)
    seen: float | None = None
    cpu = time.process_time()
    try:
        async for line in runtime.follow_logs("bench-follower"):
            events = follower.feed(line)
            if any(isinstance(e, authlog.TwoFactorInitiated) for e in events):
                seen = time.perf_counter()
    finally:
        runtime.close()
    spent = time.process_time() - cpu
    if seen is None or not ended or engine.opened_at is None:
        raise SystemExit("the follower never reported the 2FA prompt: the bound is broken")
    return Trial(latency_s=seen - ended[0], read_through_s=seen - engine.opened_at, cpu_s=spent)


async def engine_trial(image: str, mb: int) -> Trial:
    """One container prints the line and the prompt; latency counts from the engine's stamp."""
    import docker

    client = docker.from_env(timeout=120)
    prompt = ibclog.format_line(ibclog.SECOND_FACTOR_INITIATED, at=dt.datetime.now(dt.UTC))
    container = client.containers.create(
        image,
        entrypoint=["/opt/ibfleet/bin/python", "-c", printer_script(mb), prompt],
        name=f"ibfleet-bench-follower-{os.getpid()}",
        network_mode="none",
    )
    runtime = DockerRuntime(client, isolate=False)
    follower = authlog.AuthLogFollower(started_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    try:
        container.start()
        begun, cpu = time.time(), time.process_time()
        async for line in runtime.follow_logs(container.id):
            if any(isinstance(e, authlog.TwoFactorInitiated) for e in follower.feed(line)):
                seen = time.time()
                stamped = parse_docker_time_ns(line.partition(" ")[0])
                break
        else:
            raise SystemExit("the follower never reported the 2FA prompt: the bound is broken")
        spent = time.process_time() - cpu
    finally:
        runtime.close()
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)
        client.close()
    assert stamped is not None
    return Trial(latency_s=seen - stamped / 1e9, read_through_s=seen - begun, cpu_s=spent)


def old_splitter_seconds(chunks: Iterable[bytes]) -> tuple[float, float]:
    """Wall and CPU seconds of the follower's former splitter over ``chunks``."""
    wall, cpu = time.perf_counter(), time.process_time()
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            raw.decode("utf-8", errors="replace")
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=300, help="the long line's size in MB")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=16 * 1024, help="bytes per stream piece")
    parser.add_argument("--engine", metavar="IMAGE", help="also through the real engine")
    parser.add_argument(
        "--compare-mb", type=int, nargs="*", default=[], help="old splitter on these sizes too"
    )
    args = parser.parse_args()

    trials = [asyncio.run(one_trial(args.mb * MB, args.chunk)) for _ in range(args.trials)]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"log follower, one {args.mb} MB line in {args.chunk}-byte pieces, then a 2FA prompt")
    print(f"{'trial':>5} {'latency ms':>11} {'read-through s':>15} {'CPU s':>7}")
    for i, t in enumerate(trials, 1):
        print(f"{i:>5} {t.latency_s * 1e3:>11.2f} {t.read_through_s:>15.3f} {t.cpu_s:>7.3f}")
    latency = statistics.median(t.latency_s for t in trials) * 1e3
    cpu = statistics.median(t.cpu_s for t in trials)
    print(f"median latency {latency:.2f} ms, median CPU {cpu:.3f} s, peak RSS {peak_mb:.0f} MB")
    if args.engine:
        t = asyncio.run(engine_trial(args.engine, args.mb))
        print(
            f"real engine, one {args.mb} MB line: latency {t.latency_s * 1e3:.1f} ms after the "
            f"engine stamped the prompt, read-through {t.read_through_s:.2f} s "
            f"(container start to prompt), CPU {t.cpu_s:.2f} s"
        )
    for size in args.compare_mb:
        wall, spent = old_splitter_seconds(long_line_then_prompt(size * MB, chunk=args.chunk))
        print(f"old splitter, {size} MB line: {wall:.2f} s wall, {spent:.2f} s CPU")


if __name__ == "__main__":
    main()
