"""The ``ibfleet`` command line: the top-level commands; the ``gateway``, ``strategy`` and
``fleet`` groups are in :mod:`supervisor.cli_gateway`, :mod:`supervisor.cli_strategy` and
:mod:`supervisor.cli_fleet`, what they share in :mod:`supervisor.cli_common`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import re
import zoneinfo
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway import authlog
from gateway.secret_refs import read_text_file
from gateway.time_fields import parse_duration
from ibsim import cli as sim_cli
from supervisor import cli_fleet, cli_gateway, cli_image, cli_plan, cli_strategy
from supervisor import lint as lint_mod
from supervisor.cli_common import (
    ConfigOption,
    UrlOption,
    api_get,
    api_post,
    api_target,
    leader_line,
    render_problems,
)
from supervisor.settings import ConfigError, LoadedFleet, load_settings


def _alert_url_problem(url: str) -> str | None:
    from supervisor.alerturls import alert_url_problem  # apprise loads only when URLs are checked

    return alert_url_problem(url)


def _engine_isolation_limits() -> list[str] | None:
    """Why the Docker engine (the one ``DOCKER_HOST`` names) cannot enforce the fleet's network
    isolation; None when no engine answers within a few seconds (``check`` stays offline then)."""
    import docker

    from gateway import firewall

    # Any failure means "no engine to ask": the fleet file's own checks must still run.
    try:
        client = docker.from_env(timeout=3)
    except Exception:
        return None
    try:
        return firewall.isolation_limits(client.info())
    except Exception:
        return None
    finally:
        client.close()


app = typer.Typer(
    name="ibfleet",
    help="Operations and supervision harness for fleets of headless IB Gateway containers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(sim_cli.app, name="sim")
app.add_typer(cli_image.image_app, name="image")


def _version() -> str:
    try:
        return metadata.version("ibfleet")
    except metadata.PackageNotFoundError:
        return "unknown"


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"ibfleet {_version()}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """Operations and supervision harness for fleets of headless IB Gateway containers."""


@app.command()
def check(config: ConfigOption = None) -> None:
    """Load and lint the fleet file; print every problem with its location and a hint.

    Exit 0 when clean (warnings allowed), 1 when there are errors, 2 when the file cannot be
    read or parsed.
    """
    console = Console(highlight=False)
    source = str(config or os.environ.get("IBFLEET_CONFIG") or "fleet.yaml")
    try:
        loaded = load_settings(config, environ=os.environ)
    except ConfigError as exc:
        problems = lint_mod.with_hints(list(exc.problems))
        if exc.partial is not None:
            # Cross-field problems of the valid rest, so one run shows everything it can.
            problems += lint_mod.lint(
                exc.partial,
                environ=os.environ,
                file_exists=Path.is_file,
                read_file=read_text_file,
                url_problem=_alert_url_problem,
                engine_limits=_engine_isolation_limits,
            )
        render_problems(console, problems, source)
        errors = sum(1 for p in problems if p.severity == "error")
        console.print(f"{source}: {errors} error{'s' if errors != 1 else ''}", highlight=False)
        raise typer.Exit(2 if exc.unreadable else 1) from None
    problems = lint_mod.lint(
        loaded,
        environ=os.environ,
        file_exists=Path.is_file,
        read_file=read_text_file,
        url_problem=_alert_url_problem,
        engine_limits=_engine_isolation_limits,
    )
    render_problems(console, problems, loaded.source)
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    gw = len(loaded.settings.gateways)
    st = len(loaded.settings.strategies)
    summary = (
        f"{loaded.source}: fleet {loaded.settings.fleet!r}, {gw} gateway{'s' * (gw != 1)}, "
        f"{st} strateg{'ies' if st != 1 else 'y'}: {errors} error{'s' * (errors != 1)}, "
        f"{warnings} warning{'s' * (warnings != 1)}"
    )
    console.print(summary, highlight=False, soft_wrap=True)
    raise typer.Exit(1 if errors else 0)


# ------------------------------------------------------------------------------ run


def _load_for_run(config: Path | None) -> LoadedFleet:
    """Settings for a command that acts: structural problems and missing secrets are fatal."""
    console = Console(stderr=True, highlight=False)
    source = str(config or os.environ.get("IBFLEET_CONFIG") or "fleet.yaml")
    try:
        loaded = load_settings(config, environ=os.environ)
    except ConfigError as exc:
        render_problems(console, lint_mod.with_hints(exc.problems), source)
        raise typer.Exit(2 if exc.unreadable else 1) from None
    problems = lint_mod.lint(
        loaded,
        environ=os.environ,
        file_exists=Path.is_file,
        missing_secret_severity="error",  # noqa: S106 - a severity, not a secret
        url_problem=_alert_url_problem,
    )
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        render_problems(console, errors, loaded.source)
        console.print(f"{loaded.source}: fix the errors above first (`ibfleet check`)")
        raise typer.Exit(1)
    return loaded


@app.command()
def run(config: ConfigOption = None) -> None:
    """Supervise the fleet in the foreground (structured logs on stderr).

    SIGTERM or SIGINT stops the supervisor cleanly and leaves the gateways running.
    """
    from supervisor import wiring

    loaded = _load_for_run(config)
    wiring.configure_logging()
    try:
        asyncio.run(wiring.run_until_signalled(loaded.settings, environ=os.environ))
    except wiring.StartupError as exc:
        Console(stderr=True).print(f"ibfleet run: {exc}", highlight=False)
        raise typer.Exit(1) from None


# ------------------------------------------------------------------------------ doctor


@app.command()
def doctor(
    config: ConfigOption = None,
    send_test_alert: Annotated[
        bool, typer.Option("--send-test-alert", help="Send a test notification on every route.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check that this host is fit to run the fleet; print each check with a fix.

    Docker and its version, the images, the fleet's host ports, the IBC command servers of
    running gateways, the clock, disk and journal, the alert routes. Exit 0 when fit, else 1.
    Without -c and without ./fleet.yaml only the host itself is checked.
    """

    from supervisor import doctor as doctor_mod
    from supervisor import doctor_host

    console = Console(highlight=False)
    path = config or Path(os.environ.get("IBFLEET_CONFIG") or "fleet.yaml")
    settings = None
    if config is not None or path.exists():
        try:
            settings = load_settings(path, environ=os.environ).settings
        except ConfigError as exc:
            render_problems(console, lint_mod.with_hints(exc.problems), str(path))
            console.print(f"{path}: fix the fleet file first (`ibfleet check -c {path}`)")
            raise typer.Exit(1) from None
    host = doctor_host.RealHost(settings, environ=os.environ)
    try:
        report = doctor_mod.examine(
            settings,
            host,
            now=dt.datetime.now(dt.UTC),
            options=doctor_mod.Options(
                send_test_alert=send_test_alert, docker_host=os.environ.get("DOCKER_HOST")
            ),
        )
    finally:
        host.close()
    if as_json:
        rows = [
            {"check": f.check, "status": f.status.value, "detail": f.detail, "fix": f.fix}
            for f in report.findings
        ]
        typer.echo(json.dumps({"fit": report.fit, "checks": rows}, indent=2))
        raise typer.Exit(0 if report.fit else 1)
    title = f"ibfleet doctor: {path}" if settings is not None else "ibfleet doctor: this host"
    table = Table(title=title, show_lines=False)
    for column in ("check", "result", "detail", "fix"):
        table.add_column(column, overflow="fold")
    styles = {"ok": "green", "FAIL": "bold red", "warn": "yellow", "skip": "dim"}
    for finding in report.findings:
        status = finding.status.value
        table.add_row(
            Text(finding.check),
            Text(status, style=styles[status]),
            Text(finding.detail),
            Text(finding.fix),
        )
    console.print(table)
    failed = len(doctor_mod.failures(report.findings))
    console.print("fit to run" if report.fit else f"not fit: {failed} check(s) failed")
    raise typer.Exit(0 if report.fit else 1)


# ------------------------------------------------------------------------------ API clients


def _status_table(base: str, rows: list[dict[str, Any]], *, title: str | None = None) -> Table:
    table = Table(title=title or f"ibfleet at {base}")
    columns = ("gateway", "state", "ready", "mode", "account", "last heartbeat", "alerts")
    for column in (*columns, "pending change"):
        # The gateway and its state never shrink to an ellipsis (a pipe's 80 columns): the
        # other columns fold instead.
        keep = column in ("gateway", "state")
        table.add_column(column, no_wrap=keep, min_width=len(column), overflow="fold")
    for row in rows:
        beat = row.get("last_heartbeat") or "-"
        rtt = row.get("heartbeat_rtt_seconds")
        if rtt is not None:
            beat = f"{beat[11:19]} ({rtt * 1000:.1f} ms)"
        # Names and alert texts come from the fleet and the gateways: shown as text, not markup.
        table.add_row(
            Text(str(row["name"])),
            Text(str(row["state"])),
            "yes" if row["ready"] else "no",
            Text(str(row["mode"])),
            Text(str(row["account"])),
            Text(str(beat)),
            Text(", ".join(row.get("open_alerts") or []) or "-"),
            Text(_pending(row.get("pending_change"))),
        )
    return table


def _pending(change: object) -> str:
    """A gateway's change not carried out yet: what, and when (the window, or blocked)."""
    if not isinstance(change, dict):
        return "-"
    parts = ", ".join(change.get("changed") or []) or str(change.get("change", "change"))
    status = str(change.get("status", ""))
    if status == "waiting" and change.get("at"):
        status = f"waits for the window at {str(change['at'])[:16]}"
    elif status == "blocked":
        status = "blocked: `ibfleet apply` to retry"
    return f"{parts}: {status}" + (" (2FA)" if change.get("needs_2fa") else "")


@app.command()
def status(
    config: ConfigOption = None,
    url: UrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Keep the table live.")] = False,
    every: Annotated[
        float, typer.Option(min=0.1, max=3600, help="With --watch: seconds between refreshes.")
    ] = 2.0,
    count: Annotated[
        int | None,
        typer.Option(min=1, help="With --watch: stop after this many refreshes (default: Ctrl-C)."),
    ] = None,
) -> None:
    """The fleet at a glance: gateway, state, mode, account, last heartbeat, open alerts."""
    base, _ = api_target(config, url)
    if not as_json:
        health = api_get(base, "/healthz")
        assert isinstance(health, dict)
        Console().print(Text(leader_line(health)))
        if health.get("role", "leader") != "leader":
            return  # a standby holds no fleet state; the leader's API has it
    rows = api_get(base, "/api/v1/gateways")
    assert isinstance(rows, list)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not watch:
        Console().print(_status_table(base, rows))
        return
    import time

    from rich.live import Live

    shown = 1
    try:
        with Live(_status_table(base, rows), console=Console(), auto_refresh=False) as live:
            while count is None or shown < count:
                time.sleep(every)  # the refresh period the operator asked for
                rows = api_get(base, "/api/v1/gateways")
                assert isinstance(rows, list)
                stamp = time.strftime("%H:%M:%S")
                live.update(_status_table(base, rows, title=f"ibfleet at {base} ({stamp})"))
                live.refresh()
                shown += 1
    except KeyboardInterrupt:
        pass


@app.command()
def events(
    config: ConfigOption = None,
    url: UrlOption = None,
    gateway: Annotated[str | None, typer.Option(help="Only this gateway.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recent journal events (state changes, alerts, operator commands)."""
    base, _ = api_target(config, url)
    rows = api_get(base, "/api/v1/events", gateway=gateway, limit=limit)
    assert isinstance(rows, list)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        who = row.get("gateway") or row.get("strategy") or "-"
        typer.echo(f"{row['at']} {row['severity']:8} {who:12} {row['kind']:9} {row['message']}")


def mark_auth_event(line: str, *, tz: dt.tzinfo) -> str | None:
    """What ibfleet reads in a gateway's log line (``"logged in"``), or None for other lines."""
    event = authlog.parse_line(line, tz=tz)
    if event is None:
        return None
    return re.sub(r"(?<!^)(?=[A-Z])", " ", type(event).__name__).lower()


def _since(value: str | None) -> dt.datetime | None:
    """``--since``: a duration back from now (``10m``, ``2h``) or an ISO 8601 time."""
    if value is None:
        return None
    try:
        return dt.datetime.now(dt.UTC) - parse_duration(value)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither a duration (10m, 2h) nor an ISO time (2026-03-09T14:00)",
            param_hint="--since",
        ) from None
    return when if when.tzinfo is not None else when.astimezone()


@app.command()
def logs(
    gateway: Annotated[str, typer.Argument(help="The gateway's name in the fleet file.")],
    config: ConfigOption = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    since: Annotated[
        str | None, typer.Option(help="Only lines since: a duration (10m, 2h) or an ISO time.")
    ] = None,
) -> None:
    """The gateway container's log, with the login events ibfleet parsed from it marked.

    A marked line starts with ``>> event`` (what the supervisor's lifecycle sees); the rest is
    the gateway's own text, printed as it is.
    """
    import docker

    from gateway.linesplit import LineSplitter
    from gateway.spec import container_name

    console = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    path = config or Path(os.environ.get("IBFLEET_CONFIG") or "fleet.yaml")
    try:
        settings = load_settings(path, environ=os.environ).settings
    except ConfigError as exc:
        render_problems(err, lint_mod.with_hints(exc.problems), str(path))
        raise typer.Exit(2) from None
    if gateway not in {gw.name for gw in settings.gateways}:
        known = ", ".join(gw.name for gw in settings.gateways) or "none"
        err.print(Text(f"no gateway {gateway!r} in {path} (gateways: {known})"))
        raise typer.Exit(1)
    if settings.runtime.kind != "docker":
        err.print(
            "runtime.kind is in-process: its gateways have no container log; see `ibfleet events`"
        )
        raise typer.Exit(1)
    start = _since(since)
    name = container_name(fleet=settings.fleet, gateway=gateway)
    tz = zoneinfo.ZoneInfo(settings.timezone)
    try:
        client = docker.from_env(timeout=30)
        container = client.containers.get(name)
        stream = container.logs(
            stream=True,
            follow=follow,
            timestamps=True,
            since=start if start is not None else None,
        )
        splitter = LineSplitter()  # bounded: one huge line cannot stall the lines after it
        for chunk in stream:
            for raw in splitter.feed(chunk):
                _print_log_line(console, raw.decode("utf-8", "replace").rstrip("\r"), tz)
        rest = splitter.flush()
        if rest:
            _print_log_line(console, rest.decode("utf-8", "replace"), tz)
    except docker.errors.NotFound:
        err.print(Text(f"no container {name}: the gateway is not created (is `ibfleet run` up?)"))
        raise typer.Exit(1) from None
    except docker.errors.DockerException as exc:
        err.print(Text(f"cannot read {name}'s log from the Docker engine: {exc}"))
        raise typer.Exit(3) from None
    except KeyboardInterrupt:
        pass


def _print_log_line(console: Console, line: str, tz: dt.tzinfo) -> None:
    event = mark_auth_event(line, tz=tz)
    text = Text(">> " if event else "   ", style="bold cyan" if event else "")
    if event:
        text.append(f"{event}: ", style="bold cyan")
    text.append(line)  # the gateway's own text: never markup
    console.print(text)


app.add_typer(cli_gateway.gateway_app, name="gateway")
app.add_typer(cli_fleet.fleet_app, name="fleet")
app.command("plan")(cli_plan.plan_command)
app.command("apply")(cli_plan.apply_command)


@app.command()
def demo(
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: Ctrl-C).")
    ] = None,
    api_port: Annotated[int, typer.Option(help="Port of the supervisor's HTTP API.")] = 8710,
    live: Annotated[bool, typer.Option(help="Live status table (off: plain lines).")] = True,
    runtime: Annotated[
        str,
        typer.Option(
            help="auto (Docker when an engine answers, else in-process) | docker | in-process."
        ),
    ] = "auto",
    log_file: Annotated[
        Path | None,
        typer.Option(help="Where the supervisor's log goes. Default: ibfleet-demo.log in $TMPDIR."),
    ] = None,
) -> None:
    """A simulated fleet under the real supervisor, with scripted faults. No IB account needed."""
    import tempfile

    from supervisor import demo as demo_mod
    from supervisor import wiring

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if runtime not in ("auto", "docker", "in-process"):
        err.print(f"ibfleet demo: --runtime {runtime!r}: auto, docker or in-process")
        raise typer.Exit(2)
    path = log_file or Path(tempfile.gettempdir()) / "ibfleet-demo.log"
    try:
        stream = path.open("w", encoding="utf-8")
    except OSError as exc:
        err.print(f"ibfleet demo: cannot write the log {path}: {exc.strerror}")
        raise typer.Exit(1) from None
    # The terminal is the demo's stage: log lines go to the file its banner names.
    with stream:
        wiring.configure_logging(level=logging.INFO, stream=stream)
        try:
            demo_mod.main(
                duration=duration, api_port=api_port, live=live, runtime=runtime, log_file=path
            )
        except wiring.StartupError as exc:
            err.print(f"ibfleet demo: {exc} (log: {path})")
            raise typer.Exit(1) from None
        finally:
            logging.getLogger().handlers.clear()


# ------------------------------------------------------------------------------ strategies

app.add_typer(cli_strategy.strategy_app, name="strategy")
app.command("cancel")(cli_strategy.cancel)


@app.command()
def kill(
    strategy: Annotated[str | None, typer.Argument(help="One strategy (default: all).")] = None,
    flatten: Annotated[bool, typer.Option(help="Also close the positions.")] = False,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Kill switch: cancel every open order of the strategy (or all), optionally flatten."""
    base, token = api_target(config, url)
    result = api_post(base, token, "/api/v1/kill", {"strategy": strategy, "flatten": flatten})
    assert isinstance(result, dict)
    for run in result["runs"]:
        live = run["still_live"]
        verdict = "ok" if run["ok"] else f"STILL LIVE AT IB: {', '.join(live)}"
        typer.echo(
            f"{run['strategy']}: {run['action']} via {run['path']} "
            f"({len(run['cancelled'])} cancelled) {verdict}"
        )
    if any(not run["ok"] for run in result["runs"]):
        raise typer.Exit(4)


def main() -> None:
    """Console-script entry point."""
    app()
