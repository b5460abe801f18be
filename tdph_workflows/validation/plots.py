"""Validation figures (paper Fig. 4D-F).

kappa_L bars, scattering rates with the MIR line, dispersion 0 K vs T with the projected DOS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from phonopy import Phonopy

from ..core.phonons import band_structure, with_force_constants
from ..plotting import decorate_band_axes, new_figure, plot_bands, save_figure

LEVELS = ("HA+3ph", "SCPH+3ph", "SCPH+3,4ph")
LEVEL_COLORS = {"HA+3ph": "#7f7f7f", "SCPH+3ph": "#1f77b4", "SCPH+3,4ph": "#d62728"}


def plot_kappa_bars(kappa: dict[str, dict[str, float]], path: str | Path, temperature: float = 300.0) -> Path:
    """Grouped bars: one group per material, one bar per level ({material: {level: W/mK}})."""
    materials = list(kappa)
    width = 0.8 / len(LEVELS)
    fig, ax = new_figure(figsize=(1.6 + 1.4 * len(materials), 3.6), dpi=130)
    for k, level in enumerate(LEVELS):
        values = [kappa[m].get(level, np.nan) for m in materials]
        x = np.arange(len(materials)) + (k - (len(LEVELS) - 1) / 2) * width
        bars = ax.bar(x, values, width, label=level, color=LEVEL_COLORS[level])
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    ax.set_xticks(np.arange(len(materials)), materials, fontsize=8)
    ax.set_ylabel(f"$\\kappa_L$ at {temperature:g} K (W/mK)")
    ax.legend(fontsize=7, frameon=False)
    return save_figure(fig, path)


def plot_scattering_rates(frequencies: np.ndarray, rates: dict[str, np.ndarray], path: str | Path,
                          title: str = "") -> Path:
    """Scattering rates 1/tau (1/ps) against frequency (THz), log scale, with the Mott-Ioffe-Regel line.

    The MIR line is 1/tau = f: a phonon that lives less than one period is no longer a quasi-particle.
    """
    f = np.asarray(frequencies).ravel()
    fig, ax = new_figure(figsize=(4.8, 3.6), dpi=130)
    for label, r in rates.items():
        r = np.asarray(r).ravel()
        ok = (f > 1e-3) & (r > 0)
        ax.scatter(f[ok], r[ok], s=5, alpha=0.6, label=label, color=LEVEL_COLORS.get(label), lw=0)
    fmax = max(float(f.max()), 1e-2)
    line = np.linspace(1e-3, fmax * 1.05, 50)
    ax.plot(line, line, "k--", lw=1, label="MIR limit (1/τ = f)")
    ax.set_yscale("log")
    ax.set_xlabel("Frequency (THz)")
    ax.set_ylabel("Scattering rate (1/ps)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return save_figure(fig, path)


def plot_dispersion_with_pdos(phonon: Phonopy, fc_harmonic: np.ndarray, fc_temperature: np.ndarray,
                              temperature: float, path: str | Path, mesh: float = 20.0, title: str = "") -> Path:
    """Dispersion at 0 K (harmonic, black) and at T (SCPH, red) with the SCPH projected DOS per element.

    LO-TO splitting when ``phonon`` carries NAC parameters.
    """
    fig, (ax, ax_dos) = new_figure(1, 2, figsize=(8, 4.2), dpi=130, sharey=True,
                                     gridspec_kw={"width_ratios": [3, 1]})
    bands_0 = band_structure(phonon, fc_harmonic, keep_nac=True)
    plot_bands(ax, bands_0, "black", "0 K (harmonic)")
    plot_bands(ax, band_structure(phonon, fc_temperature, keep_nac=True), "#d62728", f"{temperature:g} K (SCPH)")
    decorate_band_axes(ax, bands_0)
    ax.set_ylabel("Frequency (THz)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ph = with_force_constants(phonon, fc_temperature, keep_nac=True)
    ph.run_mesh(mesh, is_gamma_center=True, with_eigenvectors=True, is_mesh_symmetry=False)
    ph.run_projected_dos()
    dos = ph.get_projected_dos_dict()
    symbols = np.array(ph.primitive.symbols)
    for element in dict.fromkeys(symbols):
        ax_dos.plot(dos["projected_dos"][symbols == element].sum(axis=0), dos["frequency_points"], lw=1, label=element)
    ax_dos.set_xlabel("PDOS")
    ax_dos.legend(fontsize=7)
    return save_figure(fig, path)
