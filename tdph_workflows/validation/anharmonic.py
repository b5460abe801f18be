"""Anharmonic (3rd and 4th order) force constants by compressive sensing with hiphive.

The DFT-validation workflow of the paper: random-displacement supercells, forces from
any evaluator (DFT, a machine-learned potential, EMT in the tests), a hiphive
``ClusterSpace`` up to the n-th neighbour shell (3rd order: 4th shell, 4th order: 2nd
shell by default), a sparse linear fit (LASSO/ARDR/OMP/least squares) with k-fold
cross-validation from ``trainstation``, and the resulting force constants as
:class:`~tdph_workflows.core.higher_order.SparseFC` (for SCPH) and in phono3py's fc3
layout (for kappa).

When a harmonic fc2 is given (the finite-displacement phonopy one, e.g. the MDR DFT
fc2), its forces are subtracted first and only the 3rd and 4th orders are fitted on
the residual. hiphive always carries a 2nd-order block; it is then restricted to a
cutoff below the nearest-neighbour distance (self terms only, which the acoustic sum
rule removes), unless ``fit_fc2_correction=True`` asks for a harmonic correction up
to ``cutoffs[0]`` (useful when fc2 and the forces come from different methods).

Subtract the fc2 of the *same* method that produced the forces. Measured on NaCl
(MDR 64-atom supercell, M3GNet forces, 24 training structures): subtracting the MDR
DFT fc2 from M3GNet forces leaves the harmonic mismatch in the residual (validation
R^2 0.79, and the fc4 it produced sent SCPH into divergence), subtracting M3GNet's own
fc2 gives R^2 0.988. Fit fc3/fc4 against the calculator's own fc2, then combine them
with the DFT fc2 for SCPH and kappa.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import permutations

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

from ..core.higher_order import SparseFC

FIT_METHODS = ("lasso", "ardr", "omp", "least-squares", "rfe", "elasticnet", "split-bregman")


# --------------------------------------------------------------------------- cutoffs
def neighbour_shells(atoms: Atoms, r_max: float | None = None, tol: float = 1e-3) -> np.ndarray:
    """Distinct interatomic distances (A, ascending) from the atoms of ``atoms`` (periodic)."""
    if r_max is None:
        r_max = 3.0 * float(np.cbrt(atoms.get_volume() / len(atoms))) + 1.0
    d = neighbor_list("d", atoms, r_max)
    d = np.sort(d[d > tol])
    if len(d) == 0:
        raise ValueError(f"no neighbours within {r_max} A")
    shells = [d[0]]
    for x in d[1:]:
        if x - shells[-1] > tol:
            shells.append(x)
    return np.array(shells)


def shell_cutoffs(
    atoms_prim: Atoms,
    n_shell_3: int = 4,
    n_shell_4: int = 2,
    n_shell_2: int | None = None,
    margin: float = 0.1,
    supercell: Atoms | None = None,
) -> tuple[float, float, float]:
    """Cutoffs (c2, c3, c4) in A that include the n-th neighbour shell of ``atoms_prim``.

    Shells are the distinct pair distances of the periodic primitive cell; the cutoff for
    ``n`` shells is ``d_n + margin`` but never beyond the midpoint to shell ``n + 1``. c2
    defaults to the largest cutoff the ``supercell`` allows (half its smallest
    perpendicular width, less 1e-3), or ``n_shell_3`` shells without a supercell; with a
    supercell, cutoffs beyond that width raise (hiphive would find a cluster twice).
    """
    need = max(n_shell_3, n_shell_4, n_shell_2 or 0) + 1
    r_max = 3.0 * float(np.cbrt(atoms_prim.get_volume() / len(atoms_prim))) + 1.0
    shells = neighbour_shells(atoms_prim, r_max)
    while len(shells) < need:
        r_max *= 1.5
        shells = neighbour_shells(atoms_prim, r_max)

    def cut(n: int) -> float:
        if n < 1:
            raise ValueError(f"shell numbers start at 1, got {n}")
        return float(min(shells[n - 1] + margin, 0.5 * (shells[n - 1] + shells[n])))

    c_max = max_cutoff(supercell) - 1e-3 if supercell is not None else np.inf
    c2 = cut(n_shell_2) if n_shell_2 is not None else (c_max if supercell is not None else cut(n_shell_3))
    c3, c4 = cut(n_shell_3), cut(n_shell_4)
    if max(c2, c3, c4) > c_max:
        raise ValueError(
            f"cutoffs ({c2:.3f}, {c3:.3f}, {c4:.3f}) A exceed half the supercell width ({c_max:.3f} A): "
            "use fewer shells or a larger supercell"
        )
    return c2, c3, c4


def max_cutoff(supercell: Atoms) -> float:
    """Half the smallest perpendicular width of the cell: the largest cutoff without self-images."""
    cell = np.asarray(supercell.cell)
    vol = abs(np.linalg.det(cell))
    widths = [vol / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)]
    return 0.5 * float(min(widths))


# ------------------------------------------------------------------ training structures
def random_displacement_supercells(
    supercell: Atoms,
    n_structures: int,
    rms: float | Sequence[float] = 0.03,
    seed: int = 42,
    method: str = "mc",
    d_min: float | None = None,
    n_iter: int = 10,
) -> list[Atoms]:
    """Randomly displaced copies of ``supercell`` (positions displaced, no forces yet).

    ``method="mc"`` uses hiphive's Monte Carlo rattle (moves that bring atoms closer
    than ``d_min``, default 0.85 x nearest-neighbour distance, are mostly rejected,
    which keeps the large-amplitude tails physical), ``"gaussian"`` hiphive's plain
    rattle. The displacements of each structure are rescaled to the requested rms (A,
    per Cartesian component); a list of rms values spreads the structures evenly over them.
    """
    from hiphive.structure_generation import generate_mc_rattled_structures, generate_rattled_structures

    rms_list = [float(rms)] if np.isscalar(rms) else [float(r) for r in rms]
    if n_structures < 1 or not rms_list or min(rms_list) <= 0:
        raise ValueError("need n_structures >= 1 and positive rms values")
    counts = np.full(len(rms_list), n_structures // len(rms_list))
    counts[: n_structures % len(rms_list)] += 1
    if d_min is None:
        d_min = 0.85 * float(neighbour_shells(supercell)[0])
    ideal = supercell.copy()
    ideal.calc = None
    out: list[Atoms] = []
    for k, (r, n) in enumerate(zip(rms_list, counts, strict=True)):
        if n == 0:
            continue
        s = seed + 7919 * k
        if method == "mc":
            structs = generate_mc_rattled_structures(ideal, int(n), r / np.sqrt(n_iter), d_min, seed=s, n_iter=n_iter)
        elif method == "gaussian":
            structs = generate_rattled_structures(ideal, int(n), r, seed=s)
        else:
            raise ValueError(f"method must be 'mc' or 'gaussian', got {method!r}")
        for a in structs:
            u = a.positions - ideal.positions
            u -= u.mean(axis=0)  # no rigid translation
            u *= r / np.sqrt(np.mean(u**2))
            a.positions = ideal.positions + u
            a.calc = None
            out.append(a)
    return out


def attach_forces(structures: Sequence[Atoms], forces: np.ndarray | Callable[[Atoms], np.ndarray]) -> list[Atoms]:
    """Copies of ``structures`` with ``arrays['forces']`` set from an array (n, N, 3) or a callable."""
    out = []
    for k, a in enumerate(structures):
        b = a.copy()
        f = forces(a) if callable(forces) else forces[k]
        b.arrays["forces"] = np.array(f, float).reshape(len(a), 3)
        out.append(b)
    return out


def _forces_of(a: Atoms) -> np.ndarray:
    if "forces" in a.arrays:
        return np.asarray(a.arrays["forces"], float)
    if a.calc is not None:
        return np.asarray(a.get_forces(), float)
    raise ValueError("training structure has neither arrays['forces'] nor a calculator")


# --------------------------------------------------------------------------- fitting
@contextlib.contextmanager
def quiet_hiphive():
    """Silence hiphive/trainstation INFO logs (cluster-space tables on stdout) and sklearn warnings."""
    loggers = [logging.getLogger(name) for name in ("hiphive", "trainstation")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*did not converge.*")  # sklearn LASSO per alpha
            warnings.filterwarnings("ignore", module="sklearn")
            yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def expand_permutations(order: int, sorted_blocks: dict[tuple[int, ...], np.ndarray]) -> dict[tuple[int, ...], np.ndarray]:
    """All distinct index orderings of hiphive's sorted clusters (block axes permuted along)."""
    out: dict[tuple[int, ...], np.ndarray] = {}
    for cluster, block in sorted_blocks.items():
        block = np.asarray(block, float)
        for perm in set(permutations(range(order))):
            key = tuple(cluster[p] for p in perm)
            if key not in out:
                out[key] = block.transpose(perm)
    return out


def sparse_higher_orders(fcs, n_atoms: int, with_fc4: bool) -> tuple[SparseFC, SparseFC | None]:
    """fc3 and (if ``with_fc4``) fc4 of hiphive ``ForceConstants`` as ``SparseFC`` with all index permutations.

    An order the potential does not contain comes back empty, not missing.
    """
    def order(k: int) -> dict:
        return expand_permutations(k, fcs.get_fc_dict(order=k)) if k in fcs.orders else {}

    return SparseFC.from_dict(3, n_atoms, order(3)), SparseFC.from_dict(4, n_atoms, order(4)) if with_fc4 else None


def fc3_to_phono3py(fc3: SparseFC, p2s_map: Sequence[int] | None = None) -> np.ndarray:
    """The fc3 in phono3py's layout (eV/A^3).

    Compact (n_prim, N, N, 3, 3, 3) for the supercell indices ``p2s_map`` of the primitive atoms
    (``Phono3py.primitive.p2s_map``), else full (N, N, N, 3, 3, 3).
    """
    n = fc3.n_atoms
    if p2s_map is None:
        return fc3.to_dense()
    p2s = np.asarray(p2s_map, int)
    row = np.full(n, -1)
    row[p2s] = np.arange(len(p2s))
    keep = row[fc3.clusters[:, 0]] >= 0
    out = np.zeros((len(p2s), n, n, 3, 3, 3))
    c = fc3.clusters[keep]
    out[row[c[:, 0]], c[:, 1], c[:, 2]] = fc3.values[keep]
    return out


@dataclass
class AnharmonicFit:
    """Result of `fit_force_constants`: sparse fc3/fc4 (eV/A^n), fit errors (eV/A) and the hiphive potential."""

    fc3: SparseFC
    fc4: SparseFC | None
    cutoffs: tuple[float, ...]
    fit_method: str
    rmse_train: float  # eV/A, final model on all data
    rmse_validation: float  # eV/A, k-fold
    r2_validation: float
    n_parameters: int
    n_nonzero: int
    n_splits: int
    n_structures: int
    force_rms: float  # rms of the fitted target forces (eV/A), for relative errors
    wall_time_s: float
    fc2_subtracted: bool
    fc2_fit: np.ndarray | None = None  # (N, N, 3, 3): fitted fc2 (no fc2 given) or the correction to it
    fcp: object = field(default=None, repr=False)  # hiphive ForceConstantPotential
    timings: dict = field(default_factory=dict)

    @property
    def relative_rmse_validation(self) -> float:
        """Cross-validated force RMSE relative to the rms of the fitted forces."""
        return self.rmse_validation / self.force_rms

    def fc3_phono3py(self, p2s_map: Sequence[int] | None = None) -> np.ndarray:
        """fc3 for phono3py's ``fc3`` setter (compact with ``p2s_map``, else full)."""
        return fc3_to_phono3py(self.fc3, p2s_map)

    def forces(self, displacements: np.ndarray, fc2: np.ndarray | None = None) -> np.ndarray:
        """Model forces (N, 3) for displacements (N, 3): -(fc2 + fc2_fit) u + fc3 + fc4 terms."""
        u = np.asarray(displacements, float)
        f = self.fc3.forces(u)
        if self.fc4 is not None:
            f = f + self.fc4.forces(u)
        for phi in (fc2, self.fc2_fit):
            if phi is not None:
                f = f - np.einsum("ijab,jb->ia", phi, u)
        return f

    def metrics(self) -> dict:
        """JSON-ready fit statistics: errors, parameter and cluster counts, wall times (s)."""
        return {
            "fit_method": self.fit_method,
            "cutoffs": list(self.cutoffs),
            "rmse_train": self.rmse_train,
            "rmse_validation": self.rmse_validation,
            "relative_rmse_validation": self.relative_rmse_validation,
            "r2_validation": self.r2_validation,
            "n_parameters": self.n_parameters,
            "n_nonzero": self.n_nonzero,
            "n_splits": self.n_splits,
            "n_structures": self.n_structures,
            "wall_time_s": self.wall_time_s,
            "n_clusters_fc3": len(self.fc3.clusters),
            "n_clusters_fc4": 0 if self.fc4 is None else len(self.fc4.clusters),
            **{f"time_{k}_s": v for k, v in self.timings.items()},
        }


def fit_force_constants(
    prim: Atoms,
    supercell: Atoms,
    structures_with_forces: Sequence[Atoms],
    cutoffs: Sequence[float],
    fit_method: str = "lasso",
    fc2: np.ndarray | None = None,
    n_splits: int = 5,
    seed: int = 42,
    fit_fc2_correction: bool = False,
    **fit_kwargs,
) -> AnharmonicFit:
    """Fit 3rd (and 4th when ``len(cutoffs) == 3``) order force constants with hiphive.

    ``supercell`` is the ideal supercell whose atom order the force constants use (pass
    phonopy's/phono3py's supercell to feed them to phono3py); ``structures_with_forces``
    are displaced copies of it with ``arrays['forces']`` (see :func:`attach_forces`) or a
    calculator. ``cutoffs = (c2, c3[, c4])`` in A (:func:`shell_cutoffs`). ``fc2`` (N, N, 3, 3)
    in the supercell's order: its forces are subtracted and only orders >= 3 are fitted.
    ``fit_kwargs`` go to trainstation (e.g. ``alpha`` for LASSO, ``threshold_lambda`` for ARDR).
    """
    with quiet_hiphive():
        return _fit(prim, supercell, structures_with_forces, cutoffs, fit_method, fc2, n_splits, seed,
                    fit_fc2_correction, fit_kwargs)


def _fit(prim, supercell, structures_with_forces, cutoffs, fit_method, fc2, n_splits, seed, fit_fc2_correction,
         fit_kwargs) -> AnharmonicFit:
    from hiphive import ClusterSpace, ForceConstantPotential, StructureContainer
    from trainstation import CrossValidationEstimator

    t0 = time.perf_counter()
    cutoffs = [float(c) for c in cutoffs]
    if len(cutoffs) not in (2, 3):
        raise ValueError("cutoffs must be (c2, c3) or (c2, c3, c4)")
    if fit_method not in FIT_METHODS:
        raise ValueError(f"fit_method must be one of {FIT_METHODS}, got {fit_method!r}")
    n = len(supercell)
    ideal = supercell.copy()
    ideal.calc = None
    cs_cutoffs = list(cutoffs)
    if fc2 is not None:
        fc2 = np.asarray(fc2, float)
        if fc2.shape != (n, n, 3, 3):
            raise ValueError(f"fc2 must have shape ({n}, {n}, 3, 3) in the supercell's order, got {fc2.shape}")
        if not fit_fc2_correction:
            cs_cutoffs[0] = 0.5 * float(neighbour_shells(prim)[0])  # self terms only
    cs = ClusterSpace(prim, cs_cutoffs)
    t_cs = time.perf_counter()

    sc = StructureContainer(cs)
    targets = []
    for a in structures_with_forces:
        if len(a) != n:
            raise ValueError(f"training structure has {len(a)} atoms, supercell {n}")
        u = a.positions - ideal.positions
        u -= np.rint(u @ np.linalg.inv(ideal.cell)) @ np.asarray(ideal.cell)  # wrapped positions
        f = _forces_of(a).copy()
        if fc2 is not None:
            f += np.einsum("ijab,jb->ia", fc2, u)
        s = ideal.copy()
        s.new_array("displacements", u)
        s.new_array("forces", f)
        sc.add_structure(s)
        targets.append(f)
    t_sc = time.perf_counter()
    A, y = sc.get_fit_data()
    cve = CrossValidationEstimator(
        (A, y), fit_method=fit_method, validation_method="k-fold", n_splits=n_splits, seed=seed, **fit_kwargs
    )
    cve.validate()
    cve.train()
    t_fit = time.perf_counter()
    fcp = ForceConstantPotential(cs, cve.parameters)
    fcs = fcp.get_force_constants(ideal)
    fc3, fc4 = sparse_higher_orders(fcs, n, with_fc4=len(cutoffs) == 3)
    corr = fcs.get_fc_array(order=2) if (fc2 is None or fit_fc2_correction) and 2 in fcs.orders else None
    t_fc = time.perf_counter()
    return AnharmonicFit(
        fc3=fc3,
        fc4=fc4,
        cutoffs=tuple(cutoffs),
        fit_method=fit_method,
        rmse_train=float(cve.rmse_train_final),
        rmse_validation=float(cve.rmse_validation),
        r2_validation=float(cve.R2_validation),
        n_parameters=int(cve.n_parameters),
        n_nonzero=int(cve.n_nonzero_parameters),
        n_splits=n_splits,
        n_structures=len(targets),
        force_rms=float(np.sqrt(np.mean(np.square(targets)))),
        wall_time_s=t_fc - t0,
        fc2_subtracted=fc2 is not None,
        fc2_fit=corr,
        fcp=fcp,
        timings={"cluster_space": t_cs - t0, "structure_container": t_sc - t_cs, "fit": t_fit - t_sc,
                 "force_constants": t_fc - t_fit},
    )
