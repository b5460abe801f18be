"""Phonon fine-tuning with labels drawn on the fly from the DFT force constants.

Every step takes a batch of training cells (``cell_dataset``: one cell per compound per epoch,
chosen at random among its commensurate sub-cells), displaces every atom by a fresh random vector
(isotropic direction, magnitude uniform in [u_min, u_max]; the paper's 0.01-0.05 A) and fits the
potential to the exact harmonic labels F = -Phi u and E = E_ref + u Phi u / 2. No displaced
structure is ever stored or seen twice, and the labels cost nothing.

Each cell's graph (matgl's neighbour list) is built once, at the undistorted positions, and only
its fractional coordinates move: for displacements of <= 0.05 A the bond set of a 5-A cutoff
graph is unchanged except for pairs at the cutoff, where M3GNet's envelope is zero to second
order (``tests/test_finetune_onthefly.py`` measures the difference against fresh graphs).

A run is resumable anywhere: ``checkpoints/last.pt`` (weights, Adam state, schedule, position in
the epoch, history; ~4 MB) is written every ``checkpoint_every_s`` seconds, at each epoch end and
on SIGTERM/SIGINT or when ``max_minutes`` is reached; running the same command again continues
from it, on another machine too. Batches and displacements are drawn from RNGs seeded by
(seed, epoch, step), so a resumed run draws what an uninterrupted one would have drawn.
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .cell_dataset import KIND, MANIFEST, load_compound_cells
from .dataset import compound_rng, random_displacements

MODEL_DIR = "model"
CHECKPOINT = "checkpoints/last.pt"
REPORT = "training.json"


@dataclass(frozen=True)
class OnTheFlySettings:
    """Training settings; all but ``epochs`` must match when a run is resumed.

    Parameters
    ----------
    epochs
        Passes over the training compounds (one cell each per pass).
    atoms_per_batch
        A batch closes before its atom count would exceed this (one cell at least).
    lr, warmup_fraction, min_lr_fraction
        Adam learning rate, linear warm-up over this share of all steps, then cosine decay to
        ``lr * min_lr_fraction`` at the last step.
    u_min, u_max
        Range of the per-atom displacement magnitude (A).
    energy_weight
        Weight of the per-atom energy error (forces: 1).
    loss
        ``l1`` (the paper's force-MAE loss) or ``huber`` (delta ``huber_delta`` eV/A).
    freeze
        Parameter-name prefixes kept at the base model's values (e.g. ``embedding``).
    val_configs
        Fixed displaced copies of each validation cell (seeded by compound) for the validation MAE.
    """

    epochs: int = 10
    atoms_per_batch: int = 256
    lr: float = 1e-4
    warmup_fraction: float = 0.02
    min_lr_fraction: float = 0.05
    u_min: float = 0.01
    u_max: float = 0.05
    energy_weight: float = 0.1
    loss: Literal["l1", "huber"] = "l1"
    huber_delta: float = 0.01
    freeze: tuple[str, ...] = ()
    val_configs: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.atoms_per_batch < 1 or self.lr <= 0:
            raise ValueError("epochs and atoms_per_batch must be >= 1 and lr > 0")
        if not 0 < self.u_min <= self.u_max:
            raise ValueError(f"need 0 < u_min <= u_max, got {self.u_min}, {self.u_max}")
        if self.loss not in ("l1", "huber"):
            raise ValueError(f"loss must be l1 or huber, not {self.loss!r}")


@dataclass
class _Cell:
    material_id: str
    numbers: np.ndarray
    graph: object
    lattice: object  # torch (1, 3, 3)
    state: object  # torch (1, k)
    frac0: object  # torch (n, 3)
    inv_lattice: np.ndarray
    fc: np.ndarray  # (3n, 3n) float64
    e_ref: float

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)


@dataclass
class _Progress:
    epoch: int = 0
    step: int = 0  # next step within the epoch
    global_step: int = 0
    train_seconds: float = 0.0
    history: list = field(default_factory=list)
    epochs_planned: list = field(default_factory=list)


def plan_epoch(cells_per_compound: list[int], atoms: list[list[int]], atoms_per_batch: int, seed: int,
               epoch: int) -> list[list[tuple[int, int]]]:
    """Batches of (compound index, cell index) for one epoch: shuffled, one cell per compound, packed by atoms."""
    rng = np.random.default_rng([seed, epoch, 0])
    order = rng.permutation(len(cells_per_compound))
    choice = [int(rng.integers(cells_per_compound[c])) for c in order]
    batches, current, n = [], [], 0
    for c, k in zip(order, choice, strict=True):
        size = atoms[c][k]
        if current and n + size > atoms_per_batch:
            batches.append(current)
            current, n = [], 0
        current.append((int(c), k))
        n += size
    if current:
        batches.append(current)
    return batches


def learning_rate_factor(step: int, total: int, warmup_fraction: float, min_fraction: float) -> float:
    """Linear warm-up then cosine decay from 1 to ``min_fraction``."""
    warmup = max(1, round(warmup_fraction * total))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_fraction + (1 - min_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def harmonic_targets(fc: np.ndarray, u: np.ndarray, e_ref: float) -> tuple[np.ndarray, float]:
    """F = -Phi u (n, 3) and E = E_ref + u Phi u / 2 for one cell's (3n, 3n) Phi."""
    flat = u.reshape(-1)
    f = -(fc @ flat)
    return f.reshape(u.shape), e_ref - 0.5 * float(flat @ f)


class OnTheFlyTrainer:
    """Fine-tunes a matgl potential on a cell dataset; see the module docstring.

    Parameters
    ----------
    dataset_dir
        A folder written by ``cell_dataset.build_cell_dataset``.
    out_dir
        Training folder: ``model/``, ``checkpoints/last.pt``, ``training.json``.
    base_model
        Model to start from (default: the dataset's base model).
    settings
        ``OnTheFlySettings``.
    device
        ``cpu``, ``cuda`` or ``auto``.
    """

    def __init__(self, dataset_dir: str | Path, out_dir: str | Path, base_model: str | None = None,
                 settings: OnTheFlySettings = OnTheFlySettings(), device: str = "auto") -> None:
        import torch

        from ..potentials import apply_torch_threads, load_potential

        self.dataset_dir, self.out = Path(dataset_dir), Path(out_dir)
        self.manifest = json.loads((self.dataset_dir / MANIFEST).read_text())
        if self.manifest.get("kind") != KIND:
            raise ValueError(f"{dataset_dir} is not a cell dataset (build it with --labels on-the-fly)")
        self.settings = settings
        # the dataset's base model by its path where it was built, else by name (another machine)
        recorded = self.manifest["base_model"]
        self.base_model = base_model or (recorded if os.sep not in recorded or Path(recorded).exists()
                                         else Path(recorded).name)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        apply_torch_threads()
        load_potential.cache_clear()  # training changes the module in place: never share it with a cached calculator
        self.potential = copy.deepcopy(load_potential(self.base_model)).to(self.device)
        load_potential.cache_clear()
        self.potential.calc_stresses = False
        self.potential.calc_hessian = False
        for name, p in self.potential.model.named_parameters():
            if any(name.startswith(prefix) for prefix in settings.freeze):
                p.requires_grad_(False)
        records = self.manifest["compounds"]
        self.train_ids = [r["material_id"] for r in records if r["split"] == "train"]
        self.val_ids = [r["material_id"] for r in records if r["split"] == "val"]
        self.train_cells = [self._cells(m) for m in self.train_ids]
        self.val_cells = [self._cells(m) for m in self.val_ids]
        self.val_displacements = [[random_displacements(compound_rng(settings.seed, m), settings.val_configs,
                                                        c.n_atoms, settings.u_min, settings.u_max) for c in cells]
                                  for m, cells in zip(self.val_ids, self.val_cells, strict=True)]
        trainable = [p for p in self.potential.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=settings.lr)
        self._stop = False

    # data -------------------------------------------------------------------
    def _cells(self, material_id: str) -> list[_Cell]:
        import torch
        from ase import Atoms
        from matgl.ext.ase import Atoms2Graph

        model = self.potential.model
        # pairs that a displacement of <= u_max per atom can bring inside the cutoff are in the graph from
        # the start; beyond the cutoff the envelope is zero, so the extra edges change nothing
        converter = Atoms2Graph(model.element_types, model.cutoff + 2 * self.settings.u_max + 1e-3)
        out = []
        for c in load_compound_cells(self.dataset_dir, material_id):
            atoms = Atoms(numbers=c["numbers"], positions=c["positions"], cell=c["lattice"], pbc=True)
            g, lat, state = converter.get_graph(atoms)
            lattice = np.asarray(c["lattice"], float)
            out.append(_Cell(material_id, np.asarray(c["numbers"]), g,
                             torch.as_tensor(np.asarray(lat), dtype=torch.float32).reshape(1, 3, 3),
                             torch.as_tensor(np.asarray(state), dtype=torch.float32).reshape(1, -1),
                             g.frac_coords.clone(), np.linalg.inv(lattice), np.asarray(c["fc"], float),
                             float(c["e_ref"])))
        return out

    def _forward(self, cells: list[_Cell], displacements: list[np.ndarray]):
        """Model energies (B,) and forces (sum n, 3) of the displaced cells, and their labels."""
        import torch
        from torch_geometric.data import Batch

        graphs, f_label, e_label = [], [], []
        for cell, u in zip(cells, displacements, strict=True):
            g = copy.copy(cell.graph)
            g.frac_coords = cell.frac0 + torch.as_tensor(u @ cell.inv_lattice, dtype=torch.float32)
            graphs.append(g)
            f, e = harmonic_targets(cell.fc, u, cell.e_ref)
            f_label.append(f)
            e_label.append(e)
        batch = Batch.from_data_list(graphs).to(self.device)
        lat = torch.cat([c.lattice for c in cells]).to(self.device)
        state = torch.cat([c.state for c in cells]).to(self.device)
        energy, forces = self.potential(batch, lat, state)[:2]
        n_atoms = torch.tensor([c.n_atoms for c in cells], dtype=torch.float32, device=self.device)
        return (energy.reshape(-1), forces, torch.as_tensor(np.concatenate(f_label), dtype=torch.float32,
                                                            device=self.device),
                torch.as_tensor(e_label, dtype=torch.float32, device=self.device), n_atoms)

    def _loss(self, energy, forces, f_label, e_label, n_atoms):
        import torch

        s = self.settings
        if s.loss == "huber":
            force_loss = torch.nn.functional.huber_loss(forces, f_label, delta=s.huber_delta)
        else:
            force_loss = torch.nn.functional.l1_loss(forces, f_label)
        energy_loss = torch.nn.functional.l1_loss(energy / n_atoms, e_label / n_atoms)
        return force_loss + s.energy_weight * energy_loss, force_loss, energy_loss

    # validation ---------------------------------------------------------------
    def validate(self) -> dict:
        """Force MAE (eV/A) and energy MAE (eV/atom) on the fixed displaced validation cells."""
        self.potential.eval()
        f_err, e_err, n_f = 0.0, 0.0, 0
        n_e = 0
        for cells, disps in zip(self.val_cells, self.val_displacements, strict=True):
            for cell, u in zip(cells, disps, strict=True):
                for k in range(len(u)):
                    energy, forces, f_label, e_label, n_atoms = self._forward([cell], [u[k]])
                    f_err += float((forces.detach() - f_label).abs().sum())
                    n_f += f_label.numel()
                    e_err += float(((energy.detach() - e_label) / n_atoms).abs().sum())
                    n_e += 1
        self.potential.train()
        return {"val_force_mae": f_err / max(1, n_f), "val_energy_mae": e_err / max(1, n_e)}

    # checkpoints ----------------------------------------------------------------
    def _checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT

    def _save_checkpoint(self, progress: _Progress) -> None:
        import torch

        path = self._checkpoint_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"model": self.potential.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "progress": asdict(progress), "settings": asdict(self.settings),
                    "dataset_fingerprint": self.manifest["fingerprint"], "base_model": self.base_model}, tmp)
        os.replace(tmp, path)  # atomic: a kill during the write leaves the previous checkpoint

    def _load_checkpoint(self) -> _Progress | None:
        import torch

        path = self._checkpoint_path()
        if not path.exists():
            return None
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state["dataset_fingerprint"] != self.manifest["fingerprint"]:
            raise ValueError(f"{path} was trained on dataset {state['dataset_fingerprint']}, not "
                             f"{self.manifest['fingerprint']}: use another --out or --no-resume")
        old = {k: v for k, v in state["settings"].items() if k != "epochs"}
        new = {k: v for k, v in asdict(self.settings).items() if k != "epochs"}
        old["freeze"] = tuple(old.get("freeze", ()))
        if old != new:
            diff = sorted(k for k in new if old.get(k) != new[k])
            raise ValueError(f"{path} was written with other settings ({', '.join(diff)}): use the same ones, "
                             "another --out, or --no-resume")
        self.potential.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        return _Progress(**state["progress"])

    def adopt_checkpoint(self, path: str | Path) -> bool:
        """Copy a checkpoint from elsewhere (a committed one) into ``out_dir`` unless it has its own.

        Returns whether it was copied. The dataset fingerprint and settings are checked when the
        run loads it, as for any resume.
        """
        import shutil

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} not found")
        target = self._checkpoint_path()
        if target.exists():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        return True

    def request_stop(self, *_args) -> None:
        """Finish the current step, save a checkpoint and return (SIGTERM/SIGINT handler)."""
        self._stop = True

    # the loop -------------------------------------------------------------------
    def run(self, resume: bool = True, max_minutes: float | None = None, checkpoint_every_s: float = 300.0,
            log=print) -> dict:
        """Train until ``settings.epochs`` are done or ``max_minutes`` pass; return the report."""
        s = self.settings
        progress = (self._load_checkpoint() if resume else None) or _Progress()
        resumed = progress.global_step > 0
        n_cells = [len(c) for c in self.train_cells]
        atoms = [[cell.n_atoms for cell in c] for c in self.train_cells]
        plans = [plan_epoch(n_cells, atoms, s.atoms_per_batch, s.seed, e) for e in range(s.epochs)]
        total_steps = sum(len(p) for p in plans)
        if not progress.history:
            t0 = time.perf_counter()
            progress.history.append({"epoch": 0, "step": 0, "train_seconds": 0.0, **self.validate(),
                                     "val_seconds": time.perf_counter() - t0})
            log(f"base model: validation force MAE {progress.history[0]['val_force_mae']:.4f} eV/A")
        handlers = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        start = time.perf_counter()
        last_save = start
        self.potential.train()
        try:
            while progress.epoch < s.epochs and not self._stop:
                plan = plans[progress.epoch]
                t_epoch = time.perf_counter()
                sums = np.zeros(3)
                while progress.step < len(plan) and not self._stop:
                    if max_minutes is not None and time.perf_counter() - start > 60 * max_minutes:
                        self._stop = True
                        break
                    t_step = time.perf_counter()
                    rng = np.random.default_rng([s.seed, progress.epoch, progress.step + 1])
                    cells = [self.train_cells[c][k] for c, k in plan[progress.step]]
                    disps = [random_displacements(rng, 1, c.n_atoms, s.u_min, s.u_max)[0] for c in cells]
                    for group in self.optimizer.param_groups:
                        group["lr"] = s.lr * learning_rate_factor(progress.global_step, total_steps,
                                                                  s.warmup_fraction, s.min_lr_fraction)
                    loss, f_loss, e_loss = self._loss(*self._forward(cells, disps))
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    self.optimizer.step()
                    sums += (float(f_loss.detach()), float(e_loss.detach()), 1)
                    progress.step += 1
                    progress.global_step += 1
                    progress.train_seconds += time.perf_counter() - t_step
                    if time.perf_counter() - last_save > checkpoint_every_s:
                        self._save_checkpoint(progress)
                        last_save = time.perf_counter()
                        log(f"epoch {progress.epoch + 1}/{s.epochs} step {progress.step}/{len(plan)}: "
                            f"train force L1 {sums[0] / max(1, sums[2]):.4f} eV/A "
                            f"({progress.train_seconds:.0f} s of training)")
                if progress.step >= len(plan):
                    t_val = time.perf_counter()
                    val = self.validate()
                    progress.history.append({"epoch": progress.epoch + 1, "step": progress.global_step,
                                             "train_seconds": progress.train_seconds,
                                             "epoch_seconds": time.perf_counter() - t_epoch,
                                             "train_force_l1": sums[0] / max(1, sums[2]), **val,
                                             "val_seconds": time.perf_counter() - t_val})
                    log(f"epoch {progress.epoch + 1}/{s.epochs}: validation force MAE {val['val_force_mae']:.4f} "
                        f"eV/A, energy {val['val_energy_mae']:.4f} eV/atom ({progress.train_seconds:.0f} s)")
                    progress.epoch += 1
                    progress.step = 0
                    self._save_checkpoint(progress)
                    self.export(progress, total_steps, resumed)
                    last_save = time.perf_counter()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        self._save_checkpoint(progress)
        return self.export(progress, total_steps, resumed)

    def export(self, progress: _Progress, total_steps: int, resumed: bool) -> dict:
        """Write ``model/`` (matgl folder + card) and ``training.json``; return the report."""
        from ..potentials import model_fingerprint

        model_dir = self.out / MODEL_DIR
        self.potential.calc_stresses = True  # the saved model behaves like the base one
        try:
            self.potential.to("cpu").save(model_dir, metadata={
                "base_model": self.base_model, "fine_tuned_by": "tdph (on-the-fly harmonic labels)",
                "dataset": self.manifest["fingerprint"]})
        finally:
            self.potential.to(self.device)
            self.potential.calc_stresses = False
        report = {
            "trainer": "on-the-fly", "base_model": self.base_model, "base_model_hash": model_fingerprint(self.base_model),
            "dataset": str(self.dataset_dir), "dataset_fingerprint": self.manifest["fingerprint"],
            "counts": self.manifest["counts"], "settings": asdict(self.settings), "device": self.device,
            "torch_threads": _torch_threads(), "epochs_completed": progress.epoch,
            "complete": progress.epoch >= self.settings.epochs, "global_step": progress.global_step,
            "total_steps": total_steps, "train_seconds": progress.train_seconds, "resumed": resumed,
            "history": progress.history, "model": str(model_dir),
            "model_hash": model_fingerprint.__wrapped__(str(model_dir)),
        }
        (self.out / REPORT).write_text(json.dumps(report, indent=1))
        (model_dir / "README.md").write_text(model_card(report, self.manifest))
        return report


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def model_card(report: dict, manifest: dict) -> str:
    """Markdown model card for an on-the-fly fine-tune: data, split, settings, validation history."""
    c, s = manifest["counts"], report["settings"]
    rows = "\n".join(f"| {h['epoch']} | {h['step']} | {h['train_seconds']:.0f} | {h['val_force_mae']:.4f} | "
                     f"{h['val_energy_mae']:.4f} |" for h in report["history"])
    return f"""# Fine-tuned matgl potential (tdph, on-the-fly harmonic labels)

- Base model: `{report['base_model']}` (sha256/16 of its files: {report['base_model_hash']})
- Data: MDR phonon database (phonondb PBEsol 2018-04-17, A. Togo), CC BY 4.0 (cite the Materials
  Project and phonondb); {c['train']['compounds']} training compounds ({c['train']['cells']} cells of at most
  {manifest['settings']['max_cell_atoms']} atoms, force constants folded exactly from the MDR supercells),
  {c['val']['compounds']} validation compounds never trained on (split by compound, seed
  {manifest['settings']['seed']}); dataset fingerprint {manifest['fingerprint']}.
- Labels drawn every step: displacements {s['u_min']}-{s['u_max']} A, F = -Phi u, E = E_ref + u Phi u / 2.
- Training: {s['loss']} force loss + {s['energy_weight']} x per-atom energy loss, Adam lr {s['lr']} (warm-up
  {s['warmup_fraction']}, cosine to {s['min_lr_fraction']}), {s['atoms_per_batch']} atoms per batch,
  frozen: {', '.join(s['freeze']) or 'none'}; {report['epochs_completed']} of {s['epochs']} epochs,
  {report['global_step']} of {report['total_steps']} steps, {report['train_seconds']:.0f} s of training on
  {report['device']} ({report['torch_threads']} threads).
- Licence of these weights: the base model's licence applies to the network; the data is CC BY 4.0.

| epoch | step | training seconds | validation force MAE (eV/A) | validation energy MAE (eV/atom) |
|---|---|---|---|---|
{rows}
"""
