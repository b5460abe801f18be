"""Renormalization metrics (paper Eqs. 3 and 4) and the L2 frequency shift."""

from __future__ import annotations

import numpy as np

# Elements of |Phi| below this fraction of max|Phi_0| are left out of R_full:
# relative changes of numerically-zero couplings carry no physics but dominate
# the element-wise mean (a prototype read R_full = 1.3 where frequencies barely moved).
R_FULL_RELATIVE_FLOOR = 1e-3


def r_full(fc_ref: np.ndarray, fc_new: np.ndarray, relative_floor: float = R_FULL_RELATIVE_FLOOR) -> float:
    """Paper Eq. 3: mean over elements of |A - O| / ((|O| + |A|) / 2).

    Elements whose mean magnitude is below ``relative_floor * max|O|`` are excluded
    (floor 0 gives the literal definition, with exact-zero pairs still skipped).
    """
    o = np.asarray(fc_ref, float).ravel()
    a = np.asarray(fc_new, float).ravel()
    mean_mag = 0.5 * (np.abs(o) + np.abs(a))
    floor = relative_floor * np.abs(o).max()
    keep = mean_mag > floor
    if not keep.any():
        return 0.0
    return float(np.mean(np.abs(a[keep] - o[keep]) / mean_mag[keep]))


def r_full_robust(fc_ref: np.ndarray, fc_new: np.ndarray) -> float:
    """Ratio of sums: sum|A - O| / sum((|O| + |A|) / 2); weighted by magnitude, no floor needed."""
    o = np.asarray(fc_ref, float)
    a = np.asarray(fc_new, float)
    den = 0.5 * (np.abs(o) + np.abs(a)).sum()
    return float(np.abs(a - o).sum() / den) if den > 0 else 0.0


def r_onsite(fc_ref: np.ndarray, fc_new: np.ndarray) -> np.ndarray:
    """Paper Eq. 4 per supercell atom: |tr A_ii - tr O_ii| / |tr O_ii|."""
    idx = np.arange(fc_ref.shape[0])
    tr_o = np.trace(fc_ref[idx, idx], axis1=1, axis2=2)
    tr_a = np.trace(fc_new[idx, idx], axis1=1, axis2=2)
    if np.any(np.abs(tr_o) < 1e-12):
        raise ValueError("on-site force constant trace is zero: R_onsite undefined")
    return np.abs(tr_a - tr_o) / np.abs(tr_o)


def l2_shift(freqs_ref: np.ndarray, freqs_new: np.ndarray) -> float:
    """||omega_T - omega_0||_2 / ||omega_0||_2 over matched modes (signed frequencies)."""
    f0 = np.asarray(freqs_ref, float).ravel()
    f1 = np.asarray(freqs_new, float).ravel()
    if f0.shape != f1.shape:
        raise ValueError("frequency sets differ in size")
    norm = np.linalg.norm(f0)
    if norm == 0:
        raise ValueError("reference frequencies are all zero")
    return float(np.linalg.norm(f1 - f0) / norm)
