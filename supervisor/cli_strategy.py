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


# -- cancel by criteria --------------------------------------------------------------------


def _print_orders(title: str, orders: list[dict[str, object]]) -> None:
    # One plain line per order: nothing cut off on a narrow terminal before a confirm.
    typer.echo(f"{title}:")
    for o in orders:
        owner = (
            f"{o['order_ref']} (strategy {o['strategy']})"
            if o["strategy"]
            else (f"{o['order_ref'] or '-'} (not ibfleet's)")
        )
        typer.echo(
            f"  {o['account']} permId {o['perm_id']} client {o['client_id']}: {o['action']} "
            f"{o['quantity']} {o['symbol']} {o['order_type']} {owner}"
        )


def cancel(
    strategy: Annotated[
        str | None, typer.Option("--strategy", help="Only this strategy's orders.")
    ] = None,
    symbol: Annotated[str | None, typer.Option("--symbol", help="Only this symbol.")] = None,
    all_orders_on_account: Annotated[
        bool,
        typer.Option(
            "--all-orders-on-account",
            help="Every open order on the accounts, also those ibfleet did not place. "
            "Lists them and asks first.",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list the orders.")] = False,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Cancel open orders by criteria: ibfleet's own (all, one strategy's, one symbol's); the
    strategies keep running (`kill` halts them)."""
    if all_orders_on_account and strategy is not None:
        typer.echo("--all-orders-on-account cancels every order on the account: no --strategy")
        raise typer.Exit(2)
    base, token = api_target(config, url)
    body: dict[str, object] = {
        "strategy": strategy,
        "symbol": symbol,
        "all_orders_on_account": all_orders_on_account,
    }
    if all_orders_on_account or dry_run:
        preview = api_post(base, token, "/api/v1/cancel", {**body, "dry_run": True})
        assert isinstance(preview, dict)
        orders = [o for run in preview["runs"] for o in run["orders"]]
        if not orders:
            typer.echo("no open orders match")
            return
        what = "on the account" if all_orders_on_account else "of ibfleet's"
        _print_orders(f"{len(orders)} open orders {what}", orders)
        if dry_run:
            return
        if not yes:
            typer.confirm(f"Cancel these {len(orders)} orders?", abort=True)
    result = api_post(base, token, "/api/v1/cancel", body)
    assert isinstance(result, dict)
    for run in result["runs"]:
        who = run["strategy"] or f"account {run['account']}"
        left = run["still_open"]
        verdict = "ok" if run["ok"] else f"NOT DONE: {run['detail']}"
        if left:
            refs = ", ".join(str(o["order_ref"] or o["perm_id"]) for o in left)
            verdict += f"; still open at IB: {refs}"
        how = " (global cancel)" if run["global_cancel"] else ""
        typer.echo(f"{who}: {len(run['orders'])} cancelled{how} {verdict}")
    if any(not run["ok"] for run in result["runs"]):
        raise typer.Exit(4)
