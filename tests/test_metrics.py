"""Metrics on hand-made matrices."""

from __future__ import annotations

import numpy as np
import pytest

from tdph_workflows.core import metrics
from tdph_workflows.core.estimators import jackknife


def _fc(n=2):
    fc = np.zeros((n, n, 3, 3))
    fc[0, 0] = np.diag([2.0, 2.0, 2.0])
    fc[1, 1] = np.diag([4.0, 4.0, 4.0])
    fc[0, 1] = fc[1, 0] = -np.eye(3)
    return fc


def test_r_full_literal_definition_on_hand_values():
    o = _fc()
    a = o * 1.5  # every nonzero element grows by 50 %: |0.5x| / (1.25|x|) = 0.4
    assert np.isclose(metrics.r_full(o, a, relative_floor=0.0), 0.4)
    assert np.isclose(metrics.r_full(o, a), 0.4)
    assert np.isclose(metrics.r_full_robust(o, a), 0.4)


def test_r_full_floor_removes_near_zero_elements():
    o = _fc()
    a = o.copy()
    a[0, 1, 0, 1] = 1e-6  # a numerically-zero element flips from 0 to tiny: relative change 2
    literal = metrics.r_full(o, a, relative_floor=0.0)
    guarded = metrics.r_full(o, a)
    assert literal > 0.05  # one of 19 kept elements contributes 2
    assert guarded == 0.0
    assert metrics.r_full_robust(o, a) < 1e-5


def test_r_onsite_per_site_and_zero_trace_error():
    o = _fc()
    a = o.copy()
    a[1, 1] = np.diag([5.0, 5.0, 5.0])
    assert np.allclose(metrics.r_onsite(o, a), [0.0, 0.25])
    z = o.copy()
    z[0, 0] = 0
    with pytest.raises(ValueError, match="trace"):
        metrics.r_onsite(z, a)


def test_l2_shift():
    f0 = np.array([1.0, 2.0, 2.0])
    assert np.isclose(metrics.l2_shift(f0, 1.1 * f0), 0.1)
    assert np.isclose(metrics.l2_shift(np.array([3.0, 4.0]), np.array([3.0, 9.0])), 1.0)
    with pytest.raises(ValueError):
        metrics.l2_shift(f0, f0[:2])


def test_jackknife_of_a_mean_is_the_standard_error():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(800)
    groups = np.array_split(x, 8)
    loo = [np.concatenate([g for j, g in enumerate(groups) if j != k]).mean() for k in range(8)]
    assert np.isclose(jackknife(loo), x.std(ddof=1) / np.sqrt(len(x)), rtol=0.5)
