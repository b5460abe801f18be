"""Commensurate sub-cells of an MDR supercell with correctly folded DFT force constants.

A diagonal MDR supercell ``diag(n) @ unitcell`` holds force constants Phi_SC that are periodic
under the unit-cell lattice. For ``m`` with ``m_i | n_i`` the sub-cell ``diag(m) @ unitcell``
has the exact harmonic force constants

    Phi_sub(i', j') = sum over supercell atoms j that are images of j' of Phi_SC(i, j),

with i any supercell atom on the site of i'. A displacement pattern periodic in the sub-cell
gives the same forces in either cell, so F = -Phi_sub u is exact for it and the sub-cell's
q = 0 frequencies are those of the supercell at the q-points commensurate with the sub-cell.
Training on sub-cells spends the model's cost (one graph node per atom) on small structures
without teaching anything the supercell would not: it lets every MDR compound (supercells up to
150 atoms) enter a training step of bounded size.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from phonopy.structure.atoms import PhonopyAtoms
from phonopy.structure.cells import get_supercell


@dataclass
class PhononCell:
    """One training cell: species, lattice (rows, A), positions (A) and Phi (3N, 3N) in eV/A^2."""

    numbers: np.ndarray
    lattice: np.ndarray
    positions: np.ndarray
    fc: np.ndarray
    multiple: tuple[int, int, int]  # m: the cell is diag(m) @ unitcell

    @property
    def n_atoms(self) -> int:
        """Number of atoms of the cell."""
        return len(self.numbers)


def divisor_multiples(n: tuple[int, int, int], n_unit: int, max_atoms: int) -> list[tuple[int, int, int]]:
    """The maximal m (m_i | n_i, prod(m) * n_unit <= max_atoms): no other admissible m is a multiple of it.

    Returns ``[n]`` itself when the whole supercell fits.
    """
    divisors = [[d for d in range(1, k + 1) if k % d == 0] for k in n]
    fits = [m for m in itertools.product(*divisors) if np.prod(m) * n_unit <= max_atoms]
    if not fits:
        return [(1, 1, 1)]
    return [m for m in fits
            if not any(o != m and all(oi % mi == 0 for oi, mi in zip(o, m, strict=True)) for o in fits)]


def fold_force_constants(supercell: PhonopyAtoms, fc: np.ndarray, subcell: PhonopyAtoms,
                         tol: float = 1e-4) -> np.ndarray:
    """Phi of ``subcell`` (3n, 3n) from the supercell's (N, N, 3, 3) ``fc``; every sub-cell site must be a supercell site.

    Raises ValueError when an atom of one cell has no image in the other (not commensurate).
    """
    inv_sub = np.linalg.inv(subcell.cell)
    frac_sc = supercell.positions @ inv_sub  # supercell atoms in sub-cell fractional coordinates
    frac_sub = subcell.scaled_positions
    delta = frac_sc[:, None, :] - frac_sub[None, :, :]
    delta -= np.rint(delta)
    dist = np.linalg.norm(delta @ subcell.cell, axis=-1)  # (N, n)
    image_of = dist.argmin(axis=1)
    if not np.all(dist[np.arange(len(dist)), image_of] < tol):
        raise ValueError("supercell atoms without an image in the sub-cell: not commensurate")
    if np.bincount(image_of, minlength=len(subcell)).min() == 0:
        raise ValueError("a sub-cell atom has no supercell image")
    # the representative supercell atom of each sub-cell site: the one at the same Cartesian position
    same = np.linalg.norm(supercell.positions[:, None, :] - subcell.positions[None, :, :], axis=-1)
    rep = same.argmin(axis=0)
    if not np.all(same[rep, np.arange(len(subcell))] < tol):
        raise ValueError("a sub-cell atom is not at a supercell position")
    n = len(subcell)
    folded = np.zeros((n, n, 3, 3))
    rows = fc[rep]  # (n, N, 3, 3)
    for j_sub in range(n):
        folded[:, j_sub] = rows[:, image_of == j_sub].sum(axis=1)
    return folded.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)


def training_cells(unitcell: PhonopyAtoms, supercell_matrix: np.ndarray, supercell: PhonopyAtoms, fc: np.ndarray,
                   max_atoms: int) -> list[PhononCell]:
    """The maximal diagonal sub-cells (or the supercell itself) of at most ``max_atoms`` atoms.

    ``fc`` is the supercell's (N, N, 3, 3) array; a non-diagonal supercell matrix gives only the
    supercell, and only when it fits.
    """
    smat = np.rint(np.asarray(supercell_matrix)).astype(int)
    if np.count_nonzero(smat - np.diag(np.diag(smat))):
        if len(supercell) > max_atoms:
            raise ValueError(f"non-diagonal supercell of {len(supercell)} atoms (> {max_atoms}) cannot be folded")
        phi = fc.transpose(0, 2, 1, 3).reshape(3 * len(supercell), 3 * len(supercell))
        return [PhononCell(np.array(supercell.numbers), np.array(supercell.cell), np.array(supercell.positions),
                           0.5 * (phi + phi.T), (0, 0, 0))]
    n = tuple(int(k) for k in np.diag(smat))
    cells = []
    for m in divisor_multiples(n, len(unitcell), max_atoms):
        if m == n:
            sub = supercell
            phi = fc.transpose(0, 2, 1, 3).reshape(3 * len(sub), 3 * len(sub))
        else:
            sub = get_supercell(unitcell, np.diag(m))
            phi = fold_force_constants(supercell, fc, sub)
        cells.append(PhononCell(np.array(sub.numbers), np.array(sub.cell), np.array(sub.positions),
                                0.5 * (phi + phi.T), m))
    return cells


def gamma_frequencies(cell: PhononCell, masses: np.ndarray) -> np.ndarray:
    """Gamma-point (q = 0) frequencies (THz, imaginary as negative) of a cell's Phi; ``masses`` in amu per atom."""
    from phonopy.units import get_physical_units

    m = np.repeat(np.asarray(masses, float), 3)
    dyn = cell.fc / np.sqrt(np.outer(m, m))
    w2 = np.linalg.eigvalsh(0.5 * (dyn + dyn.T)) * get_physical_units().DefaultToTHz ** 2
    return np.sign(w2) * np.sqrt(np.abs(w2))
