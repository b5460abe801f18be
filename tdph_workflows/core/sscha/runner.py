"""One temperature as a stepping object: each ``next()`` samples once, tests the fixed point and mixes.

``TemperatureRun.run()`` just iterates to the end, so a caller may instead step,
log, checkpoint or stop between iterations (as in phonopy's ``MLPSSCHA``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..phonons import commensurate_frequencies
from ..sampling import SoftModePolicy
from ..symmetry import symmetrize
from .predictor import predict_fixed_point
from .reuse import SampleStore
from .sampler import ConvergenceStep, SampledEstimate, Sampler
from .settings import fixed_point_z


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
    sc_new_samples: list[int] = field(default_factory=list)  # samples drawn per SC iteration (potential calls)
    sc_ess_pairs: list[float] = field(default_factory=list)  # effective sample size (pairs) per SC iteration


@dataclass(frozen=True)
class Iteration:
    """What one ``next(run)`` did.

    Attributes
    ----------
    step
        1-based iteration number.
    stage
        ``"one-shot"``, ``"coarse"`` or ``"full statistics"`` (the statistics it was sampled with).
    estimate
        The new estimate sampled from the run's sampling force constants.
    residual
        Largest |d omega| (THz) between the estimate and the sampling force constants; None for one-shot.
    fixed_point
        Whether every frequency passed the fixed-point test; None for one-shot.
    new_samples
        Samples drawn (potential evaluations) in this iteration: all of the estimate's without
        reuse, only the missing ones with ``sc_reuse_samples``.
    ess_pairs
        Effective sample size of the estimate in pairs (its pair count when unweighted).
    """

    step: int
    stage: str
    estimate: SampledEstimate
    residual: float | None = None
    fixed_point: bool | None = None
    new_samples: int | None = None
    ess_pairs: float | None = None


class TemperatureRun:
    """The (self-consistent) SSCHA at one temperature, one iteration per ``next()``.

    One-shot settings give a single iteration. Self-consistent ones resample from
    the mixed force constants until the fixed point holds with full statistics,
    the loop stalls or ``sc_max_iterations`` is reached (see ``SSCHASettings``).
    With ``sc_reuse_samples`` (opt-in) an iteration reweights every sample drawn so far
    at this temperature for the new sampling force constants and draws only while the
    effective sample size falls short (``Sampler.sample_reweighted``); the fixed-point test
    and the convergence criteria are the same, on the weighted estimate and its jackknife error.

    Parameters
    ----------
    sampler
        The material (``OneShotSSCHA`` or any ``Sampler``); its call counters are shared.
    temperature
        Kelvin; with ``settings.seed`` it seeds the random stream.
    pair_cap
        Cap on the pairs of the one-shot and full-statistics estimates (None: ``max_pairs``).

    Attributes
    ----------
    fc_sampling, freqs_sampling
        Force constants (and their commensurate frequencies) the next iteration samples from.
    sampling_stderr
        Noise that mixing carried into ``fc_sampling`` (per frequency, THz).
    mixing, previous_change, best_change, best_step
        Linear-mixing weight and the residual history it is adapted from.
    coarse
        Whether the next iteration uses the coarse pair cap.
    residuals
        Largest |d omega| (THz) per self-consistent iteration.
    new_samples, ess_pairs
        Samples drawn and effective sample size (pairs) per self-consistent iteration.
    store
        The samples kept for reuse (``SampleStore``), None unless self-consistent with
        ``sc_reuse_samples``.
    estimate
        The latest ``SampledEstimate`` (None before the first iteration).
    sc_converged
        None when one-shot, else whether the fixed point was reached.
    stall_note
        Why the loop gave up, when it stalled.
    finished
        True once the run has ended (``next()`` raises StopIteration).

    Examples
    --------
    >>> run = engine.temperature_run(300.0)          # doctest: +SKIP
    >>> for it in run:                               # doctest: +SKIP
    ...     print(it.step, it.stage, it.residual)
    ...     if it.step == 3:
    ...         break
    >>> outcome = run.outcome()                      # doctest: +SKIP
    """

    def __init__(self, sampler: Sampler, temperature: float, pair_cap: int | None = None) -> None:
        s = sampler.settings
        self.sampler = sampler
        self.settings = s
        self.temperature = temperature
        # int(): NumPy 1 rounds an np.float64 temperature to an np.float64
        self.rng = np.random.default_rng([s.seed, int(round(temperature * 1000))])  # noqa: RUF046
        self.timings: dict[str, float] = {}
        self.elapsed = 0.0
        self._calls0 = dict(sampler.calls)
        self.max_iterations = s.sc_max_iterations if s.self_consistent else 1
        self.coarse_cap = s.sc_coarse_pairs or s.min_pairs
        self.coarse = s.self_consistent and self.coarse_cap < s.max_pairs
        self.pair_cap = pair_cap  # statistics cap of the one-shot / full-statistics iterations
        self.fc_sampling = sampler.fc_harmonic
        self.freqs_sampling = sampler.freqs_harmonic
        self.sampling_stderr = np.zeros_like(sampler.freqs_harmonic)
        self.mixing = s.sc_mixing
        self.previous_change = np.inf
        self.best_change, self.best_step = np.inf, 0
        self.residuals: list[float] = []
        self.new_samples: list[int] = []
        self.ess_pairs: list[float] = []
        self.store = SampleStore() if s.self_consistent and s.sc_reuse_samples else None
        self.predicting = s.self_consistent and s.sc_predict
        self.last_predicted = False
        self.before_prediction: tuple | None = None  # sampling state, its estimate and residual
        self.predicted_steps = 0
        self.sc_converged: bool | None = False if s.self_consistent else None
        self.stall_note: str | None = None
        self.estimate: SampledEstimate | None = None
        self.iterations = 0
        self.finished = False

    def __iter__(self) -> TemperatureRun:
        return self

    def __next__(self) -> Iteration:
        if self.finished or self.iterations >= self.max_iterations:
            self.finished = True
            raise StopIteration
        t0 = time.perf_counter()
        try:
            return self._iterate()
        finally:
            self.elapsed += time.perf_counter() - t0

    def _iterate(self) -> Iteration:
        s = self.settings
        stage = "coarse" if self.coarse else ("full statistics" if s.self_consistent else "one-shot")
        cap = self.coarse_cap if self.coarse else self.pair_cap
        if self.store is None:
            est = self.sampler.sample(self.fc_sampling, self.temperature, self.rng, self.timings, cap)
            new, ess = est.n_samples, est.n_samples / 2
        else:
            est = self.sampler.sample_reweighted(self.store, self.fc_sampling, self.temperature, self.rng,
                                                 self.timings, cap)
            new = est.n_samples if est.new_samples is None else est.new_samples
            ess = est.n_samples / 2 if est.ess_pairs is None else est.ess_pairs
        self.estimate = est
        self.iterations += 1
        if not s.self_consistent:
            self.finished = True
            return Iteration(self.iterations, stage, est, new_samples=new, ess_pairs=ess)
        self.new_samples.append(new)
        self.ess_pairs.append(ess)
        # fixed-point residual: the new estimate against the force constants it was sampled from
        obs = est.observables
        delta = np.abs(obs.freqs - self.freqs_sampling)
        change = float(delta.max())
        self.residuals.append(change)
        self.sampler.progress(
            f"T={self.temperature:g} K: self-consistent step {len(self.residuals)} ({stage}), "
            f"max |d omega| {change:.3f} THz"
        )
        # fc_sampling is built from noisy estimates, so it sits off the fixed point by about its own
        # noise; testing against the new estimate's noise alone took As2Ru 21 iterations instead of 9
        noise = fixed_point_z(len(delta)) * np.hypot(obs.freqs_stderr, self.sampling_stderr)
        fixed_point = bool(np.all(delta < np.maximum(s.sc_tolerance_thz, noise)))
        step = Iteration(self.iterations, stage, est, change, fixed_point, new, ess)
        # "within noise" counts only once the noise itself meets the L2 target: a chaotic step
        # through near-unstable force constants has huge error bars and would pass otherwise.
        # A coarse step that met the target is a full-statistics step already.
        if fixed_point and est.converged:
            self.sc_converged = True
            self.finished = True
            return step
        if self._stalled(change):
            self.finished = True
            return step
        self._update_sampling(est, fixed_point, change)
        return step

    def _stalled(self, change: float) -> bool:
        if change < 0.9 * self.best_change:
            self.best_change, self.best_step = change, len(self.residuals)
            return False
        if len(self.residuals) - self.best_step < self.settings.sc_stall_iterations:
            return False
        # no progress toward a fixed point (KCuPdSe5: residuals of 3-22 THz for 40 iterations):
        # stop instead of spending the whole iteration budget
        self.stall_note = (
            f"self-consistent loop stalled: the largest residual ({change:.2f} THz) has not fallen below "
            f"0.9 x its best ({self.best_change:.2f} THz, step {self.best_step}) for "
            f"{self.settings.sc_stall_iterations} iterations; Phi(T) is the last iterate, not a fixed point"
        )
        return True

    def _update_sampling(self, est: SampledEstimate, fixed_point: bool, change: float) -> None:
        """Next sampling force constants: verify a coarse fixed point with full statistics, or mix."""
        obs = est.observables
        if fixed_point and self.coarse:
            self.coarse = False  # fixed point within the coarse noise only: verify it with full statistics
            self.fc_sampling, self.freqs_sampling, self.sampling_stderr = est.fc, obs.freqs, obs.freqs_stderr
            self.previous_change = change
            return
        if self.last_predicted and change > self.previous_change:
            # the amplitude model misled: back to the state it started from, stepping as mixing would have
            # (this estimate is discarded), and plain mixing from here on
            self.predicting = self.last_predicted = False
            fc_from, stderr_from, fc_estimate, stderr_estimate, change_from = self.before_prediction
            self._mix(fc_from, stderr_from, fc_estimate, stderr_estimate)
            self.previous_change = change_from
            return
        if self.last_predicted and change > 0.5 * self.previous_change:
            self.predicting = False  # a predicted step should land near the fixed point: it did not
        if change > self.previous_change:  # the iteration overshoots (soft modes): damp it
            self.mixing = max(self.mixing / 2, self.settings.sc_min_mixing)
        self.last_predicted = False
        if self.predicting and (predicted := self._predicted(est.fc)) is not None:
            self.before_prediction = (self.fc_sampling, self.sampling_stderr, est.fc, obs.freqs_stderr, change)
            self.last_predicted = True
            self.predicted_steps += 1
            self.sampler.progress(f"T={self.temperature:g} K: next samples from the predicted fixed point")
            self._mix(self.fc_sampling, self.sampling_stderr, predicted, obs.freqs_stderr)
        else:
            self._mix(self.fc_sampling, self.sampling_stderr, est.fc, obs.freqs_stderr)
        self.previous_change = change

    def _mix(self, fc_from: np.ndarray, stderr_from: np.ndarray, fc_to: np.ndarray, stderr_to: np.ndarray) -> None:
        m = self.mixing
        self.fc_sampling = (1.0 - m) * fc_from + m * fc_to
        self.freqs_sampling = commensurate_frequencies(self.sampler.phonon, self.fc_sampling)
        self.sampling_stderr = np.hypot((1.0 - m) * stderr_from, m * stderr_to)

    def _predicted(self, fc_estimate: np.ndarray) -> np.ndarray | None:
        """The amplitude-scaling model's fixed point from the latest estimate (``sscha.predictor``), symmetrized."""
        s, sampler = self.settings, self.sampler
        t0 = time.perf_counter()
        try:
            fc = predict_fixed_point(sampler.fc_harmonic, self.fc_sampling, fc_estimate, sampler.masses,
                                     self.temperature, s.quantum, SoftModePolicy(s.soft_mode_floor_thz), sampler.asr)
            if fc is not None:
                fc = symmetrize(fc, sampler.symmetry, sampler.asr)
        finally:
            self.timings["predict"] = self.timings.get("predict", 0.0) + time.perf_counter() - t0
        return fc

    def run(self) -> TemperatureOutcome:
        """Iterate to the end and return the outcome."""
        for _ in self:
            pass
        return self.outcome()

    def outcome(self) -> TemperatureOutcome:
        """The outcome of the latest estimate, also after stopping early (then ``sc_converged`` is False).

        Raises
        ------
        RuntimeError
            Before the first iteration.
        """
        est = self.estimate
        if est is None:
            raise RuntimeError("no iteration has run yet")
        timings = dict(self.timings)
        timings["total"] = self.elapsed
        # displacements too large for the harmonic regime are judged against the neighbour distance by the
        # trust grade (Lindemann ratio); an absolute rms threshold flagged stable NaCl (0.32 A, ratio 0.11)
        notes = list(est.modes.notes) + ([self.stall_note] if self.stall_note else [])
        if self.predicted_steps:
            notes.append(f"{self.predicted_steps} of {len(self.residuals)} self-consistent steps sampled from a "
                         "predicted fixed point (sc_predict)")
        obs = est.observables
        calls = self.sampler.calls
        return TemperatureOutcome(
            temperature=self.temperature,
            force_constants=est.fc,
            frequencies=obs.freqs,
            l2_shift=est.l2,
            l2_stderr=est.l2_stderr,
            r_full=obs.r_full,
            r_full_stderr=obs.r_full_stderr,
            r_full_robust=obs.r_full_robust,
            r_full_robust_stderr=obs.r_full_robust_stderr,
            r_onsite_atoms=obs.r_onsite,
            r_onsite_atoms_stderr=obs.r_onsite_stderr,
            n_samples=est.n_samples,
            converged=est.converged,
            history=est.history,
            sc_iterations=list(self.residuals),
            sc_converged=self.sc_converged,
            n_imaginary_sampled=est.modes.n_imaginary,
            n_floored=est.modes.n_floored,
            max_rms_displacement=est.max_rms,
            policy_notes=notes,
            timings=timings,
            potential_calls={k: calls[k] - self._calls0[k] for k in calls},
            sc_new_samples=list(self.new_samples),
            sc_ess_pairs=list(self.ess_pairs),
        )


class OneShotSSCHA(Sampler):
    """Runs the one-shot (or self-consistent) estimator at several temperatures on one harmonic reference.

    A ``Sampler`` (same constructor) that also drives the per-temperature loop;
    the symmetry, symfc basis and call counters are shared by all temperatures.
    """

    def temperature_run(self, temperature: float, pair_cap: int | None = None) -> TemperatureRun:
        """A stepping run at ``temperature`` (nothing is sampled until it is iterated).

        ``pair_cap`` caps the statistics of its one-shot / full-statistics estimates below ``max_pairs``.
        """
        return TemperatureRun(self, temperature, pair_cap)

    def run_temperature(self, temperature: float, pair_cap: int | None = None) -> TemperatureOutcome:
        """Run to the end at ``temperature``; see ``TemperatureRun``."""
        return self.temperature_run(temperature, pair_cap).run()
