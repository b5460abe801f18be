"""Model vs DFT harmonic phonons on MDR compounds, for several models side by side.

For each compound, the model's harmonic force constants (finite displacements on the DFT structure
and supercell) give frequencies at the supercell's commensurate q-points; they are compared with the
DFT ones mode by mode (sorted at each q): MAE in THz per compound and over all modes, a parity plot
(paper Fig. 1B/C), and whether the dynamical stability (any mode below -0.1 THz) agrees with DFT.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..io.mdr import load_mdr_entry
from ..potentials import compare_harmonic_to_dft

ALKALI = {"Li", "Na", "K", "Rb", "Cs"}
HALOGEN = {"F", "Cl", "Br", "I"}


@dataclass
class CompoundScore:
    """One model on one compound: harmonic-frequency MAE and lowest frequencies (THz) against DFT, or its error."""

    model: str
    material_id: str
    formula: str
    family: str
    mae_thz: float
    min_frequency_model: float
    min_frequency_dft: float
    stability_agrees: bool
    n_modes: int
    error: str | None = None


def compound_family(symbols: list[str], spacegroup: int) -> str:
    """alkali_halide, perovskite (ABX3, Pm-3m), double_perovskite (A2BB'X6, Fm-3m) or other."""
    counts = {s: symbols.count(s) for s in set(symbols)}
    ratio = sorted(np.array(list(counts.values())) // min(counts.values()))
    if len(counts) == 2 and set(counts) & ALKALI and set(counts) & HALOGEN and ratio == [1, 1]:
        return "alkali_halide"
    if len(counts) == 3 and ratio == [1, 1, 3] and spacegroup == 221:
        return "perovskite"
    if len(counts) == 4 and ratio == [1, 1, 2, 6] and spacegroup == 225:
        return "double_perovskite"
    return "other"


def score_compound(source: str, model_label: str, calculator) -> tuple[CompoundScore, tuple | None]:
    """The score and (DFT, model) frequencies; a failure is a score with its error and no frequencies."""
    import spglib

    try:
        entry = load_mdr_entry(source)
        cmp = compare_harmonic_to_dft(entry, calculator)
    except Exception as exc:  # noqa: BLE001 (recorded per compound; the evaluation goes on)
        return CompoundScore(model_label, Path(source).name, "", "other", float("nan"), float("nan"), float("nan"),
                             False, 0, f"{type(exc).__name__}: {exc}"), None
    cell = entry.unitcell
    sg = spglib.get_symmetry_dataset((cell.cell, cell.scaled_positions, cell.numbers), symprec=1e-3)
    return CompoundScore(
        model=model_label, material_id=cmp.material_id, formula=cmp.formula,
        family=compound_family(list(entry.phonon.primitive.symbols), sg.number if sg else 0),
        mae_thz=cmp.mae_thz, min_frequency_model=float(cmp.frequencies_model.min()),
        min_frequency_dft=float(cmp.frequencies_dft.min()), stability_agrees=cmp.stability_agrees,
        n_modes=len(cmp.frequencies_dft)), (cmp.frequencies_dft, cmp.frequencies_model)


def evaluate(sources: list[str], models: dict[str, str], out_dir: str | Path,
             progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Score every model on every compound; write scores.csv, summary.json and parity.png to out_dir.

    Parameters
    ----------
    sources
        MDR entries (tarballs or folders).
    models
        label -> calculator spec (matgl folder or name, ``module:factory``, ``emt``).
    out_dir
        Folder for the outputs.
    progress
        Called as ``progress(label, done, total)`` after each compound.
    """
    if not sources:
        raise ValueError("no compounds to evaluate (empty source list)")
    import time

    from ..potentials import resolve_calculator

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[CompoundScore] = []
    pairs: dict[str, list] = {label: [] for label in models}
    seconds: dict[str, float] = {}
    for label, spec in models.items():
        calc = resolve_calculator(spec)
        t0 = time.perf_counter()
        for k, source in enumerate(sources):
            score, freqs = score_compound(source, label, calc)
            if freqs is not None:
                pairs[label].append(freqs)
            rows.append(score)
            if progress:
                progress(label, k + 1, len(sources))
        seconds[label] = time.perf_counter() - t0
        with open(out / "scores.csv", "w", newline="") as fh:  # after each model: a kill keeps what is done
            writer = csv.DictWriter(fh, fieldnames=list(asdict(rows[0]).keys()))
            writer.writeheader()
            writer.writerows(asdict(r) for r in rows)
    summary = {"models": models, "n_compounds": len(sources), "by_model": {}}
    for label in models:
        ok = [r for r in rows if r.model == label and r.error is None]
        dft = np.concatenate([p[0] for p in pairs[label]]) if pairs[label] else np.zeros(0)
        pred = np.concatenate([p[1] for p in pairs[label]]) if pairs[label] else np.zeros(0)
        families = sorted({r.family for r in ok})
        summary["by_model"][label] = {
            "compounds": len(ok), "seconds": seconds[label],
            "failed": [{"material_id": r.material_id, "error": r.error} for r in rows if r.model == label and r.error],
            "mae_thz_all_modes": float(np.abs(pred - dft).mean()) if len(dft) else float("nan"),
            "mae_thz_mean_of_compounds": float(np.mean([r.mae_thz for r in ok])) if ok else float("nan"),
            "mae_thz_median_of_compounds": float(np.median([r.mae_thz for r in ok])) if ok else float("nan"),
            "stability_agreement": float(np.mean([r.stability_agrees for r in ok])) if ok else float("nan"),
            "by_family": {f: {"compounds": sum(r.family == f for r in ok),
                              "mae_thz_mean_of_compounds": float(np.mean([r.mae_thz for r in ok if r.family == f]))}
                          for f in families},
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    parity_plot(pairs, summary, out / "parity.png")
    return summary


def parity_plot(pairs: dict[str, list], summary: dict, path: Path) -> None:
    """Model vs DFT frequency hexbin (THz), one panel per model; ``pairs``: label -> [(dft, model), ...]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 4.2), squeeze=False)
    for ax, (label, data) in zip(axes[0], pairs.items(), strict=True):
        if data:
            dft = np.concatenate([d[0] for d in data])
            pred = np.concatenate([d[1] for d in data])
            lo, hi = min(dft.min(), pred.min()) - 0.5, max(dft.max(), pred.max()) + 0.5
            ax.hexbin(dft, pred, gridsize=60, bins="log", cmap="viridis", extent=(lo, hi, lo, hi), mincnt=1)
            ax.plot([lo, hi], [lo, hi], "r--", lw=0.8)
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
        stats = summary["by_model"][label]
        ax.set_title(f"{label}\nMAE {stats['mae_thz_all_modes']:.2f} THz, {stats['compounds']} compounds", fontsize=9)
        ax.set_xlabel("DFT frequency (THz)")
        ax.set_ylabel("model frequency (THz)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
