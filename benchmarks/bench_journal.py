"""Journal write cost: order intent latency (FULL vs NORMAL) and event insert throughput.

    .venv/bin/python benchmarks/bench_journal.py [--intents 2000] [--events 20000] [--dir PATH]
        [--url postgresql://USER@HOST:PORT/DB (password: PGPASSWORD) | --pg]

With ``--url`` the same runs go to a PostgreSQL journal as well (one fresh schema: the database
should be empty); ``--pg`` starts a throwaway PostgreSQL 15 cluster on loopback TCP for it
(tests/pgcluster.py, Debian's binaries, fsync on) and stops it after. A PostgreSQL intent write
also checks the leader lease in its transaction (one more round trip); FULL there is
``synchronous_commit = on``.

An intent write is ``record_intent`` (one transaction: the intent row and its first history row),
timed call by call; FULL fsyncs the WAL before returning (survives power loss), NORMAL does not
(survives a process crash). Events are appended one transaction each, as the supervisor does,
with the events' default NORMAL and with FULL for comparison. Use ``--dir`` to measure the disk
the journal will live on (the default is a temporary directory, often tmpfs or an SSD).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from supervisor.journal import Durability, SqliteJournal  # noqa: E402
from supervisor.journal.postgres import PostgresJournal  # noqa: E402

CONTRACT = {"symbol": "AAPL", "secType": "STK", "exchange": "SMART", "currency": "USD"}
ORDER = {"action": "BUY", "totalQuantity": 100, "orderType": "LMT", "lmtPrice": 170.25}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _open(target: Path | str, **kw: Any) -> Any:
    if isinstance(target, Path):
        return SqliteJournal(target, **kw)
    journal = PostgresJournal(target, password=os.environ.get("PGPASSWORD"), **kw)
    journal.try_lead()
    return journal


def _target(directory: Path, url: str | None, name: str) -> Path | str:
    return directory / f"{name}.sqlite" if url is None else url


def bench_intents(target: Path | str, durability: Durability, count: int) -> dict[str, float]:
    now = datetime.now(UTC)
    samples: list[float] = []
    with _open(target, intent_durability=durability) as journal:
        for i in range(count):
            start = time.perf_counter()
            journal.record_intent(
                key=f"bench-{durability.value}-{i:06d}-{os.getpid()}",
                strategy="bench",
                gateway="paper-a",
                account="DU123456",
                client_id=7,
                contract=CONTRACT,
                order=ORDER,
                now=now,
            )
            samples.append(time.perf_counter() - start)
    return {
        "median_ms": statistics.median(samples) * 1e3,
        "p99_ms": _percentile(samples, 0.99) * 1e3,
        "max_ms": max(samples) * 1e3,
    }


def bench_events(target: Path | str, durability: Durability, count: int) -> float:
    now = datetime.now(UTC)
    with _open(target, event_durability=durability) as journal:
        start = time.perf_counter()
        for i in range(count):
            journal.append_event(
                at=now,
                kind="heartbeat",
                gateway="paper-a",
                severity="info",
                message="heartbeat ok",
                fields={"rtt_ms": 2.5, "n": i},
            )
        elapsed = time.perf_counter() - start
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intents", type=int, default=2000)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--dir", type=Path, default=None, help="where to put the journal files")
    parser.add_argument("--url", default=None, help="also measure this PostgreSQL journal")
    parser.add_argument("--pg", action="store_true", help="start a throwaway cluster for --url")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.url
        if args.pg:
            sys.path.insert(0, str(ROOT / "tests"))
            from pgcluster import running_cluster

            cluster = stack.enter_context(running_cluster(fsync=True))
            cluster.psql("CREATE DATABASE bench")
            url = cluster.url("bench")
            os.environ["PGPASSWORD"] = cluster.password
        tmp = stack.enter_context(tempfile.TemporaryDirectory(dir=args.dir))
        directory = Path(tmp)
        print(f"journal directory: {directory}")
        for engine, where in (("sqlite", None), ("postgresql", url)):
            if engine == "postgresql" and where is None:
                continue
            for durability in (Durability.FULL, Durability.NORMAL):
                target = _target(directory, where, f"intents-{durability.value.lower()}")
                r = bench_intents(target, durability, args.intents)
                print(
                    f"{engine:<10} intent write durability={durability.value:<6} "
                    f"n={args.intents}: median {r['median_ms']:.3f} ms  "
                    f"p99 {r['p99_ms']:.3f} ms  max {r['max_ms']:.3f} ms"
                )
            for durability in (Durability.NORMAL, Durability.FULL):
                target = _target(directory, where, f"events-{durability.value.lower()}")
                rate = bench_events(target, durability, args.events)
                print(
                    f"{engine:<10} event insert durability={durability.value:<6} "
                    f"n={args.events}: {rate:,.0f} events/s ({1e6 / rate:.1f} us each)"
                )


if __name__ == "__main__":
    main()
