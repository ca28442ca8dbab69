"""``ibfleet strategy``: list, halt and resume hosted strategies through the running supervisor."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from supervisor.cli_common import ConfigOption, UrlOption, api_get, api_post, api_target

strategy_app = typer.Typer(help="Hosted strategies: list, halt, resume.")


@strategy_app.command("list")
def strategy_list(
    config: ConfigOption = None,
    url: UrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every strategy: state, gateway, client id, open orders, counts."""
    base, _ = api_target(config, url)
    rows = api_get(base, "/api/v1/strategies")
    assert isinstance(rows, list)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"strategies at {base}")
    for column in (
        "strategy",
        "state",
        "gateway",
        "client id",
        "open",
        "sent",
        "fills",
        "safe",
        "unknown",
    ):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            row["state"],
            row["gateway"] or "-",
            str(row["client_id"] or "-"),
            str(row["open_orders"]),
            str(row["orders_sent"]),
            str(row["fills"]),
            str(row["safe_state_runs"]),
            str(row["unknown_intents"]),
        )
    Console().print(table)


@strategy_app.command("halt")
def strategy_halt(name: str, config: ConfigOption = None, url: UrlOption = None) -> None:
    """Pause a strategy: no hooks, no new orders (its orders at IB stay; `kill` cancels)."""
    base, token = api_target(config, url)
    row = api_post(base, token, f"/api/v1/strategies/{name}/halt", {})
    assert isinstance(row, dict)
    typer.echo(f"{name}: {row['state']}")


@strategy_app.command("resume")
def strategy_resume(
    name: str,
    gateway: Annotated[str | None, typer.Option(help="Resume on this gateway.")] = None,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Resume a halted, killed or crashed strategy (after reconciling with IB)."""
    base, token = api_target(config, url)
    row = api_post(base, token, f"/api/v1/strategies/{name}/resume", {"gateway": gateway})
    assert isinstance(row, dict)
    typer.echo(f"{name}: {row['state']} on {row['gateway']}")
