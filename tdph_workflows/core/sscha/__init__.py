"""One-shot (and optionally self-consistent) SSCHA for one material.

Pipeline per temperature: harmonic modes -> antithetic thermal samples ->
estimator (force fit or Hessian average) -> space-group averaging -> metrics
with jackknife error bars; samples are added until the L2 shift's standard
error meets the target or the cap is hit.

* ``settings``: ``SSCHASettings`` and the thresholds derived from it.
* ``sampler``: ``Sampler.sample`` draws at fixed sampling force constants -> ``SampledEstimate``.
* ``runner``: ``TemperatureRun``, one self-consistent iteration per ``next()``;
  ``OneShotSSCHA.run_temperature`` runs it to the end.
* ``reuse``: ``SampleStore`` keeps a temperature's samples and weights them for a new
  sampling density (self-consistent ``sc_reuse_samples``; ``Sampler.sample_reweighted``).
"""

from .reuse import GaussianDensity, SampleStore
from .runner import Iteration, OneShotSSCHA, TemperatureOutcome, TemperatureRun
from .sampler import ConvergenceStep, ForcesFn, HessianFn, Observables, Progress, SampledEstimate, Sampler
from .settings import SSCHASettings, fixed_point_z

__all__ = [
    "ConvergenceStep",
    "ForcesFn",
    "GaussianDensity",
    "HessianFn",
    "Iteration",
    "Observables",
    "OneShotSSCHA",
    "Progress",
    "SSCHASettings",
    "SampleStore",
    "SampledEstimate",
    "Sampler",
    "TemperatureOutcome",
    "TemperatureRun",
    "fixed_point_z",
]
