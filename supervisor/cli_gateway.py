"""``ibfleet gateway``: restart, stop or start one gateway through the running supervisor."""

from __future__ import annotations

from pathlib import Path

import httpx
import typer
from rich.console import Console

from supervisor.cli_common import ConfigOption, UrlOption, api_target

gateway_app = typer.Typer(help="Operate one gateway through the running supervisor.")


def _command(name: str, action: str, config: Path | None, url: str | None) -> None:
    base, token = api_target(config, url)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.post(f"{base}/api/v1/gateways/{name}/{action}", headers=headers)
    except httpx.HTTPError as exc:
        Console(stderr=True).print(f"cannot reach the supervisor at {base}: {exc}")
        raise typer.Exit(3) from None
    detail = response.json().get("detail", response.text)
    if response.status_code >= 400:
        Console(stderr=True).print(f"{action} {name}: {response.status_code} {detail}")
        raise typer.Exit(1)
    typer.echo(f"{action} {name}: {detail}")


@gateway_app.command("restart")
def gateway_restart(name: str, config: ConfigOption = None, url: UrlOption = None) -> None:
    """Restart a gateway (softly through IBC when it can: no new 2FA)."""
    _command(name, "restart", config, url)


@gateway_app.command("stop")
def gateway_stop(name: str, config: ConfigOption = None, url: UrlOption = None) -> None:
    """Stop a gateway and keep it stopped (no alerts, no restarts)."""
    _command(name, "stop", config, url)


@gateway_app.command("start")
def gateway_start(name: str, config: ConfigOption = None, url: UrlOption = None) -> None:
    """Start a stopped gateway, or release one from FATAL after you fixed the cause."""
    _command(name, "start", config, url)
