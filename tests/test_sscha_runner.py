"""The SSCHA runner steps one iteration at a time; both estimators share one interface."""

from __future__ import annotations

import itertools
from dataclasses import fields

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from phonopy.structure.atoms import PhonopyAtoms

from tdph_workflows.core import phonons
from tdph_workflows.core.estimators import ForceRegression, GroupedEstimator, HessianAverage, jackknife
from tdph_workflows.core.sscha import OneShotSSCHA, Sampler, SSCHASettings, TemperatureOutcome
from tdph_workflows.core.symmetry import supercell_symmetry, symmetrize

A = 5.0  # rocksalt cell; every site lies on a cubic grid of spacing A/2
LAM = {"Li": 20.0, "I": 15.0}  # eV/A^4
STABLE_K = {"Li": 2.0, "I": 3.0}  # eV/A^2
DOUBLE_WELL_K = {"Li": -1.0, "I": 3.0}  # Li in a double well: imaginary harmonic modes, damped mixing needed
# coarse iterations, a residual that grows (mixing halves), then a fixed point verified with full statistics
SC = {"quantum": False, "seed": 4, "self_consistent": True, "min_pairs": 64, "max_pairs": 256, "sc_max_iterations": 12,
      "sc_reuse_samples": False, "sc_predict": False}  # the mixing loop without reuse (test_sscha_reuse.py: reuse)


def rocksalt() -> PhonopyAtoms:
    frac = [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0], [.5, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5]]
    syms = ["Li"] * 4 + ["I"] * 4
    order = [3, 6, 0, 5, 1, 7, 2, 4]
    return PhonopyAtoms(symbols=[syms[i] for i in order], cell=np.eye(3) * A,
                        scaled_positions=[frac[i] for i in order])


def quartic_grid(symbols, k: dict):
    """Each atom an independent quartic oscillator around the nearest grid point: forces and Hessian."""
    kk = np.array([k[s] for s in symbols])[:, None]
    ll = np.array([LAM[s] for s in symbols])[:, None]

    def forces(positions):  # (n, N, 3)
        u = positions - (A / 2) * np.rint(positions / (A / 2))
        return -(kk * u + ll * u**3)

    def hessian(positions):  # (N, 3)
        u = positions - (A / 2) * np.rint(positions / (A / 2))
        return np.diag((kk + 3 * ll * u**2).ravel())

    return forces, hessian


def material(k: dict):
    ph = phonons.build_phonopy(rocksalt(), np.eye(3, dtype=int), np.eye(3))
    forces, hessian = quartic_grid(ph.supercell.symbols, k)
    fc, _ = phonons.harmonic_force_constants(ph, forces)
    return ph, fc, forces, hessian


@pytest.fixture(scope="module")
def double_well():
    return material(DOUBLE_WELL_K)


@pytest.fixture(scope="module")
def stable():
    return material(STABLE_K)


def engine(mat, messages=None, reference=True, **settings) -> OneShotSSCHA:
    ph, fc, forces, hessian = mat
    ref = forces(ph.supercell.positions[None])[0] if reference else None
    return OneShotSSCHA(ph, fc, forces, hessian, SSCHASettings(**settings),
                        None if messages is None else messages.append, reference_forces=ref)


def assert_same_outcome(a: TemperatureOutcome, b: TemperatureOutcome) -> None:
    for f in fields(TemperatureOutcome):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "timings":
            assert sorted(x) == sorted(y)
        elif f.name == "history":
            assert [vars(s) for s in x] == [vars(s) for s in y]
        elif isinstance(x, np.ndarray):
            assert np.array_equal(x, y), f.name
        else:
            assert x == y, f.name


# -- the stepping API ------------------------------------------------------------


def test_stepping_records_one_residual_per_iteration(double_well):
    messages: list[str] = []
    run = engine(double_well, messages, **SC).temperature_run(300.0)
    assert run.estimate is None and run.residuals == [] and not run.finished
    with pytest.raises(RuntimeError):
        run.outcome()
    steps = []
    for it in run:
        steps.append(it)
        assert it.step == len(steps) and run.iterations == len(steps)
        assert run.residuals == [s.residual for s in steps]
        assert run.estimate is it.estimate
        assert messages[-1].endswith(f"self-consistent step {it.step} ({it.stage}), max |d omega| {it.residual:.3f} THz")
    assert run.finished and run.sc_converged is True and run.stall_note is None
    with pytest.raises(StopIteration):
        next(run)
    assert 3 <= len(steps) < SC["sc_max_iterations"]
    # coarse until the fixed point holds within the coarse noise, then verified with full statistics; a
    # coarse fixed point whose estimate already meets the error target ends the loop at once. Which of the two
    # happens depends on the path of this overshooting loop, and that path on the machine's BLAS/LAPACK
    # rounding (two machines with the same packages part ways after the first step: 7 and 4 iterations)
    stages = [s.stage for s in steps]
    n_coarse = stages.count("coarse")
    assert stages == ["coarse"] * n_coarse + ["full statistics"] * (len(stages) - n_coarse) and n_coarse >= 1
    assert run.coarse == (stages[-1] == "coarse")
    assert steps[0].estimate.n_samples == 2 * SC["min_pairs"]
    assert steps[-1].fixed_point and steps[-1].estimate.converged
    assert not any(s.fixed_point and s.estimate.converged for s in steps[:-1])
    # the double well overshoots: some residual grew, so mixing was damped
    assert any(b.residual > a.residual for a, b in itertools.pairwise(steps))
    assert run.mixing < SSCHASettings().sc_mixing
    out = run.outcome()
    assert out.sc_iterations == run.residuals and out.sc_converged is True
    assert out.force_constants is steps[-1].estimate.fc
    assert out.potential_calls["forces"] == sum(s.estimate.n_samples for s in steps)


def test_run_equals_stepping_to_the_end(double_well):
    whole = engine(double_well, **SC).run_temperature(300.0)
    run = engine(double_well, **SC).temperature_run(300.0)
    while True:
        try:
            next(run)
        except StopIteration:
            break
    assert_same_outcome(whole, run.outcome())
    assert set(whole.timings) == {"sampling", "potential", "fit", "estimate", "symmetrize", "total"}


def test_stopping_early_leaves_a_usable_state(double_well):
    run = engine(double_well, **SC).temperature_run(300.0)
    first, second = next(run), next(run)
    early = run.outcome()
    assert early.sc_converged is False and early.sc_iterations == [first.residual, second.residual]
    assert early.force_constants is second.estimate.fc and early.n_samples == second.estimate.n_samples
    assert early.potential_calls == {"forces": first.estimate.n_samples + second.estimate.n_samples, "hessians": 0}
    assert np.all(np.isfinite(early.frequencies)) and early.l2_stderr < np.inf
    # taking an outcome changes nothing: continuing gives what one uninterrupted run gives
    assert not run.finished
    rest = list(run)
    assert rest and rest[0].step == 3
    assert_same_outcome(run.outcome(), engine(double_well, **SC).run_temperature(300.0))


def test_stall_stops_the_steps_with_a_note(double_well):
    run = engine(double_well, **{**SC, "min_pairs": 256, "seed": 2, "sc_max_iterations": 30, "sc_mixing": 1.0,
                                 "sc_min_mixing": 1.0, "sc_stall_iterations": 3}).temperature_run(300.0)
    steps = list(run)
    assert run.sc_converged is False and len(steps) < 30
    assert len(steps) - run.best_step == 3 and "stalled" in run.stall_note
    assert run.stall_note in run.outcome().policy_notes


def test_one_shot_is_one_iteration_with_unchanged_numbers(stable):
    """Numbers of the pre-refactor engine (one method holding the loop), same seed and model."""
    eng = engine(stable, reference=False, seed=3)
    run = eng.temperature_run(300.0)
    (only,) = list(run)
    assert only.stage == "one-shot" and only.residual is None and only.fixed_point is None
    out = run.outcome()
    assert out.sc_converged is None and out.sc_iterations == []
    assert out.n_samples == 512 and out.potential_calls == {"forces": 513, "hessians": 0}  # +1: reference forces
    assert np.isclose(out.l2_shift, 0.19417860127512027, rtol=1e-8, atol=0)
    assert np.isclose(out.l2_stderr, 0.009280892148497942, rtol=1e-8, atol=0)
    assert np.isclose(out.r_full_robust, 0.24267826155644773, rtol=1e-8, atol=0)
    # the second temperature shares the material's counters but reports its own calls
    assert eng.run_temperature(1000.0).potential_calls == {"forces": 512, "hessians": 0}


# -- one estimator interface ------------------------------------------------------------


@pytest.fixture(scope="module")
def aluminium():
    """fcc Al 2x2x2 (8 atoms), EMT harmonic force constants projected onto the space group and sum rule."""
    a = 4.05
    unit = PhonopyAtoms(symbols=["Al"], cell=np.array([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]),
                        scaled_positions=[[0, 0, 0]])
    ph = phonons.build_phonopy(unit, 2 * np.eye(3, dtype=int), "auto")
    sc = ph.supercell
    atoms = Atoms(symbols=list(sc.symbols), cell=sc.cell, scaled_positions=sc.scaled_positions, pbc=True)
    atoms.calc = EMT()

    def forces(positions):
        out = []
        for p in positions:
            atoms.positions = p
            out.append(atoms.get_forces())
        return np.array(out)

    fc, _ = phonons.harmonic_force_constants(ph, forces)
    return ph, symmetrize(fc, supercell_symmetry(sc.cell, sc.scaled_positions, sc.numbers), True)


def _linear_samples(phi: np.ndarray, n_pairs: int, seed: int = 0):
    """Antithetic displacements with forces and Hessians of V = u Phi u / 2 (any estimator is exact)."""
    n = len(phi)
    u = 0.05 * np.random.default_rng(seed).standard_normal((n_pairs, n, 3))
    u = np.stack([u, -u], axis=1).reshape(2 * n_pairs, n, 3)
    flat = phi.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)
    forces = -(u.reshape(len(u), -1) @ flat.T).reshape(u.shape)
    return u, {"forces": forces, "hessians": np.repeat(flat[None], len(u), axis=0)}


@pytest.mark.parametrize("kind", ["hessian", "plain_fit", "symfc_fit"])
def test_estimators_share_one_interface(kind, stable, aluminium):
    if kind == "symfc_fit":
        ph, phi = aluminium
    else:
        ph, phi, _, _ = stable
    sc = ph.supercell
    est = {
        "hessian": lambda: HessianAverage(len(sc), n_groups=4),
        "plain_fit": lambda: ForceRegression(sc.cell, sc.scaled_positions, sc.numbers, False, n_groups=4),
        "symfc_fit": lambda: ForceRegression(sc.cell, sc.scaled_positions, sc.numbers, True, n_groups=4),
    }[kind]()
    assert isinstance(est, GroupedEstimator)
    assert est.consumes == ("hessians" if kind == "hessian" else "forces")
    assert est.add_timing == ("potential" if kind == "hessian" else "fit")
    assert est.already_symmetric is (kind == "symfc_fit")  # symfc's basis has the symmetry and sum rule built in
    # plain least squares needs rank 3N in every leave-one-group-out subset
    assert est.min_batch_pairs == (int(np.ceil(3 * len(sc) * 4 / 3)) + 4 if kind == "plain_fit" else 0)
    u, values = _linear_samples(phi, max(est.min_batch_pairs, 8))
    est.add(u, values[est.consumes])  # the same call for every estimator
    assert est.groups_filled
    scale = np.abs(phi).max()
    for leave_out in (None, *range(est.n_groups)):
        assert np.allclose(est.estimate(leave_out), phi, rtol=0, atol=1e-8 * scale), leave_out


def test_old_method_names_add_the_same(stable):
    ph, phi, _, _ = stable
    sc = ph.supercell
    u, values = _linear_samples(phi, 40, seed=1)
    new, old = (ForceRegression(sc.cell, sc.scaled_positions, sc.numbers, False, 4) for _ in range(2))
    new.add(u, values["forces"])
    old.add_forces(u, values["forces"])
    assert np.array_equal(new.estimate(), old.estimate())
    new, old = HessianAverage(len(sc), 4), HessianAverage(len(sc), 4)
    new.add(u, values["hessians"])
    old.add_hessians(values["hessians"])
    assert np.array_equal(new.estimate(), old.estimate())


class _FixedAnswer(GroupedEstimator):
    """An estimator the sampler has never heard of: records what it is given, answers a fixed Phi."""

    name = "fixed"
    already_symmetric = True

    def __init__(self, phi: np.ndarray, consumes: str, n_groups: int) -> None:
        super().__init__(n_groups)
        self.phi, self.consumes = phi, consumes
        self.add_timing = "fit" if consumes == "forces" else "potential"
        self.received: list[tuple[tuple, tuple]] = []

    def add(self, displacements, values):
        self._split_pairs(len(displacements))
        self.received.append((displacements.shape, values.shape))

    def estimate(self, leave_out=None):
        return self.phi


@pytest.mark.parametrize("consumes", ["forces", "hessians"])
def test_sampler_works_through_the_interface_only(consumes, stable):
    ph, phi, forces, hessian = stable
    made = []

    class FakeSampler(Sampler):
        def new_estimator(self):
            made.append(_FixedAnswer(self.fc_harmonic, consumes, self.settings.n_groups))
            return made[-1]

    s = FakeSampler(ph, phi, forces, hessian, SSCHASettings(min_pairs=16, seed=0), reference_forces=np.zeros((8, 3)))
    timings: dict[str, float] = {}
    est = s.sample(phi, 300.0, np.random.default_rng(0), timings)
    (acc,) = made
    assert acc.received == [((32, 8, 3), (32, 8, 3) if consumes == "forces" else (32, 24, 24))]
    assert s.calls == {"forces": 32 * (consumes == "forces"), "hessians": 32 * (consumes == "hessians")}
    assert est.fc is phi  # already symmetric: not averaged again
    assert est.l2 == 0 and est.l2_stderr == 0 and est.converged and est.n_samples == 32
    assert np.array_equal(est.observables.freqs, s.freqs_harmonic)
    assert np.allclose(est.observables.freqs_stderr, 0, atol=1e-12) and not est.observables.r_onsite_stderr.any()
    expected = {"sampling", "potential", "estimate", "symmetrize"} | ({"fit"} if consumes == "forces" else set())
    assert set(timings) == expected


def test_jackknife_along_axis_zero():
    rng = np.random.default_rng(0)
    values = rng.standard_normal((8, 5, 3))
    se = jackknife(values)
    assert se.shape == (5, 3)
    assert np.allclose(se, [[jackknife(values[:, i, j]) for j in range(3)] for i in range(5)], rtol=1e-12)
    scalar = jackknife(values[:, 0, 0])
    assert isinstance(scalar, float) and np.isclose(scalar, np.sqrt(7 / 8 * ((values[:, 0, 0] - values[:, 0, 0].mean()) ** 2).sum()))


def test_unset_statistics_follow_the_estimator_and_explicit_ones_are_kept():
    from tdph_workflows.core.sscha import SSCHASettings

    fit, hess = SSCHASettings(), SSCHASettings(estimator="hessian")
    assert (fit.min_pairs, fit.n_groups, fit.max_pairs) == (16, 8, 256)
    assert (hess.min_pairs, hess.n_groups, hess.max_pairs) == (4, 4, 32)  # a Hessian costs ~3N force calls
    explicit = SSCHASettings(estimator="hessian", min_pairs=16, n_groups=8, max_pairs=256)
    assert (explicit.min_pairs, explicit.n_groups, explicit.max_pairs) == (16, 8, 256)  # was silently 4/4/32
    capped = SSCHASettings(max_pairs=2)
    assert (capped.min_pairs, capped.n_groups) == (2, 2)
    assert SSCHASettings() == SSCHASettings(min_pairs=16, n_groups=8, max_pairs=256)  # campaign keys unchanged
