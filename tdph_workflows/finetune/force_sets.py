"""Model forces against DFT displacement-force sets, binned by displacement amplitude.

Fine-tuning on harmonic labels (0.01-0.05 A) says nothing about the anharmonic forces that SSCHA
samples at 0.1-0.3 A. A DFT set of supercells with random displacements of known amplitude
(phonopy's KCl-SSCHA set: 0.03-1.5 A; phono3py's NaCl, AlN: 0.03 A) checks both regimes. Such
sets are for evaluation only: nothing here trains on them.

Each supercell of these sets has one displacement magnitude for all its atoms (phonopy's
``random_displacements``); a supercell goes into the bin of its mean per-atom |u|.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_BINS = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


@dataclass(frozen=True)
class ForceSet:
    """A DFT displacement-force set: the ideal supercell and per-configuration displacements and forces."""

    name: str
    numbers: np.ndarray
    lattice: np.ndarray
    positions: np.ndarray  # (N, 3) ideal
    displacements: np.ndarray  # (n_configs, N, 3), A
    forces: np.ndarray  # (n_configs, N, 3), eV/A

    @property
    def amplitudes(self) -> np.ndarray:
        """Mean per-atom displacement magnitude of each configuration (A)."""
        return np.linalg.norm(self.displacements, axis=-1).mean(axis=1)


def load_force_set(path: str | Path, name: str | None = None) -> ForceSet:
    """A phonopy/phono3py params yaml with random displacements and their forces.

    Raises ValueError when the file has no per-supercell displacements and forces.
    """
    import phono3py
    import phonopy

    path = Path(path)
    loader = phono3py.load if "phono3py" in path.name else phonopy.load
    obj = loader(str(path), produce_fc=False, log_level=0)
    dataset = obj.dataset or {}
    if "displacements" not in dataset or "forces" not in dataset:
        raise ValueError(f"{path.name}: no random-displacement forces (dataset keys {sorted(dataset)})")
    sc = obj.supercell
    return ForceSet(name or path.name.split(".yaml")[0], np.array(sc.numbers), np.array(sc.cell),
                    np.array(sc.positions), np.asarray(dataset["displacements"], float),
                    np.asarray(dataset["forces"], float))


def model_forces(force_set: ForceSet, calculator) -> np.ndarray:
    """The calculator's forces (n_configs, N, 3) on every displaced supercell of the set."""
    from ase import Atoms

    out = np.empty_like(force_set.forces)
    for k, u in enumerate(force_set.displacements):
        atoms = Atoms(numbers=force_set.numbers, positions=force_set.positions + u, cell=force_set.lattice, pbc=True)
        atoms.calc = calculator
        out[k] = atoms.get_forces()
    return out


def errors_by_amplitude(force_set: ForceSet, predicted: np.ndarray, bins=DEFAULT_BINS) -> list[dict]:
    """Force MAE (eV/A, per component) and mean |F_DFT| in each amplitude bin that holds configurations."""
    amp = force_set.amplitudes
    rows = []
    for lo, hi in itertools.pairwise(bins):
        sel = (amp >= lo) & (amp < hi)
        if not sel.any():
            continue
        err = np.abs(predicted[sel] - force_set.forces[sel])
        rows.append({"set": force_set.name, "amplitude_min": lo, "amplitude_max": hi, "configs": int(sel.sum()),
                     "force_mae": float(err.mean()), "force_rmse": float(np.sqrt((err ** 2).mean())),
                     "mean_abs_force_dft": float(np.abs(force_set.forces[sel]).mean())})
    return rows
