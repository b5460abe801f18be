"""`tdph config check`: validate the configuration files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .common import console

config_app = typer.Typer(help="Configuration files.", no_args_is_help=True)


@config_app.command("check")
def config_check(root: Annotated[Path, typer.Option(help="Repository root with launchpad.yaml and fw_config/")] = Path("."),
                 ping: Annotated[bool, typer.Option(help="Also reach the database")] = True) -> None:
    """Validate launchpad.yaml, fw_config/*.yaml and jobflow.yaml; say what is wrong."""
    from ..campaign.checks import check_all

    checks = check_all(root, ping)
    table = Table(title="configuration")
    for col in ("file", "ok", "message"):
        table.add_column(col)
    for c in checks:
        table.add_row(os.path.relpath(c.file, root), "[green]ok[/green]" if c.ok else "[red]error[/red]", c.message)
    console.print(table)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)
