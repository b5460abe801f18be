"""`tdph validate`: the DFT-validation flow for screened candidates or named materials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .common import LaunchpadOption, console


def validate_cmd(
    materials: Annotated[list[Path] | None, typer.Argument(help="MDR entries (their supercell is used) or structure files")] = None,
    from_screening: Annotated[int | None, typer.Option(help="The top N screened candidates of the database")] = None,
    campaign: Annotated[str | None, typer.Option(help="Campaign of --from-screening (default: all)")] = None,
    threshold: Annotated[float, typer.Option(help="Screening threshold on max R_onsite")] = 0.15,
    calculator: Annotated[str, typer.Option(help="vasp, or model (the potential, see --model)")] = "model",
    model: Annotated[str | None, typer.Option(help="Potential for --calculator model: folder/name or emt")] = None,
    temperature: Annotated[list[float], typer.Option("--temperature", "-T")] = [300.0],  # noqa: B006
    n_structures: Annotated[int, typer.Option(help="Rattled supercells for the anharmonic fit")] = 40,
    kappa_mesh: Annotated[int, typer.Option(help="q-mesh (n x n x n) for the 3ph kappa_L")] = 8,
    fourph_mesh: Annotated[int, typer.Option(help="q-mesh (n x n x n) for the 4ph rates (cost ~ n^6; 4 is too coarse)")] = 6,
    settings_json: Annotated[str | None, typer.Option("--settings", help="JSON of further ValidationSettings fields")] = None,
    out: Annotated[Path, typer.Option(help="Folder for figures and the kappa table")] = Path("tdph_out/validation"),
    run_local: Annotated[bool, typer.Option("--run-local", help="Run here now (jobflow run_locally) instead of submitting")] = False,
    category: Annotated[str, typer.Option(help="FireWorks category of the submitted jobs")] = "cpu",
    launchpad: LaunchpadOption = None,
) -> None:
    """Validate materials: relax, fc2 + compressive-sensing fc3/fc4, SCPH, kappa_L (HA+3ph, SCPH+3ph, SCPH+3,4ph)."""
    from ..campaign.queries import screened_sources
    from ..campaign.settings import resolve
    from ..makers.validation import ValidationMaker

    if calculator not in ("vasp", "model"):
        console.print(f"[red]error:[/red] --calculator must be vasp or model, not {calculator}")
        raise typer.Exit(2)
    db = resolve(launchpad)
    sources = [str(p) for p in materials or []]
    if from_screening:
        picked = screened_sources(db, from_screening, campaign, threshold)
        if not picked:
            console.print(f"[red]error:[/red] no completed material with max R_onsite >= {threshold} in {db.source}")
            raise typer.Exit(1)
        for mid, src, r in picked:
            console.print(f"{mid}: max R_onsite {r:.3f} ({src})")
        sources += [src for _, src, _ in picked]
    if not sources:
        console.print("[red]error:[/red] give MATERIALS or --from-screening N")
        raise typer.Exit(2)
    settings = {"temperatures": temperature, "n_structures": n_structures, "kappa_mesh": [kappa_mesh] * 3,
                "fourph_mesh": [fourph_mesh] * 3, **json.loads(settings_json or "{}")}
    try:
        maker = ValidationMaker(calculator="vasp" if calculator == "vasp" else model, settings=settings,
                                out_dir=str(out), category=category)
    except (TypeError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    flow = maker.make_many(sources)
    if run_local:
        _run_here(flow, out)
        return
    from jobflow.managers.fireworks import flow_to_workflow

    from ..campaign.settings import launchpad as get_launchpad

    wf = flow_to_workflow(flow)  # no store in the fireworks: workers use their node's JOBFLOW_CONFIG_FILE
    get_launchpad(db).add_wf(wf)
    console.print(f"submitted {len(sources)} materials ({len(wf.fws)} fireworks, category {category}) "
                  f"to {db.source} database {db.database}; figures will go to {out.resolve()}")


def _run_here(flow, out: Path) -> None:
    from jobflow import run_locally

    responses = run_locally(flow, ensure_success=True, log=False, create_folders=True, root_dir=out / "run")
    summary = responses[flow.jobs[-1].uuid][1].output
    table = Table("material", "T (K)", "HA+3ph", "SCPH+3ph", "SCPH+3,4ph")
    for row in summary["rows"]:
        table.add_row(row["material"], f"{row['temperature']:g}",
                      *(f"{row.get(k, float('nan')):.3f}" for k in ("HA+3ph", "SCPH+3ph", "SCPH+3,4ph")))
    console.print(table)
    console.print(f"kappa_L in W/mK; figures and kappa_levels.csv in {out.resolve()}")
