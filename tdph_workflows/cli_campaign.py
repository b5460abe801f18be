"""`tdph campaign ...`, `tdph worker`, `tdph query`, `tdph demo`, `tdph config check`."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

console = Console()
campaign_app = typer.Typer(help="Submit, watch and rerun campaigns (FireWorks + MongoDB).", no_args_is_help=True)
config_app = typer.Typer(help="Configuration files.", no_args_is_help=True)

LaunchpadOption = Annotated[Path | None, typer.Option(help="launchpad.yaml (default: TDPH_LAUNCHPAD, else embedded)")]


def _db(launchpad_file: Path | None):
    from .campaign.settings import resolve

    return resolve(launchpad_file)


@campaign_app.command("submit")
def submit_cmd(
    structures: Annotated[list[Path] | None, typer.Argument(help="Structure files")] = None,
    mdr_dir: Annotated[Path | None, typer.Option(help="Folder of MDR entries (tarballs or folders)")] = None,
    max_atoms: Annotated[int, typer.Option(help="Keep MDR entries with fewer primitive-cell atoms")] = 20,
    temperature: Annotated[list[float], typer.Option("--temperature", "-T")] = [300.0],  # noqa: B006
    limit: Annotated[int | None, typer.Option(help="At most N materials")] = None,
    sample: Annotated[int | None, typer.Option(help="N MDR entries at random (--seed)")] = None,
    seed: Annotated[int, typer.Option(help="Seed of --sample")] = 0,
    chunk_size: Annotated[int, typer.Option(help="Materials per job (one model load each)")] = 1,
    model: Annotated[str | None, typer.Option(help="Model folder/name (a fine-tuned one too), emt, module:factory")] = None,
    category: Annotated[str, typer.Option(help="FireWorks category (gpu or cpu)")] = "gpu",
    campaign: Annotated[str, typer.Option(help="Campaign name")] = "default",
    self_consistent: Annotated[bool, typer.Option(
        "--self-consistent", help="Self-consistent Phi(T) (~4x the one-shot cost; the one-shot L2 shift is "
        "biased high on soft materials, see benchmarks/results/oneshot_vs_sc.md)")] = False,
    launchpad: LaunchpadOption = None,
) -> None:
    """Add materials to the LaunchPad; already-known materials (same dedup key) are skipped."""
    from .campaign.submit import mdr_items, structure_items, submit

    if not mdr_dir and not structures:
        console.print("[red]error:[/red] give STRUCTURES or --mdr-dir")
        raise typer.Exit(2)
    mdr = mdr_items(mdr_dir, max_atoms, None if sample else limit) if mdr_dir else []
    if sample:
        import random

        mdr = random.Random(seed).sample(mdr, min(sample, len(mdr)))
    items = mdr + structure_items(structures or [])
    items = items[:limit] if limit else items
    db = _db(launchpad)
    with Progress(console=console) as bar:
        task = bar.add_task("registering", total=len(items))
        report = submit(items, db, model, temperature, {"self_consistent": True} if self_consistent else None,
                        chunk_size=chunk_size, category=category, campaign=campaign,
                        progress=lambda done, total: bar.update(task, completed=done))
    console.print(f"{report.new} new materials in {report.fireworks} fireworks; {report.skipped} already known "
                  f"(database {db.source}: {db.database})")


@campaign_app.command("status")
def status_cmd(campaign: Annotated[str | None, typer.Option()] = None, launchpad: LaunchpadOption = None) -> None:
    """Counts by state, throughput, ETA and failures with their reasons."""
    from .campaign import registry

    db = _db(launchpad)
    coll = registry.collection(db.uri, db.database)
    match = {"campaign": campaign} if campaign else {}
    counts = registry.counts(coll, campaign)
    table = Table(title=f"campaign {campaign or '(all)'}")
    table.add_column("state")
    table.add_column("materials", justify="right")
    for state, n in sorted(counts.items()):
        table.add_row(state, str(n))
    console.print(table)
    done = list(coll.find({**match, "state": "COMPLETED"}, {"finished": 1, "wall_time": 1}))
    if len(done) >= 2:
        times = sorted(d["finished"] for d in done)
        span = max((times[-1] - times[0]).total_seconds(), 1e-9)
        rate = (len(done) - 1) / span * 3600
        left = counts.get("WAITING", 0)
        eta = f", ETA {left / rate:.1f} h" if rate > 0 and left else ""
        console.print(f"throughput {rate:.0f} materials/h{eta}")
    for rec in coll.find({**match, "state": "FAILED"}, {"material_id": 1, "error": 1}).limit(50):
        console.print(f"[red]FAILED[/red] {rec['material_id']}: {rec['error']}")


@campaign_app.command("rerun")
def rerun_cmd(
    state: Annotated[str, typer.Option(help="Rerun fireworks in this state")] = "FIZZLED",
    lost: Annotated[bool, typer.Option("--lost", help="Also detect and rerun lost runs (dead workers)")] = False,
    expiration_secs: Annotated[int, typer.Option(help="A RUNNING firework silent this long is lost")] = 600,
    launchpad: LaunchpadOption = None,
) -> None:
    """lpad detect_lostruns + rerun_fws: put failed or lost materials back to READY."""
    from .campaign.settings import launchpad as make_launchpad

    lp = make_launchpad(_db(launchpad))
    n_lost = 0
    if lost:
        lost_launches, lost_fws, _ = lp.detect_lostruns(expiration_secs=expiration_secs, rerun=True)
        n_lost = len(lost_fws)
    ids = lp.get_fw_ids({"state": state})
    for fw_id in ids:
        lp.rerun_fw(fw_id)
    console.print(f"rerun {len(ids)} {state} fireworks" + (f" and {n_lost} lost runs" if lost else ""))


def worker_cmd(
    n: Annotated[int, typer.Option("--n", help="Local rocket launchers")] = 2,
    category: Annotated[list[str], typer.Option(help="Categories to pull")] = ["gpu", "cpu"],  # noqa: B006
    work_dir: Annotated[Path, typer.Option(help="Launch folders")] = Path("tdph_runs"),
    launchpad: LaunchpadOption = None,
) -> None:
    """Run rockets on this machine until no READY fireworks remain (on SLURM use qlaunch, see docs)."""
    from .campaign.worker import start_workers

    db = _db(launchpad)
    t0 = time.perf_counter()
    procs = start_workers(n, db.uri, db.database, list(category), work_dir.resolve())
    codes = [p.wait() for p in procs]
    console.print(f"{n} workers finished in {time.perf_counter() - t0:.1f} s (exit codes {codes})")


def query_cmd(
    r_onsite_min: Annotated[float | None, typer.Option(help="Keep materials with max R_onsite >= this")] = None,
    element: Annotated[str | None, typer.Option(help="Containing this element")] = None,
    spacegroup: Annotated[int | None, typer.Option(help="Space-group number")] = None,
    campaign: Annotated[str | None, typer.Option()] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    launchpad: LaunchpadOption = None,
) -> None:
    """Completed materials from the store, ranked by max R_onsite at the first temperature."""
    rows = query_rows(_db(launchpad), r_onsite_min, element, spacegroup, campaign)
    emit_rows(rows, fmt)


def query_rows(db, r_onsite_min=None, element=None, spacegroup=None, campaign=None, keys=None) -> list[dict]:
    from .campaign import registry

    coll = registry.collection(db.uri, db.database)
    match: dict = {"state": "COMPLETED"}
    if campaign:
        match["campaign"] = campaign
    if keys is not None:  # results of these settings and this model only, not older runs of the same material
        match["key"] = {"$in": list(keys)}
    if element:
        match["summary.elements"] = element
    if spacegroup:
        match["summary.spacegroup_number"] = spacegroup
    if r_onsite_min is not None:
        match["summary.temperatures.0.r_onsite_max"] = {"$gte": r_onsite_min}
    rows = []
    for rec in coll.find(match):
        s = rec["summary"]
        t = s["temperatures"][0]
        rows.append({"material_id": s["material_id"], "formula": s["formula"], "spacegroup": s["spacegroup"],
                     "T": t["temperature"], "r_onsite_max": round(t["r_onsite_max"], 4),
                     "l2_shift_pct": round(100 * t["l2_shift"], 2), "l2_stderr_pct": round(100 * t["l2_stderr"], 2),
                     "r_full_robust": round(t["r_full_robust"], 4), "harmonic_min_thz": round(s["harmonic_min_frequency"], 2),
                     "min_thz": round(t["min_frequency"], 2), "wall_s": round(rec.get("wall_time", 0.0), 1)})
    return sorted(rows, key=lambda r: -r["r_onsite_max"])


def _write_csv(rows: list[dict], fh) -> None:
    if rows:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def emit_rows(rows: list[dict], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(rows, indent=1))
    elif fmt == "csv":
        buf = io.StringIO()
        _write_csv(rows, buf)
        print(buf.getvalue(), end="")
    elif fmt == "table":
        table = Table(title=f"{len(rows)} materials, ranked by max R_onsite")
        for col in ("material", "SG", "T (K)", "max R_onsite", "L2 shift (%)", "min freq HA -> T (THz)", "wall (s)"):
            table.add_column(col, justify="left" if col == "material" else "right")
        for r in rows:
            sg = r["spacegroup"].rsplit("(", 1)[-1].rstrip(")")
            table.add_row(f"{r['material_id']} {r['formula']}" if r["material_id"] != r["formula"] else r["formula"],
                          sg, f"{r['T']:g}", f"{r['r_onsite_max']:.3f}",
                          f"{r['l2_shift_pct']:.1f} ± {r['l2_stderr_pct']:.1f}",
                          f"{r['harmonic_min_thz']:.2f} -> {r['min_thz']:.2f}", f"{r['wall_s']:.1f}")
        console.print(table)
    else:
        console.print(f"[red]error:[/red] unknown format {fmt!r} (table, csv, json)")
        raise typer.Exit(2)


DEMO_MATERIALS = {  # (spacegroup, lattice constant, species, coordinates): the code builds them itself
    "NaCl": (225, 5.60, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "KCl": (225, 6.29, ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "MgO": (225, 4.21, ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "CsCl": (221, 4.07, ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "SrTiO3": (221, 3.905, ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]),
    "KMgF3": (221, 3.99, ["K", "Mg", "F"], [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0]]),
    "Si": (227, 5.43, ["Si"], [[0, 0, 0]]),
    "CaF2": (225, 5.46, ["Ca", "F"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
}


def demo_cmd(
    mdr_dir: Annotated[Path | None, typer.Option(help="Use MDR entries instead of the built-in materials")] = None,
    limit: Annotated[int, typer.Option(help="Materials from --mdr-dir")] = 8,
    workers: Annotated[int, typer.Option(help="Local workers")] = 2,
    out: Annotated[Path, typer.Option(help="Folder for the ranked table (CSV)")] = Path("tdph_out/demo"),
) -> None:
    """The README's main job: embedded database, a small campaign, two local workers, a ranked table."""
    from pymatgen.core import Lattice, Structure

    from .campaign.submit import Item, mdr_items, submit
    from .campaign.worker import start_workers

    db = _db(None)
    console.print(f"database: {db.source} {db.uri} ({db.database})")
    out.mkdir(parents=True, exist_ok=True)
    if mdr_dir:
        items = mdr_items(mdr_dir, limit=limit)
    else:
        items = []
        for name, (sg, a, species, coords) in DEMO_MATERIALS.items():
            path = out / "structures" / f"{name}.cif"
            path.parent.mkdir(parents=True, exist_ok=True)
            Structure.from_spacegroup(sg, Lattice.cubic(a), species, coords).to(filename=str(path))
            items.append(Item(name, str(path.resolve())))
    report = submit(items, db, None, [300.0], category="gpu", campaign="demo")
    console.print(f"submitted {report.new} new materials ({report.skipped} already computed)")
    t0 = time.perf_counter()
    procs = start_workers(workers, db.uri, db.database, ["gpu", "cpu"], (out / "runs").resolve())
    for p in procs:
        p.wait()
    console.print(f"workers finished in {time.perf_counter() - t0:.1f} s")
    # this submission's keys: a database that holds demo runs of older settings or models lists only these
    rows = query_rows(db, campaign="demo", keys=report.keys)
    emit_rows(rows, "table")
    n_plots = write_dispersion_plots(db, "demo", out, keys=report.keys)
    console.print(f"wrote {n_plots} dispersion plots (harmonic vs 300 K) under {out}")
    with open(out / "ranked.csv", "w") as fh:
        _write_csv(rows, fh)
    console.print(f"wrote {out / 'ranked.csv'}")


def full_results(db, campaign: str | None = None, material_ids: set[str] | None = None, keys=None):
    """(registry record, TDPHResult with arrays from GridFS) of completed materials."""
    from .campaign import registry
    from .campaign.stores import job_store
    from .schemas import TDPHResult

    coll = registry.collection(db.uri, db.database)
    store = job_store(db.uri, db.database)
    store.connect()
    match: dict = {"state": "COMPLETED", "job_uuid": {"$ne": None}}
    if campaign:
        match["campaign"] = campaign
    if material_ids is not None:
        match["material_id"] = {"$in": sorted(material_ids)}
    if keys is not None:
        match["key"] = {"$in": list(keys)}
    try:
        for rec in coll.find(match):
            output = store.get_output(rec["job_uuid"], load=True)
            for entry in output["results"]:
                if entry["key"] == rec["key"]:
                    result = entry["result"]
                    yield rec, result if isinstance(result, TDPHResult) else TDPHResult.model_validate(result)
    finally:
        store.close()


def write_dispersion_plots(db, campaign: str | None, out: Path, keys=None) -> int:
    """Plot each completed material's dispersion (harmonic vs T) to out/<material_id>/dispersion.png."""
    from .plotting import plot_dispersion

    n = 0
    for rec, result in full_results(db, campaign, keys=keys):
        folder = out / rec["material_id"]
        folder.mkdir(parents=True, exist_ok=True)
        plot_dispersion(result, folder / "dispersion.png")
        n += 1
    return n


@config_app.command("check")
def config_check(root: Annotated[Path, typer.Option(help="Repository root with launchpad.yaml and fw_config/")] = Path("."),
                 ping: Annotated[bool, typer.Option(help="Also reach the database")] = True) -> None:
    """Validate launchpad.yaml, fw_config/*.yaml and jobflow.yaml; say what is wrong."""
    from .campaign.checks import check_all

    checks = check_all(root, ping)
    table = Table(title="configuration")
    for col in ("file", "ok", "message"):
        table.add_column(col)
    for c in checks:
        table.add_row(os.path.relpath(c.file, root), "[green]ok[/green]" if c.ok else "[red]error[/red]", c.message)
    console.print(table)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)

