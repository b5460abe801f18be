"""`tdph finetune build-dataset | train | evaluate`."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .common import console

finetune_app = typer.Typer(help="Fine-tune the potential on MDR harmonic force constants; evaluate vs DFT.",
                           no_args_is_help=True)


def _sources(mdr_dir: Path, limit: int | None, sample: int | None, seed: int, max_atoms: int,
             max_supercell_atoms: int | None = None, include: list[str] = ()) -> list[str]:
    """Entries of mdr_dir (filtered, sampled), plus every entry whose id is in ``include`` (hold-outs)."""
    from ..campaign.submit import mdr_items

    every = mdr_items(mdr_dir, max_atoms)
    items = [i for i in every if not max_supercell_atoms or 0 < i.cost_hint <= max_supercell_atoms]
    if sample:
        items = random.Random(seed).sample(items, min(sample, len(items)))
    items = items[:limit] if limit else items
    chosen = {i.material_id for i in items}
    items += [i for i in every if i.material_id in set(include) and i.material_id not in chosen]
    return [i.source for i in items]


def _ids(values: list[str] | None, files: list[Path] | None) -> list[str]:
    """Material ids from the command line and from files (one id per line, or a CSV with an mp_id column)."""
    ids = list(values or [])
    for f in files or []:
        lines = f.read_text().splitlines()
        if lines and "mp_id" in lines[0].split(","):
            col = lines[0].split(",").index("mp_id")
            ids += [line.split(",")[col] for line in lines[1:] if line.strip()]
        else:
            ids += [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    return ids


MdrDir = Annotated[Path, typer.Option(help="Folder of MDR entries (tarballs or folders)")]


@finetune_app.command("build-dataset")
def build_dataset_cmd(
    mdr_dir: Annotated[list[Path], typer.Option(help="Folder of MDR entries (tarballs or folders); repeat to "
                                                     "combine, e.g. raw_lt20atoms and curated")],
    out: Annotated[Path, typer.Option(help="Dataset folder")] = Path("tdph_finetune/dataset"),
    labels: Annotated[str, typer.Option(help="on-the-fly: cells with their DFT force constants, fresh "
                                             "displacements every step (tdph finetune train); fixed: "
                                             "n-configs displaced supercells as extxyz (any MLIP code)")] = "on-the-fly",
    limit: Annotated[int | None, typer.Option(help="First N entries")] = None,
    sample: Annotated[int | None, typer.Option(help="N entries at random (seeded)")] = None,
    max_atoms: Annotated[int, typer.Option(help="Keep entries with fewer primitive-cell atoms")] = 20,
    max_supercell_atoms: Annotated[int | None, typer.Option(help="Keep entries with supercells up to this size "
                                                                 "(index.csv)")] = None,
    max_cell_atoms: Annotated[int, typer.Option(help="on-the-fly: largest training cell; bigger supercells "
                                                     "give their maximal commensurate sub-cells")] = 64,
    n_configs: Annotated[int, typer.Option(help="fixed: random-displacement supercells per compound")] = 10,
    u_min: Annotated[float, typer.Option(help="fixed: smallest displacement (A)")] = 0.01,
    u_max: Annotated[float, typer.Option(help="fixed: largest displacement (A)")] = 0.05,
    val_fraction: Annotated[float, typer.Option(help="Share of compounds held out")] = 0.05,
    max_imaginary: Annotated[float, typer.Option(help="Skip entries with a DFT mode below -this (THz)")] = 8.0,
    holdout: Annotated[list[str] | None, typer.Option(help="Material id always held out")] = None,
    holdout_file: Annotated[list[Path] | None, typer.Option(help="File of ids (or CSV with mp_id) held out")] = None,
    include_file: Annotated[list[Path] | None, typer.Option(help="File of ids always in the dataset (split as "
                                                                  "usual)")] = None,
    base_model: Annotated[str | None, typer.Option(help="Model for the energy reference E_ref")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    workers: Annotated[int | None, typer.Option(help="Processes (default: CPU count)")] = None,
) -> None:
    """Training data from the DFT force constants (F = -Phi u), split by compound (seeded).

    Hold-out ids are always in the validation split, and added from --mdr-dir when not sampled.
    The on-the-fly build resumes after a kill and skips compounds already written.
    """
    held_out = _ids(holdout, holdout_file)
    sources: list[str] = []
    for d in mdr_dir:
        sources += _sources(d, limit, sample, seed, max_atoms, max_supercell_atoms, held_out + _ids(None, include_file))
    if labels == "on-the-fly":
        from ..finetune.cell_dataset import CellDatasetSettings, build_cell_dataset

        cell_settings = CellDatasetSettings(max_cell_atoms=max_cell_atoms, val_fraction=val_fraction, seed=seed,
                                            max_imaginary_thz=max_imaginary)
        m = build_cell_dataset(sources, out, cell_settings, held_out, base_model, workers, progress=_progress())
        c = m["counts"]
        console.print(f"{out}: train {c['train']['compounds']} compounds / {c['train']['cells']} cells, "
                      f"val {c['val']['compounds']} / {c['val']['cells']}; {len(m['skipped'])} skipped")
    elif labels == "fixed":
        from ..finetune.dataset import DatasetSettings, build_dataset

        settings = DatasetSettings(n_configs=n_configs, u_min=u_min, u_max=u_max, val_fraction=val_fraction,
                                   seed=seed, max_imaginary_thz=max_imaginary)
        m = build_dataset(sources, out, settings, held_out, base_model, workers, progress=_progress())
        c = m["counts"]
        console.print(f"{out}: train {c['train']['compounds']} compounds / {c['train']['structures']} structures, "
                      f"val {c['val']['compounds']} / {c['val']['structures']}; {len(m['skipped'])} skipped")
    else:
        console.print(f"[red]error:[/red] --labels must be on-the-fly or fixed, not {labels!r}")
        raise typer.Exit(2)
    for s in m["skipped"]:
        console.print(f"  skipped {Path(s['source']).name}: {s['reason']}")


def _progress(every: float = 10.0):
    """A progress callback ``(*labels, k, n)`` printing '<labels> k/n' at most every ``every`` seconds and at k == n."""
    import time

    last = [0.0]

    def report(*args) -> None:
        *labels, k, n = args
        now = time.monotonic()
        if k == n or now - last[0] >= every:
            last[0] = now
            console.print("  " + " ".join(f"{x}:" for x in labels) + f" {k}/{n}", highlight=False)

    return report


@finetune_app.command("train")
def train_cmd(
    dataset: Annotated[Path, typer.Option(help="Folder written by build-dataset")] = Path("tdph_finetune/dataset"),
    out: Annotated[Path, typer.Option(help="Training folder (model/, checkpoints/, training.json)")] = Path(
        "tdph_finetune/training"),
    base_model: Annotated[str | None, typer.Option(help="Model to start from (default: the dataset's)")] = None,
    epochs: Annotated[int, typer.Option()] = 150,
    batch_size: Annotated[int, typer.Option(help="fixed labels: structures per batch")] = 8,
    atoms_per_batch: Annotated[int, typer.Option(help="on-the-fly: atoms per batch")] = 256,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default 1e-4)")] = None,
    schedule: Annotated[str, typer.Option(help="fixed labels: cosine or constant")] = "cosine",
    energy_weight: Annotated[float, typer.Option(help="Energy loss weight (forces: 1)")] = 0.1,
    loss: Annotated[str, typer.Option(help="on-the-fly: l1 or huber force loss")] = "l1",
    freeze: Annotated[list[str] | None, typer.Option(help="on-the-fly: keep parameters with this name prefix "
                                                          "fixed (repeat), e.g. embedding")] = None,
    u_min: Annotated[float, typer.Option(help="on-the-fly: smallest displacement (A)")] = 0.01,
    u_max: Annotated[float, typer.Option(help="on-the-fly: largest displacement (A)")] = 0.05,
    max_minutes: Annotated[float | None, typer.Option(help="on-the-fly: stop (with a checkpoint) after this "
                                                           "long; run again to continue")] = None,
    accelerator: Annotated[str, typer.Option(help="cpu, gpu or auto")] = "auto",
    devices: Annotated[str, typer.Option(help="fixed labels (lightning): auto, 1, 4, ...")] = "auto",
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint when present")] = True,
    resume_from: Annotated[Path | None, typer.Option(help="on-the-fly: a committed checkpoint (e.g. the model "
                                                          "folder's resume/last.pt) to continue from when --out "
                                                          "has none: another machine picks up a run")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Fine-tune from the pretrained potential; resumes after a kill; writes a matgl model folder.

    A dataset built with --labels on-the-fly trains with fresh displacements every step
    (finetune.onthefly); one built with --labels fixed trains on its stored structures (lightning).
    """
    manifest = json.loads((dataset / "manifest.json").read_text())
    if manifest.get("kind") == "cells":
        from ..finetune.onthefly import OnTheFlySettings, OnTheFlyTrainer

        settings = OnTheFlySettings(epochs=epochs, atoms_per_batch=atoms_per_batch, lr=lr or 1e-4,
                                    energy_weight=energy_weight, loss=loss, freeze=tuple(freeze or ()),  # type: ignore[arg-type]
                                    u_min=u_min, u_max=u_max, seed=seed)
        device = {"gpu": "cuda"}.get(accelerator, accelerator)
        trainer = OnTheFlyTrainer(dataset, out, base_model, settings, device=device)
        if resume_from is not None:
            trainer.adopt_checkpoint(resume_from)
        r = trainer.run(resume=resume, max_minutes=max_minutes, log=lambda m: console.print(m, highlight=False))
        last = r["history"][-1]
        state = "complete" if r["complete"] else f"stopped at step {r['global_step']}/{r['total_steps']}: run again to resume"
        console.print(f"model {r['model']}: {r['epochs_completed']}/{settings.epochs} epochs ({state}), "
                      f"{r['train_seconds']:.0f} s of training, validation force MAE {last['val_force_mae']:.4f} eV/A")
        return
    from ..finetune.training import TrainSettings, train

    settings_fixed = TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr or 1e-4, lr_schedule=schedule,  # type: ignore[arg-type]
                                   energy_weight=energy_weight, accelerator=accelerator,
                                   devices=int(devices) if devices.isdigit() else devices, seed=seed)
    r = train(dataset, out, base_model, settings_fixed, resume=resume)
    per_epoch = sum(r["epoch_seconds"]) / max(1, len(r["epoch_seconds"]))
    last_mae = r["val_history"][-1]["val_force_mae"] if r["val_history"] else float("nan")
    console.print(f"model {r['model']}: {r['epochs_completed']} epochs, {per_epoch:.0f} s/epoch, "
                  f"validation force MAE {last_mae:.4f} eV/A")


@finetune_app.command("evaluate")
def evaluate_cmd(
    model: Annotated[str, typer.Option(help="Model to evaluate: folder/name, module:factory, or label=spec")],
    mdr_dir: Annotated[Path | None, typer.Option(help="MDR entries to evaluate on")] = None,
    dataset: Annotated[Path | None, typer.Option(help="Evaluate on this dataset's held-out compounds")] = None,
    baseline: Annotated[str, typer.Option(help="Model to compare with (default: the foundation model "
                                                     "M3GNet-PES-MatPES-PBE-2025.2; 'none' for none)")] = "default",
    compare: Annotated[list[str] | None, typer.Option(help="More models as label=spec (matgl folder/name or "
                                                          "module:factory, e.g. SevenNet-0=sevenn.calculator:"
                                                          "SevenNetCalculator); repeat")] = None,
    limit: Annotated[int | None, typer.Option()] = None,
    sample: Annotated[int | None, typer.Option(help="N entries (of --mdr-dir or the held-out ones) at random, "
                                                    "seeded")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    out: Annotated[Path, typer.Option(help="Folder for scores.csv, summary.json, parity.png")] = Path(
        "tdph_finetune/evaluation"),
) -> None:
    """Frequencies at commensurate q vs DFT: MAE per compound and overall, parity plot, stability agreement."""
    from ..finetune.evaluation import evaluate

    if dataset:
        manifest = json.loads((dataset / "manifest.json").read_text())
        sources = [c["source"] for c in manifest["compounds"] if c["split"] == "val"]
        if sample:
            sources = sorted(random.Random(seed).sample(sources, min(sample, len(sources))))
    elif mdr_dir:
        sources = _sources(mdr_dir, limit, sample, seed, 10**6)
    else:
        console.print("[red]error:[/red] give --mdr-dir or --dataset")
        raise typer.Exit(2)
    from ..potentials import FOUNDATION_MODEL

    base_spec = FOUNDATION_MODEL if baseline == "default" else baseline
    models = {} if baseline == "none" else {Path(base_spec).name: base_spec}
    if "=" in model and not Path(model).exists():  # label=spec, as --compare
        label, _, model = model.partition("=")
    else:
        label = Path(model).name if Path(model).name not in ("model", *models) else "fine-tuned"
    models[label if label not in models else model] = model
    for item in compare or []:
        label, sep, spec = item.partition("=")
        if not sep or not label or not spec:
            console.print(f"[red]error:[/red] --compare needs label=spec, not {item!r}")
            raise typer.Exit(2)
        models[label] = spec
    console.print(f"{len(sources)} compounds x {len(models)} models: {', '.join(models)}")
    summary = evaluate(sources, models, out, progress=_progress())
    table = Table("model", "n", "MAE (THz)", "per compound", "stability", "alkali halides", "perovskites",
                  "double perovskites", "other", "s/compound",
                  title="Harmonic frequencies vs DFT at commensurate q (MAE in THz; n compounds)")
    for label, s in summary["by_model"].items():
        fam = s["by_family"]
        table.add_row(label, str(s["compounds"]), f"{s['mae_thz_all_modes']:.3f}", f"{s['mae_thz_mean_of_compounds']:.3f}",
                      f"{100 * s['stability_agreement']:.0f} %",
                      *(f"{fam[f]['mae_thz_mean_of_compounds']:.3f} ({fam[f]['compounds']})" if f in fam else "-"
                        for f in ("alkali_halide", "perovskite", "double_perovskite", "other")),
                      f"{s['seconds'] / max(1, len(sources)):.1f}")
    console.print(table)
    console.print(f"written: {out}/scores.csv, summary.json, parity.png")
