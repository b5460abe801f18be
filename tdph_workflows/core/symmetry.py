"""Space-group averaging of supercell force constants (paper Fig. 2B).

Our own code: phonopy symmetrizes only index permutation and the sum rule, and
symfc projects onto its basis but needs the basis first (seconds for low
symmetry cells). The average over every image of every atom pair is factored:
group = lattice translations x point-group coset representatives, so the cost
is (|P| + 1) passes over N^2 blocks instead of |G| = |T| |P| passes
(prototype: 0.014 s vs 2.5 s naive for 40 atoms). The result is the orthogonal
projection onto the space-group invariant force constants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import spglib
from phonopy.harmonic.force_constants import symmetrize_force_constants


@dataclass
class SupercellSymmetry:
    """Symmetry of the undistorted supercell as atom permutations."""

    translations_perm: np.ndarray  # (n_t, N): image of atom i under lattice translation t
    point_perm: np.ndarray  # (n_p, N): image of atom i under coset representative p
    point_rot_cart: np.ndarray  # (n_p, 3, 3) Cartesian rotations
    spacegroup: str
    spacegroup_number: int

    @property
    def order(self) -> int:
        """Order |G| = |T| |P| of the supercell's space group (lattice translations x coset representatives)."""
        return len(self.translations_perm) * len(self.point_perm)


def _atom_permutation(frac: np.ndarray, rot: np.ndarray, trans: np.ndarray, tol: float) -> np.ndarray:
    new = frac @ rot.T + trans
    diff = new[:, None, :] - frac[None, :, :]
    diff -= np.rint(diff)
    dist = np.abs(diff).max(axis=2)
    perm = dist.argmin(axis=1)
    if dist[np.arange(len(frac)), perm].max() > tol or len(set(perm.tolist())) != len(frac):
        raise ValueError("symmetry operation does not map the supercell onto itself")
    return perm


def supercell_symmetry(cell: np.ndarray, frac: np.ndarray, numbers: np.ndarray, symprec: float = 1e-4) -> SupercellSymmetry:
    """Find the space group of a supercell and express it as atom permutations."""
    cell = np.asarray(cell, float)
    frac = np.asarray(frac, float) % 1.0
    data = spglib.get_symmetry_dataset((cell, frac, numbers), symprec=symprec)
    if data is None:
        raise ValueError("spglib found no symmetry for the supercell")
    rots, trs = data.rotations, data.translations
    tol = 10 * symprec / min(np.linalg.norm(cell, axis=1))
    is_identity = np.all(rots == np.eye(3, dtype=int), axis=(1, 2))
    t_perm = np.array([_atom_permutation(frac, rots[k], trs[k], tol) for k in np.flatnonzero(is_identity)])
    seen: dict[bytes, int] = {}
    for k, r in enumerate(rots):
        seen.setdefault(r.tobytes(), k)
    reps = list(seen.values())
    p_perm = np.array([_atom_permutation(frac, rots[k], trs[k], tol) for k in reps])
    lt = cell.T
    rot_cart = np.array([lt @ rots[k] @ np.linalg.inv(lt) for k in reps])
    return SupercellSymmetry(t_perm, p_perm, rot_cart, data.international, int(data.number))


def _translation_orbits(t_perm: np.ndarray) -> np.ndarray:
    """(n_t, n_rep): image of each orbit representative under every translation."""
    reps = np.unique(t_perm.min(axis=0))  # smallest index of each orbit
    return t_perm[:, reps]


def _expand(compact: np.ndarray, t_perm: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Full translation-invariant matrix from its representative rows."""
    n = t_perm.shape[1]
    out = np.empty((n, n, 3, 3))
    out[rows[:, :, None], t_perm[:, None, :]] = compact[None]
    return out


def space_group_average(fc: np.ndarray, sym: SupercellSymmetry) -> np.ndarray:
    """Average force constants over all space-group images of every atom pair.

    With T normal in G, avg_G = avg_P o avg_T over point-group coset
    representatives P, and the result is translation invariant, so the
    point-group pass only touches the rows of one atom per translation orbit.
    """
    fc = np.asarray(fc, float)
    t_perm = sym.translations_perm
    rows = _translation_orbits(t_perm)
    compact_t = fc[rows[:, :, None], t_perm[:, None, :]].mean(axis=0)  # (n_rep, N, 3, 3)
    fc_t = _expand(compact_t, t_perm, rows)
    reps = rows[0]
    n_rep, n = len(reps), len(fc)
    acc = np.zeros((n_rep * n, 9))
    for perm, r in zip(sym.point_perm, sym.point_rot_cart, strict=True):
        inv = np.empty_like(perm)
        inv[perm] = np.arange(len(perm))
        block = fc_t[inv[reps]][:, inv].reshape(-1, 9)
        acc += block @ np.kron(r, r).T  # vec(R X R^T) = (R kron R) vec(X)
    acc /= len(sym.point_perm)
    return _expand(acc.reshape(n_rep, n, 3, 3), t_perm, rows)


def symmetrize(fc: np.ndarray, sym: SupercellSymmetry | None, acoustic_sum_rule: bool) -> np.ndarray:
    """Space-group average, index-permutation symmetry and (optionally) the acoustic sum rule."""
    out = space_group_average(fc, sym) if sym is not None else np.array(fc, float)
    out = 0.5 * (out + out.transpose(1, 0, 3, 2))
    if acoustic_sum_rule:
        out = np.ascontiguousarray(out)
        symmetrize_force_constants(out, level=2)
    return out
