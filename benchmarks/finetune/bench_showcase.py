"""The paper's showcase with each model: SrTiO3 soft modes (harmonic and 300 K self-consistent), KCl L2 shift.

    python benchmarks/finetune/bench_showcase.py --model pretrained=<folder> --model new=<folder> [...]

- SrTiO3: MDR PBEsol cell (curated/mp-5229_SrTiO3), 2x2x2 supercell (40 atoms); lowest frequency at
  Gamma (optical), X, M, R, harmonic and at 300 K (self-consistent), against DFT (the MDR 3x3x3 force
  constants interpolated to the same points). DFT: Gamma and R imaginary, M and X real.
- KCl: MDR cell (curated/mp-23193_KCl, conventional), 2x2x2 (64 atoms), 300 K self-consistent L2 shift.

Writes benchmarks/results/finetune_showcase.{md,csv}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import MDR, setup_env, write_table

POINTS = ("GAMMA", "X", "M", "R")


def lowest_optical(freqs) -> float:
    """Lowest frequency at Gamma without the three acoustic modes (the three closest to zero)."""
    f = np.asarray(freqs, float).ravel()
    return float(np.delete(f, np.argsort(np.abs(f))[:3]).min())


def dft_points(entry_dir: Path) -> dict[str, float]:
    """Lowest DFT frequency at each point (MDR force constants interpolated; Gamma: lowest optical)."""
    from tdph_workflows.core.phonons import special_points
    from tdph_workflows.io.mdr import load_mdr_entry

    entry = load_mdr_entry(entry_dir)
    ph = entry.phonon
    ph.force_constants = entry.dft_force_constants()
    ph.nac_params = None  # NAC changes only Gamma's LO branch, not the soft TO mode
    q, _ = special_points(ph.primitive)
    ph.run_qpoints([q[p] for p in POINTS])
    freqs = ph.get_qpoints_dict()["frequencies"]
    return {p: lowest_optical(f) if p == "GAMMA" else float(f.min()) for p, f in zip(POINTS, freqs, strict=True)}


def lowest(spectrum, point: str) -> float:
    values = spectrum.special_points.get("Γ" if point == "GAMMA" else point)
    if not values:
        return float("nan")
    return lowest_optical(values) if point == "GAMMA" else float(min(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="label=spec")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="finetune_showcase")
    args = parser.parse_args()
    setup_env()
    from tdph_workflows.core.sscha import SSCHASettings
    from tdph_workflows.engine import run_temperature_phonons
    from tdph_workflows.potentials import resolve_calculator

    sto = MDR / "curated" / "mp-5229_SrTiO3"
    kcl = MDR / "curated" / "mp-23193_KCl"
    ref = dft_points(sto)
    rows = [["DFT (MDR 3x3x3, PBEsol)", *(f"{ref[p]:.2f}" for p in POINTS), "-", "-", "-", "-", "-", "-", "-"]]
    settings = SSCHASettings(self_consistent=True, seed=args.seed)
    for item in args.model:
        label, _, spec = item.partition("=")
        calc = resolve_calculator(spec)
        t0 = time.perf_counter()
        res = run_temperature_phonons(sto, calc, [300.0], [2, 2, 2], settings=settings, keep_force_constants=False)
        sto_s = time.perf_counter() - t0
        t = res.at(300.0)
        t0 = time.perf_counter()
        k = run_temperature_phonons(kcl, calc, [300.0], [2, 2, 2], settings=settings, keep_force_constants=False)
        kcl_s = time.perf_counter() - t0
        kt = k.at(300.0)
        rows.append([label, *(f"{lowest(res.harmonic, p):.2f}" for p in POINTS),
                     *(f"{lowest(t.spectrum, p):.2f}" for p in POINTS), f"{t.self_consistent_converged}",
                     f"{sto_s:.0f}",
                     f"{100 * kt.l2_shift:.2f} ± {100 * kt.l2_stderr:.2f} ({kt.self_consistent_converged}, {kcl_s:.0f} s)"])
        print(rows[-1], flush=True)
    header = ["model", *(f"{p} harm." for p in POINTS), *(f"{p} 300 K" for p in POINTS), "SrTiO3 SC converged",
              "SrTiO3 s", "KCl 300 K L2 shift (%) (converged, wall)"]
    rows[0] = rows[0][:5] + ["-"] * (len(header) - 5)
    write_table(args.name, header, rows)


if __name__ == "__main__":
    main()
