"""Thermal sampling: covariance equals phonopy's, soft-mode policy, acoustic modes, pairs."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from tdph_workflows.core import phonons
from tdph_workflows.core.sampling import (
    SoftModePolicy,
    displacement_covariance,
    sample_displacements,
    thermal_modes,
    translation_basis,
)
from tdph_workflows.io.structures import phonopy_to_ase, to_phonopy_atoms
from tdph_workflows.potentials import ForceModel


@pytest.fixture(scope="module")
def al_phonon():
    ph = phonons.build_phonopy(to_phonopy_atoms(bulk("Al", "fcc", a=4.05)), np.diag([3, 3, 3]), "auto")
    fc, _ = phonons.harmonic_force_constants(ph, ForceModel(EMT(), phonopy_to_ase(ph.supercell)).forces)
    return ph, fc


def test_covariance_matches_phonopy_random_displacements(al_phonon):
    ph, fc = al_phonon
    ours = np.diag(displacement_covariance(thermal_modes(fc, ph.supercell.masses), 300.0)).reshape(-1, 3)
    ph.force_constants = fc
    ph.generate_displacements(number_of_snapshots=3000, temperature=300.0, random_seed=7)
    theirs = (np.asarray(ph.displacements) ** 2).mean(axis=0)
    assert np.allclose(ours, theirs, rtol=0.08)  # 3000 snapshots: ~2.6 % noise per component
    assert np.isclose(ours.mean(), theirs.mean(), rtol=0.02)


def test_samples_follow_covariance_and_come_in_antithetic_pairs(al_phonon):
    ph, fc = al_phonon
    modes = thermal_modes(fc, ph.supercell.masses)
    u = sample_displacements(modes, 300.0, 2000, np.random.default_rng(0))
    assert np.allclose(u[0::2], -u[1::2])
    emp = np.einsum("ni,nj->ij", u.reshape(len(u), -1), u.reshape(len(u), -1)) / len(u)
    cov = displacement_covariance(modes, 300.0)
    # each entry's error in units of its standard error (Gaussian: var = (S_ii S_jj + S_ij^2) / n over the
    # 1000 independent pairs): a fixed 10 % of the largest entry is ~2 standard errors and failed by chance
    var = np.diag(cov)
    z = (emp - cov) / np.sqrt((np.outer(var, var) + cov ** 2) / (len(u) // 2))
    assert np.abs(z).max() < 5.5  # ~3,300 distinct entries: a wrong covariance gives far more
    assert 0.8 < np.mean(z[np.triu_indices_from(z)] ** 2) < 1.2
    # the total mean-square displacement is sharp: seeds 0-3 within 0.2 %, the 315 K covariance 4.4 % off
    assert abs(np.trace(emp) / np.trace(cov) - 1) < 0.015


def test_gamma_acoustic_translations_get_no_amplitude(al_phonon):
    ph, fc = al_phonon
    modes = thermal_modes(fc, ph.supercell.masses)
    assert modes.acoustic_removed and modes.eigenvectors.shape[1] == 3 * len(ph.supercell) - 3
    u = sample_displacements(modes, 300.0, 50, np.random.default_rng(1))
    # the centre of mass never moves
    com = (u * np.asarray(ph.supercell.masses)[None, :, None]).sum(axis=1)
    assert np.abs(com).max() < 1e-10
    t = translation_basis(np.asarray(ph.supercell.masses))
    assert np.abs(t.T @ modes.eigenvectors).max() < 1e-10


def test_quantum_exceeds_classical_and_converges_at_high_t(al_phonon):
    ph, fc = al_phonon
    modes = thermal_modes(fc, ph.supercell.masses)
    q = np.trace(displacement_covariance(modes, 50.0, quantum=True))
    c = np.trace(displacement_covariance(modes, 50.0, quantum=False))
    assert q > 1.5 * c
    q_hot = np.trace(displacement_covariance(modes, 3000.0, quantum=True))
    c_hot = np.trace(displacement_covariance(modes, 3000.0, quantum=False))
    assert np.isclose(q_hot, c_hot, rtol=0.01)
    assert np.trace(displacement_covariance(modes, 0.0)) > 0  # zero-point motion


def test_imaginary_and_soft_modes_use_the_floor_never_nan(al_phonon):
    ph, fc = al_phonon
    # soften: subtract a multiple of the identity from the on-site blocks -> imaginary modes
    n = len(fc)
    soft = fc.copy()
    soft[np.arange(n), np.arange(n)] -= 0.9 * np.trace(fc[0, 0]) / 3 * np.eye(3)
    soft -= soft.sum(axis=1, keepdims=True) / n  # restore the sum rule
    modes = thermal_modes(soft, ph.supercell.masses, SoftModePolicy(floor_thz=0.5))
    assert modes.n_imaginary > 0 and modes.notes
    assert np.all(modes.sampled_frequencies_thz >= 0.5)
    np.testing.assert_allclose(
        modes.sampled_frequencies_thz, np.maximum(np.abs(modes.frequencies_thz), 0.5)
    )
    u = sample_displacements(modes, 300.0, 20, np.random.default_rng(2))
    assert np.all(np.isfinite(u))
    # the floor bounds the amplitude: rms displacement stays physical
    assert np.sqrt((u**2).sum(axis=2).mean()) < 1.0


def test_policy_rejects_nonpositive_floor():
    with pytest.raises(ValueError, match="floor"):
        SoftModePolicy(floor_thz=0.0)
