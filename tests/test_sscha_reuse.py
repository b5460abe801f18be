"""Sample reuse in the self-consistent loop: importance weights, weighted estimators, the same fixed point."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
from scipy import constants as sc
from scipy.stats import multivariate_normal
from test_einstein_exact import (
    DOUBLE_WELL_K,
    LAM,
    GridEinstein,
    classical_self_consistent_k,
    onsite_diagonals,
    shuffled_rocksalt,
)
from test_sscha_runner import SC, STABLE_K, _linear_samples, aluminium, assert_same_outcome, engine, material  # noqa: F401

from tdph_workflows.core.estimators import ForceRegression, HessianAverage
from tdph_workflows.core.sampling import SoftModePolicy, displacement_covariance, sample_displacements, thermal_modes
from tdph_workflows.core.sscha import OneShotSSCHA, Sampler, SSCHASettings
from tdph_workflows.core.sscha.reuse import GaussianDensity, SampleStore
from tdph_workflows.engine import run_temperature_phonons

REUSE = {**SC, "sc_reuse_samples": True}
KT = sc.k * 300 / sc.eV  # eV


@pytest.fixture(scope="module")
def stable():
    return material(STABLE_K)


@pytest.fixture(scope="module")
def double_well():
    return material({"Li": -1.0, "I": 3.0})


def _density(ph, fc, temperature=300.0, quantum=False):
    modes = thermal_modes(fc, np.array(ph.supercell.masses), SoftModePolicy())
    return modes, GaussianDensity.from_modes(fc, modes, temperature, quantum)


# -- weights ------------------------------------------------------------------------


def test_weights_are_exactly_one_when_the_density_did_not_change(stable):
    ph, fc, _, _ = stable
    modes, p = _density(ph, fc)
    store, rng = SampleStore(), np.random.default_rng(0)
    for n_pairs in (5, 11):  # two batches from the same density are one mixture component
        u = sample_displacements(modes, 300.0, n_pairs, rng, quantum=False)
        store.add(p, u, np.zeros_like(u))
    w, ess = store.weights(p)
    assert np.array_equal(w, np.ones(16)) and ess == 16.0
    # a density rebuilt from equal force constants is the same density
    w, ess = store.weights(_density(ph, fc.copy())[1])
    assert np.array_equal(w, np.ones(16)) and ess == 16.0 and len(store.densities) == 1
    # a changed density is not
    w, ess = store.weights(_density(ph, 1.2 * fc)[1])
    assert not np.allclose(w, 1.0) and ess < 16.0 and store.counts == [16, 0]


def test_first_reused_iteration_has_unit_weights(double_well):
    run = engine(double_well, **REUSE).temperature_run(300.0)
    first = next(run)
    assert first.new_samples == 2 * SC["min_pairs"] and first.ess_pairs == SC["min_pairs"]
    assert first.estimate.new_samples == first.estimate.n_samples == 2 * SC["min_pairs"]


def test_weights_are_the_ratio_to_the_balance_mixture(stable):
    """w_i = p_new(u_i) / sum_j (n_j/n) p_j(u_i), checked against scipy's multivariate normal density."""
    ph, fc, _, _ = stable
    rng = np.random.default_rng(1)
    fcs = [fc, 1.3 * fc, 0.8 * fc]
    counts = [7, 3, 0]  # the last density is only weighted for
    store, covs = SampleStore(), []
    for f, n in zip(fcs, counts, strict=True):
        modes, p = _density(ph, f)
        covs.append(displacement_covariance(modes, 300.0, quantum=False))
        if n:
            u = sample_displacements(modes, 300.0, n, rng, quantum=False)
            store.add(p, u, np.zeros_like(u))
    u = store.displacements.reshape(20, -1)
    pdf = [multivariate_normal(np.zeros(len(c)), c).logpdf(u) for c in covs]
    for target in range(3):
        w, ess = store.weights(_density(ph, fcs[target])[1])
        mixture = np.logaddexp(np.log(0.7) + pdf[0], np.log(0.3) + pdf[1])
        expected = np.exp(pdf[target] - mixture)
        assert np.allclose(expected[0::2], expected[1::2])  # +u and -u: one weight per pair
        expected = expected[0::2] / expected[0::2].mean()
        assert np.allclose(w, expected, rtol=1e-9), target
        assert np.isclose(ess, expected.sum() ** 2 / (expected**2).sum(), rtol=1e-12)


def test_ess_follows_the_gaussian_overlap(stable):
    """Kong-Liu ESS / n tends to 1 / E[w^2] = prod_k sqrt(r_k (2 - r_k)), r_k the variance ratios."""
    ph, fc, _, _ = stable
    modes, p = _density(ph, fc)
    store = SampleStore()
    u = sample_displacements(modes, 300.0, 20000, np.random.default_rng(2), quantum=False)
    store.add(p, u, np.zeros_like(u))
    _, ess = store.weights(_density(ph, 1.25 * fc)[1])  # every variance shrinks by r = 0.8
    r = 0.8
    assert ess / 20000 == pytest.approx(np.sqrt(r * (2 - r)) ** 24, rel=0.05)


def test_a_different_mode_space_starts_afresh(stable):
    ph, fc, _, _ = stable
    modes, p = _density(ph, fc)
    store = SampleStore()
    u = sample_displacements(modes, 300.0, 4, np.random.default_rng(3), quantum=False)
    store.add(p, u, np.zeros_like(u))
    # translation-invariant force constants (a lattice Laplacian): acoustic modes removed, 3N-3 dimensions
    n = len(fc)
    asr = np.einsum("ij,ab->ijab", n * np.eye(n) - np.ones((n, n)), np.eye(3))
    p_asr = _density(ph, asr)[1]
    assert p_asr.acoustic_removed and not p.acoustic_removed
    w, ess = store.weights(p_asr)
    assert store.n_pairs == 0 and len(w) == 0 and ess == 0.0 and store.resets == 1


# -- weighted estimators ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hessian", "plain_fit", "symfc_fit"])
def test_integer_weights_equal_repeated_samples(kind, stable, aluminium):  # noqa: F811
    """Weight 2 on a pair is the pair added twice: weighted least squares and weighted mean."""
    ph, phi = (aluminium if kind == "symfc_fit" else stable[:2])
    sc_ = ph.supercell
    make = {
        "hessian": lambda: HessianAverage(len(sc_), 4),
        "plain_fit": lambda: ForceRegression(sc_.cell, sc_.scaled_positions, sc_.numbers, False, 4),
        "symfc_fit": lambda: ForceRegression(sc_.cell, sc_.scaled_positions, sc_.numbers, True, 4),
    }[kind]
    u, values = _linear_samples(phi, 48, seed=5)
    rng = np.random.default_rng(6)
    # an anharmonic-looking perturbation, so that the fit depends on which samples count how much
    f = values["forces"] + 0.05 * rng.standard_normal(u.shape) * np.abs(values["forces"]).max()
    f = f.reshape(48, 2, -1)
    f[:, 1] = -f[:, 0]  # keep the pairs antithetic
    h = values["hessians"] * (1 + 0.1 * rng.standard_normal((96, 1, 1)))
    data = {"forces": f.reshape(u.shape), "hessians": h}
    pair_w = rng.integers(1, 4, 48)
    weighted, repeated = make(), make()
    weighted.add(u, data[weighted.consumes], np.repeat(pair_w, 2).astype(float))
    idx = np.concatenate([[2 * k, 2 * k + 1] * w for k, w in enumerate(pair_w)])
    repeated.add(u[idx], data[repeated.consumes][idx])
    scale = np.abs(phi).max()
    assert np.allclose(weighted.estimate(), repeated.estimate(), rtol=0, atol=1e-9 * scale)
    plain = make()
    plain.add(u, data[plain.consumes])
    assert not np.allclose(weighted.estimate(), plain.estimate(), rtol=0, atol=1e-6 * scale)  # weights matter
    unit = make()
    unit.add(u, data[unit.consumes], np.full(96, 3.7))  # only ratios matter
    assert np.allclose(unit.estimate(), plain.estimate(), rtol=0, atol=1e-9 * scale)


@pytest.mark.parametrize("estimator", ["force_fit", "hessian"])
def test_reweighted_samples_estimate_the_new_density(estimator, stable):
    """Samples of the harmonic density, weighted for a stiffer one, give k + 3 lam kT / k' with no new calls.

    Unweighted, they would give k + 3 lam kT / k (0.18 eV/A^2 more for Li): the test needs the weights.
    """
    ph, fc, forces, hessian = stable
    base = {"estimator": estimator, "quantum": False, "n_groups": 4}
    pool = Sampler(ph, fc, forces, hessian, SSCHASettings(**base, min_pairs=1024, max_pairs=1024),
                   reference_forces=np.zeros((8, 3)))
    store, timings = SampleStore(), {}
    rng = np.random.default_rng(7)
    pool.sample_reweighted(store, fc, 300.0, rng, timings)
    assert store.n_pairs == 1024 and pool.calls[pool.new_estimator().consumes] == 2048
    small = Sampler(ph, fc, forces, hessian, SSCHASettings(**base, min_pairs=64, max_pairs=64),
                    reference_forces=np.zeros((8, 3)))
    est = small.sample_reweighted(store, 1.3 * fc, 300.0, rng, timings)
    assert est.new_samples == 0 and sum(small.calls.values()) == 0 and store.n_pairs == 1024
    assert 64 <= est.ess_pairs < 1024 and est.n_samples == 2048
    got = np.array([np.diag(est.fc[i, i]) for i in range(8)])
    for i, sym in enumerate(ph.supercell.symbols):
        k = STABLE_K[sym]
        exact = k + 3 * LAM[sym] * KT / (1.3 * k)
        assert np.allclose(got[i], exact, rtol=0, atol=0.06), (sym, got[i], exact)
    assert {"weights", "fit", "estimate"} <= set(timings)


# -- the self-consistent loop ------------------------------------------------------------


def test_reuse_reaches_the_same_fixed_point_with_fewer_calls():
    """Double-well Einstein crystal (analytic classical SCHA root): reuse and fresh samples agree with it
    and with each other within their errors, and reuse needs far fewer force calls."""
    results = {}
    for reuse in (False, True):
        settings = SSCHASettings(quantum=False, self_consistent=True, min_pairs=128, max_pairs=512, seed=1,
                                 sc_max_iterations=30, sc_reuse_samples=reuse, sc_predict=False)
        res = run_temperature_phonons(shuffled_rocksalt(3), GridEinstein(DOUBLE_WELL_K), [300.0], [1, 1, 1], settings)
        t = res.temperatures[0]
        assert t.self_consistent_converged, (reuse, t.self_consistent_changes_thz)
        got = onsite_diagonals(res)
        for sym, tol in (("Li", 0.2), ("I", 0.12)):
            k = DOUBLE_WELL_K[sym]
            exact = classical_self_consistent_k(k, LAM[sym], 300.0)
            assert abs(got[sym] - exact) < tol * abs(exact - k), (reuse, sym, got[sym], exact)
        results[reuse] = t
    fresh, reused = results[False], results[True]
    assert abs(reused.l2_shift - fresh.l2_shift) < 3 * np.hypot(reused.l2_stderr, fresh.l2_stderr)
    assert reused.potential_calls["forces"] < 0.75 * fresh.potential_calls["forces"]


def test_stepping_with_reuse_records_draws_and_ess(double_well):
    run = engine(double_well, **{**REUSE, "seed": 5}).temperature_run(300.0)
    steps = list(run)
    out = run.outcome()
    assert run.sc_converged and run.store is not None
    assert out.sc_new_samples == [s.new_samples for s in steps] and out.sc_ess_pairs == [s.ess_pairs for s in steps]
    # only real calls are counted: the reference forces were given, so every call is a drawn sample
    assert out.potential_calls == {"forces": sum(out.sc_new_samples), "hessians": 0}
    assert run.store.n_pairs * 2 == sum(out.sc_new_samples) == out.n_samples
    assert any(s.new_samples == 0 for s in steps)  # an iteration made of reused samples only
    assert all(s.ess_pairs >= SC["min_pairs"] - 0.5 for s in steps)  # never below what a coarse step needs
    assert set(out.timings) == {"sampling", "potential", "fit", "weights", "estimate", "symmetrize", "total"}
    # run() is stepping to the end, with reuse too
    assert_same_outcome(out, engine(double_well, **{**REUSE, "seed": 5}).run_temperature(300.0))


def test_hessian_estimator_reuses_too(double_well):
    settings = {"quantum": False, "seed": 4, "self_consistent": True, "estimator": "hessian", "sc_max_iterations": 12,
                "sc_predict": False}
    fresh = engine(double_well, **settings, sc_reuse_samples=False).run_temperature(300.0)
    reused = engine(double_well, **settings, sc_reuse_samples=True).run_temperature(300.0)
    assert fresh.sc_converged and reused.sc_converged
    assert reused.potential_calls["hessians"] < fresh.potential_calls["hessians"]
    assert abs(reused.l2_shift - fresh.l2_shift) < 3 * np.hypot(reused.l2_stderr, fresh.l2_stderr)


# -- what must not change --------------------------------------------------------------------


def test_one_shot_ignores_reuse(stable):
    a = engine(stable, reference=False, seed=3, sc_reuse_samples=True).temperature_run(300.0)
    b = engine(stable, reference=False, seed=3, sc_reuse_samples=False).temperature_run(300.0)
    (it,) = list(a)
    list(b)
    assert a.store is None and b.store is None
    assert it.new_samples == 512 and it.ess_pairs == 256
    out = a.outcome()
    assert_same_outcome(out, b.outcome())
    assert out.sc_new_samples == [] and out.sc_ess_pairs == []
    assert set(out.timings) == {"sampling", "potential", "fit", "estimate", "symmetrize", "total"}
    assert np.isclose(out.l2_shift, 0.19417860127512027, rtol=1e-8, atol=0)  # test_sscha_runner's reference


def test_without_reuse_the_loop_is_unchanged(double_well):
    """The self-consistent loop without reuse, against the run recorded before reuse existed.

    The first step samples the harmonic force constants and is the same on every machine to rounding. This
    overshooting loop amplifies the machine's BLAS/LAPACK rounding after that: with the same packages the
    recorded run took 7 iterations on one machine and 4 on another (AVX2, no AVX-512). Both must draw fresh
    full statistics every iteration and agree within their errors.
    """
    run = engine(double_well, **SC).temperature_run(300.0)
    steps = list(run)
    out = run.outcome()
    assert np.isclose(out.sc_iterations[0], 8.494814947058678, rtol=1e-9, atol=0)
    assert run.store is None and out.sc_converged is True and out.n_samples == 128
    assert out.sc_new_samples == [128] * len(steps) and out.sc_ess_pairs == [64.0] * len(steps)
    assert out.potential_calls == {"forces": 128 * len(steps), "hessians": 0}
    recorded_l2, recorded_se = 1.3570441197505576, 0.017173790547599665  # 7 iterations, 896 force calls
    assert abs(out.l2_shift - recorded_l2) < 3 * np.hypot(out.l2_stderr, recorded_se)


def test_later_settings_come_last_and_are_opt_in():
    """Settings added after campaigns existed go last (positional callers) and default to the old behaviour."""
    names = [f.name for f in fields(SSCHASettings)]
    assert names[-6:] == ["symprec", "seed", "sc_reuse_samples", "known_failure_pairs", "known_failure_keeps_cell",
                          "sc_predict"]
    assert SSCHASettings().sc_reuse_samples is False and SSCHASettings().known_failure_pairs is None
    assert SSCHASettings().known_failure_keeps_cell is False and SSCHASettings().sc_predict is False


def test_classical_zero_kelvin_falls_back_to_plain_sampling(stable):
    ph, fc, forces, hessian = stable
    settings = SSCHASettings(estimator="hessian", quantum=False, self_consistent=True, sc_max_iterations=3,
                             sc_reuse_samples=True)
    run = OneShotSSCHA(ph, fc, forces, hessian, settings).temperature_run(0.0)
    steps = list(run)  # every sample is the undistorted cell: no density to weight, Phi = Phi_HA at once
    assert run.sc_converged and run.store.n_pairs == 0
    assert steps[0].new_samples == steps[0].estimate.n_samples and steps[0].estimate.ess_pairs is None
