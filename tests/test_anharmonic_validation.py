"""Anharmonic force constants (hiphive), SCPH and RTA kappa (phono3py) on EMT Al and a toy.

EMT fcc Al on a 3x3x3 primitive supercell (27 atoms; half its width, 3.5 A, admits
only the nearest-neighbour shell for 3rd/4th order), 16 mc-rattled structures.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from scipy import constants as sc
from scipy import optimize

pytest.importorskip("hiphive")
pytest.importorskip("trainstation")
pytest.importorskip("phono3py")

from phonopy.structure.atoms import PhonopyAtoms

from tdph_workflows.core.higher_order import SparseFC
from tdph_workflows.core.phonons import build_phonopy, harmonic_force_constants
from tdph_workflows.core.scph import quartic_renormalization, run_scph
from tdph_workflows.potentials import ForceModel, resolve_calculator
from tdph_workflows.validation.anharmonic import (
    attach_forces,
    expand_permutations,
    fc3_to_phono3py,
    fit_force_constants,
    neighbour_shells,
    random_displacement_supercells,
    shell_cutoffs,
)
from tdph_workflows.validation.thermal import kappa_from_modes, kappa_rta

EV_A2_AMU = sc.eV / (sc.angstrom**2 * sc.atomic_mass)  # (rad/s)^2


@pytest.fixture(scope="module")
def al():
    prim = bulk("Al", "fcc", a=4.05)
    unit = PhonopyAtoms(symbols=prim.get_chemical_symbols(), cell=prim.cell[:], scaled_positions=prim.get_scaled_positions())
    smat = 3 * np.eye(3, dtype=int)
    ph = build_phonopy(unit, smat, primitive_matrix=None)
    s = ph.supercell
    supercell = Atoms(s.symbols, cell=s.cell, positions=s.positions, pbc=True)  # phonopy's atom order
    model = ForceModel(resolve_calculator("emt"), supercell)
    fc2, _ = harmonic_force_constants(ph, model.forces)
    structs = random_displacement_supercells(supercell, 16, rms=[0.02, 0.05], seed=3)
    data = attach_forces(structs, model.forces(np.array([a.positions for a in structs])))
    cutoffs = shell_cutoffs(prim, n_shell_3=1, n_shell_4=1, supercell=supercell)
    fit = fit_force_constants(prim, supercell, data[:12], cutoffs, fit_method="ardr", fc2=fc2)
    return {"prim": prim, "unit": unit, "smat": smat, "supercell": supercell, "fc2": fc2, "data": data, "fit": fit}


# ------------------------------------------------------------------------ hiphive
def test_shell_cutoffs_fcc():
    prim = bulk("Al", "fcc", a=4.0)
    shells = neighbour_shells(prim)
    assert np.allclose(shells[:4], 4.0 * np.sqrt([0.5, 1.0, 1.5, 2.0]), atol=1e-6)
    c2, c3, c4 = shell_cutoffs(prim, n_shell_3=4, n_shell_4=2)
    assert shells[3] < c3 < shells[4] and shells[1] < c4 < shells[2] and c2 == c3
    with pytest.raises(ValueError, match="half the supercell"):
        shell_cutoffs(prim, 4, 2, supercell=prim.repeat(3))


def test_random_displacements_rms_and_no_drift():
    sc_ = bulk("Al", "fcc", a=4.05).repeat(3)
    structs = random_displacement_supercells(sc_, 4, rms=[0.01, 0.04], seed=1)
    rms = [np.sqrt(np.mean((a.positions - sc_.positions) ** 2)) for a in structs]
    assert np.allclose(sorted(rms), [0.01, 0.01, 0.04, 0.04])
    assert all(np.allclose((a.positions - sc_.positions).mean(axis=0), 0, atol=1e-12) for a in structs)


def test_expand_permutations_matches_dense():
    rng = np.random.default_rng(0)
    block = rng.normal(size=(3, 3, 3))
    block = 0.5 * (block + block.transpose(0, 2, 1))  # symmetric in the two axes of the repeated atom
    full = expand_permutations(3, {(0, 1, 1): block})
    assert len(full) == 3 and np.allclose(full[(1, 0, 1)], block.transpose(1, 0, 2))
    fc3 = SparseFC.from_dict(3, 2, full)
    dense = fc3.to_dense()
    assert np.allclose(dense[1, 1, 0], block.transpose(1, 2, 0))
    compact = fc3_to_phono3py(fc3, p2s_map=[1])
    assert compact.shape == (1, 2, 2, 3, 3, 3) and np.allclose(compact[0], dense[1])


def test_fit_reproduces_emt_forces_on_held_out_structures(al):
    fit, fc2, supercell = al["fit"], al["fc2"], al["supercell"]
    m = fit.metrics()
    assert fit.fc2_subtracted and m["n_nonzero"] <= m["n_parameters"]
    assert m["r2_validation"] > 0.99 and fit.relative_rmse_validation < 0.08  # of the anharmonic residual
    err, ref, err_anh, ref_anh = [], [], [], []
    for a in al["data"][12:]:
        u = a.positions - supercell.positions
        f = a.arrays["forces"]
        err.append(fit.forces(u, fc2) - f)
        ref.append(f)
        f_anh = f + np.einsum("ijab,jb->ia", fc2, u)
        err_anh.append(fit.forces(u) - f_anh)
        ref_anh.append(f_anh)
    rel = np.sqrt(np.mean(np.square(err)) / np.mean(np.square(ref)))
    rel_anh = np.sqrt(np.mean(np.square(err_anh)) / np.mean(np.square(ref_anh)))
    assert rel < 0.02  # total forces
    assert rel_anh < 0.1  # the anharmonic part alone
    # permutation symmetry and acoustic sum rule of the sparse tensors
    d3 = fit.fc3.to_dense()
    assert np.allclose(d3, d3.transpose(1, 0, 2, 4, 3, 5)) and np.allclose(d3, d3.transpose(0, 2, 1, 3, 5, 4))
    assert np.abs(d3.sum(axis=2)).max() < 1e-8 * max(1.0, np.abs(d3).max())


# --------------------------------------------------------------------------- SCPH
def _einstein(masses, w0_thz, phi4):
    n = len(masses)
    k = masses * (2 * np.pi * 1e12 * w0_thz) ** 2 / EV_A2_AMU
    fc2 = np.zeros((n, n, 3, 3))
    blocks = {}
    for i in range(n):
        fc2[i, i] = np.eye(3) * k[i]
        b = np.zeros((3,) * 4)
        for a in range(3):
            b[a, a, a, a] = phi4
        blocks[(i, i, i, i)] = b
    return fc2, SparseFC.from_dict(4, n, blocks), k


@pytest.mark.parametrize("temperature,quantum", [(0.0, True), (300.0, True), (800.0, False)])
def test_scph_einstein_quartic_matches_analytic(temperature, quantum):
    """m w^2 = m w0^2 + 1/2 phi4 <u^2>(w), <u^2> = hbar (1 + 2n) / (2 m w) (classical kT / (m w^2))."""
    masses = np.array([10.0, 27.0, 60.0])
    w0 = np.array([1.0, 3.0, 0.7])
    phi4 = 2.0  # eV/A^4
    fc2, fc4, k = _einstein(masses, w0, phi4)
    res = run_scph(fc2, fc4, masses, temperature, quantum=quantum, symmetrizer=None, tol_thz=1e-8, alpha=0.7)
    assert res.converged

    def residual(w_thz, m, k0):
        om = 2 * np.pi * 1e12 * w_thz
        if quantum:
            coth = 1.0 if temperature == 0 else 1 / np.tanh(sc.hbar * om / (2 * sc.k * temperature))
            u2 = sc.hbar * coth / (2 * m * sc.atomic_mass * om) / sc.angstrom**2
        else:
            u2 = sc.k * temperature / (m * sc.atomic_mass * om**2) / sc.angstrom**2
        return m * om**2 / EV_A2_AMU - (k0 + 0.5 * phi4 * u2)

    exact = np.sort(np.repeat([optimize.brentq(residual, 0.01, 50, args=(m, k0)) for m, k0 in zip(masses, k)], 3))
    assert np.allclose(res.frequencies_scph, exact, atol=1e-6)
    assert np.all(res.frequencies_scph > np.sort(np.repeat(w0, 3)))


def test_scph_stabilizes_imaginary_einstein_mode():
    fc2, fc4, _ = _einstein(np.array([20.0]), np.array([1.0]), 5.0)
    fc2 = -fc2  # double well: imaginary harmonic mode
    res = run_scph(fc2, fc4, np.array([20.0]), 600.0, symmetrizer=None, tol_thz=1e-6)
    assert res.n_imaginary_initial == 3 and res.n_imaginary_final == 0 and res.stabilized and res.converged


def test_quartic_renormalization_matches_dense():
    rng = np.random.default_rng(1)
    n = 2
    d = rng.normal(size=(n,) * 4 + (3,) * 4)
    sig = rng.normal(size=(3 * n, 3 * n))
    sig = sig @ sig.T
    ref = 0.5 * np.einsum("ijklabcd,kcld->ijab", d, sig.reshape(n, 3, n, 3))
    assert np.allclose(quartic_renormalization(SparseFC.from_dense(d), sig), ref)


def test_scph_emt_al_hardens_and_converges(al):
    fit, fc2, supercell = al["fit"], al["fc2"], al["supercell"]
    r300 = run_scph(fc2, fit.fc4, supercell.get_masses(), 300.0)
    r900 = run_scph(fc2, fit.fc4, supercell.get_masses(), 900.0)
    for r in (r300, r900):
        assert r.converged and r.history[-1] < 1e-3 and r.n_imaginary_final == 0
        assert np.abs(r.fc2_eff.sum(axis=1)).max() < 1e-8  # acoustic sum rule
    shift300 = np.mean(r300.frequencies_scph - r300.frequencies_harmonic)
    shift900 = np.mean(r900.frequencies_scph - r900.frequencies_harmonic)
    assert 0 < shift300 < shift900  # quartic hardening at fixed volume grows with T


# -------------------------------------------------------------------------- kappa
def test_kappa_rta_al_and_kappa_from_modes(al):
    fit, fc2 = al["fit"], al["fc2"]
    res = kappa_rta(al["unit"], al["smat"], None, fc2, fit.fc3, 7, [300.0, 600.0])
    assert res.kappa.shape == (2, 3, 3) and res.n_imaginary == 0
    assert np.all(np.isfinite(res.kappa)) and np.all(res.kappa_scalar > 0)
    assert res.kappa_scalar[1] < res.kappa_scalar[0]  # ~1/T for three-phonon scattering
    assert res.weights.sum() == res.n_qpoints == 343
    for t in range(2):
        ref = res.kappa[t]
        for kw in ({"rotations_cartesian": res.rotations_cartesian}, {"gv_by_gv": res.gv_by_gv}):
            k = kappa_from_modes(res.heat_capacities[t], res.group_velocities, res.gamma[t], res.weights, res.volume,
                                 res.n_qpoints, frequencies=res.frequencies, cutoff_frequency=res.cutoff_frequency, **kw)
            assert np.abs(k - ref).max() <= 1e-6 * np.abs(ref).max()
    # an extra channel only lowers kappa; zero extra reproduces phono3py
    assert np.allclose(res.kappa_with_extra_gamma(0.0), res.kappa, rtol=1e-6)
    assert np.all(np.trace(res.kappa_with_extra_gamma(0.1 * res.gamma), axis1=1, axis2=2) < 3 * res.kappa_scalar)
    # compact and full fc3 give the same kappa
    full = kappa_rta(al["unit"], al["smat"], None, fc2, fit.fc3.to_dense(), 7, [300.0])
    assert np.allclose(full.kappa[0], res.kappa[0], rtol=1e-8)

    # SCPH+3ph: the hardened fc2 at 600 K changes kappa but keeps it finite and positive
    scph = run_scph(fc2, fit.fc4, al["supercell"].get_masses(), 600.0)
    res_s = kappa_rta(al["unit"], al["smat"], None, scph.fc2_eff, fit.fc3, 7, [600.0])
    assert np.isfinite(res_s.kappa_scalar[0]) and res_s.kappa_scalar[0] > 0
    assert not np.isclose(res_s.kappa_scalar[0], res.kappa_scalar[1], rtol=1e-3)
