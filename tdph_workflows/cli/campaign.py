"""`tdph campaign submit | status | rerun`, `tdph worker`, `tdph demo`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from .common import LaunchpadOption, ScStepOption, console, fail, sc_step_settings
from .query import emit_rows

campaign_app = typer.Typer(help="Submit, watch and rerun campaigns (FireWorks + MongoDB).", no_args_is_help=True)


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
        "--self-consistent", help="Self-consistent Phi(T) (~3x the one-shot force calls, 2.9x over 50 MDR entries; the one-shot L2 shift is "
        "biased high on soft materials, see benchmarks/results/oneshot_vs_sc.md)")] = False,
    sc_predict: ScStepOption = None,
    known_failure_pairs: Annotated[int | None, typer.Option(
        help="Cap the antithetic pairs of a material graded F before sampling (one-shot on an unstable "
        "harmonic reference, harmonic spectrum vs DFT): 41 % of the full MDR campaign's engine time went to "
        "such materials. Materials already computed without the cap are not computed again")] = None,
    known_failure_keeps_cell: Annotated[bool, typer.Option(
        "--known-failure-keeps-cell", help="A material graded F on its input supercell before sampling is not "
        "widened for thermal sampling (no wider cell can lift those grades): 15 such materials took 14 % of the "
        "first 464 of the full MDR campaign. Materials already computed with widening are not computed again")] = False,
    launchpad: LaunchpadOption = None,
) -> None:
    """Add materials to the LaunchPad; already-known materials (same dedup key) are skipped."""
    from ..campaign.settings import resolve
    from ..campaign.submit import CATEGORIES, mdr_items, structure_items, submit
    from ..io.inputs import check_temperatures
    from ..potentials import ModelError, check_model_spec

    if not mdr_dir and not structures:
        console.print("[red]error:[/red] give STRUCTURES or --mdr-dir")
        raise typer.Exit(2)
    for name, value in (("--limit", limit), ("--sample", sample), ("--chunk-size", chunk_size)):
        if value is not None and value < 1:
            fail(f"{name} must be at least 1, got {value}")
    if category not in CATEGORIES:  # a firework no worker pulls would wait forever
        fail(f"--category must be one of {', '.join(CATEGORIES)}, got {category!r}")
    try:  # refused here, not as a failure of every material on the workers
        from ..core.sscha import SSCHASettings

        sc_step = sc_step_settings(sc_predict, self_consistent)
        SSCHASettings(self_consistent=self_consistent, known_failure_pairs=known_failure_pairs,
                      known_failure_keeps_cell=known_failure_keeps_cell)
        check_temperatures(temperature)
        kind = check_model_spec(model) if model is not None else None
    except (ValueError, ModelError) as exc:
        fail(str(exc))
    if kind == "hub name":
        console.print(f"[yellow]note:[/yellow] model {model!r} is not a local folder: the workers will download it")
    mdr = mdr_items(mdr_dir, max_atoms, None if sample else limit) if mdr_dir else []
    if sample:
        import random

        mdr = random.Random(seed).sample(mdr, min(sample, len(mdr)))
    items = mdr + structure_items(structures or [])
    items = items[:limit] if limit else items
    db = resolve(launchpad)
    with Progress(console=console) as bar:
        task = bar.add_task("registering", total=len(items))
        settings = {"self_consistent": True} if self_consistent else {}
        settings.update(sc_step)
        if known_failure_pairs is not None:
            settings["known_failure_pairs"] = known_failure_pairs
        if known_failure_keeps_cell:
            settings["known_failure_keeps_cell"] = True
        report = submit(items, db, model, temperature, settings or None,
                        chunk_size=chunk_size, category=category, campaign=campaign,
                        progress=lambda done, total: bar.update(task, completed=done))
    console.print(f"{report.new} new materials in {report.fireworks} fireworks; {report.skipped} already known "
                  f"(database {db.source}: {db.database})")


@campaign_app.command("status")
def status_cmd(campaign: Annotated[str | None, typer.Option()] = None, launchpad: LaunchpadOption = None) -> None:
    """Counts by state, throughput, ETA and failures with their reasons."""
    from ..campaign.queries import campaign_status
    from ..campaign.settings import resolve

    status = campaign_status(resolve(launchpad), campaign)
    table = Table(title=f"campaign {campaign or '(all)'}")
    table.add_column("state")
    table.add_column("materials", justify="right")
    for state, n in sorted(status.counts.items()):
        table.add_row(state, str(n))
    console.print(table)
    if status.grades:
        console.print("completed by trust grade: " + ", ".join(
            f"{g or 'ungraded'} {n}" for g, n in sorted(status.grades.items(), key=lambda kv: kv[0] or "Z")))
    if status.throughput is not None:
        eta = f", ETA {status.eta_hours:.1f} h" if status.eta_hours is not None else ""
        console.print(f"throughput {status.throughput:.0f} materials/h{eta}")
    for rec in status.failures:
        console.print(f"[red]FAILED[/red] {rec['material_id']}: {rec['error']}")


@campaign_app.command("withdraw")
def withdraw_cmd(
    campaign: Annotated[str, typer.Option(help="Campaign name")],
    launchpad: LaunchpadOption = None,
) -> None:
    """Remove the materials no worker has started (to resubmit them with other settings); results stay."""
    from ..campaign.queries import withdraw_waiting
    from ..campaign.settings import resolve

    n = withdraw_waiting(resolve(launchpad), campaign)
    console.print(f"withdrew {n} waiting materials of campaign {campaign}")


@campaign_app.command("rerun")
def rerun_cmd(
    state: Annotated[str, typer.Option(help="Rerun fireworks in this state")] = "FIZZLED",
    lost: Annotated[bool, typer.Option("--lost", help="Also detect and rerun lost runs (dead workers)")] = False,
    expiration_secs: Annotated[int, typer.Option(help="A RUNNING firework silent this long is lost")] = 600,
    launchpad: LaunchpadOption = None,
) -> None:
    """Put failed or lost materials back to READY (lpad detect_lostruns + rerun_fws)."""
    from ..campaign.queries import rerun_fireworks
    from ..campaign.settings import resolve

    try:
        n_rerun, n_lost = rerun_fireworks(resolve(launchpad), state, lost, expiration_secs)
    except ValueError as exc:
        console.print(f"[red]error:[/red] --expiration-secs: {exc}")
        raise typer.Exit(2) from None
    console.print(f"rerun {n_rerun} {state} fireworks" + (f" and {n_lost} lost runs" if lost else ""))


@campaign_app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Option(help="File to write (.jsonl.gz)")],
    campaign: Annotated[str | None, typer.Option(help="Campaign name (default: all)")] = None,
    launchpad: LaunchpadOption = None,
) -> None:
    """Write the settled per-material records (summaries and keys, no arrays) to carry a campaign elsewhere."""
    from ..campaign.queries import export_records
    from ..campaign.settings import resolve

    n = export_records(resolve(launchpad), out, campaign)
    console.print(f"wrote {n} records to {out}")


@campaign_app.command("import")
def import_cmd(
    path: Annotated[Path, typer.Argument(help="File written by `tdph campaign export`")],
    launchpad: LaunchpadOption = None,
) -> None:
    """Load exported records; their materials are not computed again when the campaign is resubmitted."""
    from ..campaign.queries import import_records
    from ..campaign.settings import resolve

    if not path.is_file():
        fail(f"{path}: no such file")
    added, skipped = import_records(resolve(launchpad), path)
    console.print(f"imported {added} records ({skipped} already present, left as they were)")


@campaign_app.command("publish")
def publish_cmd(
    out: Annotated[Path, typer.Option(help="Dataset folder (light files: CSV, JSON, card, report, figures)")],
    campaign: Annotated[str | None, typer.Option(help="Campaign name (default: all)")] = None,
    records: Annotated[Path | None, typer.Option(
        help="Publish an exported records file (tdph campaign export) instead of the database")] = None,
    work_dir: Annotated[Path | None, typer.Option(
        help="Heavy intermediates: features, forests (default: OUT/../<name>-work)")] = None,
    workers: Annotated[int, typer.Option(help="Processes for the matminer features")] = 1,
    min_group_size: Annotated[int, typer.Option(help="Space groups with fewer materials are left out of the trends")] = 10,
    threshold: Annotated[float, typer.Option(help="Screening threshold on max R_onsite")] = 0.15,
    mdr_dir: Annotated[str, typer.Option(help="MDR folder as written in the data card's reproduce commands")] = (
        "../shared/data/phonondb_pbesol_20180417/raw_lt20atoms"),
    launchpad: LaunchpadOption = None,
) -> None:
    """Publish a campaign as a dataset: materials.csv/.json.gz, data card, report, analyses, paper comparison."""
    from ..analysis.dataset import campaign_settings, publish, read_records, reproduce_commands
    from ..campaign.settings import resolve

    if records is not None and not records.is_file():
        fail(f"{records}: no such file")
    db = None if records is not None else resolve(launchpad)
    found = read_records(records if records is not None else (db, campaign))
    if campaign and records is not None:
        found = [r for r in found if r.get("campaign") == campaign]
    if not found:
        fail("no records to publish" + (f" in campaign {campaign}" if campaign else ""))
    settings = campaign_settings(db, campaign) if db is not None else []
    reproduce = reproduce_commands(settings, campaign, out, mdr_dir)
    work = work_dir or out.parent / f"{out.name}-work"
    report = publish(found, out, work, settings, reproduce, workers=workers, min_group_size=min_group_size,
                     threshold=threshold, title=f"tdph campaign {campaign or ''}".strip())
    console.print(f"{report.n_records} records (" + ", ".join(f"{n} {k}" for k, n in sorted(report.by_state.items()))
                  + "); by grade: " + ", ".join(f"{g or 'ungraded'} {n}" for g, n in sorted(report.by_grade.items())))
    console.print(f"wrote {len(report.files)} files to {out} (intermediates in {work})")


def wait_with_progress(procs, db, every_s: float | None = None) -> list[int]:
    """Wait for worker processes, showing materials done / running / failed / waiting; their exit codes.

    On a terminal the line updates in place every 3 s; in a log, the counts are read every 30 s and a
    line is printed whenever they change (each read scans the registry: 0.3 s of the embedded
    database's time at 4,000 materials). The final counts are printed in both.
    """
    from ..campaign.queries import worker_progress

    every_s = every_s or (3.0 if console.is_terminal else 30.0)

    def progress_line() -> str:
        try:
            c = worker_progress(db)
        except Exception:  # noqa: BLE001 (a progress line never stops the workers; the database may restart)
            return "database not answering; workers go on"
        return f"{c['done']} done, {c['running']} running, {c['failed']} failed, {c['waiting']} waiting"

    last, alive, next_read = "", len(procs), 0.0
    with console.status("workers starting") as status:
        while alive:
            now_alive = sum(p.poll() is None for p in procs)
            if time.monotonic() >= next_read or now_alive != alive:  # a worker ending shows at once
                line = f"{progress_line()} ({now_alive} workers)"
                if console.is_terminal:
                    status.update(line)
                elif line != last:
                    console.print(line)
                last, next_read = line, time.monotonic() + every_s
            alive = now_alive
            if alive:
                time.sleep(min(1.0, every_s))
    console.print(progress_line())
    return [p.wait() for p in procs]


def worker_cmd(
    n: Annotated[int, typer.Option("--n", help="Local rocket launchers")] = 2,
    category: Annotated[list[str], typer.Option(help="Categories to pull")] = ["gpu", "cpu"],  # noqa: B006
    work_dir: Annotated[Path, typer.Option(help="Launch folders")] = Path("tdph_runs"),
    launchpad: LaunchpadOption = None,
) -> None:
    """Run rockets on this machine until no READY fireworks remain (on SLURM use qlaunch, see docs)."""
    from ..campaign.settings import resolve
    from ..campaign.worker import start_workers

    if n < 1:
        fail(f"--n must be at least 1, got {n}")
    db = resolve(launchpad)
    t0 = time.perf_counter()
    procs = start_workers(n, db, list(category), work_dir.resolve())
    codes = wait_with_progress(procs, db)
    console.print(f"{n} workers finished in {time.perf_counter() - t0:.1f} s (exit codes {codes})")
    if any(codes):  # a worker that died is not a finished campaign
        fail(f"{sum(1 for c in codes if c)} of {n} workers failed; see {work_dir.resolve()}/worker-*.log", code=1)


def demo_cmd(
    mdr_dir: Annotated[Path | None, typer.Option(help="Use MDR entries instead of the built-in materials")] = None,
    limit: Annotated[int, typer.Option(help="Materials from --mdr-dir")] = 8,
    workers: Annotated[int, typer.Option(help="Local workers")] = 2,
    out: Annotated[Path, typer.Option(help="Folder for the ranked table (CSV)")] = Path("tdph_out/demo"),
) -> None:
    """The README's main job: embedded database, a small campaign, two local workers, a ranked table."""
    from ..campaign.queries import query_rows, write_dispersion_plots, write_ranked_csv
    from ..campaign.settings import resolve
    from ..campaign.submit import mdr_items, submit, write_demo_structures
    from ..campaign.worker import start_workers

    db = resolve(None)
    console.print(f"database: {db.source} {db.display}")
    out.mkdir(parents=True, exist_ok=True)
    items = mdr_items(mdr_dir, limit=limit) if mdr_dir else write_demo_structures(out)
    report = submit(items, db, None, [300.0], category="gpu", campaign="demo")
    console.print(f"submitted {report.new} new materials ({report.skipped} already computed)")
    t0 = time.perf_counter()
    procs = start_workers(workers, db, ["gpu", "cpu"], (out / "runs").resolve())
    wait_with_progress(procs, db)
    console.print(f"workers finished in {time.perf_counter() - t0:.1f} s")
    # this submission's keys: a database that holds demo runs of older settings or models lists only these
    rows = query_rows(db, campaign="demo", keys=report.keys)
    emit_rows(rows, "table")
    n_plots = write_dispersion_plots(db, "demo", out, keys=report.keys)
    console.print(f"wrote {n_plots} dispersion plots (harmonic vs 300 K) under {out}")
    console.print(f"wrote {write_ranked_csv(rows, out / 'ranked.csv')}")
