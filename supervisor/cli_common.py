"""What the ``ibfleet`` commands share: the ``--config`` and ``--url`` options, the printing of
fleet-file problems, and the calls to the running supervisor's API.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from gateway import addresses
from supervisor import lint as lint_mod
from supervisor.settings import ConfigError, ConfigProblem, load_settings

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Fleet file. Default: $IBFLEET_CONFIG, else ./fleet.yaml.",
        show_default=False,
    ),
]


UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Supervisor API URL. Default: api.listen of the fleet file."),
]


def render_problems(console: Console, problems: list[ConfigProblem], source: str) -> None:
    """Print problems as ``file:line:col: severity path: message`` with a hint below."""
    for problem in lint_mod.ordered(problems):
        where = problem.location.render(source)
        style = "red" if problem.severity == "error" else "yellow"
        console.print(
            f"{where}: [{style}]{problem.severity}[/{style}] [bold]{problem.path}[/bold]: "
            f"{problem.message}",
            highlight=False,
            markup=True,
            soft_wrap=True,
        )
        if problem.hint:
            console.print(f"    hint: {problem.hint}", highlight=False, soft_wrap=True)


def api_target(config: Path | None, url: str | None) -> tuple[str, str | None]:
    """The API URL and bearer token, from --url / the fleet file."""
    token: str | None = os.environ.get("IBFLEET_API_TOKEN") or None
    if url is not None:
        return url.rstrip("/"), token
    try:
        loaded = load_settings(config, environ=os.environ)
    except ConfigError as exc:
        render_problems(Console(stderr=True), exc.problems, str(config or "fleet.yaml"))
        raise typer.Exit(2) from None
    api = loaded.settings.api
    if api.token is not None and api.token.missing_reason(environ=os.environ) is None:
        token = api.token.resolve(environ=os.environ).get_secret_value()
    return addresses.local_url(api.host, api.port), token


def api_get(url: str, path: str, **params: str | int | None) -> object:
    try:
        response = httpx.get(url + path, params={k: v for k, v in params.items() if v is not None})
    except httpx.HTTPError as exc:
        Console(stderr=True).print(f"cannot reach the supervisor at {url}: {exc}")
        raise typer.Exit(3) from None
    if response.status_code >= 400:
        Console(stderr=True).print(f"{url}{path}: {response.status_code} {response.text}")
        raise typer.Exit(1)
    return response.json()


def api_post(base: str, token: str | None, path: str, body: dict[str, object]) -> object:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.post(base + path, json=body, headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        Console(stderr=True).print(f"cannot reach the supervisor at {base}: {exc}")
        raise typer.Exit(3) from None
    if response.status_code >= 400:
        detail = response.json().get("detail", response.text)
        Console(stderr=True).print(f"{path}: {response.status_code} {detail}")
        raise typer.Exit(1)
    return response.json()


def leader_line(health: dict[str, object]) -> str:
    """``leader: HOLDER (epoch N, 3.2s left); this supervisor: standby`` from /healthz."""
    role = str(health.get("role", "leader"))
    led = health.get("leader")
    if not isinstance(led, dict):
        text = "leader: none yet" if role != "leader" else "leader: this supervisor"
    else:
        left = led.get("expires_in")
        lease = "no lease" if left is None else f"{float(str(left)):.1f}s left"
        text = f"leader: {led.get('holder')} (epoch {led.get('epoch')}, {lease})"
    return f"{text}; this supervisor: {role}"
