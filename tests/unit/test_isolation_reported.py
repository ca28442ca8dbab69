"""Where the engine keeps ibfleet's network isolation from being enforced (rootless Docker,
Docker Desktop), ``check``, ``doctor`` and ``run`` say so; on a rootful engine they do not.

The engines are :mod:`tests.unit.fake_engine`: the real Docker SDK talks to a unix socket that
answers with the ``docker info`` of each kind of engine.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gateway.firewall import isolation_limits
from supervisor import doctor, doctor_host, wiring
from supervisor.cli import app
from supervisor.settings import load_text
from supervisor.wiring import ISOLATION_ALERT, Running, start_supervisor
from tests.unit import fleetfiles as ff
from tests.unit.fake_engine import DOCKER_DESKTOP, ROOTFUL, ROOTLESS, FakeEngine
from tests.unit.fake_runtime import FakeRuntime
from tests.unit.test_doctor import NOW, FakeHost
from tests.unit.test_doctor import fleet as doctor_fleet
from tests.unit.test_supervisor_owners import NoApi, settings_for
from tests.waiting import until

runner = CliRunner()
ENGINES = {"rootless": ROOTLESS, "docker-desktop": DOCKER_DESKTOP}
SAYS = {"rootless": "rootless Docker", "docker-desktop": "Docker Desktop"}


def check(tmp_path: Path, docker_host: str) -> tuple[int, str]:
    data = ff.fleet()
    path = tmp_path / "fleet.yaml"
    path.write_text(ff.dump(data))
    env = {**ff.env_for(data), "DOCKER_HOST": docker_host}
    result = runner.invoke(app, ["check", "-c", str(path)], env=env, catch_exceptions=False)
    return result.exit_code, result.output


# ------------------------------------------------------------------------------ check


@pytest.mark.parametrize("kind", sorted(ENGINES))
def test_check_warns_that_isolation_cannot_be_enforced_on_the_engine(
    tmp_path: Path, kind: str
) -> None:
    with FakeEngine(ENGINES[kind]) as engine:
        code, out = check(tmp_path, engine.url)
    assert code == 0, out  # a warning: the fleet file itself is fine
    assert "warning runtime: network isolation cannot be enforced on this Docker engine" in out
    assert SAYS[kind] in out
    assert "rootful Docker engine on a Linux host" in out
    assert "0 errors, 1 warning" in out


def test_check_says_nothing_of_isolation_on_a_rootful_engine(tmp_path: Path) -> None:
    with FakeEngine(ROOTFUL) as engine:
        code, out = check(tmp_path, engine.url)
    assert code == 0, out
    assert "isolation" not in out
    assert "0 errors, 0 warnings" in out


def test_check_without_an_engine_checks_the_file_alone(tmp_path: Path) -> None:
    code, out = check(tmp_path, f"unix://{tmp_path}/no-engine.sock")
    assert code == 0, out
    assert "isolation" not in out
    assert "0 errors, 0 warnings" in out


def test_check_asks_no_engine_for_an_in_process_fleet(tmp_path: Path) -> None:
    data = ff.fleet(runtime={"kind": "in-process"}, simulator={"enabled": True})
    path = tmp_path / "fleet.yaml"
    path.write_text(ff.dump(data))
    with FakeEngine(ROOTLESS) as engine:
        env = {**ff.env_for(data), "DOCKER_HOST": engine.url}
        result = runner.invoke(app, ["check", "-c", str(path)], env=env, catch_exceptions=False)
    assert "isolation" not in result.output, result.output


# ------------------------------------------------------------------------------ doctor


@pytest.mark.parametrize("kind", sorted(ENGINES))
def test_doctor_warns_that_isolation_cannot_be_enforced_and_stays_fit(kind: str) -> None:
    engine = doctor.Engine("27.0", "1.46", clock=NOW)
    limits = tuple(isolation_limits(ENGINES[kind]))
    host = FakeHost(engine_seen=doctor.Engine("27.0", "1.46", clock=NOW, isolation_limits=limits))
    report = doctor.examine(doctor_fleet(), host, now=NOW)
    (found,) = [f for f in report.findings if f.check == "network isolation"]
    assert found.status is doctor.Status.WARN
    assert SAYS[kind] in found.detail
    assert "rootful Docker engine on a Linux host" in found.fix
    assert report.fit
    clean = doctor.examine(doctor_fleet(), FakeHost(engine_seen=engine), now=NOW)
    (ok,) = [f for f in clean.findings if f.check == "network isolation"]
    assert ok.status is doctor.Status.OK


def test_doctor_says_nothing_of_isolation_without_an_engine() -> None:
    host = FakeHost(engine_seen=doctor.Engine(error="connection refused"))
    report = doctor.examine(doctor_fleet(), host, now=NOW)
    assert not [f for f in report.findings if f.check == "network isolation"]


@pytest.mark.parametrize("kind", sorted(ENGINES))
def test_doctors_host_reads_the_limits_from_the_engines_info(kind: str) -> None:
    with FakeEngine(ENGINES[kind]) as fake:
        host = doctor_host.RealHost(None, environ={"DOCKER_HOST": fake.url})
        try:
            engine = host.engine()
        finally:
            host.close()
    assert engine.error is None
    assert len(engine.isolation_limits) == 1
    assert SAYS[kind] in engine.isolation_limits[0]


# ------------------------------------------------------------------------------ run


def with_console_route(tmp_path: Path) -> tuple[Any, dict[str, str]]:
    settings, environ = settings_for(tmp_path)
    data = settings.model_dump(mode="json", exclude_unset=True)
    data["alerts"] = {"routes": [{"urls": ["console://"], "min_severity": "warning"}]}
    return load_text(yaml.safe_dump(data), environ={}).settings, environ


async def start(
    tmp_path: Path, limits: list[str], console: io.StringIO, runtime: FakeRuntime
) -> Running:
    settings, environ = with_console_route(tmp_path)
    return await start_supervisor(
        settings,
        environ=environ,
        runtime=runtime,
        specs=[],
        clock=lambda: dt.datetime.now(dt.UTC),
        console=console,
        api_port=0,
        supervisor_options={"probe_factory": NoApi},
        isolation_limits=limits,
    )


@pytest.mark.parametrize("kind", sorted(ENGINES))
async def test_run_logs_and_raises_a_warning_where_isolation_cannot_be_enforced(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    console = io.StringIO()
    caplog.set_level(logging.WARNING, logger="ibfleet.run")
    running = await start(tmp_path, isolation_limits(ENGINES[kind]), console, FakeRuntime())
    try:
        await until(lambda: "network isolation" in console.getvalue(), what="the console alert")
        assert "[ibfleet alert WARNING]" in console.getvalue()
        assert SAYS[kind] in console.getvalue()
        assert ISOLATION_ALERT in running.dispatcher.book.open_keys()
    finally:
        await running.close()
    (line,) = [r.getMessage() for r in caplog.records if "isolation_not_enforced" in r.message]
    assert SAYS[kind] in line


async def test_run_on_a_rootful_engine_resolves_the_warning_an_earlier_start_raised(
    tmp_path: Path,
) -> None:
    console = io.StringIO()
    running = await start(tmp_path, isolation_limits(ROOTLESS), console, FakeRuntime())
    try:
        await until(lambda: "network isolation" in console.getvalue(), what="the console alert")
    finally:
        await running.close()
    console = io.StringIO()
    running = await start(tmp_path, isolation_limits(ROOTFUL), console, FakeRuntime())
    try:
        await until(
            lambda: ISOLATION_ALERT not in running.dispatcher.book.open_keys(),
            what="the resolution",
        )
    finally:
        await running.close()


@pytest.mark.parametrize("kind", sorted(ENGINES))
def test_run_reads_the_limits_from_the_engine_it_runs_on(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, _ = settings_for(tmp_path)
    with FakeEngine(ENGINES[kind]) as engine:
        monkeypatch.setenv("DOCKER_HOST", engine.url)
        _runtime, limits, _options = wiring.docker_runtime(settings, environ={})
    assert [SAYS[kind] in limit for limit in limits] == [True]
    with FakeEngine(ROOTFUL) as engine:
        monkeypatch.setenv("DOCKER_HOST", engine.url)
        assert wiring.docker_runtime(settings, environ={})[1] == []
