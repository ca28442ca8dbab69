"""Journal write cost: order intent latency (FULL vs NORMAL) and event insert throughput.

    .venv/bin/python benchmarks/bench_journal.py [--intents 2000] [--events 20000] [--dir PATH]

An intent write is ``record_intent`` (one transaction: the intent row and its first history row),
timed call by call; FULL fsyncs the WAL before returning (survives power loss), NORMAL does not
(survives a process crash). Events are appended one transaction each, as the supervisor does,
with the events' default NORMAL and with FULL for comparison. Use ``--dir`` to measure the disk
the journal will live on (the default is a temporary directory, often tmpfs or an SSD).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from supervisor.journal import Durability, SqliteJournal  # noqa: E402

CONTRACT = {"symbol": "AAPL", "secType": "STK", "exchange": "SMART", "currency": "USD"}
ORDER = {"action": "BUY", "totalQuantity": 100, "orderType": "LMT", "lmtPrice": 170.25}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def bench_intents(directory: Path, durability: Durability, count: int) -> dict[str, float]:
    path = directory / f"intents-{durability.value.lower()}.sqlite"
    now = datetime.now(UTC)
    samples: list[float] = []
    with SqliteJournal(path, intent_durability=durability) as journal:
        for i in range(count):
            start = time.perf_counter()
            journal.record_intent(
                key=f"bench-{durability.value}-{i:06d}",
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


def bench_events(directory: Path, durability: Durability, count: int) -> float:
    path = directory / f"events-{durability.value.lower()}.sqlite"
    now = datetime.now(UTC)
    with SqliteJournal(path, event_durability=durability) as journal:
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        print(f"journal directory: {directory}")
        for durability in (Durability.FULL, Durability.NORMAL):
            r = bench_intents(directory, durability, args.intents)
            print(
                f"intent write synchronous={durability.value:<6} n={args.intents}: "
                f"median {r['median_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  "
                f"max {r['max_ms']:.3f} ms"
            )
        for durability in (Durability.NORMAL, Durability.FULL):
            rate = bench_events(directory, durability, args.events)
            print(
                f"event insert synchronous={durability.value:<6} n={args.events}: "
                f"{rate:,.0f} events/s ({1e6 / rate:.1f} us each)"
            )


if __name__ == "__main__":
    main()
