"""``ibfleet plan``: what a fleet file would change on the running fleet, before it happens.

It renders the fleet file's specs exactly as the supervisor would (same credentials, same spec
key), lists the fleet's containers on the Docker engine, asks the running supervisor (when one
answers) which gateways it holds, and prints :func:`supervisor.rollout.plan_rollout`'s answer:
per gateway, which parts change (never their values), recreate or start, whether it costs a
full login and so a 2FA prompt, and when. Nothing is changed.

Exit status: 0 nothing would change, 1 something would, 2 the fleet file (or its secrets)
cannot be used, 3 no Docker engine answers.

``ibfleet apply`` asks the running supervisor to carry the plan out (its API's
``POST /api/v1/rollout/apply``): after a failed canary, and for changes that wait for the
update window.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from gateway.runtime import ObservedContainer
from supervisor import reconcile, rollout
from supervisor.cli_common import ConfigOption, UrlOption, render_problems
from supervisor.fleet_settings import FleetSettings, RuntimeKind
from supervisor.settings import ConfigError, load_settings

__all__ = ["HELD_STATES", "apply_command", "plan_command", "plan_fleet"]

#: Lifecycle states in which the supervisor keeps a gateway down itself: nothing is started.
HELD_STATES = frozenset({"STOPPED", "FATAL", "BACKOFF"})


def plan_fleet(
    settings: FleetSettings,
    observed: list[ObservedContainer],
    *,
    environ: Mapping[str, str],
    fingerprint_key: bytes,
    supervisor_states: Mapping[str, str] | None = None,
    now: dt.datetime,
    now_anyway: frozenset[str] = frozenset(),
) -> rollout.RolloutPlan:
    """The fleet file's plan against ``observed`` (raises wiring.StartupError on secrets)."""
    from supervisor import wiring
    from supervisor.rollout_hooks import facts_of, first_of

    credentials = wiring.resolve_credentials(settings, environ)
    desired = wiring.desired_specs(settings, credentials, fingerprint_key=fingerprint_key)
    held = frozenset(
        name for name, state in (supervisor_states or {}).items() if state in HELD_STATES
    )
    actions = reconcile.plan(desired, observed, fleet=settings.fleet, hold=held)
    return rollout.plan_rollout(
        actions,
        facts=facts_of(settings),
        now=now,
        window=settings.runtime.update_window,
        tz=settings.tz,
        now_anyway=now_anyway,
        first=first_of(settings),
    )


def supervisor_states(base: str, token: str | None) -> dict[str, str] | None:
    """The running supervisor's lifecycle state of each gateway, or None when none answers."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(f"{base}/api/v1/gateways", headers=headers, timeout=3.0)
        response.raise_for_status()
        rows = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(rows, list):
        return None
    return {str(r.get("name")): str(r.get("state")) for r in rows if isinstance(r, dict)}


def _read_key(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _observe(settings: FleetSettings) -> list[ObservedContainer]:
    import docker

    from gateway.docker_runtime import DockerRuntime
    from gateway.swarm_runtime import SwarmRuntime

    client = docker.from_env(timeout=30)
    client.ping()
    # A Swarm fleet's gateways are services; their containers carry no fleet label.
    runtime: DockerRuntime | SwarmRuntime = (
        SwarmRuntime(client.api)
        if settings.runtime.kind is RuntimeKind.SWARM
        else DockerRuntime(client, isolate=False)
    )
    try:
        return asyncio.run(runtime.list(fleet=settings.fleet))
    finally:
        runtime.close()


def _table(plan: rollout.RolloutPlan, states: Mapping[str, str] | None) -> Table:
    table = Table(title="ibfleet plan", show_lines=False)
    for column in ("gateway", "change", "changed", "login", "2fa", "when", "reason"):
        table.add_column(column)
    if states is not None:
        table.add_column("now")
    for line in plan.gateways:
        changed = ", ".join(line.changed_parts) or (
            "unknown" if line.parts and None in line.parts.values() else "-"
        )
        when = line.when.value
        if line.at is not None:
            when = f"window {line.at:%a %H:%M %Z}"
        row = [
            line.gateway,
            line.change.value + (" (canary)" if line.position == 0 else ""),
            changed if line.change is rollout.Change.RECREATE else "-",
            "full" if line.full_login else "-",
            ("yes" if line.second_factor else "no") if line.full_login else "-",
            when,
            line.reason,
        ]
        if states is not None:
            row.append(states.get(line.gateway, "-"))
        table.add_row(*row)
    return table


def plan_command(
    config: ConfigOption = None,
    url: UrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What the fleet file would change on the running fleet, gateway by gateway.

    Per gateway: which parts of its spec change (image, env, limits, ports, credentials,
    settings: yes/no, never values), recreate or start, whether it costs a full login (on live:
    an IB Key prompt) and when (now, or the next runtime.update_window). Changes nothing.
    Exit 0: nothing would change; 1: something would; 2: fleet file or secrets; 3: no engine.
    """
    from supervisor import wiring
    from supervisor.cli_common import api_target

    err = Console(stderr=True, highlight=False, markup=False)
    source = str(config or os.environ.get("IBFLEET_CONFIG") or "fleet.yaml")
    try:
        settings = load_settings(config, environ=os.environ).settings
    except ConfigError as exc:
        render_problems(Console(stderr=True), exc.problems, source)
        raise typer.Exit(2) from None
    if settings.runtime.kind is RuntimeKind.IN_PROCESS:
        err.print(f"plan {settings.fleet}: runtime in-process; its gateways live in the supervisor")
        raise typer.Exit(2)
    key_path = wiring.fingerprint_key_path(settings)
    key = _read_key(key_path)
    if key is None:
        # No supervisor has run with this journal: every container would look drifted anyway.
        err.print(f"plan {settings.fleet}: no spec key at {key_path}; no supervisor ran here yet")
        key = secrets.token_bytes(32)
    try:
        observed = _observe(settings)
    except Exception as exc:
        err.print(f"plan {settings.fleet}: no Docker engine answers: {exc}")
        raise typer.Exit(3) from None
    base, token = api_target(config, url)
    states = supervisor_states(base, token)
    try:
        plan = plan_fleet(
            settings,
            observed,
            environ=os.environ,
            fingerprint_key=key,
            supervisor_states=states,
            now=dt.datetime.now(dt.UTC),
        )
    except wiring.StartupError as exc:
        err.print(f"plan {settings.fleet}: {exc}")
        raise typer.Exit(2) from None
    if as_json:
        body = plan.to_json()
        body["fleet"] = settings.fleet
        body["supervisor"] = None if states is None else {"url": base, "states": states}
        typer.echo(json.dumps(body, indent=2))
    else:
        Console().print(_table(plan, states))
        if states is None:
            typer.echo(f"no supervisor answers at {base}: compared with the engine only")
        typer.echo("changes pending" if plan.changes_anything else "no changes")
    raise typer.Exit(1 if plan.changes_anything else 0)


def apply_command(
    gateways: Annotated[
        list[str] | None,
        typer.Argument(metavar="GATEWAY...", help="Only these gateways, now (window or not)."),
    ] = None,
    now: Annotated[
        bool, typer.Option("--now", help="Every pending replacement now, window or not.")
    ] = False,
    config: ConfigOption = None,
    url: UrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Carry out the plan in the running supervisor, one gateway at a time, canary first.

    Lifts the block a failed canary left (the supervisor tries again only when asked). Without
    --now or GATEWAY a replacement that needs a full login still waits for
    runtime.update_window; named gateways, or all with --now, go now. Exit 0: accepted;
    1: refused (nothing to apply, or a gateway with no change); 3: no supervisor answers.
    """
    from supervisor.cli_common import api_post, api_target

    base, token = api_target(config, url)
    body = api_post(
        base, token, "/api/v1/rollout/apply", {"gateways": list(gateways or []), "now": now}
    )
    assert isinstance(body, dict)
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    typer.echo(f"apply: {body.get('detail', '')}")
    rollout_body = body.get("rollout")
    pending = rollout_body.get("pending", []) if isinstance(rollout_body, dict) else []
    for change in pending:
        parts = ", ".join(change.get("changed") or []) or "-"
        twofa = " (2FA)" if change.get("needs_2fa") else ""
        typer.echo(f"  {change['gateway']}: {change['status']}, {parts}{twofa}")
