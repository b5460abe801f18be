"""Predicted self-consistent step: where the fixed point would be if the anharmonic part scaled with the amplitudes.

Linear mixing needs several sampled iterations when the anharmonic correction is large (each one a
full batch of potential calls). One sampled estimate already says how large the correction is at the
amplitudes it was sampled with; for a quartic potential the correction to every pair block is linear in
the covariance, ``<d2V> = Phi_2 + Phi_4 : Sigma / 2``. The predictor keeps that form with one number per
pair: the correction of block (a, b) scales with the relative mean-square displacement of the pair,
``<|u_a - u_b|^2>``, and the model's own fixed point is solved without potential calls (only
diagonalizations). The next iteration samples from there; the sampled fixed-point test still decides
convergence, so a poor prediction costs an iteration, never a wrong answer.
"""

from __future__ import annotations

import numpy as np

from ..sampling import SoftModePolicy, displacement_covariance, thermal_modes


def pair_variances(force_constants: np.ndarray, masses_amu: np.ndarray, temperature: float, quantum: bool,
                   policy: SoftModePolicy) -> np.ndarray:
    """Thermal ``<|u_a - u_b|^2>`` of every atom pair (A^2), ``<|u_a|^2>`` on the diagonal; (N, N).

    Sampled as the engine samples: imaginary and soft modes at ``max(|omega|, floor)``.
    """
    modes = thermal_modes(force_constants, masses_amu, policy)
    cov = displacement_covariance(modes, temperature, quantum)
    n = len(masses_amu)
    blocks = np.einsum("aibi->ab", cov.reshape(n, 3, n, 3))  # trace of each 3x3 block
    msd = np.diag(blocks)
    pair = msd[:, None] + msd[None, :] - 2.0 * blocks
    np.fill_diagonal(pair, msd)
    return pair


def _scaled(fc_harmonic: np.ndarray, correction: np.ndarray, scale: np.ndarray, asr: bool) -> np.ndarray:
    out = correction * scale[:, :, None, None]
    if asr:  # on-site blocks from the scaled pair blocks: the sum rule holds for the correction too
        idx = np.arange(len(scale))
        out[idx, idx] = 0.0
        out[idx, idx] = -out.sum(axis=1)
    return fc_harmonic + out


def predict_fixed_point(
    fc_harmonic: np.ndarray,
    fc_sampled: np.ndarray,
    fc_estimate: np.ndarray,
    masses_amu: np.ndarray,
    temperature: float,
    quantum: bool = True,
    policy: SoftModePolicy | None = None,
    asr: bool = True,
    max_ratio: float = 25.0,
    tolerance: float = 1e-3,
    max_steps: int = 200,
) -> np.ndarray | None:
    """Fixed point of the amplitude-scaling model anchored at one sampled estimate.

    Parameters
    ----------
    fc_harmonic
        Phi_HA, (N, N, 3, 3): the part that does not scale.
    fc_sampled
        Force constants the estimate was sampled from (its covariance is the anchor).
    fc_estimate
        The sampled estimate <d2V> at that covariance.
    masses_amu, temperature, quantum, policy
        As in the sampling (policy None: the default floor).
    asr
        Rebuild the on-site blocks from the pair blocks (acoustic sum rule); else scale them with
        the atom's own mean-square displacement.
    max_ratio
        A pair whose variance would change by more than this factor (either way) means the model is
        extrapolated beyond any use: no prediction.
    tolerance, max_steps
        Convergence of the damped model iteration on the per-pair ratios.

    Returns
    -------
    numpy.ndarray or None
        Predicted force constants, or None when the model iteration does not settle within bounds
        (the caller mixes instead).
    """
    policy = policy or SoftModePolicy()
    anchor = pair_variances(fc_sampled, masses_amu, temperature, quantum, policy)
    if not np.all(np.isfinite(anchor)) or np.any(np.diag(anchor) <= 0):
        return None
    anchor = np.where(anchor > 0, anchor, np.inf)  # a pair that cannot move relative to itself: no scaling
    correction = np.asarray(fc_estimate, float) - np.asarray(fc_harmonic, float)
    scale = np.ones_like(anchor)
    step = 0.5
    previous = np.inf
    for _ in range(max_steps):
        fc = _scaled(fc_harmonic, correction, scale, asr)
        target = pair_variances(fc, masses_amu, temperature, quantum, policy) / anchor
        target = np.where(np.isfinite(anchor), target, 1.0)
        if not np.all(np.isfinite(target)) or target.max() > max_ratio or target.min() < 1.0 / max_ratio:
            return None
        gap = float(np.abs(target - scale).max())
        if gap < tolerance:
            return _scaled(fc_harmonic, correction, target, asr)
        if gap > previous:  # oscillating through a soft mode: smaller steps
            step = max(step / 2, 0.05)
        previous = gap
        scale = scale + step * (target - scale)
    return None
