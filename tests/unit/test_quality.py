"""The project's own quality gates run with the tests: lint, layering and strict typing of cores."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    result = _run(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_layering_contracts_hold() -> None:
    """supervisor -> plugins -> gateway only, and pure cores import no I/O library."""
    result = _run(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_strictly_typed_modules_pass_mypy_strict() -> None:
    """The pure cores and the adapters listed under mypy's strict override."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    overrides = config["tool"]["mypy"]["overrides"]
    modules = [m for o in overrides if o.get("strict") for m in o["module"]]
    contracts = config["tool"]["importlinter"]["contracts"]
    pure = next(c for c in contracts if c["type"] == "forbidden")["source_modules"]
    assert set(pure) <= set(modules), "every pure core is type-checked strictly"
    # A package (``supervisor.lifecycle`` with its ``.*``) is checked as its directory.
    paths = [REPO / m.removesuffix(".*").replace(".", "/") for m in modules]
    chosen = {p if p.is_dir() else p.with_suffix(".py") for p in paths}
    # A module inside a listed package directory is checked with it (mypy refuses it twice).
    files = sorted(str(p) for p in chosen if not any(d in p.parents for d in chosen))
    result = _run(sys.executable, "-m", "mypy", "--strict", *files)
    assert result.returncode == 0, result.stdout[-4000:]
