"""Sample reuse across self-consistent iterations by importance reweighting.

Every antithetic pair drawn at one temperature is kept with the Gaussian density it was
drawn from. When the sampling force constants move, the stored pairs are weighted for
the new density p by the balance heuristic (multiple importance sampling),

    w_i = p(u_i) / q(u_i),   q = sum_j (n_j / n) p_j,

where p_j are the distinct densities samples were drawn from, n_j their pair counts and
n = sum_j n_j. Unlike the ratio to the last density alone (python-sscha's
``Ensemble.update_weights``, whose weights are relative to the one population), q covers
every density drawn so far, so no stored sample carries a weight larger than n / n_j
for the component it came from. The effective sample size is Kong-Liu's
ESS = (sum w)^2 / sum w^2, counted in pairs: +u and -u have equal density under a
zero-mean Gaussian, so a pair has one weight and pairs stay together.

The densities are those of the sampled normal coordinates: with ``ThermalModes``'
mass-weighted eigenvectors E and variances var_k (of the *sampled* frequencies, i.e.
imaginary and soft modes at the floor), Q = E^T (sqrt(m) u) and
log p(u) = -1/2 sum_k Q_k^2 / var_k - 1/2 sum_k log(2 pi var_k) over the 3N-3
(acoustic removed) or 3N modes; the Jacobian from u to sqrt(m) u is the same for every
density and cancels in the weights. Densities over different mode spaces (translations
removed for some, not for others) cannot be compared: the store then starts afresh.

Reach: for samples of one Gaussian weighted for another whose mode variances differ by
ratios r_k, ESS / n -> prod_k sqrt(r_k (2 - r_k)) ~ exp(-sum_k eps_k^2 / 2), eps = r - 1. Over
M = 3N - 3 modes half the samples survive only for |eps| < sqrt(1.4 / M): 7 % in variance
(3-7 % in frequency) at 100 atoms. Reuse therefore carries the samples of the last steps toward
the fixed point and of its verification, not across the first, large, steps from Phi_HA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..sampling import ThermalModes, mode_variances


@dataclass
class GaussianDensity:
    """Zero-mean Gaussian density of the displacements, in normal coordinates.

    Attributes
    ----------
    force_constants
        The sampling force constants it was built from (identifies the density).
    eigenvectors
        Mass-weighted normal modes, (3N, n_modes).
    inverse_variances
        1 / <Q_k^2> of the sampled modes (amu^-1 A^-2).
    log_norm
        -1/2 sum_k log(2 pi <Q_k^2>).
    sqrt_masses
        sqrt(m) per Cartesian coordinate, (3N,).
    acoustic_removed
        Whether the rigid translations are outside its mode space.
    """

    force_constants: np.ndarray
    eigenvectors: np.ndarray
    inverse_variances: np.ndarray
    log_norm: float
    sqrt_masses: np.ndarray
    acoustic_removed: bool

    @classmethod
    def from_modes(cls, force_constants: np.ndarray, modes: ThermalModes, temperature: float,
                   quantum: bool) -> GaussianDensity | None:
        """The density ``sample_displacements`` draws from; None when some mode has zero variance."""
        var = mode_variances(modes.sampled_frequencies_thz, temperature, quantum)
        if not np.all(np.isfinite(var)) or np.any(var <= 0):
            return None  # classical 0 K: every sample is the undistorted cell, nothing to reweight
        return cls(np.array(force_constants, float), modes.eigenvectors, 1.0 / var,
                   float(-0.5 * np.log(2 * np.pi * var).sum()),
                   np.repeat(np.sqrt(modes.masses_amu), 3), modes.acoustic_removed)

    def log_density(self, displacements: np.ndarray) -> np.ndarray:
        """Log p(u) for displacements (n, N, 3), up to the density-independent Jacobian."""
        x = displacements.reshape(len(displacements), -1) * self.sqrt_masses
        q = x @ self.eigenvectors
        return -0.5 * (q * q) @ self.inverse_variances + self.log_norm


class SampleStore:
    """Every pair drawn at one temperature, the density it came from, and the weights for a new density.

    Pairs are numbered in the order they were added; pair k is samples 2k (+u) and 2k+1 (-u).

    Attributes
    ----------
    densities
        Distinct densities samples were drawn from (or weighted for), in order of first use.
    counts
        Pairs drawn from each density (0 for one that was only weighted for).
    n_pairs
        Pairs stored.
    resets
        How often the store was emptied because a density's mode space differed.
    """

    def __init__(self) -> None:
        self.densities: list[GaussianDensity] = []
        self.counts: list[int] = []
        self._u: list[np.ndarray] = []  # per batch: (2m, N, 3)
        self._values: list[np.ndarray] = []  # per batch: (2m, ...)
        self._logp: np.ndarray = np.zeros((0, 0))  # (n_pairs, n_densities)
        self.n_pairs = 0
        self.resets = 0

    def clear(self) -> None:
        """Forget all samples and densities."""
        self.__init__()

    # -- densities ----------------------------------------------------------
    def index(self, density: GaussianDensity) -> int:
        """Index of ``density`` (one with the same force constants counts as the same), added if new."""
        for j, d in enumerate(self.densities):
            if d.force_constants.shape == density.force_constants.shape and \
                    np.array_equal(d.force_constants, density.force_constants):
                return j
        if self.densities and self.densities[0].acoustic_removed != density.acoustic_removed:
            resets = self.resets + 1
            self.clear()  # a different mode space: the densities are not comparable
            self.resets = resets
        self.densities.append(density)
        self.counts.append(0)
        column = np.concatenate([density.log_density(u[0::2]) for u in self._u]) if self._u else np.zeros(0)
        self._logp = np.concatenate([self._logp, column[:, None]], axis=1)
        return len(self.densities) - 1

    # -- samples ----------------------------------------------------------------
    def add(self, density: GaussianDensity, displacements: np.ndarray, values: np.ndarray) -> None:
        """Store antithetic samples (2m, N, 3) drawn from ``density`` and what was evaluated there."""
        if len(displacements) % 2 or len(values) != len(displacements):
            raise ValueError("samples must come in antithetic (+u, -u) pairs with one value each")
        j = self.index(density)
        m = len(displacements) // 2
        rows = np.stack([d.log_density(displacements[0::2]) for d in self.densities], axis=1)
        self._logp = np.concatenate([self._logp, rows], axis=0)
        self._u.append(np.asarray(displacements, float))
        self._values.append(np.asarray(values, float))
        self.counts[j] += m
        self.n_pairs += m

    @property
    def displacements(self) -> np.ndarray:
        """All stored samples, (2 n_pairs, N, 3)."""
        return np.concatenate(self._u)

    @property
    def values(self) -> np.ndarray:
        """What was evaluated at each stored sample (forces or Hessians)."""
        return np.concatenate(self._values)

    # -- weights ----------------------------------------------------------------
    def log_weights(self, density: GaussianDensity) -> np.ndarray:
        """log(p / q) per stored pair, q the balance-heuristic mixture of the drawn densities."""
        j_new = self.index(density)
        if self.n_pairs == 0:
            return np.zeros(0)
        drawn = [j for j, c in enumerate(self.counts) if c > 0]
        # log q = logsumexp_j (log(n_j / n) + log p_j): one term when all pairs came from one density,
        # and then log q is that density's log p bit for bit (log(1) = 0, exp(0) = 1)
        a = self._logp[:, drawn] + np.log(np.array([self.counts[j] for j in drawn]) / self.n_pairs)
        top = a.max(axis=1)
        log_q = top + np.log(np.exp(a - top[:, None]).sum(axis=1))
        return self._logp[:, j_new] - log_q

    def weights(self, density: GaussianDensity) -> tuple[np.ndarray, float]:
        """Pair weights for ``density`` (mean 1) and the effective sample size in pairs.

        Returns
        -------
        weights
            (n_pairs,), exactly 1 when every stored pair was drawn from ``density``.
        ess_pairs
            (sum w)^2 / sum w^2; the number of pairs when the weights are equal.
        """
        lw = self.log_weights(density)
        if len(lw) == 0:
            return lw, 0.0
        w = np.exp(lw - lw.max())
        w = w / w.mean()
        return w, float(w.sum() ** 2 / (w * w).sum())
