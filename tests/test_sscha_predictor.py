"""The predicted self-consistent step: exact where the amplitude-scaling model is exact, harmless elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import constants as sc
from scipy.optimize import brentq

from tdph_workflows.core.sampling import SoftModePolicy
from tdph_workflows.core.sscha.predictor import pair_variances, predict_fixed_point

MASSES = np.array([6.94, 126.90447])  # Li, I
K = np.array([2.0, 3.0])  # eV/A^2
LAM = np.array([20.0, 15.0])  # eV/A^4, V = k u^2/2 + lam u^4/4 per component


def u2(k: float, mass_amu: float, temperature: float) -> float:
    """<u^2> (A^2) of one quantum harmonic oscillator component."""
    m = mass_amu * sc.atomic_mass
    omega = np.sqrt(k * sc.eV / sc.angstrom**2 / m)
    return sc.hbar / (2 * m * omega) / np.tanh(sc.hbar * omega / (2 * sc.k * temperature)) / sc.angstrom**2


def einstein_fc(k_eff: np.ndarray) -> np.ndarray:
    fc = np.zeros((2, 2, 3, 3))
    for i, k in enumerate(k_eff):
        fc[i, i] = k * np.eye(3)
    return fc


@pytest.mark.parametrize("temperature", [50.0, 600.0])
def test_one_estimate_predicts_the_exact_fixed_point_of_quartic_oscillators(temperature):
    """<d2V> = k + 3 lam <u^2> is linear in <u^2>: the model is exact, so one estimate at the harmonic
    covariance gives the SCHA root k_eff = k + 3 lam <u^2>(k_eff) without a second potential call."""
    one_shot = K + 3 * LAM * np.array([u2(k, m, temperature) for k, m in zip(K, MASSES, strict=True)])
    fc = predict_fixed_point(einstein_fc(K), einstein_fc(K), einstein_fc(one_shot), MASSES, temperature,
                             asr=False, policy=SoftModePolicy(0.01))
    assert fc is not None
    for i, (k, lam, m) in enumerate(zip(K, LAM, MASSES, strict=True)):
        exact = brentq(lambda x, k=k, lam=lam, m=m: x - k - 3 * lam * u2(x, m, temperature), k, 20 * k)
        if i == 0:  # light Li: the one-shot answer is measurably off (heavy I barely moves at 50 K)
            assert abs(one_shot[i] - exact) > 0.1 * (exact - k)
        assert np.allclose(fc[i, i], exact * np.eye(3), rtol=2e-3), (fc[i, i], exact)
    assert np.allclose(fc[0, 1], 0) and np.allclose(fc[1, 0], 0)


def test_a_later_anchor_predicts_the_same_fixed_point():
    """Anchored at any sampled covariance (a later iteration), the model's fixed point is the same root."""
    temperature = 300.0
    anchor = K * 1.7  # some mixed iterate
    at_anchor = K + 3 * LAM * np.array([u2(a, m, temperature) for a, m in zip(anchor, MASSES, strict=True)])
    from_harmonic = predict_fixed_point(einstein_fc(K), einstein_fc(K),
                                        einstein_fc(K + 3 * LAM * np.array([u2(k, m, temperature)
                                                                           for k, m in zip(K, MASSES, strict=True)])),
                                        MASSES, temperature, asr=False)
    from_anchor = predict_fixed_point(einstein_fc(K), einstein_fc(anchor), einstein_fc(at_anchor), MASSES,
                                      temperature, asr=False)
    assert np.allclose(from_anchor, from_harmonic, rtol=3e-3)


def test_pair_variances_of_a_chain_follow_the_covariance():
    """Two equal masses on one spring (ASR): the centre of mass is removed, so <|u_a - u_b|^2> = 4 <|u_a|^2>."""
    k = 2.0
    fc = np.zeros((2, 2, 3, 3))
    fc[0, 0] = fc[1, 1] = k * np.eye(3)
    fc[0, 1] = fc[1, 0] = -k * np.eye(3)
    v = pair_variances(fc, np.array([10.0, 10.0]), 300.0, True, SoftModePolicy())
    assert v[0, 0] == pytest.approx(v[1, 1])
    assert v[0, 1] == pytest.approx(4 * v[0, 0])
    assert v[0, 1] == pytest.approx(v[1, 0])
    # V = k (u_a - u_b)^2 / 2: relative motion is an oscillator of spring k and reduced mass 5 amu, per direction
    assert v[0, 1] == pytest.approx(3 * u2(k, 5.0, 300.0), rel=1e-6)


def test_no_prediction_where_the_model_would_extrapolate_wildly():
    """A huge softening correction drives the model's amplitudes past max_ratio: None, the caller mixes."""
    fc = predict_fixed_point(einstein_fc(K), einstein_fc(K), einstein_fc(K * 0.02), MASSES, 300.0, asr=False,
                             max_ratio=4.0)
    assert fc is None
