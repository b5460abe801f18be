"""Thermal displacement sampling from the harmonic covariance (paper Eq. 2).

We diagonalise the supercell dynamical matrix ourselves instead of calling
phonopy's ``RandomDisplacements``: it is the same covariance (a test checks it
against phonopy), but here the soft-mode policy is explicit and recorded, and
the Gamma acoustic modes are removed exactly by projecting out rigid
translations rather than by frequency order (SrTiO3 has an imaginary optical
mode below the acoustic ones at Gamma).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .units import AMU, ANGSTROM, EV, HBAR, KB

# eV/(A^2 amu) -> (rad/s)^2
_EV_A2_AMU_TO_RAD2_S2 = EV / (ANGSTROM**2 * AMU)
_RAD_S_TO_THZ = 1.0 / (2 * np.pi * 1e12)


@dataclass(frozen=True)
class SoftModePolicy:
    """How imaginary and near-zero harmonic modes enter the sampling covariance.

    Every mode (imaginary ones included, at |omega|) is sampled with a frequency
    of at least ``floor_thz``. Dropping imaginary modes instead would leave the
    force fit undetermined along them, and a tiny |omega| gives absurd
    amplitudes (prototype: 2.5 A in Ag3AsS3), so neither is offered.
    """

    floor_thz: float = 0.5

    def __post_init__(self) -> None:
        if not np.isfinite(self.floor_thz) or self.floor_thz <= 0:
            raise ValueError(f"soft-mode floor must be a positive frequency in THz, got {self.floor_thz}")


@dataclass
class ThermalModes:
    """Supercell normal modes used for sampling, with the policy's bookkeeping."""

    frequencies_thz: np.ndarray  # signed harmonic frequencies (negative = imaginary), sampled modes only
    sampled_frequencies_thz: np.ndarray  # max(|omega|, floor)
    eigenvectors: np.ndarray  # (3N, n_modes), mass-weighted, orthonormal
    masses_amu: np.ndarray  # (N,)
    acoustic_removed: bool
    n_imaginary: int = 0
    n_floored: int = 0
    notes: list[str] = field(default_factory=list)


def translation_basis(masses_amu: np.ndarray) -> np.ndarray:
    """Orthonormal mass-weighted rigid translations, shape (3N, 3)."""
    n = len(masses_amu)
    t = np.zeros((3 * n, 3))
    sq = np.sqrt(masses_amu)
    for a in range(3):
        t[a::3, a] = sq
    return t / np.linalg.norm(t, axis=0)


def dynamical_matrix(force_constants: np.ndarray, masses_amu: np.ndarray) -> np.ndarray:
    """Supercell (Gamma-point) dynamical matrix, (3N, 3N), in eV/(A^2 amu)."""
    n = len(masses_amu)
    fc = np.asarray(force_constants).transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(masses_amu), 3)
    dm = fc * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]
    return 0.5 * (dm + dm.T)


def is_translation_invariant(force_constants: np.ndarray, rtol: float = 1e-2) -> bool:
    """True when the acoustic sum rule holds to ``rtol`` of the largest on-site block."""
    fc = np.asarray(force_constants)
    violation = np.abs(fc.sum(axis=1)).max()
    scale = np.abs(fc).max()
    return bool(scale > 0 and violation <= rtol * scale)


def eigen_to_thz(eigenvalues: np.ndarray) -> np.ndarray:
    """Signed frequencies (THz) from dynamical-matrix eigenvalues in eV/(A^2 amu)."""
    w = np.sqrt(np.abs(eigenvalues) * _EV_A2_AMU_TO_RAD2_S2) * _RAD_S_TO_THZ
    return np.sign(eigenvalues) * w


def thermal_modes(
    force_constants: np.ndarray,
    masses_amu: np.ndarray,
    policy: SoftModePolicy = SoftModePolicy(),
) -> ThermalModes:
    """Normal modes of the supercell, as sampled at finite temperature.

    The three rigid translations are projected out when the force constants are translation invariant.
    """
    dm = dynamical_matrix(force_constants, masses_amu)
    remove = is_translation_invariant(force_constants)
    if remove:
        t = translation_basis(masses_amu)
        # orthonormal basis of the complement of the translations
        q, _ = np.linalg.qr(np.hstack([t, np.eye(dm.shape[0])]))
        comp = q[:, 3:]
        evals, evecs_c = np.linalg.eigh(comp.T @ dm @ comp)
        evecs = comp @ evecs_c
    else:
        evals, evecs = np.linalg.eigh(dm)
    freqs = eigen_to_thz(evals)
    sampled = np.maximum(np.abs(freqs), policy.floor_thz)
    n_imag = int((freqs < -1e-3).sum())
    n_floor = int((np.abs(freqs) < policy.floor_thz).sum())
    notes = []
    if n_imag:
        notes.append(f"{n_imag} imaginary harmonic modes sampled at max(|omega|, {policy.floor_thz} THz)")
    if n_floor:
        notes.append(f"{n_floor} modes below {policy.floor_thz} THz sampled at the floor")
    return ThermalModes(freqs, sampled, evecs, np.asarray(masses_amu, float), remove, n_imag, n_floor, notes)


def mode_variances(frequencies_thz: np.ndarray, temperature: float, quantum: bool = True) -> np.ndarray:
    """<Q^2> of each normal coordinate in amu*A^2 (quantum or classical)."""
    omega = 2 * np.pi * 1e12 * np.asarray(frequencies_thz)  # rad/s
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 K, got {temperature}")
    if quantum:
        if temperature == 0:
            coth = np.ones_like(omega)
        else:
            x = HBAR * omega / (2 * KB * temperature)
            coth = 1.0 / np.tanh(x)
        var_si = HBAR / (2 * omega) * coth  # kg m^2
    else:
        if temperature == 0:
            return np.zeros_like(omega)
        var_si = KB * temperature / omega**2
    return var_si / (AMU * ANGSTROM**2)


def displacement_covariance(modes: ThermalModes, temperature: float, quantum: bool = True) -> np.ndarray:
    """Cartesian covariance <u u^T> (3N, 3N) in A^2."""
    var = mode_variances(modes.sampled_frequencies_thz, temperature, quantum)
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(modes.masses_amu), 3)
    b = modes.eigenvectors * np.sqrt(var)[None, :] * inv_sqrt_m[:, None]
    return b @ b.T


def sample_displacements(
    modes: ThermalModes,
    temperature: float,
    n_pairs: int,
    rng: np.random.Generator,
    quantum: bool = True,
) -> np.ndarray:
    """Antithetic Gaussian samples: (2*n_pairs, N, 3), sample 2k+1 = -sample 2k.

    The pairs cancel every odd term of the force expansion in the regression
    and the residual reference force, which lowers the variance for free.
    """
    var = mode_variances(modes.sampled_frequencies_thz, temperature, quantum)
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(modes.masses_amu), 3)
    xi = rng.standard_normal((n_pairs, len(var)))
    u = (xi * np.sqrt(var)) @ modes.eigenvectors.T * inv_sqrt_m
    n = len(modes.masses_amu)
    u = u.reshape(n_pairs, n, 3)
    return np.stack([u, -u], axis=1).reshape(2 * n_pairs, n, 3)
