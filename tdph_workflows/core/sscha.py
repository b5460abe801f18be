"""One-shot (and optionally self-consistent) SSCHA for one material.

Pipeline per temperature: harmonic modes -> antithetic thermal samples ->
estimator (force fit or Hessian average) -> space-group averaging -> metrics
with jackknife error bars; samples are added until the L2 shift's standard
error meets the target or the cap is hit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Literal

import numpy as np
from phonopy import Phonopy

from . import metrics
from .estimators import ForceRegression, HessianAverage, jackknife, symfc_basis
from .phonons import commensurate_frequencies
from .sampling import SoftModePolicy, is_translation_invariant, sample_displacements, thermal_modes
from .symmetry import SupercellSymmetry, supercell_symmetry, symmetrize

HessianFn = Callable[[np.ndarray], np.ndarray]
"""positions (N, 3) -> Hessian (3N, 3N) in eV/A^2."""
Progress = Callable[[str], None]

# Per-atom rms displacement beyond which samples leave the regime a harmonic reference
# describes (Lindemann-like: ~10 % of a 2.5 A bond); flagged on the result, not fatal.
LARGE_RMS_DISPLACEMENT = 0.25


def fixed_point_z(n_frequencies: int, false_alarm: float = 0.05) -> float:
    """z threshold so that a true fixed point passes all n per-frequency tests with 1 - false_alarm.

    Bonferroni over the frequencies (conservative: degenerate modes are correlated). A fixed
    2.5 sigma per frequency fails a true fixed point of 120 frequencies ~75 % of the time.
    """
    return NormalDist().inv_cdf(1.0 - false_alarm / (2 * max(n_frequencies, 1)))  # stdlib: scipy.stats costs 0.4 s


@dataclass(frozen=True)
class SSCHASettings:
    """Physics and statistics options of the one-shot engine.

    Parameters
    ----------
    estimator
        ``force_fit`` (default: measured 3-5x cheaper at 3-6x smaller error, see
        docs/method.md) or ``hessian`` (the paper's average of instantaneous Hessians).
    quantum
        Bose-Einstein (paper Eq. 2) or classical covariance.
    soft_mode_floor_thz
        Lowest frequency any mode is sampled with (imaginary modes at |omega|).
    min_pairs, max_pairs
        First batch and cap of antithetic pairs; batches double in between.
    target_abs, target_rel
        Stop when stderr(L2) <= max(target_abs, target_rel * L2); 0.005 = 0.5 points.
    n_groups
        Jackknife groups (pairs are dealt round-robin).
    self_consistent, sc_tolerance_thz, sc_max_iterations, sc_mixing, sc_coarse_pairs
        Resample from Phi(T) until it is a fixed point: every commensurate
        frequency of the new estimate differs from those of the force constants
        it was sampled from by less than the tolerance or than ``fixed_point_z``
        standard errors (jackknife error of the new estimate combined with the
        noise mixing carried into the sampling force constants). Coarse to fine: iterations use
        ``sc_coarse_pairs`` pairs (default ``min_pairs``) until the fixed point
        holds within their noise, then full statistics verify it. The sampling
        force constants move by linear mixing, Phi <- (1-a) Phi + a Phi_new, with
        a = ``sc_mixing`` halved (down to ``sc_min_mixing``) whenever the residual
        grows: unmixed iterations oscillate around soft modes (SrTiO3 at 300 K:
        L2 20-37 % over 8 iterations, never converged), while well-behaved
        crystals converge fastest unmixed. The loop gives up (not converged, with a
        note) when the largest residual has not fallen below 0.9 x its best for
        ``sc_stall_iterations`` iterations.
    acoustic_sum_rule
        None: impose it when the harmonic force constants obey it.
    """

    estimator: Literal["force_fit", "hessian"] = "force_fit"
    quantum: bool = True
    soft_mode_floor_thz: float = 0.5
    min_pairs: int = 16
    max_pairs: int = 256
    target_abs: float = 0.005
    target_rel: float = 0.03
    n_groups: int = 8
    self_consistent: bool = False
    sc_tolerance_thz: float = 0.05
    sc_max_iterations: int = 40
    sc_mixing: float = 1.0
    sc_min_mixing: float = 0.25
    sc_coarse_pairs: int | None = None
    sc_stall_iterations: int = 8
    acoustic_sum_rule: bool | None = None
    symprec: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.estimator not in ("force_fit", "hessian"):
            raise ValueError(f"unknown estimator {self.estimator!r}: use 'force_fit' or 'hessian'")
        if self.min_pairs < 1 or self.max_pairs < self.min_pairs:
            raise ValueError("need 1 <= min_pairs <= max_pairs")
        if self.n_groups < 2:
            raise ValueError("n_groups must be >= 2")
        if self.min_pairs < self.n_groups and self.estimator == "force_fit":
            raise ValueError("min_pairs must be >= n_groups so every jackknife group has data")
        if not 0.0 < self.sc_min_mixing <= self.sc_mixing <= 1.0:
            raise ValueError("need 0 < sc_min_mixing <= sc_mixing <= 1")
        if self.sc_stall_iterations < 1:
            raise ValueError("sc_stall_iterations must be >= 1")
        if self.sc_coarse_pairs is not None and self.sc_coarse_pairs < self.n_groups:
            raise ValueError("sc_coarse_pairs must be >= n_groups so every jackknife group has data")
        SoftModePolicy(self.soft_mode_floor_thz)


@dataclass
class ConvergenceStep:
    n_samples: int
    l2_shift: float
    l2_stderr: float


@dataclass
class TemperatureOutcome:
    """Everything computed at one temperature (plain numpy; the schema layer serializes it)."""

    temperature: float
    force_constants: np.ndarray
    frequencies: np.ndarray  # commensurate, Gamma acoustic removed (THz)
    l2_shift: float
    l2_stderr: float
    r_full: float
    r_full_stderr: float
    r_full_robust: float
    r_full_robust_stderr: float
    r_onsite_atoms: np.ndarray  # per supercell atom
    r_onsite_atoms_stderr: np.ndarray
    n_samples: int
    converged: bool
    history: list[ConvergenceStep]
    sc_iterations: list[float] = field(default_factory=list)  # max |d omega| per SC iteration (THz)
    sc_converged: bool | None = None  # None when not self-consistent
    n_imaginary_sampled: int = 0
    n_floored: int = 0
    max_rms_displacement: float = 0.0  # largest per-atom rms sampled displacement (A)
    policy_notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    potential_calls: dict[str, int] = field(default_factory=dict)


class OneShotSSCHA:
    """Runs the one-shot estimator at several temperatures on one harmonic reference."""

    def __init__(
        self,
        phonon: Phonopy,
        fc_harmonic: np.ndarray,
        forces_fn: Callable[[np.ndarray], np.ndarray],
        hessian_fn: HessianFn | None = None,
        settings: SSCHASettings = SSCHASettings(),
        progress: Progress | None = None,
        reference_forces: np.ndarray | None = None,
    ) -> None:
        if settings.estimator == "hessian" and hessian_fn is None:
            raise ValueError("the hessian estimator needs a Hessian function")
        self.phonon = phonon
        self.fc_harmonic = np.asarray(fc_harmonic, float)
        self.forces_fn = forces_fn
        self.hessian_fn = hessian_fn
        self.settings = settings
        self.progress = progress or (lambda msg: None)
        sc = phonon.supercell
        self.positions0 = np.array(sc.positions)
        self.masses = np.array(sc.masses)
        self.asr = (
            is_translation_invariant(self.fc_harmonic)
            if settings.acoustic_sum_rule is None
            else settings.acoustic_sum_rule
        )
        t0 = time.perf_counter()
        self.symmetry: SupercellSymmetry = supercell_symmetry(
            sc.cell, sc.scaled_positions, sc.numbers, settings.symprec
        )
        self.time_symmetry_setup = time.perf_counter() - t0
        self._basis = None
        self.time_basis = 0.0
        self.freqs_harmonic = commensurate_frequencies(phonon, self.fc_harmonic)
        # forces on the undistorted supercell (residual forces), subtracted from every sample
        self.reference_forces = reference_forces
        self.calls = {"forces": 0, "hessians": 0}

    # -- potential evaluations -------------------------------------------------
    def _forces(self, displacements: np.ndarray) -> np.ndarray:
        if self.reference_forces is None:
            self.reference_forces = np.asarray(self.forces_fn(self.positions0[None]), float)[0]
            self.calls["forces"] += 1
        f = np.asarray(self.forces_fn(self.positions0[None] + displacements), float)
        self.calls["forces"] += len(displacements)
        return f - self.reference_forces[None]

    def _hessians(self, displacements: np.ndarray) -> np.ndarray:
        out = np.array([self.hessian_fn(self.positions0 + u) for u in displacements])
        self.calls["hessians"] += len(displacements)
        return out

    def _accumulator(self):
        s = self.settings
        if s.estimator == "hessian":
            return HessianAverage(len(self.masses), s.n_groups)
        sc = self.phonon.supercell
        if self.asr and self._basis is None:
            t0 = time.perf_counter()
            self._basis = symfc_basis(sc.cell, sc.scaled_positions, sc.numbers)
            self.time_basis = time.perf_counter() - t0
        return ForceRegression(sc.cell, sc.scaled_positions, sc.numbers, self.asr, s.n_groups, self._basis)

    # -- one temperature ------------------------------------------------------
    def _finalize(self, raw: np.ndarray, timings: dict) -> np.ndarray:
        t0 = time.perf_counter()
        already_symmetric = self.settings.estimator == "force_fit" and self.asr
        fc = raw if already_symmetric else symmetrize(raw, self.symmetry, self.asr)
        timings["symmetrize"] = timings.get("symmetrize", 0.0) + time.perf_counter() - t0
        return fc

    def _observables(self, fc: np.ndarray) -> dict:
        return {
            "freqs": commensurate_frequencies(self.phonon, fc),
            "r_full": metrics.r_full(self.fc_harmonic, fc),
            "r_full_robust": metrics.r_full_robust(self.fc_harmonic, fc),
            "r_onsite": metrics.r_onsite(self.fc_harmonic, fc),
        }

    def _sample_at(
        self, fc_sampling: np.ndarray, temperature: float, rng: np.random.Generator, timings: dict,
        pair_cap: int | None = None,
    ):
        s = self.settings
        modes = thermal_modes(fc_sampling, self.masses, SoftModePolicy(s.soft_mode_floor_thz))
        acc = self._accumulator()
        history: list[ConvergenceStep] = []
        batch = s.min_pairs
        if isinstance(acc, ForceRegression) and not acc.uses_symfc:
            # plain least squares: each pair adds one direction; every jackknife subset needs rank 3N
            batch = max(batch, int(np.ceil(3 * len(self.masses) * s.n_groups / (s.n_groups - 1))) + s.n_groups)
        max_pairs = max(s.max_pairs if pair_cap is None else min(pair_cap, s.max_pairs), batch)
        batch = min(batch, max_pairs)
        sum_u2 = np.zeros(len(self.masses))
        n_pairs = 0
        while True:
            t0 = time.perf_counter()
            u = sample_displacements(modes, temperature, batch, rng, s.quantum)
            sum_u2 += (u**2).sum(axis=(0, 2))
            timings["sampling"] = timings.get("sampling", 0.0) + time.perf_counter() - t0
            t0 = time.perf_counter()
            if s.estimator == "hessian":
                acc.add_hessians(self._hessians(u))
                timings["potential"] = timings.get("potential", 0.0) + time.perf_counter() - t0
            else:
                forces = self._forces(u)
                # potential calls and the normal-equation update are timed apart: the latter
                # (symfc basis products) was hidden in "potential" and inflated the per-call cost
                t1 = time.perf_counter()
                timings["potential"] = timings.get("potential", 0.0) + t1 - t0
                acc.add_forces(u, forces)
                timings["fit"] = timings.get("fit", 0.0) + time.perf_counter() - t1
            n_pairs += batch
            t0 = time.perf_counter()
            fc = self._finalize(acc.estimate(), timings)
            obs = self._observables(fc)
            l2 = metrics.l2_shift(self.freqs_harmonic, obs["freqs"])
            jk = [self._observables(self._finalize(acc.estimate(g), timings)) for g in range(acc.n_groups)]
            l2_jk = [metrics.l2_shift(self.freqs_harmonic, o["freqs"]) for o in jk]
            se = jackknife(l2_jk) if acc.groups_filled else float("inf")
            timings["estimate"] = timings.get("estimate", 0.0) + time.perf_counter() - t0
            history.append(ConvergenceStep(2 * n_pairs, l2, se))
            self.progress(f"T={temperature:g} K: {2 * n_pairs} samples, L2 shift {100 * l2:.2f} +- {100 * se:.2f} %")
            converged = se <= max(s.target_abs, s.target_rel * abs(l2))
            if converged or n_pairs >= max_pairs:
                break
            batch = min(n_pairs, max_pairs - n_pairs)
        errors = {
            key: (
                jackknife([o[key] for o in jk])
                if key != "r_onsite"
                else np.array([jackknife([o[key][i] for o in jk]) for i in range(len(obs[key]))])
            )
            for key in ("r_full", "r_full_robust", "r_onsite")
        }
        jk_freqs = np.array([o["freqs"] for o in jk])
        g = len(jk_freqs)
        obs["freqs_stderr"] = np.sqrt((g - 1) / g * ((jk_freqs - jk_freqs.mean(axis=0)) ** 2).sum(axis=0))
        rms = float(np.sqrt(sum_u2.max() / (2 * n_pairs)))
        return fc, obs, l2, se, converged, history, errors, modes, rms

    def run_temperature(self, temperature: float) -> TemperatureOutcome:
        s = self.settings
        rng = np.random.default_rng([s.seed, int(round(temperature * 1000))])
        timings: dict[str, float] = {}
        calls0 = dict(self.calls)
        t_start = time.perf_counter()
        fc_sampling = self.fc_harmonic
        sc_changes: list[float] = []
        sc_converged = None if not s.self_consistent else False
        n_iter = s.sc_max_iterations if s.self_consistent else 1
        coarse_cap = s.sc_coarse_pairs or s.min_pairs
        coarse = s.self_consistent and coarse_cap < s.max_pairs
        freqs_sampling = self.freqs_harmonic
        sampling_stderr = np.zeros_like(self.freqs_harmonic)  # noise that mixing carried into fc_sampling
        mixing, previous_change = s.sc_mixing, np.inf
        best_change, best_step, stall_note = np.inf, 0, None
        for _ in range(n_iter):
            fc, obs, l2, se, converged, history, errors, modes, rms = self._sample_at(
                fc_sampling, temperature, rng, timings, coarse_cap if coarse else None
            )
            if not s.self_consistent:
                break
            # fixed-point residual: the new estimate against the force constants it was sampled from
            delta = np.abs(obs["freqs"] - freqs_sampling)
            change = float(delta.max())
            sc_changes.append(change)
            stage = "coarse" if coarse else "full statistics"
            self.progress(
                f"T={temperature:g} K: self-consistent step {len(sc_changes)} ({stage}), max |d omega| {change:.3f} THz"
            )
            # fc_sampling is built from noisy estimates, so it sits off the fixed point by about its own
            # noise; testing against the new estimate's noise alone took As2Ru 21 iterations instead of 9
            noise = fixed_point_z(len(delta)) * np.hypot(obs["freqs_stderr"], sampling_stderr)
            fixed_point = bool(np.all(delta < np.maximum(s.sc_tolerance_thz, noise)))
            # "within noise" counts only once the noise itself meets the L2 target: a chaotic step
            # through near-unstable force constants has huge error bars and would pass otherwise.
            # A coarse step that met the target is a full-statistics step already.
            if fixed_point and converged:
                sc_converged = True
                break
            if change < 0.9 * best_change:
                best_change, best_step = change, len(sc_changes)
            elif len(sc_changes) - best_step >= s.sc_stall_iterations:
                # no progress toward a fixed point (KCuPdSe5: residuals of 3-22 THz for 40 iterations):
                # stop instead of spending the whole iteration budget
                stall_note = (
                    f"self-consistent loop stalled: the largest residual ({change:.2f} THz) has not fallen below "
                    f"0.9 x its best ({best_change:.2f} THz, step {best_step}) for {s.sc_stall_iterations} "
                    "iterations; Phi(T) is the last iterate, not a fixed point"
                )
                break
            if fixed_point and coarse:
                coarse = False  # fixed point within the coarse noise only: verify it with full statistics
                fc_sampling, freqs_sampling, sampling_stderr = fc, obs["freqs"], obs["freqs_stderr"]
            else:
                if change > previous_change:  # the iteration overshoots (soft modes): damp it
                    mixing = max(mixing / 2, s.sc_min_mixing)
                fc_sampling = (1.0 - mixing) * fc_sampling + mixing * fc
                freqs_sampling = commensurate_frequencies(self.phonon, fc_sampling)
                sampling_stderr = np.hypot((1.0 - mixing) * sampling_stderr, mixing * obs["freqs_stderr"])
            previous_change = change
        timings["total"] = time.perf_counter() - t_start
        notes = list(modes.notes) + ([stall_note] if stall_note else [])
        if rms > LARGE_RMS_DISPLACEMENT:
            notes.append(
                f"large thermal displacements (rms up to {rms:.2f} A): the harmonic reference is very soft or "
                "unstable, so Phi(T) is qualitative; relax with the potential or use --self-consistent"
            )
        return TemperatureOutcome(
            temperature=temperature,
            force_constants=fc,
            frequencies=obs["freqs"],
            l2_shift=l2,
            l2_stderr=se,
            r_full=obs["r_full"],
            r_full_stderr=errors["r_full"],
            r_full_robust=obs["r_full_robust"],
            r_full_robust_stderr=errors["r_full_robust"],
            r_onsite_atoms=obs["r_onsite"],
            r_onsite_atoms_stderr=errors["r_onsite"],
            n_samples=history[-1].n_samples,
            converged=converged,
            history=history,
            sc_iterations=sc_changes,
            sc_converged=sc_converged,
            n_imaginary_sampled=modes.n_imaginary,
            n_floored=modes.n_floored,
            max_rms_displacement=rms,
            policy_notes=notes,
            timings=timings,
            potential_calls={k: self.calls[k] - calls0[k] for k in self.calls},
        )
