"""Physical constants (SI) for the core, all from ``scipy.constants`` (CODATA of the installed scipy).

phonopy keeps its own, older set (``phonopy.physical_units``) for its frequency conversion;
the core uses phonopy's ``DefaultToTHz`` wherever it converts phonopy force constants, and
these constants for its own formulas (thermal covariance, four-phonon rates).
"""

from __future__ import annotations

import numpy as np
from scipy import constants

HBAR = constants.hbar  # J s
KB = constants.k  # J / K
EV = constants.electron_volt  # J
AMU = constants.atomic_mass  # kg
ANGSTROM = constants.angstrom  # m
THZ = constants.tera  # Hz
THZ_TO_KELVIN = 2 * np.pi * HBAR * THZ / KB
"""h f / k_B for f = 1 THz, in K (~47.99 K/THz): x = THZ_TO_KELVIN * f / T."""
