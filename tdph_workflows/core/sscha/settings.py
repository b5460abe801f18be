"""Options of the one-shot / self-consistent SSCHA and the thresholds derived from them."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

from ..sampling import SoftModePolicy


def fixed_point_z(n_frequencies: int, false_alarm: float = 0.05) -> float:
    """Normal quantile z so that a true fixed point passes all n per-frequency tests with 1 - false_alarm.

    Bonferroni over the frequencies (conservative: degenerate modes are correlated). A fixed
    2.5 sigma per frequency fails a true fixed point of 120 frequencies ~75 % of the time.
    """
    return NormalDist().inv_cdf(1.0 - false_alarm / (2 * max(n_frequencies, 1)))  # stdlib: scipy.stats costs 0.4 s


# statistics each estimator starts from when the user leaves them unset (min_pairs None = n_groups)
ESTIMATOR_DEFAULTS = {
    "force_fit": {"min_pairs": 16, "n_groups": 8, "max_pairs": 256},
    "hessian": {"min_pairs": None, "n_groups": 4, "max_pairs": 32},
}


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
        First batch and cap of antithetic pairs; batches double in between. None: the
        estimator's default (``ESTIMATOR_DEFAULTS``; a Hessian costs ~3N force calls, so the
        Hessian average starts at 4 pairs and stops at 32), min_pairs never above max_pairs.
        An explicit value is always kept as given.
    target_abs, target_rel
        Stop when stderr(L2) <= max(target_abs, target_rel * L2); 0.005 = 0.5 points.
    n_groups
        Jackknife groups (pairs are dealt round-robin); None: the estimator's default, at most
        max_pairs.
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
    sc_reuse_samples
        Self-consistent only (ignored by the one-shot): keep every sample drawn at a temperature
        and reuse it in later iterations by importance reweighting (``sscha.reuse``; weights
        p_new / q with q the mixture of the densities the samples came from). An iteration draws
        new pairs only while the effective sample size (Kong-Liu, in pairs) is below what it needs
        (``sc_coarse_pairs``, or ``min_pairs`` doubling to ``max_pairs`` with full statistics), and
        the estimators are rebuilt from all samples with their weights (weighted least squares /
        weighted mean). Off by default: measured on 10 random MDR entries it cuts the median
        self-consistent / one-shot force-call ratio from 3.98 to 3.10 only, and with effective
        sample sizes near 16 pairs its jackknife errors understate the scatter of repeated runs
        (benchmarks/results/sc_reuse.md). False: every iteration draws fresh samples.
    known_failure_pairs
        Cap on the antithetic pairs of a material whose trust grade is F before any sample is drawn
        (``trust.failures_before_sampling``: a one-shot run on an unstable harmonic reference, or a
        harmonic spectrum that disagrees with DFT): its statistics stop there, converged or not (the
        error bar says how far), while an underdetermined fit still draws what it needs. None: no cap.
        In the full MDR campaign such materials were 41 % of the engine time for no trusted number.
    known_failure_keeps_cell
        A material graded F before sampling, judged on its input supercell, keeps that supercell: the
        thermal-sampling check does not widen it (``engine.harmonic_stage``). Each such reason is read
        at the input cell's commensurate q-points, which any wider cell contains, so widening could not
        lift it. False: widen every cell that needs it. Of the first 464 materials of the full MDR
        campaign, 15 graded F were widened and took 14 % of its wall time.
    sc_predict
        Self-consistent only: after each estimate, sample next from the fixed point of the
        amplitude-scaling model anchored at it (``sscha.predictor``: the anharmonic correction of each
        atom pair scales with its thermal mean-square relative displacement; exact for quartic
        oscillators) instead of mixing toward the estimate. Falls back to mixing where the model does
        not settle, and for good once a predicted step fails to halve the residual (one that raises it
        is undone). False (default): linear mixing only. Opt-in because on 20 random MDR entries it
        cut the median self-consistent / one-shot force-call ratio from 2.56 to 2.01 but raised the
        mean from 3.96 to 4.42: two materials spent 1,065 and 1,787 calls on failed full-statistics
        verifications (benchmarks/results/sc_predict.md).
    """

    estimator: Literal["force_fit", "hessian"] = "force_fit"
    quantum: bool = True
    soft_mode_floor_thz: float = 0.5
    min_pairs: int | None = None
    max_pairs: int | None = None
    target_abs: float = 0.005
    target_rel: float = 0.03
    n_groups: int | None = None
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
    sc_reuse_samples: bool = False
    known_failure_pairs: int | None = None
    known_failure_keeps_cell: bool = False
    sc_predict: bool = False

    def __post_init__(self) -> None:
        if self.estimator not in ("force_fit", "hessian"):
            raise ValueError(f"unknown estimator {self.estimator!r}: use 'force_fit' or 'hessian'")
        defaults = ESTIMATOR_DEFAULTS[self.estimator]
        max_pairs = defaults["max_pairs"] if self.max_pairs is None else self.max_pairs
        n_groups = min(defaults["n_groups"], max(max_pairs, 2)) if self.n_groups is None else self.n_groups
        min_pairs = self.min_pairs
        if min_pairs is None:
            min_pairs = min(defaults["min_pairs"] or n_groups, max_pairs)
        # frozen: the resolved values are what asdict() stores and campaign keys hash
        object.__setattr__(self, "max_pairs", max_pairs)
        object.__setattr__(self, "n_groups", n_groups)
        object.__setattr__(self, "min_pairs", min_pairs)
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
        if self.known_failure_pairs is not None and self.known_failure_pairs < self.n_groups:
            raise ValueError("known_failure_pairs must be >= n_groups so every jackknife group has data")
        if self.sc_coarse_pairs is not None and self.sc_coarse_pairs < self.n_groups:
            raise ValueError("sc_coarse_pairs must be >= n_groups so every jackknife group has data")
        SoftModePolicy(self.soft_mode_floor_thz)

