"""Training data from MDR harmonic force constants: F = -Phi u, E = E_ref + u Phi u / 2.

Per compound, ``n_configs`` supercells with every atom displaced by a random direction and a
magnitude uniform in [u_min, u_max] (paper: 10 supercells, 0.01-0.05 A). Labels come from the
symmetrized DFT force constants, so they are exact harmonic PBEsol forces for those displacements.

E_ref is the base model's energy of the undistorted DFT supercell: the energy labels then carry
only the harmonic increment on the model's own energy scale, so a small energy weight anchors
the energy without teaching a PBE -> PBEsol offset we have no data for.

The split is by compound (never by configuration): ``holdout`` ids always go to validation, the
rest is split at random (seeded) so that ``val_fraction`` of all compounds are held out.
Everything is reproducible from the seed: each compound's displacements come from its own RNG
seeded by (seed, material id), so adding compounds never changes the others.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pymatgen.core import Composition

from ..core import phonons
from ..io.mdr import load_mdr_entry

MANIFEST = "manifest.json"
SPLITS = ("train", "val")


@dataclass(frozen=True)
class DatasetSettings:
    """Options of the harmonic training set: configurations per compound, displacement range (A), split and filters."""

    n_configs: int = 10
    u_min: float = 0.01
    u_max: float = 0.05
    val_fraction: float = 0.05
    seed: int = 0
    max_imaginary_thz: float = 8.0  # deeper DFT instabilities are treated as broken entries (e.g. ReO3 -11.8 THz)
    max_supercell_atoms: int = 400

    def __post_init__(self) -> None:
        if not 0 < self.u_min <= self.u_max:
            raise ValueError(f"need 0 < u_min <= u_max, got {self.u_min}, {self.u_max}")
        if self.n_configs < 1:
            raise ValueError("n_configs must be >= 1")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("val_fraction must be in [0, 1)")


@dataclass
class CompoundData:
    """One compound's configurations (positions in A, forces in eV/A, energies in eV before E_ref)."""

    material_id: str
    formula: str
    source: str
    symbols: list[str]
    cell: np.ndarray
    reference_positions: np.ndarray  # (N, 3) undistorted DFT supercell
    positions: np.ndarray  # (n_configs, N, 3)
    forces: np.ndarray  # (n_configs, N, 3)
    harmonic_energy: np.ndarray  # (n_configs,) u Phi u / 2
    min_frequency_dft: float


def compound_rng(seed: int, material_id: str) -> np.random.Generator:
    """RNG seeded by sha256 of (seed, material id): a compound's draws never depend on the others."""
    digest = hashlib.sha256(f"{seed}:{material_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def random_displacements(rng: np.random.Generator, n_configs: int, n_atoms: int, u_min: float, u_max: float
                         ) -> np.ndarray:
    """(n_configs, n_atoms, 3): isotropic random directions, magnitudes uniform in [u_min, u_max]."""
    direction = rng.standard_normal((n_configs, n_atoms, 3))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    return direction * rng.uniform(u_min, u_max, size=(n_configs, n_atoms, 1))


def harmonic_labels(fc: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forces -Phi u (n_configs, N, 3) and energies u Phi u / 2 for fc (N, N, 3, 3)."""
    n = fc.shape[0]
    phi = fc.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)
    flat = u.reshape(len(u), 3 * n)
    f = -flat @ phi.T
    return f.reshape(u.shape), 0.5 * np.einsum("ci,ci->c", flat, -f)


def compound_data(source: str | Path, settings: DatasetSettings) -> CompoundData:
    """Load one MDR entry and label its random configurations; InputError/ValueError name the entry."""
    entry = load_mdr_entry(source)
    ph = entry.phonon
    n = len(ph.supercell)
    if n > settings.max_supercell_atoms:
        raise ValueError(f"{entry.material_id}: supercell has {n} atoms (> {settings.max_supercell_atoms})")
    fc = entry.dft_force_constants()
    if not np.all(np.isfinite(fc)):
        raise ValueError(f"{entry.material_id}: non-finite DFT force constants")
    freqs = phonons.commensurate_frequencies(ph, fc)
    if freqs.min() < -settings.max_imaginary_thz:
        raise ValueError(f"{entry.material_id}: DFT harmonic mode at {freqs.min():.1f} THz "
                         f"(below -{settings.max_imaginary_thz:g} THz: treated as a broken entry)")
    u = random_displacements(compound_rng(settings.seed, entry.material_id), settings.n_configs, n,
                             settings.u_min, settings.u_max)
    forces, energy = harmonic_labels(fc, u)
    return CompoundData(
        material_id=entry.material_id,
        formula=Composition("".join(ph.primitive.symbols)).reduced_formula,
        source=str(source),
        symbols=list(ph.supercell.symbols),
        cell=np.array(ph.supercell.cell),
        reference_positions=np.array(ph.supercell.positions),
        positions=ph.supercell.positions[None] + u,
        forces=forces,
        harmonic_energy=energy,
        min_frequency_dft=float(freqs.min()),
    )


def _compound_or_error(args: tuple[str, DatasetSettings]) -> CompoundData | tuple[str, str]:
    source, settings = args
    try:
        return compound_data(source, settings)
    except Exception as exc:  # noqa: BLE001 (one broken entry never stops the dataset)
        return source, f"{type(exc).__name__}: {exc}"


def split_compounds(ids: list[str], val_fraction: float, seed: int, holdout: Iterable[str] = ()) -> dict[str, str]:
    """Split by compound: material id -> 'train' | 'val'; holdout ids always 'val'."""
    holdout = set(holdout)
    split = {m: "val" for m in ids if m in holdout}
    rest = sorted(m for m in ids if m not in holdout)
    n_val = max(0, math.ceil(val_fraction * len(ids)) - len(split))
    if rest and val_fraction > 0:
        n_val = max(n_val, 1 if not split else 0)
    order = np.random.default_rng(seed).permutation(len(rest))
    for rank, k in enumerate(order):
        split[rest[k]] = "val" if rank < n_val else "train"
    return split


def build_dataset(
    sources: list[str | Path],
    out_dir: str | Path,
    settings: DatasetSettings = DatasetSettings(),
    holdout: Iterable[str] = (),
    base_model: str | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write ``train.extxyz``, ``val.extxyz`` and ``manifest.json`` to out_dir; return the manifest.

    A manifest with the same settings, sources, hold-out list and base model is reused as is (cache).
    """
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from ..potentials import FOUNDATION_MODEL, model_fingerprint, resolve_calculator

    out = Path(out_dir)
    sources = [str(s) for s in sources]
    model = base_model or FOUNDATION_MODEL
    request = {"settings": asdict(settings), "sources": sorted(sources), "holdout": sorted(set(holdout)),
               "base_model": model, "base_model_hash": model_fingerprint(model)}
    fingerprint = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:16]
    if (out / MANIFEST).exists():
        old = json.loads((out / MANIFEST).read_text())
        if old.get("fingerprint") == fingerprint and all((out / f"{s}.extxyz").exists() for s in SPLITS):
            return old
    out.mkdir(parents=True, exist_ok=True)

    compounds: list[CompoundData] = []
    skipped: list[dict] = []
    jobs = [(s, settings) for s in sources]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    # spawn, not fork: forking a process that already runs torch/OpenMP threads can deadlock
    pool_cm = (ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
               if workers > 1 else _Serial())
    with pool_cm as pool:
        for k, result in enumerate(pool.map(_compound_or_error, jobs, chunksize=4)):
            if isinstance(result, CompoundData):
                compounds.append(result)
            else:
                skipped.append({"source": result[0], "reason": result[1]})
            if progress:
                progress(k + 1, len(jobs))
    seen: dict[str, str] = {}
    for c in list(compounds):  # the same compound twice (tarball and folder) would leak across the split
        if c.material_id in seen:
            compounds.remove(c)
            skipped.append({"source": c.source, "reason": f"duplicate of {seen[c.material_id]}"})
        else:
            seen[c.material_id] = c.source
    split = split_compounds([c.material_id for c in compounds], settings.val_fraction, settings.seed, holdout)

    calc = resolve_calculator(model)
    frames: dict[str, list] = {s: [] for s in SPLITS}
    records = []
    for c in compounds:
        reference = Atoms(c.symbols, positions=c.reference_positions, cell=c.cell, pbc=True)
        reference.calc = calc
        e_ref = float(reference.get_potential_energy())
        for k in range(len(c.positions)):
            atoms = Atoms(c.symbols, positions=c.positions[k], cell=c.cell, pbc=True)
            atoms.info.update({"material_id": c.material_id, "config": k})
            atoms.calc = SinglePointCalculator(atoms, energy=e_ref + float(c.harmonic_energy[k]), forces=c.forces[k])
            frames[split[c.material_id]].append(atoms)
        records.append({"material_id": c.material_id, "formula": c.formula, "source": c.source,
                        "split": split[c.material_id], "n_atoms": len(c.symbols), "e_ref": e_ref,
                        "min_frequency_dft_thz": c.min_frequency_dft})
    for s in SPLITS:
        write(out / f"{s}.extxyz", frames[s], format="extxyz")
    manifest = {
        **request, "fingerprint": fingerprint,
        "e_ref": "base model energy of the undistorted DFT supercell",
        "counts": {s: {"compounds": sum(r["split"] == s for r in records), "structures": len(frames[s])}
                   for s in SPLITS},
        "compounds": records, "skipped": skipped,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


class _Serial:
    """ProcessPoolExecutor stand-in for one worker (no subprocess, easier debugging)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items, chunksize=1):
        return map(fn, items)
