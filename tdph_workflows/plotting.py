"""Figures: harmonic vs temperature-renormalized dispersion (paper Fig. 2C)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from .schemas import TDPHResult


def new_figure(nrows: int = 1, ncols: int = 1, **kwargs):
    """A figure and its axes without pyplot, so plotting never changes the caller's matplotlib backend."""
    fig = Figure(figsize=kwargs.pop("figsize", None), dpi=kwargs.pop("dpi", None))
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig: Figure, path: str | Path, dpi: float | None = None) -> Path:
    """Write ``fig`` (tight layout) to ``path``, creating its folder; the suffix picks the format (png, pdf, svg).

    ``dpi`` applies to raster formats (default: the figure's).
    """
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi or "figure")
    return path


def plot_bands(ax, bands: dict, color: str, label: str) -> None:
    """One band structure (phonopy band dict: distances, frequencies per segment) in one colour."""
    first = True
    for dist, freq in zip(bands["distances"], bands["frequencies"], strict=True):
        lines = ax.plot(dist, freq, color=color, lw=1.0)
        if first:
            lines[0].set_label(label)
            first = False


def decorate_band_axes(ax, bands: dict) -> None:
    """High-symmetry ticks and labels (Γ, breaks as A|B), zero line and x range of a band plot."""
    ticks, labels = [], []
    lbl = iter(bands["labels"])
    for k, dist in enumerate(bands["distances"]):
        if k == 0:
            ticks.append(dist[0])
            labels.append(next(lbl, ""))
        end_label = next(lbl, "")
        if k + 1 < len(bands["distances"]) and not bands["path_connections"][k]:
            end_label = f"{end_label}|{next(lbl, '')}"
        ticks.append(dist[-1])
        labels.append(end_label)
    labels = [re.sub(r"_(\w+)", r"$_{\1}$", s.replace("GAMMA", "Γ")) for s in labels]  # H_2 -> H subscript 2
    ax.set_xticks(ticks, labels)
    gaps = [b - a for a, b in itertools.pairwise(ticks) if b > a]
    if gaps and min(gaps) < 0.05 * (ticks[-1] - ticks[0]):  # short segments (long c axis): labels would collide
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    for x in ticks:
        ax.axvline(x, color="0.8", lw=0.5)
    ax.axhline(0, color="0.5", lw=0.5, ls="--")
    ax.set_xlim(ticks[0], ticks[-1])


def plot_dispersion(result: TDPHResult, path: str | Path, dpi: float | None = None) -> Path:
    """Harmonic (black) and each temperature's dispersion along the standard path (format from the suffix)."""
    fig, ax = new_figure(figsize=(7, 4.5), dpi=120)
    draw_dispersion(ax, result)
    return save_figure(fig, path, dpi)


def plot_side_by_side(results: list[TDPHResult], titles: list[str], path: str | Path) -> Path:
    """Dispersions of several materials next to each other (paper Fig. 3E-F: a weak and a strong case)."""
    fig, axes = new_figure(1, len(results), figsize=(6.5 * len(results), 4.5), dpi=120, squeeze=False)
    for ax, result, title in zip(axes[0], results, titles, strict=True):
        draw_dispersion(ax, result)
        ax.set_title(f"{title}: {ax.get_title()}", fontsize=9)
    return save_figure(fig, path)


def draw_dispersion(ax, result: TDPHResult) -> None:
    """Harmonic and every temperature's bands of one result on ``ax``, labelled."""
    plot_bands(ax, result.harmonic.band_structure, "black", "harmonic")
    colors = matplotlib.colormaps["autumn_r"]([0.4 + 0.6 * k / max(1, len(result.temperatures) - 1) for k in range(len(result.temperatures))])
    for t, c in zip(result.temperatures, colors, strict=True):
        plot_bands(ax, t.spectrum.band_structure, c, f"{t.temperature:g} K (L2 shift {100 * t.l2_shift:.1f} %)")
    decorate_band_axes(ax, result.harmonic.band_structure)
    ax.set_ylabel("Frequency (THz)")
    model = Path(result.provenance.calculator).name if result.provenance else ""
    temps = ", ".join(f"{t.temperature:g}" for t in result.temperatures)
    ax.set_title(f"{result.formula} ({result.spacegroup}), {result.n_atoms_supercell}-atom supercell, {temps} K"
                 + (f"\n{model}" if model else ""), fontsize=10)
    ax.legend(loc="best", fontsize=8)
