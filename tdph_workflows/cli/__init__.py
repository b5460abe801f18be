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


@app.callback()
def _root() -> None:
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


def main() -> None:
    """Entry point of the ``tdph`` console script."""
    app()
