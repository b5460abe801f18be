"""Estimators of the effective force constants Phi(T) = <d2V/dR dR>.

Both accumulate per-group sums so that jackknife error bars (leave one group
out) and adaptive sample counts cost no extra potential evaluations, and share
one interface (``GroupedEstimator``: ``consumes``, ``add``, ``estimate``).

* ``HessianAverage``: the paper's estimator, the mean of instantaneous Hessians.
* ``ForceRegression``: least-squares fit F = -Phi u on the same samples. For
  Gaussian u, Stein's lemma gives E[F u^T] E[u u^T]^-1 = -E[d2V], so both
  agree in expectation; the fit needs one force call per sample instead of a
  Hessian (~3N force calls). With translation invariance the fit is done in
  symfc's symmetry-adapted basis (space group, permutation and sum rule built
  in); otherwise (e.g. on-site model potentials) a plain 3N x 3N least squares.

Both take optional importance weights per sample (``add(u, values, weights)``; equal within a
pair): the Hessian average becomes sum w H / sum w per group and the fit a weighted least
squares (per-group X^T W X and X^T W F). The self-consistent loop's sample reuse
(``sscha.reuse``) rebuilds an estimator from all stored samples whenever the weights change.
The leave-one-group-out jackknife then estimates the error of the weighted (self-normalized
importance sampling) estimate: uneven weights widen it, as they should, but the weights are
taken as given, not re-estimated without the left-out group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import numpy as np
from scipy.linalg import get_lapack_funcs
from symfc.basis_sets import FCBasisSetO2
from symfc.utils.utils import SymfcAtoms


class GroupedEstimator(ABC):
    """Common interface of the estimators: per-group sums of antithetic pairs.

    Pairs are dealt round-robin to ``n_groups`` jackknife groups. A caller evaluates
    what ``consumes`` names at the sampled displacements and passes it to ``add``;
    ``estimate(leave_out)`` gives the force constants from all groups or all but one.

    Attributes
    ----------
    consumes
        ``"forces"`` or ``"hessians"``: what ``add`` takes besides the displacements.
    add_timing
        Timing key of ``add``: the force fit's normal-equation update is timed apart
        (``"fit"``), a Hessian sum is cheap and counts as ``"potential"``.
    """

    name: str
    consumes: Literal["forces", "hessians"]
    add_timing: str

    def __init__(self, n_groups: int) -> None:
        if n_groups < 2:
            raise ValueError("need at least two jackknife groups")
        self.n_groups = n_groups
        self.n_samples = 0
        self._next_group = 0

    def _split_pairs(self, n: int) -> list[tuple[int, slice]]:
        if n % 2:
            raise ValueError("samples must come in antithetic (+u, -u) pairs")
        out = []
        for k in range(0, n, 2):
            out.append((self._next_group, slice(k, k + 2)))
            self._next_group = (self._next_group + 1) % self.n_groups
        self.n_samples += n
        return out

    @property
    def groups_filled(self) -> bool:
        """True once every jackknife group has at least one pair (2 * n_groups samples added)."""
        return self.n_samples >= 2 * self.n_groups

    @property
    def already_symmetric(self) -> bool:
        """True when ``estimate`` already has the space-group symmetry and sum rule (no averaging needed)."""
        return False

    @property
    def min_batch_pairs(self) -> int:
        """Fewest pairs the first batch needs so that every leave-one-group-out estimate is defined."""
        return 0

    @abstractmethod
    def add(self, displacements: np.ndarray, values: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Add an even number of paired samples: displacements (n, N, 3) and what ``consumes`` names.

        ``weights`` (n,), optional: importance weights per sample (equal within an antithetic pair);
        the estimate becomes the weighted one (weighted mean, weighted least squares). The scale of
        the weights does not matter, only their ratios.
        """

    @abstractmethod
    def estimate(self, leave_out: int | None = None) -> np.ndarray:
        """Force constants (N, N, 3, 3) from all groups, or from all but group ``leave_out``."""


class HessianAverage(GroupedEstimator):
    """Mean of instantaneous Hessians (paper Eq. 1), per group."""

    name = "hessian"
    consumes = "hessians"
    add_timing = "potential"

    def __init__(self, n_atoms: int, n_groups: int = 8) -> None:
        super().__init__(n_groups)
        self._sums = np.zeros((n_groups, n_atoms, n_atoms, 3, 3))
        self._counts = np.zeros(n_groups)

    def add(self, displacements: np.ndarray | None, hessians: np.ndarray, weights: np.ndarray | None = None) -> None:
        """hessians: (n, 3N, 3N) in eV/A^2 at the n displacements (which the average does not need).

        With ``weights`` (n,) each group holds sum w H and sum w: the estimate is the weighted mean.
        """
        n, dim, _ = hessians.shape
        natom = dim // 3
        blocks = hessians.reshape(n, natom, 3, natom, 3).transpose(0, 1, 3, 2, 4)
        if weights is None:
            for g, sl in self._split_pairs(n):
                self._sums[g] += blocks[sl].sum(axis=0)
                self._counts[g] += sl.stop - sl.start
            return
        w = np.asarray(weights, float)
        for g, sl in self._split_pairs(n):
            self._sums[g] += np.tensordot(w[sl], blocks[sl], axes=1)
            self._counts[g] += w[sl].sum()

    def add_hessians(self, hessians: np.ndarray) -> None:
        """``add`` without displacements (the name tests and scripts use)."""
        self.add(None, hessians)

    def estimate(self, leave_out: int | None = None) -> np.ndarray:
        """Mean Hessian as force constants (N, N, 3, 3) in eV/A^2, from all groups or all but ``leave_out``."""
        keep = np.ones(self.n_groups, bool)
        if leave_out is not None:
            keep[leave_out] = False
        return self._sums[keep].sum(axis=0) / self._counts[keep].sum()


class ForceRegression(GroupedEstimator):
    """Least-squares force constants from (u, F) pairs, per-group sufficient statistics.

    The normal equations of F = -Phi u depend on the samples only through sum u u^T and
    sum F u^T (3N x 3N each), so each jackknife group keeps those two sums and nothing else;
    ``estimate`` builds the normal equations in symfc's basis from them (``SymmetricNormalEquations``).
    """

    name = "force_fit"
    consumes = "forces"
    add_timing = "fit"

    def __init__(
        self,
        cell: np.ndarray,
        frac: np.ndarray,
        numbers: np.ndarray,
        translation_invariant: bool = True,
        n_groups: int = 8,
        basis: FCBasisSetO2 | None = None,
    ) -> None:
        super().__init__(n_groups)
        self.n_atoms = len(numbers)
        self.uses_symfc = translation_invariant
        dim = 3 * self.n_atoms
        if translation_invariant:
            self.basis = basis or symfc_basis(cell, frac, numbers)
            self._normal = SymmetricNormalEquations(self.basis, self.n_atoms)
            self._uu = np.zeros((n_groups, *self._normal.folded_shape))
            self._fu = np.zeros((n_groups, *self._normal.folded_force_shape))
        else:
            self.basis = None
            self._uu = np.zeros((n_groups, dim, dim))
            self._fu = np.zeros((n_groups, dim, dim))

    @property
    def already_symmetric(self) -> bool:
        """True in symfc's basis (translation-invariant fit); the plain least squares is not symmetrized."""
        # symfc's basis carries the space group, permutation symmetry and the sum rule
        return self.uses_symfc

    @property
    def min_batch_pairs(self) -> int:
        """0 with symfc; otherwise enough pairs that every leave-one-group-out fit has rank 3N, plus n_groups."""
        if self.uses_symfc:
            return 0
        # plain least squares: each pair adds one direction; every jackknife subset needs rank 3N
        g = self.n_groups
        return int(np.ceil(3 * self.n_atoms * g / (g - 1))) + g

    def add(self, displacements: np.ndarray, forces: np.ndarray, weights: np.ndarray | None = None) -> None:
        """displacements, forces: (n, N, 3); forces already relative to the reference.

        With ``weights`` (n,) the sums are the weighted ones, sum w u u^T and sum w F u^T (weighted
        least squares).
        """
        n = len(displacements)
        d = np.ascontiguousarray(displacements.reshape(n, -1), dtype=float)
        f = np.ascontiguousarray(forces.reshape(n, -1), dtype=float)
        if weights is not None:
            root = np.sqrt(np.asarray(weights, float))[:, None]
            d, f = d * root, f * root
        rows: dict[int, list[int]] = {}
        for g, sl in self._split_pairs(n):
            rows.setdefault(g, []).extend(range(sl.start, sl.stop))
        for g, idx in rows.items():
            if self.uses_symfc:
                uu, fu = self._normal.fold(d[idx], f[idx])
            else:
                uu, fu = d[idx].T @ d[idx], f[idx].T @ d[idx]
            self._uu[g] += uu
            self._fu[g] += fu

    add_forces = add  # the name benchmarks use

    def estimate(self, leave_out: int | None = None) -> np.ndarray:
        """Fitted force constants (N, N, 3, 3) in eV/A^2, from all groups or all but ``leave_out``.

        Raises
        ------
        UnderdeterminedFit
            With the symfc basis, when the kept samples do not determine its parameters.
        ValueError
            Without the symfc basis, when the kept samples do not span all 3N directions.
        """
        kept = [g for g in range(self.n_groups) if g != leave_out]
        uu, fu = self._uu[kept].sum(axis=0), self._fu[kept].sum(axis=0)
        n = self.n_atoms
        if self.uses_symfc:
            xtx, xty = self._normal.equations(uu, fu)
            # symfc's solve_linear_equation is this LAPACK posv call but drops its status: with too few
            # independent samples for the basis (SiC mp-570690, 954 parameters, 16 pairs) it returned
            # force constants that were pure garbage, and a 76 % "shift"
            (posv,) = get_lapack_funcs(("posv",), (xtx, xty))
            _, coefs, info = posv(xtx, xty, lower=False, overwrite_a=True, overwrite_b=False)
            if info != 0:
                raise UnderdeterminedFit(f"the samples do not determine the {len(xty)} symmetry-adapted "
                                         f"force-constant parameters (normal matrix singular at row {info})")
            fc = self.basis.compression_matrix @ (self.basis.blocked_basis_set @ coefs)
            return np.asarray(fc).reshape(n, n, 3, 3)
        # F = -Phi u  =>  sum F u^T = -Phi sum u u^T
        if np.linalg.matrix_rank(uu) < 3 * n:
            raise ValueError(f"force fit without symmetry basis needs >= {3 * n} independent samples")
        phi = -np.linalg.solve(uu, fu.T).T
        return phi.reshape(n, 3, n, 3).transpose(0, 2, 1, 3)


FOLD_CHUNK_ROWS = 512  # relabelled sample rows per product while folding (512 x 3N doubles)


class SymmetricNormalEquations:
    """Normal equations of F = -Phi u in symfc's basis from the sums sum u u^T and sum F u^T.

    symfc's ``prepare_normal_equation_O2`` forms the design matrix of every sample, a cost of
    n_samples x 3N x n_compr^2 plus a pass over the n_compr^2 normal matrix per ten atoms, whatever
    the sample count (15 s of 18 s for four samples of a 576-atom CdI2 cell). Here the sums are
    folded over the lattice translations of the supercell once per batch, so the design matrix
    is never formed: X^T X = sum_{a, alpha} C_a,alpha^T Ubar C_a,alpha, with C_a,alpha the rows
    of symfc's compact compression matrix for atom a of the unit cell and Cartesian direction
    alpha (a few nonzeros per row), and Ubar = sum_t P_t^T (sum u u^T) P_t. Equal to symfc's result
    to rounding (tests/test_force_fit.py).

    Parameters
    ----------
    basis
        symfc's second-order basis of the supercell (``FCBasisSetO2``, after ``run()``).
    n_atoms
        Atoms in the supercell.
    """

    def __init__(self, basis: FCBasisSetO2, n_atoms: int) -> None:
        n = n_atoms
        compact = basis.compact_compression_matrix.tocsr()
        self.n_compressed = compact.shape[1]
        self.n_unit = compact.shape[0] // (9 * n)
        blocks = np.asarray(basis.atomic_decompr_idx).reshape(n, n)  # (i, j) -> compact row a * N + j'
        unit_atom = blocks // n
        if not (unit_atom == unit_atom[:, :1]).all():
            raise ValueError("symfc's compact rows of an atom do not share one unit-cell atom")
        self._unit_atom = unit_atom[:, 0]
        # relabelling of atom i's row: perm[i, j'] = j
        perm = np.empty((n, n), dtype=np.intp)
        perm[np.arange(n)[:, None], blocks % n] = np.arange(n)[None, :]
        self._perms, self._perm_of_atom = np.unique(perm, axis=0, return_inverse=True)
        self._perm_of_atom = self._perm_of_atom.ravel()
        # unit-cell atoms whose rows see the same relabellings share one folded sum
        classes: dict[tuple[int, ...], int] = {}
        self._class_of_unit = np.array([classes.setdefault(
            tuple(sorted(self._perm_of_atom[self._unit_atom == a])), len(classes)) for a in range(self.n_unit)])
        self._perm_counts = np.zeros((len(classes), len(self._perms)), dtype=int)
        for key, c in classes.items():
            np.add.at(self._perm_counts[c], list(key), 1)
        # per set of compact columns touched: the (a, alpha, (3N x k) block of C) that touch exactly those
        # (blocks sharing columns are summed before the one scatter into the n_compr^2 matrix)
        by_columns: dict[bytes, tuple[np.ndarray, list]] = {}
        for a in range(self.n_unit):
            for alpha in range(3):
                r = ((a * n + np.arange(n))[:, None] * 9 + 3 * alpha + np.arange(3)[None, :]).reshape(-1)
                block = compact[r]
                cols = np.unique(block.indices)
                by_columns.setdefault(cols.tobytes(), (cols, []))[1].append((a, alpha, block[:, cols].tocsc()))
        self._column_sets = list(by_columns.values())
        self._eigvecs = basis.blocked_basis_set
        # symfc's block sandwich walks its block tree once per pair of blocks (18 s for a 612-block Cm
        # cell, minutes for larger ones); its blocks decompressed once serve every estimate instead
        self._blocks = sorted(((np.asarray(node.rows), node.col_begin, node.col_end, node.decompress())
                               for node in self._eigvecs.traverse_data_nodes()), key=lambda b: b[1])
        self.n_basis = self._eigvecs.shape[1]
        self.n_atoms = n

    @property
    def folded_shape(self) -> tuple[int, int, int]:
        """Shape of a folded sum u u^T: (relabelling classes, 3N, 3N)."""
        return (len(self._perm_counts), 3 * self.n_atoms, 3 * self.n_atoms)

    @property
    def folded_force_shape(self) -> tuple[int, int, int]:
        """Shape of a folded sum F u^T: (unit-cell atoms, 3, 3N)."""
        return (self.n_unit, 3, 3 * self.n_atoms)

    def fold(self, u: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sum u u^T and sum F u^T of sample rows u, f (n, 3N), folded over the translations.

        sum_t P_t^T (u u^T) P_t is (P_t u)(P_t u)^T summed: one matrix product over the relabelled
        samples (n x n_translations rows), where relabelling sum u u^T itself moved (3N)^2 numbers per
        translation (100 s of folding for a 960-atom NdAlO3 cell with 96 translations).
        """
        n = self.n_atoms
        u3 = u.reshape(len(u), n, 3)
        ubar = np.zeros(self.folded_shape)
        per_chunk = max(1, FOLD_CHUNK_ROWS // max(len(u), 1))
        for c in range(len(self._perm_counts)):
            used = np.flatnonzero(self._perm_counts[c])
            for start in range(0, len(used), per_chunk):
                ks = used[start:start + per_chunk]
                scale = np.sqrt(self._perm_counts[c, ks])[None, :, None, None]
                rows = (u3[:, self._perms[ks], :] * scale).reshape(-1, 3 * n)
                ubar[c] += rows.T @ rows
        fu3 = (f.T @ u).reshape(n, 3, n, 3)
        fbar = np.zeros(self.folded_force_shape)
        for i in range(n):
            fbar[self._unit_atom[i]] += fu3[i][:, self._perms[self._perm_of_atom[i]], :].reshape(3, 3 * n)
        return ubar, fbar

    def equations(self, ubar: np.ndarray, fbar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """X^T X and X^T y in symfc's basis (what ``prepare_normal_equation_O2`` returns) from folded sums."""
        m22 = np.zeros((self.n_compressed, self.n_compressed))
        m2y = np.zeros(self.n_compressed)
        for cols, blocks in self._column_sets:
            # D^T G D as (D^T G) D with G symmetric: the sparse factor on the left, so scipy never
            # copies the (3N)^2 dense G (dense @ sparse ravels it: 5.6 of 10.5 s for 960 atoms)
            part = sum((block.T @ (block.T @ ubar[self._class_of_unit[a]]).T).T for a, _, block in blocks)
            m22[np.ix_(cols, cols)] += part
            m2y[cols] -= sum(block.T @ fbar[a, alpha] for a, alpha, block in blocks)
        return self._sandwich(m22), self._eigvecs.T @ m2y

    def _sandwich(self, m: np.ndarray, chunk_columns: int = 1024) -> np.ndarray:
        """B^T m B for symfc's blocked basis B, m symmetric; B m is formed ~1024 basis columns at a time."""
        out = np.empty((self.n_basis, self.n_basis))
        start = 0
        while start < len(self._blocks):
            stop, width = start, 0
            while stop < len(self._blocks) and (width < chunk_columns or stop == start):
                width += self._blocks[stop][2] - self._blocks[stop][1]
                stop += 1
            c0, c1 = self._blocks[start][1], self._blocks[stop - 1][2]
            mb = np.empty((m.shape[0], c1 - c0))  # m @ B[:, c0:c1]
            for rows, b0, b1, data in self._blocks[start:stop]:
                mb[:, b0 - c0:b1 - c0] = m[:, rows] @ data
            for rows, b0, b1, data in self._blocks:
                out[b0:b1, c0:c1] = data.T @ mb[rows]
            start = stop
        return out


class UnderdeterminedFit(ValueError):
    """The samples so far do not determine the force constants: more samples are needed."""


def symfc_basis(cell: np.ndarray, frac: np.ndarray, numbers: np.ndarray) -> FCBasisSetO2:
    """Symmetry-adapted second-order basis of the supercell (cache it per material)."""
    atoms = SymfcAtoms(numbers=numbers, scaled_positions=frac, cell=cell)
    return FCBasisSetO2(atoms, log_level=0).run()


def jackknife(values: np.ndarray) -> float | np.ndarray:
    """Standard error from leave-one-group-out estimates.

    Parameters
    ----------
    values
        Leave-one-group-out estimates along axis 0: shape (g,) gives a float,
        shape (g, ...) an array of standard errors of shape (...).
    """
    values = np.asarray(values, float)
    g = len(values)
    se = np.sqrt((g - 1) / g * ((values - values.mean(axis=0)) ** 2).sum(axis=0))
    return float(se) if se.ndim == 0 else se
