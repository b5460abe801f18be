"""What the command modules share: the console and the ``--launchpad`` option."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
LaunchpadOption = Annotated[Path | None, typer.Option(help="launchpad.yaml (default: TDPH_LAUNCHPAD, else embedded)")]
