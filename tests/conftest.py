"""Shared test policy: Docker-marked tests skip locally without an engine and fail in CI."""

from __future__ import annotations

import os
from typing import Any

import pytest


def _engine_answers() -> tuple[bool, str]:
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any failure to reach the engine means "no engine"
        return False, f"{type(exc).__name__}: {exc}"
    return True, ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    docker_items = [item for item in items if item.get_closest_marker("docker")]
    if not docker_items:
        return
    ok, why = _engine_answers()
    if ok:
        return
    if os.environ.get("CI"):
        # In CI a missing engine is a broken machine, not a reason to skip.
        raise pytest.UsageError(f"CI is set but no Docker engine answers ({why})")
    skip = pytest.mark.skip(reason=f"no Docker engine answers ({why}); CI runs these")
    for item in docker_items:
        item.add_marker(skip)


# -- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Any:
    """One throwaway PostgreSQL 15 cluster for the whole session (see tests/pgcluster.py)."""
    from tests.pgcluster import running_cluster

    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: Any) -> Any:
    """A fresh database on the session's cluster: its URL (password: pg_cluster.password)."""
    with pg_cluster.database() as url:
        yield url
