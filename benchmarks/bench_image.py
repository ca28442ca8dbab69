"""Time `ibfleet sim image` cold (new debootstrap base, empty wheel cache) and warm (all cached).

    .venv/bin/python benchmarks/bench_image.py            # warm builds only (reuses the base)
    .venv/bin/python benchmarks/bench_image.py --cold     # also rebuild the base (needs root)

Targets: cold under ~2 minutes, warm in seconds. Prints one line per build.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import docker

from ibsim import image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cold", action="store_true", help="rebuild the debootstrap base first")
    parser.add_argument("--tag", default="ibfleet-sim:bench")
    parser.add_argument("--warm-runs", type=int, default=2)
    args = parser.parse_args()
    client = docker.from_env(timeout=600)
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="ibfleet-bench-") as tmp:
        # A fresh cache dir makes the first build rebuild its dependency wheels too.
        cache = Path(tmp) if args.cold else image.default_cache_dir()
        runs = [("cold", True)] if args.cold else []
        runs += [(f"warm{i + 1}", False) for i in range(args.warm_runs)]
        for label, rebuild in runs:
            info = image.build_sim_image(
                docker_client=client,
                project_root=root,
                tag=args.tag,
                rebuild_base=rebuild,
                cache_dir=cache,
            )
            size_mb = client.images.get(info.tag).attrs["Size"] / 1e6
            print(
                f"{label}: {info.duration_s:.1f} s base={info.base_source.value} "
                f"deps_wheels_cached={info.deps_wheels_cached} "
                f"steps_cached={info.steps_cached}/{info.steps_total} size={size_mb:.0f} MB"
            )
    client.close()


if __name__ == "__main__":
    main()
