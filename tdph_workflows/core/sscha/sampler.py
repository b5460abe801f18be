"""Sampling at fixed force constants: antithetic thermal samples -> estimator -> observables.

Samples are added in doubling batches until the L2 shift's jackknife standard
error meets the target or the pair cap is hit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from phonopy import Phonopy

from .. import metrics
from ..estimators import (
    ForceRegression,
    GroupedEstimator,
    HessianAverage,
    UnderdeterminedFit,
    jackknife,
    symfc_basis,
)
from ..phonons import commensurate_frequencies
from ..sampling import SoftModePolicy, ThermalModes, is_translation_invariant, sample_displacements, thermal_modes
from ..symmetry import SupercellSymmetry, supercell_symmetry, symmetrize
from .reuse import GaussianDensity, SampleStore
from .settings import SSCHASettings

ForcesFn = Callable[[np.ndarray], np.ndarray]
"""positions (n, N, 3) -> forces (n, N, 3) in eV/A."""
HessianFn = Callable[[np.ndarray], np.ndarray]
"""positions (N, 3) -> Hessian (3N, 3N) in eV/A^2."""
Progress = Callable[[str], None]
_DEFAULT_SETTINGS = SSCHASettings()
# an effective sample size within half a pair of what an estimate needs counts as enough: the ESS of
# reweighted pairs is a real number and would otherwise ask for one more pair over rounding
ESS_SLACK_PAIRS = 0.5
# stored pairs weighted below this fraction of the largest weight are left out of the rebuilt estimator
# (all of them together move it by less than n_pairs x 1e-10 of one pair's influence): after a large
# move most old pairs are there, and the fit's basis products cost per sample
NEGLIGIBLE_WEIGHT = 1e-10


@dataclass
class ConvergenceStep:
    """One batch of the adaptive sampling: samples so far and the L2 shift with its standard error."""

    n_samples: int
    l2_shift: float
    l2_stderr: float


class _Values(NamedTuple):
    """Observables of one force-constant estimate (all groups or one leave-one-out subset)."""

    freqs: np.ndarray
    r_full: float
    r_full_robust: float
    r_onsite: np.ndarray


@dataclass
class Observables:
    """Observables of an estimate with jackknife standard errors.

    Attributes
    ----------
    freqs, freqs_stderr
        Commensurate frequencies (THz, Gamma acoustic removed).
    r_full, r_full_stderr, r_full_robust, r_full_robust_stderr
        Whole-matrix renormalization (paper Eq. 3) and its magnitude-weighted variant.
    r_onsite, r_onsite_stderr
        On-site renormalization per supercell atom (paper Eq. 4).
    """

    freqs: np.ndarray
    freqs_stderr: np.ndarray
    r_full: float
    r_full_stderr: float
    r_full_robust: float
    r_full_robust_stderr: float
    r_onsite: np.ndarray
    r_onsite_stderr: np.ndarray

    @classmethod
    def from_jackknife(cls, full: _Values, leave_one_out: list[_Values]) -> Observables:
        """Values of the all-group estimate with standard errors from its leave-one-group-out values."""
        onsite = np.array([o.r_onsite for o in leave_one_out])
        return cls(
            freqs=full.freqs,
            freqs_stderr=jackknife(np.array([o.freqs for o in leave_one_out])),
            r_full=full.r_full,
            r_full_stderr=jackknife([o.r_full for o in leave_one_out]),
            r_full_robust=full.r_full_robust,
            r_full_robust_stderr=jackknife([o.r_full_robust for o in leave_one_out]),
            r_onsite=full.r_onsite,
            # one 1-D jackknife per atom, not jackknife(onsite): numpy sums a 1-D array pairwise
            # but axis 0 of a 2-D one row by row, which differs in the last bits from earlier results
            r_onsite_stderr=np.array([jackknife(col) for col in onsite.T]),
        )


@dataclass
class SampledEstimate:
    """Result of sampling at one set of sampling force constants.

    Attributes
    ----------
    fc
        Symmetrized estimate of Phi(T), (N, N, 3, 3).
    observables
        Its frequencies and renormalization metrics with jackknife errors.
    l2, l2_stderr
        L2 frequency shift from the harmonic reference and its jackknife error.
    converged
        Whether ``l2_stderr`` met the target before the pair cap.
    history
        One ``ConvergenceStep`` per batch.
    modes
        The sampling normal modes (soft-mode bookkeeping and notes).
    max_rms
        Largest per-atom rms sampled displacement (A); weighted over the stored samples when reused.
    new_samples
        Samples drawn (potential evaluations) for this estimate; None when every sample was drawn
        for it (``Sampler.sample``), where it equals ``n_samples``.
    ess_pairs
        Effective sample size of the weighted estimate in pairs (``Sampler.sample_reweighted``);
        None for ``Sampler.sample``, where every pair has the same weight.
    """

    fc: np.ndarray
    observables: Observables
    l2: float
    l2_stderr: float
    converged: bool
    history: list[ConvergenceStep]
    modes: ThermalModes
    max_rms: float
    new_samples: int | None = None
    ess_pairs: float | None = None

    @property
    def n_samples(self) -> int:
        """Samples used (antithetic pairs count twice): those of the last batch's record.

        With reuse, all stored samples enter the weighted estimate; ``ess_pairs`` says what they are worth.
        """
        return self.history[-1].n_samples


class Sampler:
    """Material-level machinery of the estimator: potential calls, symmetry, estimators, observables.

    Parameters
    ----------
    phonon
        Phonopy object of the material (supercell in the engine's atom order).
    fc_harmonic
        Harmonic reference Phi_HA, (N, N, 3, 3); metrics are measured against it.
    forces_fn, hessian_fn
        Potential; ``hessian_fn`` is needed by the ``hessian`` estimator only.
    settings
        Physics and statistics options.
    progress
        Receives one line per batch.
    reference_forces
        Forces on the undistorted supercell, subtracted from every sample (computed on first use if None).
    """

    def __init__(
        self,
        phonon: Phonopy,
        fc_harmonic: np.ndarray,
        forces_fn: ForcesFn,
        hessian_fn: HessianFn | None = None,
        settings: SSCHASettings = _DEFAULT_SETTINGS,
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
    def evaluate(self, consumes: str, displacements: np.ndarray) -> np.ndarray:
        """Forces relative to the reference, or Hessians, at the displaced supercells (counted in ``calls``)."""
        if consumes == "forces":
            return self._forces(displacements)
        if consumes == "hessians":
            return self._hessians(displacements)
        raise ValueError(f"cannot evaluate {consumes!r}")

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

    # -- estimators and observables ------------------------------------------------
    def new_estimator(self) -> GroupedEstimator:
        """An empty estimator of the configured kind (the symfc basis is built once per material)."""
        s = self.settings
        if s.estimator == "hessian":
            return HessianAverage(len(self.masses), s.n_groups)
        sc = self.phonon.supercell
        if self.asr and self._basis is None:
            t0 = time.perf_counter()
            self._basis = symfc_basis(sc.cell, sc.scaled_positions, sc.numbers)
            self.time_basis = time.perf_counter() - t0
        return ForceRegression(sc.cell, sc.scaled_positions, sc.numbers, self.asr, s.n_groups, self._basis)

    def _finalize(self, raw: np.ndarray, already_symmetric: bool, timings: dict) -> np.ndarray:
        t0 = time.perf_counter()
        fc = raw if already_symmetric else symmetrize(raw, self.symmetry, self.asr)
        timings["symmetrize"] = timings.get("symmetrize", 0.0) + time.perf_counter() - t0
        return fc

    def _values(self, fc: np.ndarray) -> _Values:
        return _Values(
            freqs=commensurate_frequencies(self.phonon, fc),
            r_full=metrics.r_full(self.fc_harmonic, fc),
            r_full_robust=metrics.r_full_robust(self.fc_harmonic, fc),
            r_onsite=metrics.r_onsite(self.fc_harmonic, fc),
        )

    def _estimate(self, acc: GroupedEstimator, timings: dict[str, float]) -> tuple:
        """Symmetrized estimate, its observables, leave-one-group-out observables, L2 and its jackknife error."""
        t0 = time.perf_counter()
        fc = self._finalize(acc.estimate(), acc.already_symmetric, timings)
        full = self._values(fc)
        l2 = metrics.l2_shift(self.freqs_harmonic, full.freqs)
        jk = [self._values(self._finalize(acc.estimate(g), acc.already_symmetric, timings))
              for g in range(acc.n_groups)]
        se = jackknife([metrics.l2_shift(self.freqs_harmonic, o.freqs) for o in jk]) if acc.groups_filled \
            else float("inf")
        timings["estimate"] = timings.get("estimate", 0.0) + time.perf_counter() - t0
        return fc, full, jk, l2, se

    # -- sampling at fixed force constants --------------------------------------
    def sample(
        self,
        fc_sampling: np.ndarray,
        temperature: float,
        rng: np.random.Generator,
        timings: dict[str, float],
        pair_cap: int | None = None,
    ) -> SampledEstimate:
        """Draw antithetic samples from the modes of ``fc_sampling`` until the L2 error target or the cap.

        Parameters
        ----------
        fc_sampling
            Force constants whose normal modes define the sampling covariance.
        temperature
            Kelvin.
        rng
            Consumed in batch order; the same generator state gives the same samples.
        timings
            Accumulates ``sampling``, ``potential``, ``fit`` (force fit), ``estimate`` and ``symmetrize``.
        pair_cap
            Lower cap than ``settings.max_pairs`` on the statistics (coarse self-consistent iterations,
            a material graded F before sampling); an underdetermined fit still draws up to max_pairs.

        Returns
        -------
        SampledEstimate
        """
        s = self.settings
        modes = thermal_modes(fc_sampling, self.masses, SoftModePolicy(s.soft_mode_floor_thz))
        acc = self.new_estimator()
        history: list[ConvergenceStep] = []
        batch = max(s.min_pairs, acc.min_batch_pairs)
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
            values = self.evaluate(acc.consumes, u)
            # potential calls and the normal-equation update are timed apart: the latter
            # (symfc basis products) was hidden in "potential" and inflated the per-call cost
            t1 = time.perf_counter()
            timings["potential"] = timings.get("potential", 0.0) + t1 - t0
            acc.add(u, values)
            timings[acc.add_timing] = timings.get(acc.add_timing, 0.0) + time.perf_counter() - t1
            n_pairs += batch
            try:
                fc, full, jk, l2, se = self._estimate(acc, timings)
            except UnderdeterminedFit as exc:  # low symmetry, large cell: more samples than min_pairs needed
                # a pair cap limits statistics, not determinacy: only max_pairs ends the search
                if n_pairs >= s.max_pairs:
                    raise UnderdeterminedFit(f"{2 * n_pairs} samples (the cap): {exc}; raise max_pairs") from exc
                self.progress(f"T={temperature:g} K: {2 * n_pairs} samples do not determine the force "
                              "constants yet; drawing more")
                batch = min(n_pairs, s.max_pairs - n_pairs)
                continue
            history.append(ConvergenceStep(2 * n_pairs, l2, se))
            self.progress(f"T={temperature:g} K: {2 * n_pairs} samples, L2 shift {100 * l2:.2f} +- {100 * se:.2f} %")
            converged = se <= max(s.target_abs, s.target_rel * abs(l2))
            if converged or n_pairs >= max_pairs:
                break
            batch = min(n_pairs, max_pairs - n_pairs)
        rms = float(np.sqrt(sum_u2.max() / (2 * n_pairs)))
        return SampledEstimate(fc, Observables.from_jackknife(full, jk), l2, se, converged, history, modes, rms)

    def sample_reweighted(
        self,
        store: SampleStore,
        fc_sampling: np.ndarray,
        temperature: float,
        rng: np.random.Generator,
        timings: dict[str, float],
        pair_cap: int | None = None,
    ) -> SampledEstimate:
        """Estimate at the density of ``fc_sampling`` from every stored sample, drawing only what is missing.

        The stored pairs are weighted for the new density (``SampleStore.weights``, balance
        heuristic over the densities they were drawn from). The statistics follow ``sample``
        with the effective sample size in place of the pair count: the first estimate needs
        ESS >= ``min_pairs`` (capped as in ``sample``), a later one, when the L2 error target
        is missed, twice the ESS, up to the cap. Pairs are drawn from the new density (and
        stored) only while the ESS falls short; every estimate rebuilds the estimator from
        all stored samples with their weights (timed as ``fit``; the weights as ``weights``).

        Parameters
        ----------
        store
            The samples of this temperature so far; new ones are added to it.
        fc_sampling, temperature, rng, timings, pair_cap
            As in ``sample``.

        Returns
        -------
        SampledEstimate
            With ``new_samples`` (potential evaluations made) and ``ess_pairs``. Its jackknife errors
            are those of the weighted (self-normalized importance sampling) estimate: groups of pairs
            are left out with the other pairs' weights kept, so uneven weights widen them, but the
            densities are treated as given, although they came from earlier estimates on some of
            the same samples.
        """
        s = self.settings
        modes = thermal_modes(fc_sampling, self.masses, SoftModePolicy(s.soft_mode_floor_thz))
        density = GaussianDensity.from_modes(fc_sampling, modes, temperature, s.quantum)
        if density is None:  # nothing to weight (classical 0 K): plain sampling
            store.clear()
            return self.sample(fc_sampling, temperature, rng, timings, pair_cap)
        acc = self.new_estimator()
        consumes, first = acc.consumes, max(s.min_pairs, acc.min_batch_pairs)
        cap = max(s.max_pairs if pair_cap is None else min(pair_cap, s.max_pairs), first)
        need = min(first, cap)
        history: list[ConvergenceStep] = []
        new_pairs = 0
        while True:
            t0 = time.perf_counter()
            weights, ess = store.weights(density)
            timings["weights"] = timings.get("weights", 0.0) + time.perf_counter() - t0
            while ess < need - ESS_SLACK_PAIRS:
                m = max(math.ceil(need - ess), 1)
                t0 = time.perf_counter()
                u = sample_displacements(modes, temperature, m, rng, s.quantum)
                timings["sampling"] = timings.get("sampling", 0.0) + time.perf_counter() - t0
                t0 = time.perf_counter()
                values = self.evaluate(consumes, u)
                timings["potential"] = timings.get("potential", 0.0) + time.perf_counter() - t0
                t0 = time.perf_counter()
                store.add(density, u, values)
                new_pairs += m
                weights, ess = store.weights(density)
                timings["weights"] = timings.get("weights", 0.0) + time.perf_counter() - t0
            # the weights change with every density: rebuild the accumulators from all stored samples
            t0 = time.perf_counter()
            if acc.n_samples:
                acc = None  # free the old normal equations before allocating the new ones
                acc = self.new_estimator()
            w = np.repeat(weights, 2)
            w[w < NEGLIGIBLE_WEIGHT * w.max()] = 0.0  # their fit cost, not their influence, would count
            acc.add(store.displacements, store.values, w)
            timings["fit"] = timings.get("fit", 0.0) + time.perf_counter() - t0
            try:
                fc, full, jk, l2, se = self._estimate(acc, timings)
            except UnderdeterminedFit as exc:
                if ess >= cap - ESS_SLACK_PAIRS:
                    raise UnderdeterminedFit(f"{2 * store.n_pairs} samples (the cap): {exc}; raise max_pairs") from exc
                need = min(2 * max(ess, 1.0), cap)
                continue
            history.append(ConvergenceStep(2 * store.n_pairs, l2, se))
            self.progress(f"T={temperature:g} K: {2 * store.n_pairs} samples ({2 * new_pairs} new, "
                          f"effective {2 * ess:.0f}), L2 shift {100 * l2:.2f} +- {100 * se:.2f} %")
            converged = se <= max(s.target_abs, s.target_rel * abs(l2))
            if converged or ess >= cap - ESS_SLACK_PAIRS:
                break
            need = min(2 * ess, cap)
        u = store.displacements
        rms = float(np.sqrt(((u**2).sum(axis=2) * w[:, None]).sum(axis=0).max() / w.sum()))
        return SampledEstimate(fc, Observables.from_jackknife(full, jk), l2, se, converged, history, modes, rms,
                               new_samples=2 * new_pairs, ess_pairs=ess)
