"""Self-consistent phonons (first-order SCPH) from fc2 and fc4 in real space on the supercell.

    Phi_eff = Phi2 + 1/2 Phi4 : Sigma(T; Phi_eff),
    Phi_eff[i,j,a,b] = Phi2[i,j,a,b] + 1/2 sum_{k,l,c,d} Phi4[i,j,k,l,a,b,c,d] <u_k,c u_l,d>,

with Sigma the quantum (or classical) displacement covariance of the current effective
harmonic phonons. This is the first-order self-consistent phonon theory (the loop
diagram of the quartic vertex only; no cubic bubble), i.e. the same equation ALAMODE's
SCPH solves, here written in real space on the supercell: the supercell's normal modes
are exactly the phonons at the q-points commensurate with it (Gamma of the supercell's
dynamical matrix), so the covariance and the renormalisation are evaluated on that q-grid.

Why our own code: no maintained pip library does SCPH from 4th-order force constants
(ALAMODE is a C++ program with its own input files; hiphive's self-consistent harmonic
model is stochastic, sampling forces from a potential). The covariance comes from
:mod:`.sampling` (same mass-weighted supercell modes, same soft-mode floor) and the
contraction runs over the sparse clusters of :class:`.higher_order.SparseFC`.

Imaginary harmonic modes start at max(|omega|, floor) in the covariance so the first
iteration is defined; which modes were imaginary and whether they are real at
self-consistency is recorded. The rigid translations are excluded from the covariance
when Phi_eff obeys the acoustic sum rule (a fitted Phi4 obeys it, so the correction
does too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .higher_order import SparseFC
from .sampling import SoftModePolicy, displacement_covariance, thermal_modes

Symmetrizer = Callable[[np.ndarray], np.ndarray]


@dataclass
class SCPHResult:
    """Outcome of `run_scph`: effective force constants, convergence history and frequencies before/after."""

    fc2_eff: np.ndarray  # (N, N, 3, 3) eV/A^2
    temperature: float
    quantum: bool
    iterations: int
    converged: bool
    history: list[float]  # max |d omega| (THz) per iteration
    frequencies_harmonic: np.ndarray  # commensurate (supercell Gamma) modes, THz, signed, ascending
    frequencies_scph: np.ndarray
    imaginary_initial: np.ndarray  # indices (into frequencies_harmonic) of imaginary harmonic modes
    imaginary_final: np.ndarray  # indices of modes still imaginary at the end
    notes: list[str] = field(default_factory=list)

    @property
    def n_imaginary_initial(self) -> int:
        """Number of imaginary harmonic modes."""
        return len(self.imaginary_initial)

    @property
    def n_imaginary_final(self) -> int:
        """Number of modes still imaginary at the end."""
        return len(self.imaginary_final)

    @property
    def stabilized(self) -> bool:
        """Imaginary at the start and all real at self-consistency."""
        return self.n_imaginary_initial > 0 and self.n_imaginary_final == 0

    def summary(self) -> dict:
        """JSON-ready scalars: convergence, imaginary-mode counts, lowest frequencies and mean shift (THz)."""
        return {
            "temperature": self.temperature,
            "quantum": self.quantum,
            "iterations": self.iterations,
            "converged": self.converged,
            "final_max_dfreq_thz": self.history[-1] if self.history else None,
            "n_imaginary_initial": self.n_imaginary_initial,
            "n_imaginary_final": self.n_imaginary_final,
            "min_freq_harmonic_thz": float(self.frequencies_harmonic.min()),
            "min_freq_scph_thz": float(self.frequencies_scph.min()),
            "mean_shift_thz": float(np.mean(self.frequencies_scph - self.frequencies_harmonic)),
            "notes": list(self.notes),
        }


def quartic_renormalization(fc4: SparseFC, covariance: np.ndarray) -> np.ndarray:
    """1/2 Phi4 : Sigma as an (N, N, 3, 3) array; ``covariance`` is (3N, 3N) in A^2.

    Vectorised over the sparse clusters (i, j, k, l): gather the 3x3 blocks Sigma[k, l],
    contract the last two Cartesian axes, and scatter-add into (i, j) with ``np.add.at``.
    """
    if fc4.order != 4:
        raise ValueError(f"need 4th-order force constants, got order {fc4.order}")
    n = fc4.n_atoms
    sig = np.asarray(covariance, float).reshape(n, 3, n, 3)
    out = np.zeros((n, n, 3, 3))
    if len(fc4.clusters) == 0:
        return out
    c = fc4.clusters
    chunk = 200_000
    for s in range(0, len(c), chunk):
        cc = c[s : s + chunk]
        blocks = sig[cc[:, 2], :, cc[:, 3], :]  # (m, 3, 3)
        contrib = np.einsum("mabcd,mcd->mab", fc4.values[s : s + chunk], blocks, optimize=True)
        np.add.at(out, (cc[:, 0], cc[:, 1]), 0.5 * contrib)
    return out


def _asr_symmetrizer(fc: np.ndarray) -> np.ndarray:
    from .symmetry import symmetrize

    return symmetrize(fc, None, acoustic_sum_rule=True)


def run_scph(
    fc2: np.ndarray,
    fc4: SparseFC,
    masses_amu: np.ndarray,
    temperature: float,
    quantum: bool = True,
    alpha: float = 0.5,
    tol_thz: float = 1e-3,
    max_iter: int = 200,
    floor_thz: float = 0.5,
    symmetrizer: Symmetrizer | None | str = "asr",
) -> SCPHResult:
    """Solve Phi_eff = Phi2 + 1/2 Phi4 : Sigma(T; Phi_eff) by linear mixing.

    ``fc2`` (N, N, 3, 3) and ``fc4`` on the same supercell (eV/A^2, eV/A^4), masses in amu.
    Each step: modes of Phi_eff (``thermal_modes``, imaginary/soft ones at
    max(|omega|, ``floor_thz``)), covariance (``displacement_covariance``, quantum
    (1 + 2n)/omega or classical kT/omega^2), Phi_new = Phi2 + 1/2 Phi4 : Sigma, then
    Phi_eff <- (1 - alpha) Phi_eff + alpha Phi_new, symmetrised by ``symmetrizer``
    ("asr": index permutation + acoustic sum rule through ``core.symmetry.symmetrize``;
    a callable, e.g. ``lambda fc: symmetrize(fc, supercell_symmetry, True)`` for the full
    space group; None for none, as for on-site model potentials). Converged when the
    largest change of a commensurate frequency between iterations is below ``tol_thz``.
    """
    fc2 = np.asarray(fc2, float)
    masses = np.asarray(masses_amu, float)
    n = len(masses)
    if fc2.shape != (n, n, 3, 3) or fc4.n_atoms != n:
        raise ValueError(f"fc2 {fc2.shape} and fc4 ({fc4.n_atoms} atoms) must match {n} masses")
    if not 0 < alpha <= 1:
        raise ValueError(f"mixing alpha must be in (0, 1], got {alpha}")
    if symmetrizer == "asr":
        symmetrizer = _asr_symmetrizer
    elif isinstance(symmetrizer, str):
        raise ValueError(f"symmetrizer must be 'asr', a callable or None, got {symmetrizer!r}")
    sym = symmetrizer if symmetrizer is not None else (lambda fc: 0.5 * (fc + fc.transpose(1, 0, 3, 2)))
    policy = SoftModePolicy(floor_thz)

    fc2 = sym(fc2)
    modes = thermal_modes(fc2, masses, policy)
    freqs_ha = np.sort(modes.frequencies_thz)
    imag0 = np.flatnonzero(freqs_ha < -1e-3)
    notes = []
    if len(imag0):
        notes.append(f"{len(imag0)} imaginary harmonic modes started at max(|omega|, {floor_thz} THz)")
    fc_eff = fc2.copy()
    prev = freqs_ha
    history: list[float] = []
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        sigma = displacement_covariance(modes, temperature, quantum)
        fc_new = fc2 + quartic_renormalization(fc4, sigma)
        fc_eff = sym((1 - alpha) * fc_eff + alpha * fc_new)
        modes = thermal_modes(fc_eff, masses, policy)
        freqs = np.sort(modes.frequencies_thz)
        if len(freqs) != len(prev):  # translations removed or not: compare on the common modes
            notes.append("acoustic sum rule changed during the iteration; compared highest modes")
            m = min(len(freqs), len(prev))
            dmax = float(np.abs(freqs[-m:] - prev[-m:]).max())
        else:
            dmax = float(np.abs(freqs - prev).max())
        history.append(dmax)
        prev = freqs
        if dmax < tol_thz:
            converged = True
            break
    if not converged:
        notes.append(f"not converged after {max_iter} iterations (last max |d omega| = {history[-1]:.2e} THz)")
    imag1 = np.flatnonzero(prev < -1e-3)
    if len(imag0):
        notes.append(
            "all imaginary modes became real" if len(imag1) == 0 else f"{len(imag1)} modes still imaginary"
        )
    return SCPHResult(
        fc2_eff=fc_eff,
        temperature=float(temperature),
        quantum=quantum,
        iterations=it,
        converged=converged,
        history=history,
        frequencies_harmonic=freqs_ha,
        frequencies_scph=prev,
        imaginary_initial=imag0,
        imaginary_final=imag1,
        notes=notes,
    )
