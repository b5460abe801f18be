"""Per-material wall time and sample count (harmonic + one-shot 300 K + metrics), one CPU thread.

    python benchmarks/bench_materials.py [--random 10] [--seed 0]

Materials: built-in cubic SrTiO3 2x2x2 (relaxed), the MDR entries of SrTiO3, NaCl, CsPbBr3,
and N random raw_lt20atoms entries (MDR supercells, residual forces subtracted).
"""

from __future__ import annotations

import argparse
import csv
import random
import time

import numpy as np
from _common import MDR, setup_env, write_table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--random", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    setup_env()
    from tdph_workflows.engine import cubic_srtio3, run_temperature_phonons
    from tdph_workflows.potentials import resolve_calculator

    t0 = time.perf_counter()
    calc = resolve_calculator(None)
    print(f"model load {time.perf_counter() - t0:.1f} s")
    jobs = [("SrTiO3 (built-in, 2x2x2, relaxed)", cubic_srtio3(), [2, 2, 2], True)]
    for name in ("mp-5229_SrTiO3", "mp-22862_NaCl", "mp-600089_CsPbBr3"):
        jobs.append((f"{name} (MDR)", MDR / "curated" / name, None, False))
    with open(MDR / "index.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["lt20_atoms_primitive"] == "True"]
    rows = [r for r in rows if (MDR / "raw_lt20atoms" / r["raw_tarball"]).exists()]
    for r in random.Random(args.seed).sample(rows, args.random):
        jobs.append((f"{r['mp_id']} {r['formula']} (MDR)", MDR / "raw_lt20atoms" / r["raw_tarball"], None, False))

    out, walls = [], []
    for label, structure, smat, relax in jobs:
        t0 = time.perf_counter()
        try:
            res = run_temperature_phonons(structure, calc, [300.0], smat, relax=relax, keep_force_constants=False)
        except Exception as exc:  # record and go on, as a campaign would
            out.append([label, "-", "-", "-", "-", "-", "-", f"error: {exc}"[:80]])
            continue
        wall = time.perf_counter() - t0
        walls.append(wall)
        t = res.at(300.0)
        out.append([
            label, res.n_atoms_supercell, f"{wall:.1f}", f"{res.timings['harmonic']:.1f}",
            t.n_samples, f"{100 * t.l2_shift:.2f} ± {100 * t.l2_stderr:.2f}",
            f"{t.r_onsite_max:.3f}", f"sym {t.timings.get('symmetrize', 0):.3f} s; basis {res.timings['symfc_basis']:.2f} s; min f {res.harmonic.min_frequency:.2f} -> {t.spectrum.min_frequency:.2f} THz",
        ])
        print(out[-1], flush=True)
    header = ["material", "atoms (supercell)", "wall (s)", "harmonic (s)", "samples", "L2 shift (%)", "max R_onsite", "notes"]
    write_table("materials", header, out)
    print(f"median {np.median(walls):.1f} s, p90 {np.percentile(walls, 90):.1f} s over {len(walls)} materials")


if __name__ == "__main__":
    main()
