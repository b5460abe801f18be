"""Training data for labels drawn on the fly: each compound's cells with their exact DFT force constants.

Instead of a fixed set of displaced structures (``dataset.build_dataset``: 10 per compound), this
stores what the labels come from — per compound the sub-cells of ``cells.training_cells`` (at
most ``max_cell_atoms`` atoms, force constants folded exactly from the MDR supercell) and the base
model's energy of each undistorted cell (E_ref). The trainer then draws fresh displacements u every
step and labels them F = -Phi u, E = E_ref + u Phi u / 2 at no cost, so no configuration is seen
twice and every compound of the database enters training.

Layout of the dataset folder:

- ``cells/<material_id>.npz``: ``numbers_k``, ``lattice_k``, ``positions_k``, ``fc_k`` (float32,
  (3n, 3n), eV/A^2), ``e_ref_k`` and ``multiple_k`` for each cell k;
- ``manifest.json``: kind ``cells``, settings, a fingerprint, per-compound records (split, cells,
  atoms, DFT minimum frequency, family) and the skipped entries with their reasons.

The split is by compound (``dataset.split_compounds``): seeded, hold-outs always validation.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
CELLS = "cells"
KIND = "cells"


@dataclass(frozen=True)
class CellDatasetSettings:
    """What goes into a cell dataset.

    Parameters
    ----------
    max_cell_atoms
        Largest training cell; bigger MDR supercells are replaced by their maximal diagonal sub-cells.
    val_fraction
        Share of compounds held out (the paper: 5 %).
    seed
        Split seed.
    max_imaginary_thz
        Entries with a DFT mode below minus this are treated as broken (ReO3: -11.8 THz).
    """

    max_cell_atoms: int = 64
    val_fraction: float = 0.05
    seed: int = 0
    max_imaginary_thz: float = 8.0

    def __post_init__(self) -> None:
        if self.max_cell_atoms < 1:
            raise ValueError("max_cell_atoms must be >= 1")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("val_fraction must be in [0, 1)")


def _compound_cells(args: tuple[str, CellDatasetSettings, str, str]) -> dict:
    """Load one entry, fold its cells, write its npz; a failure is returned as a reason."""
    source, settings, cells_dir, base_model = args
    try:
        return _write_compound(source, settings, Path(cells_dir), base_model)
    except Exception as exc:  # noqa: BLE001 (one broken entry never stops the dataset)
        return {"source": source, "error": f"{type(exc).__name__}: {exc}"}


def _write_compound(source: str, settings: CellDatasetSettings, cells_dir: Path, base_model: str) -> dict:
    import spglib
    from ase import Atoms
    from pymatgen.core import Composition

    from ..core import phonons
    from ..io.mdr import load_mdr_entry
    from ..potentials import resolve_calculator
    from .cells import training_cells
    from .evaluation import compound_family

    entry = load_mdr_entry(source)
    ph = entry.phonon
    fc = entry.dft_force_constants()
    if not np.all(np.isfinite(fc)):
        raise ValueError(f"{entry.material_id}: non-finite DFT force constants")
    freqs = phonons.commensurate_frequencies(ph, fc)
    if freqs.min() < -settings.max_imaginary_thz:
        raise ValueError(f"{entry.material_id}: DFT harmonic mode at {freqs.min():.1f} THz "
                         f"(below -{settings.max_imaginary_thz:g} THz: treated as a broken entry)")
    cells = training_cells(ph.unitcell, ph.supercell_matrix, ph.supercell, fc, settings.max_cell_atoms)
    calc = resolve_calculator(base_model)
    arrays: dict[str, np.ndarray] = {}
    for k, c in enumerate(cells):
        atoms = Atoms(numbers=c.numbers, positions=c.positions, cell=c.lattice, pbc=True)
        atoms.calc = calc
        arrays |= {f"numbers_{k}": c.numbers, f"lattice_{k}": c.lattice, f"positions_{k}": c.positions,
                   f"fc_{k}": c.fc.astype(np.float32), f"multiple_{k}": np.array(c.multiple),
                   f"e_ref_{k}": np.array(float(atoms.get_potential_energy()))}
    np.savez(cells_dir / f"{entry.material_id}.npz", **arrays)
    uc = ph.unitcell
    sg = spglib.get_symmetry_dataset((uc.cell, uc.scaled_positions, uc.numbers), symprec=1e-3)
    return {"material_id": entry.material_id, "source": source,
            "formula": Composition("".join(ph.primitive.symbols)).reduced_formula,
            "family": compound_family(list(ph.primitive.symbols), sg.number if sg else 0),
            "n_supercell": len(ph.supercell), "cells": [list(c.multiple) for c in cells],
            "cell_atoms": [c.n_atoms for c in cells], "min_frequency_dft_thz": float(freqs.min())}


def build_cell_dataset(
    sources: list[str | Path],
    out_dir: str | Path,
    settings: CellDatasetSettings = CellDatasetSettings(),
    holdout: Iterable[str] = (),
    base_model: str | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write ``cells/*.npz`` and ``manifest.json`` to out_dir and return the manifest.

    Resumable and cached: compounds whose npz exists are not recomputed, and a manifest with the
    same request (settings, sources, hold-outs, base model and its hash) is returned as is.
    """
    from ..potentials import FOUNDATION_MODEL, model_fingerprint
    from .dataset import SPLITS, split_compounds

    out = Path(out_dir)
    sources = sorted(str(s) for s in sources)
    model = base_model or FOUNDATION_MODEL
    request = {"kind": KIND, "settings": asdict(settings), "sources": sources, "holdout": sorted(set(holdout)),
               "base_model": model, "base_model_hash": model_fingerprint(model)}
    # by entry name and model content, not path: a checkpoint resumes on a machine with other paths
    portable = {**request, "sources": [Path(s).name for s in sources], "base_model": Path(model).name}
    fingerprint = hashlib.sha256(json.dumps(portable, sort_keys=True).encode()).hexdigest()[:16]
    if (out / MANIFEST).exists():
        old = json.loads((out / MANIFEST).read_text())
        if old.get("fingerprint") == fingerprint:
            return old
    cells_dir = out / CELLS
    cells_dir.mkdir(parents=True, exist_ok=True)
    partial = out / "records.jsonl"  # one line per finished compound: a killed build resumes from here
    done: dict[str, dict] = {}
    if partial.exists() and (out / "request.json").exists() and \
            json.loads((out / "request.json").read_text()).get("fingerprint") == fingerprint:
        for line in partial.read_text().splitlines():
            rec = json.loads(line)
            if "error" in rec or (cells_dir / f"{rec['material_id']}.npz").exists():
                done[rec["source"]] = rec
    else:
        partial.write_text("")
        (out / "request.json").write_text(json.dumps({"fingerprint": fingerprint}))
    todo = [s for s in sources if s not in done]
    workers = workers or min(max(1, len(todo)), os.cpu_count() or 1)
    jobs = [(s, settings, str(cells_dir), model) for s in todo]
    pool_cm = (ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
               if workers > 1 and len(jobs) > 1 else None)
    results = pool_cm.map(_compound_cells, jobs, chunksize=4) if pool_cm else map(_compound_cells, jobs)
    with open(partial, "a") as fh:
        for k, rec in enumerate(results):
            done[rec["source"]] = rec
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            if progress:
                progress(len(sources) - len(todo) + k + 1, len(sources))
    if pool_cm:
        pool_cm.shutdown()

    records, skipped, seen = [], [], {}
    for s in sources:
        rec = done[s]
        if "error" in rec:
            skipped.append({"source": s, "reason": rec["error"]})
        elif rec["material_id"] in seen:  # the same compound twice (tarball and curated folder) would leak
            skipped.append({"source": s, "reason": f"duplicate of {seen[rec['material_id']]}"})
        else:
            seen[rec["material_id"]] = s
            records.append(dict(rec))
    split = split_compounds([r["material_id"] for r in records], settings.val_fraction, settings.seed, holdout)
    for r in records:
        r["split"] = split[r["material_id"]]
    manifest = {
        **request, "fingerprint": fingerprint,
        "e_ref": "base model energy of each undistorted cell",
        "counts": {s: {"compounds": sum(r["split"] == s for r in records),
                       "cells": sum(len(r["cells"]) for r in records if r["split"] == s),
                       "atoms_per_epoch": sum(int(np.mean(r["cell_atoms"])) for r in records if r["split"] == s)}
                   for s in SPLITS},
        "compounds": records, "skipped": skipped,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def load_compound_cells(dataset_dir: str | Path, material_id: str) -> list[dict]:
    """The cells of one compound as dicts of arrays (numbers, lattice, positions, fc, e_ref, multiple)."""
    with np.load(Path(dataset_dir) / CELLS / f"{material_id}.npz") as z:
        n = sum(1 for key in z.files if key.startswith("numbers_"))
        return [{key: z[f"{key}_{k}"] for key in ("numbers", "lattice", "positions", "fc", "e_ref", "multiple")}
                for k in range(n)]
