"""Do the MDR supercells sample thermal displacements faithfully? DFT force constants, no potential.

    python benchmarks/thermal_sampling.py [--n 200] [--seed 1] [--temperature 300]

For random shared raw_lt20atoms entries: the DFT harmonic force constants of the entry's own supercell,
the largest ratio over atoms of the harmonic mean-square displacement its commensurate q-points sample
to the converged (dense q-mesh) value (``core.phonons.thermal_sampling_ratio``), and the widening the
engine would apply (``widen_for_thermal_sampling`` with the engine's tolerance and atom cap). Rows go to
results/thermal_sampling.csv as they finish; results/thermal_sampling.md is the summary.
"""

from __future__ import annotations

import argparse
import csv
import random
import time

import numpy as np
from _common import MDR, RESULTS, setup_env

FIELDS = ["material", "formula", "atoms", "min_width", "ratio", "multiples", "ratio_after", "atoms_after",
          "harmonic_min_dft", "seconds", "error"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--temperature", type=float, default=300.0)
    args = ap.parse_args()
    setup_env()
    from tdph_workflows.core import phonons
    from tdph_workflows.engine import MAX_WIDENED_ATOMS, THERMAL_SAMPLING_TOLERANCE
    from tdph_workflows.io.mdr import load_mdr_entry

    with open(MDR / "index.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["lt20_atoms_primitive"] == "True"
                and (MDR / "raw_lt20atoms" / r["raw_tarball"]).exists()]
    picked = random.Random(args.seed).sample(rows, min(args.n, len(rows)))
    out = RESULTS / "thermal_sampling.csv"
    with open(out, "w", newline="") as fh:
        csv.writer(fh).writerow(FIELDS)
    for r in picked:
        rec = {"material": r["mp_id"], "formula": r["formula"], "error": ""}
        t0 = time.perf_counter()
        try:
            entry = load_mdr_entry(MDR / "raw_lt20atoms" / r["raw_tarball"])
            ph = phonons.build_phonopy(entry.unitcell, entry.supercell_matrix, entry.primitive_matrix)
            fc = entry.dft_force_constants()
            multiples, ratio, after = phonons.widen_for_thermal_sampling(
                ph, fc, args.temperature, THERMAL_SAMPLING_TOLERANCE, MAX_WIDENED_ATOMS)
            rec.update(atoms=len(ph.supercell), min_width=round(float(phonons.perpendicular_widths(
                np.asarray(ph.supercell.cell)).min()), 2), ratio=round(ratio, 3),
                multiples="x".join(map(str, multiples)), ratio_after=round(after, 3),
                atoms_after=len(ph.supercell) * int(np.prod(multiples)),
                harmonic_min_dft=round(float(phonons.commensurate_frequencies(ph, fc).min()), 2))
        except Exception as exc:  # noqa: BLE001 (record and go on)
            rec["error"] = f"{type(exc).__name__}: {exc}"[:120].replace(",", ";")
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        with open(out, "a", newline="") as fh:
            csv.writer(fh).writerow([rec.get(k, "") for k in FIELDS])
        print(rec, flush=True)
    summarize(out, args, THERMAL_SAMPLING_TOLERANCE)


def summarize(path, args, tolerance: float) -> None:
    with open(path) as fh:
        rows = [r for r in csv.DictReader(fh) if not r["error"]]
    ratio = np.array([float(r["ratio"]) for r in rows])
    widened = [r for r in rows if r["multiples"] != "1x1x1"]
    stable = np.array([float(r["harmonic_min_dft"]) >= -0.1 for r in rows])
    growth = np.array([int(r["atoms_after"]) / int(r["atoms"]) for r in rows])
    lines = [f"# Thermal sampling of the MDR supercells: {len(rows)} random entries (seed {args.seed}), "
             f"{args.temperature:g} K, DFT force constants", "",
             "Ratio = largest over atoms of the harmonic mean-square displacement sampled on the supercell's "
             "commensurate q-points to the dense-mesh value (imaginary and soft modes at 0.5 THz, as sampled).", "",
             "| quantity | value |", "|---|---|",
             f"| ratio median / p90 / max | {np.median(ratio):.2f} / {np.percentile(ratio, 90):.2f} / {ratio.max():.2f} |",
             f"| ratio > {tolerance} (widened) | {len(widened)} of {len(rows)} "
             f"({100 * len(widened) / len(rows):.1f} %) |",
             f"| of which harmonically stable in DFT | {sum(float(r['harmonic_min_dft']) >= -0.1 for r in widened)} |",
             f"| still above {tolerance} at the {args.__dict__.get('cap', 1000)}-atom cap | "
             f"{sum(float(r['ratio_after']) > tolerance for r in rows)} |",
             f"| supercell atoms, all entries: total growth | x{growth.mean():.2f} (mean over entries; median "
             f"x{np.median(growth):.0f}, max x{growth.max():.0f}) |",
             f"| stable entries: ratio median / max | {np.median(ratio[stable]):.2f} / {ratio[stable].max():.2f} |", "",
             "Rows: `thermal_sampling.csv`."]
    (RESULTS / "thermal_sampling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
