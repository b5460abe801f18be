"""`tdph db start | stop | status`: the embedded database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import console, fail

db_app = typer.Typer(help="The embedded database (SecantusDB, MongoDB wire protocol, 127.0.0.1 only).",
                      no_args_is_help=True)


def _database(data_dir: Path | None, port: int | None):
    from ..campaign.database import EmbeddedDatabase

    if port is not None and not 1 <= port <= 65535:
        fail(f"--port must be 1-65535, got {port}")
    db = EmbeddedDatabase.from_env()
    if data_dir is not None:
        db = EmbeddedDatabase(data_dir, db.port)
    if port is not None:
        db = EmbeddedDatabase(db.data_dir, port)
    return db


DataDirOption = Annotated[Path | None, typer.Option(help="Data folder (default: TDPH_DB_DIR or ~/.tdph/db)")]
PortOption = Annotated[int | None, typer.Option(help="Port (default: TDPH_DB_PORT or 27117)")]


@db_app.command("start")
def db_start(data_dir: DataDirOption = None, port: PortOption = None) -> None:
    """Start the server (no-op when it already runs) and print its URI."""
    from ..campaign.database import DatabaseError

    try:
        status = _database(data_dir, port).start()
    except DatabaseError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"running: {status['uri']} (pid {status['pid']}, data {status['data_dir']})")


@db_app.command("stop")
def db_stop(data_dir: DataDirOption = None, port: PortOption = None) -> None:
    """Stop the server cleanly."""
    stopped = _database(data_dir, port).stop()
    console.print("stopped" if stopped else "was not running")


@db_app.command("status")
def db_status(data_dir: DataDirOption = None, port: PortOption = None) -> None:
    """Whether the server runs and answers; exit code 1 when it does not."""
    status = _database(data_dir, port).status()
    console.print(("running: " if status["running"] else "not running: ") + f"{status['uri']} data {status['data_dir']}")
    if not status["running"]:
        raise typer.Exit(1)
