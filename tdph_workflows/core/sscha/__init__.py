"""One-shot (and optionally self-consistent) SSCHA for one material.

Pipeline per temperature: harmonic modes -> antithetic thermal samples ->
estimator (force fit or Hessian average) -> space-group averaging -> metrics
with jackknife error bars; samples are added until the L2 shift's standard
error meets the target or the cap is hit.

* ``settings``: ``SSCHASettings`` and the thresholds derived from it.
* ``sampler``: ``Sampler.sample`` draws at fixed sampling force constants -> ``SampledEstimate``.
* ``runner``: ``TemperatureRun``, one self-consistent iteration per ``next()``;
  ``OneShotSSCHA.run_temperature`` runs it to the end.
"""

from .runner import Iteration, OneShotSSCHA, TemperatureOutcome, TemperatureRun
from .sampler import ConvergenceStep, ForcesFn, HessianFn, Observables, Progress, SampledEstimate, Sampler
from .settings import LARGE_RMS_DISPLACEMENT, SSCHASettings, fixed_point_z

__all__ = [
    "LARGE_RMS_DISPLACEMENT",
    "ConvergenceStep",
    "ForcesFn",
    "HessianFn",
    "Iteration",
    "Observables",
    "OneShotSSCHA",
    "Progress",
    "SSCHASettings",
    "SampledEstimate",
    "Sampler",
    "TemperatureOutcome",
    "TemperatureRun",
    "fixed_point_z",
]
