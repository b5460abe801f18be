"""The force fit's normal equations from folded sufficient statistics equal symfc's, sample by sample."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from phonopy import Phonopy
from symfc.solvers.solver_O2 import prepare_normal_equation_O2

from tdph_workflows.core.estimators import ForceRegression, SymmetricNormalEquations, symfc_basis
from tdph_workflows.io.mdr import load_mdr_entry

# a rhombohedral polytype (R3m) and a monoclinic oxide (Cm): translations of a non-diagonal primitive
# cell and a low-symmetry basis of ~700 parameters
ENTRIES = [("materials-id-574663-cdi2-r3m-160.tar.lzma", [[2, 0, 0], [0, 1, 0], [0, 0, 1]]),
           ("materials-id-753048-tisno4-cm-8.tar.lzma", [[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
           ("materials-id-7596-nbno-p2-1-c-14.tar.lzma", [[1, 0, 0], [0, 2, 0], [0, 0, 1]])]


def supercell_basis(mdr_dir, name, matrix):
    entry = load_mdr_entry(mdr_dir / "raw_lt20atoms" / name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc = Phonopy(entry.phonon.unitcell, matrix, primitive_matrix="P").supercell
    return sc, symfc_basis(sc.cell, sc.scaled_positions, sc.numbers)


@pytest.mark.parametrize("name,matrix", ENTRIES)
def test_folded_normal_equations_equal_symfc(mdr_dir, name, matrix):
    sc, basis = supercell_basis(mdr_dir, name, matrix)
    n = len(sc)
    rng = np.random.default_rng(3)
    u, f = rng.normal(size=(6, 3 * n)) * 0.1, rng.normal(size=(6, 3 * n))
    xtx_ref, xty_ref = prepare_normal_equation_O2(u, f, basis)
    normal = SymmetricNormalEquations(basis, n)
    xtx, xty = normal.equations(*normal.fold(u, f))
    assert np.abs(xtx - xtx_ref).max() <= 1e-12 * np.abs(xtx_ref).max()
    assert np.abs(xty - xty_ref).max() <= 1e-12 * np.abs(xty_ref).max()


def test_fit_recovers_force_constants_and_jackknife_groups_are_independent(mdr_dir):
    """Forces of a known symmetric Phi: the fit returns it from all groups and from every leave-one-out."""
    sc, basis = supercell_basis(mdr_dir, *ENTRIES[0])
    n = len(sc)
    rng = np.random.default_rng(0)
    coefs = rng.normal(size=basis.blocked_basis_set.shape[1])
    phi = np.asarray(basis.compression_matrix @ (basis.blocked_basis_set @ coefs)).reshape(n, n, 3, 3)
    fit = ForceRegression(sc.cell, sc.scaled_positions, sc.numbers, True, n_groups=4, basis=basis)
    u = rng.normal(size=(64, n, 3)) * 0.05
    u[1::2] = -u[::2]
    forces = -np.einsum("ijab,sjb->sia", phi, u)
    fit.add(u, forces)
    for leave_out in (None, 0, 3):
        assert np.allclose(fit.estimate(leave_out), phi, atol=1e-8 * np.abs(phi).max())
    # weighted least squares: only the ratios of the weights matter
    noisy = forces + rng.normal(size=forces.shape) * 0.01
    fits = [ForceRegression(sc.cell, sc.scaled_positions, sc.numbers, True, n_groups=4, basis=basis) for _ in range(3)]
    fits[0].add(u, noisy)
    fits[1].add(u, noisy, weights=np.full(64, 3.0))
    fits[2].add(u, noisy, weights=np.repeat(rng.uniform(0.5, 2.0, 32), 2))
    assert np.allclose(fits[1].estimate(), fits[0].estimate(), rtol=0, atol=1e-10 * np.abs(phi).max())
    assert not np.allclose(fits[2].estimate(), fits[0].estimate(), rtol=0, atol=1e-6 * np.abs(phi).max())
