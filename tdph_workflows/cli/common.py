"""What the command modules share: the console, the ``--launchpad`` and ``--sc-predict/--sc-mix`` options."""

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
ScStepOption = Annotated[bool | None, typer.Option(
    "--sc-predict/--sc-mix", help="With --self-consistent: sample next from the amplitude model's predicted "
    "fixed point, or mix linearly toward each estimate (default: mix)")]


def sc_step_settings(sc_predict: bool | None, self_consistent: bool) -> dict:
    """The ``SSCHASettings`` entry chosen by ``--sc-predict/--sc-mix`` (none when not given).

    Raises
    ------
    ValueError
        When either is given without ``--self-consistent`` (the one-shot has no steps to choose).
    """
    if sc_predict is None:
        return {}
    if not self_consistent:
        raise ValueError("--sc-predict/--sc-mix choose the self-consistent step: give --self-consistent too")
    return {"sc_predict": sc_predict}
