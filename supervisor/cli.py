"""The ``ibfleet`` command line."""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gateway.sim import cli as sim_cli
from supervisor import lint as lint_mod
from supervisor.settings import ConfigError, ConfigProblem, load_settings

app = typer.Typer(
    name="ibfleet",
    help="Operations and supervision harness for fleets of headless IB Gateway containers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(sim_cli.app, name="sim")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Fleet file. Default: $IBFLEET_CONFIG, else ./fleet.yaml.",
        show_default=False,
    ),
]


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
        problems = list(exc.problems)
        if exc.partial is not None:
            # Cross-field problems of the valid rest, so one run shows everything it can.
            problems += lint_mod.lint(exc.partial, environ=os.environ, file_exists=Path.is_file)
        render_problems(console, problems, source)
        errors = sum(1 for p in problems if p.severity == "error")
        console.print(f"{source}: {errors} error{'s' if errors != 1 else ''}", highlight=False)
        raise typer.Exit(2 if exc.unreadable else 1) from None
    problems = lint_mod.lint(loaded, environ=os.environ, file_exists=Path.is_file)
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


def main() -> None:
    """Console-script entry point."""
    app()
