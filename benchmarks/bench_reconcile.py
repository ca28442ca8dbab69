"""Reconcile cost for 100 gateways (fake and in-process runtimes); docker kill -> API back.

    .venv/bin/python benchmarks/bench_reconcile.py [--gateways 100] [--iterations 200]
    .venv/bin/python benchmarks/bench_reconcile.py --in-process
    .venv/bin/python benchmarks/bench_reconcile.py --docker --image ibfleet-sim:test --kills 10

Part 1 reports the CPU time of one planner call and of one orchestrator pass (observe -> plan ->
act) in steady state and with 10 % of the fleet killed, plus the tracemalloc peak and the RSS,
on the in-memory fake runtime. Part 2 (``--in-process``) brings the same fleet up on the
InProcessRuntime (real simulated gateways logging in to an in-process broker) and reports the
bring-up time, the CPU of a steady orchestrator pass and the memory. Part 3 (``--docker``) runs a
simulator fleet (broker + one gateway) on the engine, kills the gateway from outside and times
until the real ib_async client's ``connectAsync`` succeeds again (median of ``--kills``); with
``--tcp`` it runs the stand-in listener and waits for a TCP accept only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import socket
import statistics
import sys
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The hand-written fake and the stand-in entrypoint live with the tests.
sys.path.insert(0, str(ROOT / "tests" / "unit"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from fake_runtime import FakeRuntime  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from gateway.config import GatewayConfig  # noqa: E402
from gateway.spec import ContainerSpec, GatewaySecrets  # noqa: E402
from gateway.spec_render import render_spec  # noqa: E402
from ibsim.runtime import InProcessRuntime  # noqa: E402
from supervisor.orchestrator import Orchestrator  # noqa: E402
from supervisor.reconcile import plan  # noqa: E402


def specs(
    n: int,
    *,
    fleet: str,
    image: str,
    entrypoint: tuple[str, ...] | None = None,
    ports: list[int] | None = None,
) -> list[ContainerSpec]:
    out = []
    for i in range(n):
        gw = GatewayConfig.model_validate(
            {
                "name": f"gw-{i:03d}",
                "mode": "paper",
                "account": "DU1234567",
                "username": {"env": "U"},
                "password": {"env": "P"},
                "api_port": ports[i] if ports else 20000 + i,
                "memory_limit": "256m",
            }
        )
        out.append(
            render_spec(
                gw,
                fleet=fleet,
                network=f"ibfleet-{fleet}",
                image=image,
                timezone="UTC",
                secrets=GatewaySecrets(username=SecretStr(f"u{i}"), password=SecretStr("pw")),
                fingerprint_key=b"bench-key" * 4,
                entrypoint=entrypoint,
            )
        )
    return out


def cpu_per_call(fn, iterations: int) -> float:  # type: ignore[no-untyped-def]
    start = time.process_time()
    for _ in range(iterations):
        fn()
    return (time.process_time() - start) / iterations


async def bench_fake(n: int, iterations: int) -> None:
    fleet = "bench"
    t0 = time.process_time()
    desired = specs(n, fleet=fleet, image="ibfleet-sim:bench")
    render_ms = (time.process_time() - t0) * 1000
    runtime = FakeRuntime()
    orch = Orchestrator(runtime=runtime, fleet=fleet, desired=desired, publish=lambda e: None)
    await orch.reconcile_once()
    observed = await runtime.list(fleet=fleet)

    plan_s = cpu_per_call(lambda: plan(desired, observed, fleet=fleet), iterations)

    tracemalloc.start()
    start = time.process_time()
    for _ in range(iterations):
        await orch.reconcile_once()
    steady_s = (time.process_time() - start) / iterations
    _, steady_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()

    churn_total = 0.0
    for _ in range(iterations):
        for i in range(0, n, 10):
            runtime.kill(desired[i].name)
        for i in range(0, n, 10):
            orch.operator_start(desired[i].gateway)  # lift backoff so every pass restarts
        start = time.process_time()
        await orch.reconcile_once()
        churn_total += time.process_time() - start
    _, churn_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"gateways={n} iterations={iterations}")
    print(f"render_100_specs_cpu_ms={render_ms:.1f}")
    print(f"plan_cpu_ms_per_call={plan_s * 1000:.3f}")
    print(f"orchestrator_pass_steady_cpu_ms={steady_s * 1000:.3f}")
    print(f"orchestrator_pass_10pct_killed_cpu_ms={churn_total / iterations * 1000:.3f}")
    print(f"tracemalloc_peak_steady_kib={steady_peak / 1024:.0f}")
    print(f"tracemalloc_peak_churn_kib={churn_peak / 1024:.0f}")
    print(f"max_rss_mib={rss_mb:.0f}")


async def bench_in_process(n: int, iterations: int) -> None:
    fleet = "benchip"
    desired = specs(n, fleet=fleet, image="ibfleet-sim:inprocess", ports=free_ports(n))
    tracemalloc.start()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    async with InProcessRuntime() as runtime:
        orch = Orchestrator(runtime=runtime, fleet=fleet, desired=desired, publish=lambda e: None)
        wall = time.perf_counter()
        cpu = time.process_time()
        await orch.reconcile_once()
        addresses = [await runtime.command_address(c.id) for c in await runtime.list(fleet=fleet)]
        while not all(addresses):
            await asyncio.sleep(0.01)
            addresses = [
                await runtime.command_address(c.id) for c in await runtime.list(fleet=fleet)
            ]
        up_wall = time.perf_counter() - wall
        up_cpu = time.process_time() - cpu
        _, up_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        start = time.process_time()
        for _ in range(iterations):
            await orch.reconcile_once()
        steady_s = (time.process_time() - start) / iterations
        _, steady_peak = tracemalloc.get_traced_memory()
        current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"in_process_gateways={n} iterations={iterations}")
    print(f"in_process_bring_up_all_logged_in_wall_s={up_wall:.3f} cpu_s={up_cpu:.3f}")
    print(f"in_process_orchestrator_pass_steady_cpu_ms={steady_s * 1000:.3f}")
    print(f"in_process_tracemalloc_after_bring_up_kib={current / 1024:.0f}")
    print(f"in_process_tracemalloc_peak_bring_up_kib={up_peak / 1024:.0f}")
    print(f"in_process_tracemalloc_peak_steady_kib={steady_peak / 1024:.0f}")
    print(f"in_process_max_rss_mib={rss_mb:.0f} (before: {rss_before:.0f})")


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together so none repeats)."""
    sockets = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def answers(port: int, *, use_ib_async: bool) -> bool:
    if use_ib_async:
        from ib_async import IB

        ib = IB()
        try:
            await ib.connectAsync("127.0.0.1", port, clientId=77, timeout=2)
            return ib.isConnected()
        except Exception:
            return False
        finally:
            ib.disconnect()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def bench_docker(image: str, kills: int, *, use_ib_async: bool) -> None:
    from datetime import timedelta

    import docker
    from test_docker_runtime import STANDIN_ENTRYPOINT, remove_fleet, sim_fleet

    from gateway.docker_runtime import DockerRuntime
    from supervisor.budget import BackoffPolicy
    from supervisor.orchestrator import RestartPolicy

    client = docker.from_env(timeout=120)
    fleet = f"b{uuid.uuid4().hex[:8]}"
    port = free_port()
    if use_ib_async:
        desired = sim_fleet(fleet, image=image, names=("gw",), ports=[port])
        spec = desired[-1]
    else:
        (spec,) = specs(1, fleet=fleet, image=image, entrypoint=STANDIN_ENTRYPOINT, ports=[port])
        desired = [spec]
    runtime = DockerRuntime(client)
    policy = RestartPolicy(
        backoff=BackoffPolicy(base=timedelta(milliseconds=1), cap=timedelta(milliseconds=2)),
        budget=kills + 5,
    )
    orch = Orchestrator(
        runtime=runtime,
        fleet=fleet,
        desired=desired,
        publish=lambda e: None,
        policy=policy,
        interval=5.0,
    )
    task = asyncio.create_task(orch.run())
    samples: list[float] = []
    try:
        deadline = time.monotonic() + 90
        while not await answers(port, use_ib_async=use_ib_async):
            if time.monotonic() > deadline:
                raise SystemExit("the gateway never answered")
            await asyncio.sleep(0.05)
        for _ in range(kills):
            attrs = client.api.inspect_container(spec.name)
            container_id, started_at = attrs["Id"], attrs["State"]["StartedAt"]
            started = time.monotonic()
            client.api.kill(container_id)
            # Wait for the kill to take effect (the old process must not answer the probe).
            while client.api.inspect_container(container_id)["State"]["StartedAt"] == started_at:
                if not client.api.inspect_container(container_id)["State"]["Running"]:
                    break
                await asyncio.sleep(0.01)
            while not await answers(port, use_ib_async=use_ib_async):
                if time.monotonic() - started > 90:
                    raise SystemExit("the gateway did not come back within 90 s")
                await asyncio.sleep(0.02)
            samples.append(time.monotonic() - started)
    finally:
        await orch.close()
        await asyncio.wait_for(task, 30)
        runtime.close()
        remove_fleet(client, fleet)
    what = "ib_async_connect" if use_ib_async else "tcp_accept"
    print(
        f"docker_kill_to_{what}_s median={statistics.median(samples):.3f} "
        f"min={min(samples):.3f} max={max(samples):.3f} n={len(samples)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--docker", action="store_true")
    parser.add_argument("--image", default="ibfleet-sim:test")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--tcp", action="store_true", help="stand-in listener, TCP accept only")
    parser.add_argument("--in-process", action="store_true")
    parser.add_argument("--skip-fake", action="store_true")
    args = parser.parse_args()
    # ib_async logs every refused connect while the gateway is down; the figures are the output.
    logging.getLogger("ib_async").setLevel(logging.CRITICAL)
    print(f"# {datetime.now(UTC).isoformat(timespec='seconds')} python={sys.version.split()[0]}")
    if not args.skip_fake:
        asyncio.run(bench_fake(args.gateways, args.iterations))
    if args.in_process:
        asyncio.run(bench_in_process(args.gateways, min(args.iterations, 50)))
    if args.docker:
        asyncio.run(bench_docker(args.image, args.kills, use_ib_async=not args.tcp))


if __name__ == "__main__":
    main()
