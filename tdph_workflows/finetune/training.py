"""Fine-tuning with matgl's PotentialLightningModule and a lightning Trainer.

Starts from a pretrained potential (its weights, element references and energy scale), trains on a
dataset written by ``dataset.build_dataset`` with a force-dominated L1 loss (the paper reports force
MAE), checkpoints every ``checkpoint_every_steps`` steps and at each epoch end (``last.ckpt``), and
resumes from there after a kill. The result is a matgl model folder (``model/``) that
``matgl.load_model`` and ``tdph --model`` load, with a model card beside it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from lightning.pytorch.callbacks import Callback

from ..settings import current_settings
from .dataset import MANIFEST, SPLITS

MODEL_DIR = "model"
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class TrainSettings:
    """Fine-tuning options: epochs, batch size, learning rate and schedule, loss and its weights, devices."""

    epochs: int = 150  # the paper's count; CPU runs use a few
    batch_size: int = 8
    lr: float = 1e-4
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_fraction: float = 0.01  # cosine decays to lr * this at the last epoch
    loss: Literal["l1_loss", "mse_loss", "huber_loss"] = "l1_loss"
    force_weight: float = 1.0
    energy_weight: float = 0.1
    accelerator: str = "auto"  # cpu | gpu | auto
    devices: int | str = "auto"
    checkpoint_every_steps: int = 50
    seed: int = 0
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")


def _structures_and_labels(path: Path) -> tuple[list, dict[str, list]]:
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = read(path, index=":", format="extxyz") if path.stat().st_size else []
    structures = [AseAtomsAdaptor.get_structure(a) for a in frames]
    labels = {"energies": [float(a.get_potential_energy()) for a in frames],
              "forces": [a.get_forces().tolist() for a in frames]}
    return structures, labels


def graph_datasets(dataset_dir: Path, element_types: tuple[str, ...], cutoff: float) -> dict:
    """The matgl graph datasets per split, cached under dataset_dir/graphs/<dataset fingerprint>-<split>."""
    from matgl.ext.pymatgen import Structure2Graph
    from matgl.graph.data import MGLDataset

    manifest = json.loads((dataset_dir / MANIFEST).read_text())
    converter = Structure2Graph(element_types=tuple(element_types), cutoff=cutoff)
    out = {}
    for split in SPLITS:
        root = dataset_dir / "graphs" / f"{manifest['fingerprint']}-{split}"
        if (root / "fingerprint.json").exists():
            out[split] = MGLDataset(root=str(root), converter=converter, save_cache=True)
        else:
            structures, labels = _structures_and_labels(dataset_dir / f"{split}.extxyz")
            if not structures:
                raise ValueError(f"{dataset_dir}: the {split} split is empty")
            out[split] = MGLDataset(structures=structures, labels=labels, converter=converter, root=str(root),
                                    save_cache=True)
    return out


def train(dataset_dir: str | Path, out_dir: str | Path, base_model: str | None = None,
          settings: TrainSettings = TrainSettings(), resume: bool = True) -> dict:
    """Fine-tune and write out_dir/{model/, checkpoints/, metrics.csv, training.json, README.md}."""
    import lightning as pl
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from matgl.graph.data import MGLDataLoader, collate_fn_pes
    from matgl.utils.training import PotentialLightningModule

    from ..potentials import FOUNDATION_MODEL, apply_torch_threads, load_potential, model_fingerprint

    dataset_dir, out = Path(dataset_dir), Path(out_dir)
    manifest = json.loads((dataset_dir / MANIFEST).read_text())
    base = base_model or manifest.get("base_model") or FOUNDATION_MODEL
    apply_torch_threads()
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    load_potential.cache_clear()  # training changes the module in place: never share it with a cached calculator
    pot = load_potential(base)
    load_potential.cache_clear()
    data = graph_datasets(dataset_dir, pot.model.element_types, pot.model.cutoff)
    from functools import partial

    train_loader, val_loader = MGLDataLoader(
        train_data=data["train"], val_data=data["val"], collate_fn=partial(collate_fn_pes, include_stress=False),
        batch_size=settings.batch_size, num_workers=settings.num_workers,
        generator=torch.Generator().manual_seed(settings.seed))
    module = PotentialLightningModule(
        model=pot.model, element_refs=pot.element_refs.property_offset if pot.element_refs is not None else None,
        data_mean=pot.data_mean, data_std=pot.data_std, energy_weight=settings.energy_weight,
        force_weight=settings.force_weight, stress_weight=0.0, loss=settings.loss, lr=settings.lr,
        # matgl's Adam + cosine schedule, stepped once per epoch: decays to lr * min_lr_fraction at the end
        decay_steps=settings.epochs,
        decay_alpha=settings.min_lr_fraction if settings.lr_schedule == "cosine" else 1.0)
    timer = _EpochTimer()
    checkpoints = ModelCheckpoint(dirpath=out / CHECKPOINTS, save_last=True, save_top_k=0,
                                  every_n_train_steps=settings.checkpoint_every_steps, save_on_train_epoch_end=True)
    trainer = pl.Trainer(max_epochs=settings.epochs, accelerator=settings.accelerator, devices=settings.devices,
                         logger=CSVLogger(out, name="logs", version=0), callbacks=[checkpoints, timer],
                         enable_progress_bar=current_settings().progress, enable_model_summary=False,
                         inference_mode=False, num_sanity_val_steps=0, deterministic=False)
    last = out / CHECKPOINTS / "last.ckpt"
    resumed_from = None
    if resume and last.exists():
        state = torch.load(last, map_location="cpu", weights_only=False)
        resumed_from = {"epoch": int(state["epoch"]), "global_step": int(state["global_step"])}
    t0 = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if resumed_from else None)
    wall = time.perf_counter() - t0
    # pot.model is the trained module; pot keeps the base element references, energy scale and stress output
    pot.save(out / MODEL_DIR, metadata={"base_model": base, "fine_tuned_by": "tdph", "dataset": manifest["fingerprint"]})
    report = {
        "base_model": base, "base_model_hash": model_fingerprint(base), "dataset": str(dataset_dir),
        "dataset_fingerprint": manifest["fingerprint"], "counts": manifest["counts"], "settings": asdict(settings),
        "epochs_completed": trainer.current_epoch, "resumed_from": resumed_from, "epoch_seconds": timer.seconds, "wall_seconds": wall,
        "val_history": _val_history(out / "logs" / "version_0" / "metrics.csv"),
        "model": str(out / MODEL_DIR), "model_hash": model_fingerprint(str(out / MODEL_DIR)),
    }
    previous = out / "training.json"
    if previous.exists():  # a resumed run keeps the epoch times of the run it continues
        report["epoch_seconds"] = json.loads(previous.read_text()).get("epoch_seconds", []) + timer.seconds
    previous.write_text(json.dumps(report, indent=1))
    (out / MODEL_DIR / "README.md").write_text(model_card(report, manifest))
    return report


def model_card(report: dict, manifest: dict) -> str:
    """Markdown model card: base model, data and licence, settings, validation history."""
    c = manifest["counts"]
    s = report["settings"]
    history = "\n".join(f"| {h['epoch']} | {h['val_force_mae']:.4f} | {h['val_energy_mae']:.4f} |"
                        for h in report["val_history"])
    return f"""# Fine-tuned matgl potential (tdph)

- Base model: `{report['base_model']}` (sha256/16 of its files: {report['base_model_hash']})
- Data: MDR phonon database (phonondb PBEsol 2018-04-17, A. Togo), CC BY 4.0; {c['train']['compounds']} training
  compounds / {c['train']['structures']} structures, {c['val']['compounds']} held-out compounds /
  {c['val']['structures']} structures; random displacements {manifest['settings']['u_min']}-{manifest['settings']['u_max']} A,
  F = -Phi u from the symmetrized DFT force constants, E = E_ref + u Phi u / 2 (E_ref: {manifest['e_ref']});
  dataset fingerprint {manifest['fingerprint']}, seed {manifest['settings']['seed']}.
- Training: matgl PotentialLightningModule, {s['loss']}, force weight {s['force_weight']}, energy weight
  {s['energy_weight']}, stress not trained, Adam lr {s['lr']} ({s['lr_schedule']}), batch {s['batch_size']},
  {report['epochs_completed']} epochs, {sum(report['epoch_seconds']):.0f} s of training.
- Licence of these weights: the base model's licence applies to the network; the fine-tuning data is CC BY 4.0
  (cite the Materials Project and phonondb).

| epoch | validation force MAE (eV/A) | validation energy MAE (eV/atom) |
|---|---|---|
{history}
"""


def _val_history(metrics_csv: Path) -> list[dict]:
    import csv

    if not metrics_csv.exists():
        return []
    rows = []
    with open(metrics_csv) as fh:
        for row in csv.DictReader(fh):
            if row.get("val_Force_MAE"):
                rows.append({"epoch": int(row["epoch"]), "val_force_mae": float(row["val_Force_MAE"]),
                             "val_energy_mae": float(row.get("val_Energy_MAE") or "nan")})
    return rows


class _EpochTimer(Callback):
    """Wall seconds of each training epoch (validation excluded)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self._t0)
