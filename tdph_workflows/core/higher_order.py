"""Sparse higher-order force constants on a supercell (3rd and 4th order).

Dense 4th-order tensors of a 135-atom supercell would hold (3*135)^4 ~ 2.7e10 numbers; within the
short cutoffs used for anharmonic fits only a few thousand atom clusters are non-zero, so they are
kept as a list of clusters and their Cartesian blocks.

Convention: `clusters` lists every ordered index tuple (i, j, k[, l]) of supercell atoms with a
non-zero block (all permutations present, as in a dense tensor), `values[n]` is the block
d^nV / du_i,a du_j,b ... in eV/A^n, and the potential is V = sum_n (1/n!) sum Phi u...u.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SparseFC:
    """Force constants of one order (3 or 4) as `clusters` (n, order) and blocks `values` (n, 3, ..., 3), eV/A^order."""

    order: int
    n_atoms: int
    clusters: np.ndarray  # (n, order) int
    values: np.ndarray  # (n, 3, ..., 3) float, `order` Cartesian axes

    def __post_init__(self):
        if self.clusters.ndim != 2 or self.clusters.shape[1] != self.order:
            raise ValueError(f"clusters must have shape (n, {self.order}), got {self.clusters.shape}")
        if self.values.shape != (len(self.clusters), *(3,) * self.order):
            raise ValueError(f"values must have shape (n, {', '.join('3' * self.order)}), got {self.values.shape}")

    @classmethod
    def from_dict(cls, order: int, n_atoms: int, blocks: dict[tuple[int, ...], np.ndarray]) -> SparseFC:
        """From {(i, j, ...): block}, e.g. hiphive's ForceConstants.get_fc_dict(order, permutations=True)."""
        keys = sorted(blocks)
        clusters = np.array(keys, dtype=int).reshape(len(keys), order)
        values = np.array([blocks[k] for k in keys], dtype=float).reshape(len(keys), *(3,) * order)
        return cls(order, n_atoms, clusters, values)

    @classmethod
    def from_dense(cls, dense: np.ndarray, tol: float = 0.0) -> SparseFC:
        """From a dense (N,)*order + (3,)*order array; blocks with max |value| <= tol are dropped."""
        order = dense.ndim // 2
        n_atoms = dense.shape[0]
        mags = np.abs(dense).reshape(*dense.shape[:order], -1).max(axis=-1)
        clusters = np.argwhere(mags > tol)
        values = dense[tuple(clusters.T)]
        return cls(order, n_atoms, clusters, values)

    def to_dense(self) -> np.ndarray:
        """Dense array (N,)*order + (3,)*order; only for small supercells (tests, brute-force checks)."""
        dense = np.zeros((self.n_atoms,) * self.order + (3,) * self.order)
        dense[tuple(self.clusters.T)] = self.values
        return dense

    def energy(self, displacements: np.ndarray) -> float:
        """(1/n!) sum Phi u...u for displacements (N, 3) in A."""
        u = displacements[self.clusters]  # (n, order, 3)
        term = self.values
        for k in range(self.order):
            term = np.einsum("na...,na->n...", term, u[:, k])
        return float(term.sum() / np.prod(np.arange(1, self.order + 1)))

    def forces(self, displacements: np.ndarray) -> np.ndarray:
        """-dV/du (N, 3) in eV/A: contract all but the first index."""
        u = displacements[self.clusters]
        term = self.values
        for k in range(self.order - 1, 0, -1):
            term = np.einsum("n...a,na->n...", term, u[:, k])
        out = np.zeros((self.n_atoms, 3))
        np.add.at(out, self.clusters[:, 0], -term / np.prod(np.arange(1, self.order)))
        return out
