"""What the command modules share: the console and the ``--launchpad`` option."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console()


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` (verbatim: brackets such as ``[nan]`` are not markup) and exit with ``code``."""
    console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)
LaunchpadOption = Annotated[Path | None, typer.Option(help="launchpad.yaml (default: TDPH_LAUNCHPAD, else embedded)")]
