"""The ``tdph`` command line: one module per noun, each registering its commands on :data:`app`.

``run`` (one material), ``db`` (embedded database), ``campaign``/``worker``/``demo`` (campaigns),
``query``, ``config``, ``finetune``, ``analyze``/``report``/``predict`` (analysis) and ``validate``.
The commands parse options, call library functions and print tables and messages; queries and files
live in the library (``campaign.queries``, ``analysis``, ``io``).
"""

from __future__ import annotations

import typer

from . import analysis, campaign, config, db, finetune, query, run, validate

app = typer.Typer(help="Temperature-dependent phonons at high throughput (one-shot SSCHA).", no_args_is_help=True)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__
        from ..schemas import package_versions

        typer.echo(f"tdph {__version__} (" + ", ".join(f"{k} {v}" for k, v in package_versions().items()) + ")")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the versions of tdph and of the packages it uses, and exit")) -> None:
    """tdph: one-shot SSCHA with machine-learned potentials."""


# registration order is the order of `tdph --help`
app.command("run")(run.run_cmd)
app.add_typer(db.db_app, name="db")
app.add_typer(campaign.campaign_app, name="campaign")
app.add_typer(config.config_app, name="config")
app.command("worker")(campaign.worker_cmd)
app.command("query")(query.query_cmd)
app.command("demo")(campaign.demo_cmd)
app.add_typer(finetune.finetune_app, name="finetune")
app.command("analyze")(analysis.analyze_cmd)
app.command("report")(analysis.report_cmd)
app.command("predict")(analysis.predict_cmd)
app.command("validate")(validate.validate_cmd)


def one_line_error(exc: BaseException) -> str:
    """A failure as one line: what failed and why (a database that cannot be reached says so)."""
    import pymongo.errors

    auth_failed = isinstance(exc, pymongo.errors.OperationFailure) and exc.code in (13, 18)
    if auth_failed or isinstance(exc, pymongo.errors.ServerSelectionTimeoutError) and "uthentication" in str(exc):
        return f"the database refused the credentials ({type(exc).__name__}); check the user " \
               "and TDPH_DB_PASSWORD / the launchpad file"
    if isinstance(exc, (pymongo.errors.ServerSelectionTimeoutError, pymongo.errors.AutoReconnect)):
        first = str(exc).split(",")[0].split(" (configured")[0]
        return f"the database is not reachable ({type(exc).__name__}: {first[:160]}); start it with " \
               "`tdph db start` or check TDPH_DB_URI / the launchpad file"
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message[:300]}"


def main() -> None:
    """Entry point of the ``tdph`` console script: failures print one line (``TDPH_DEBUG=1``: the traceback)."""
    import os
    import sys

    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("TDPH_DEBUG"):
            raise
        from rich.markup import escape

        from .common import console

        console.print(f"[red]error:[/red] {escape(one_line_error(exc))} [dim](TDPH_DEBUG=1 shows the traceback)[/dim]")
        sys.exit(1)
