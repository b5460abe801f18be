"""`tdph query`: completed materials ranked by max R_onsite, as a table, CSV or JSON."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from .common import LaunchpadOption, console


def query_cmd(
    r_onsite_min: Annotated[float | None, typer.Option(help="Keep materials with max R_onsite >= this")] = None,
    element: Annotated[str | None, typer.Option(help="Containing this element")] = None,
    spacegroup: Annotated[int | None, typer.Option(help="Space-group number")] = None,
    campaign: Annotated[str | None, typer.Option()] = None,
    grade: Annotated[str | None, typer.Option(
        help="Trust grades to keep, e.g. AB (A trusted, B usable, C qualitative, F not a result)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    launchpad: LaunchpadOption = None,
) -> None:
    """Completed materials from the store: trusted grades first, then by max R_onsite at the first temperature."""
    from ..campaign.queries import query_rows
    from ..campaign.settings import resolve

    grades = None if grade is None else list(grade.upper().replace(",", ""))
    rows = query_rows(resolve(launchpad), r_onsite_min, element, spacegroup, campaign, grades=grades)
    emit_rows(rows, fmt)


def emit_rows(rows: list[dict], fmt: str) -> None:
    """Print rows of :func:`~tdph_workflows.campaign.queries.query_rows` as json, csv or a table (exit 2 otherwise)."""
    from ..campaign.queries import rows_csv

    if fmt == "json":
        print(json.dumps(rows, indent=1))
    elif fmt == "csv":
        print(rows_csv(rows), end="")
    elif fmt == "table":
        table = Table(title=f"{len(rows)} materials, trusted grades first, then by max R_onsite")
        for col in ("material", "SG", "T (K)", "grade", "max R_onsite", "L2 shift (%)", "min freq HA -> T (THz)",
                    "wall (s)", "why not A"):
            table.add_column(col, justify="left" if col == "material" else "right")
        for r in rows:
            table.add_row(f"{r['material_id']} {r['formula']}" if r["material_id"] != r["formula"] else r["formula"],
                          str(r["spacegroup_number"]), f"{r['T']:g}", r["grade"] or "-", f"{r['r_onsite_max']:.3f}",
                          f"{r['l2_shift_pct']:.1f} ± {r['l2_stderr_pct']:.1f}",
                          f"{r['harmonic_min_thz']:.2f} -> {r['min_thz']:.2f}", f"{r['wall_s']:.1f}",
                          worst_reason(r["grade_reasons"]))
        console.print(table)
    else:
        console.print(f"[red]error:[/red] unknown format {fmt!r} (table, csv, json)")
        raise typer.Exit(2)


def worst_reason(reasons: str) -> str:
    """The first (worst) reason's code of a row's joined ``grade_reasons``, for a narrow table column."""
    first = reasons.split("; ", 1)[0]
    return first.split(":", 1)[0].split(" ", 1)[-1] if first else ""
