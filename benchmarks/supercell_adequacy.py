"""Is the minimum supercell width right? The narrowest MDR entries at 300 K, as given and extended.

    python benchmarks/supercell_adequacy.py [--widths 0 5 8] [--max-atoms 500]

For each entry: the MDR supercell as it is (``min_supercell_width=0``) and extended to each
width (``io.inputs.adequate_supercell``), one-shot 300 K with the default model: L2 shift and its
error, largest per-atom rms displacement, harmonic and 300 K minimum frequencies, DFT deviation
(at the entry's own q-points), atoms, force calls and wall time. A width whose cell would exceed
``--max-atoms`` is skipped. Rows are appended to results/supercell_adequacy.csv as they finish;
results/supercell_adequacy.md is the table.
"""

from __future__ import annotations

import argparse
import csv
import time

from _common import MDR, RESULTS, setup_env

# the narrowest shared entries (results/supercell_widths.csv) and one stiff reference
ENTRIES = {
    "mp-570690": "materials-id-570690-sic-r3m-160.tar.lzma",  # SiC, 2.67 A (the case)
    "mp-556576": "materials-id-556576-zns-r3m-160.tar.lzma",  # ZnS, 3.28 A
    "mp-627401": "materials-id-627401-cdi2-r3m-160.tar.lzma",  # CdI2, 3.66 A (soft, layered)
    "mp-1346": "materials-id-1346-b6o-r-3m-166.tar.lzma",  # B6O, 4.65 A (stiff)
    "mp-8610": "materials-id-8610-li8pto6-r-3-148.tar.lzma",  # Li8PtO6, 4.68 A
}
FIELDS = ["material", "formula", "min_width_requested", "extended_by", "atoms", "narrowest_width", "l2_shift_pct",
          "l2_stderr_pct", "max_rms_displacement", "harmonic_min_thz", "min_thz_300K", "dft_mae_thz", "samples",
          "force_calls", "wall_s", "error"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=float, nargs="+", default=[0.0, 5.0, 8.0])
    ap.add_argument("--max-atoms", type=int, default=500)
    ap.add_argument("--only", nargs="+")
    args = ap.parse_args()
    setup_env()
    import numpy as np

    from tdph_workflows.engine import run_temperature_phonons
    from tdph_workflows.io.inputs import adequate_supercell, perpendicular_widths
    from tdph_workflows.io.mdr import load_mdr_entry
    from tdph_workflows.potentials import resolve_calculator

    calc = resolve_calculator(None)
    out = RESULTS / "supercell_adequacy.csv"
    if not out.exists():
        with open(out, "w", newline="") as fh:
            csv.writer(fh).writerow(FIELDS)
    for mid, tarball in ENTRIES.items():
        if args.only and mid not in args.only:
            continue
        entry = load_mdr_entry(MDR / "raw_lt20atoms" / tarball)
        for width in args.widths:
            smat, multiples = adequate_supercell(entry.supercell_matrix, entry.unitcell, width)
            atoms = int(round(abs(np.linalg.det(smat)))) * len(entry.unitcell)
            if atoms > args.max_atoms:
                print(f"{mid}: width {width:g} A needs {atoms} atoms, skipped", flush=True)
                continue
            rec = {"material": mid, "min_width_requested": width, "extended_by": "x".join(map(str, multiples)),
                   "atoms": atoms, "narrowest_width": round(float(perpendicular_widths(
                       smat @ np.asarray(entry.unitcell.cell)).min()), 2), "error": ""}
            t0 = time.perf_counter()
            try:
                res = run_temperature_phonons(entry, calc, [300.0], keep_force_constants=False,
                                              min_supercell_width=width)
                t = res.at(300.0)
                rec.update(formula=res.formula, l2_shift_pct=round(100 * t.l2_shift, 2),
                           l2_stderr_pct=round(100 * t.l2_stderr, 2),
                           max_rms_displacement=round(t.max_rms_displacement, 3),
                           harmonic_min_thz=round(res.harmonic.min_frequency, 2),
                           min_thz_300K=round(t.spectrum.min_frequency, 2),
                           dft_mae_thz=round(res.dft_reference.mae_thz, 3) if res.dft_reference else "",
                           samples=t.n_samples, force_calls=1 + res.n_harmonic_displacements
                           + t.potential_calls.get("forces", 0))
            except Exception as exc:  # noqa: BLE001 (record and go on)
                rec["error"] = f"{type(exc).__name__}: {exc}"[:160].replace(",", ";")
            rec["wall_s"] = round(time.perf_counter() - t0, 1)
            with open(out, "a", newline="") as fh:
                csv.writer(fh).writerow([rec.get(k, "") for k in FIELDS])
            print(rec, flush=True)
    write_table(out)


def write_table(path) -> None:
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    cols = ["material", "formula", "extended_by", "atoms", "narrowest_width", "l2_shift_pct", "l2_stderr_pct",
            "max_rms_displacement", "harmonic_min_thz", "min_thz_300K", "dft_mae_thz", "force_calls", "wall_s", "error"]
    lines = ["# Supercell adequacy: the narrowest MDR entries at 300 K, as given and extended", "",
             "One-shot, default model, automatic sample count; `extended_by` 1x1x1 = the MDR cell as it is.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r.get(c, "") for c in cols) + " |" for r in rows]
    (RESULTS / "supercell_adequacy.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
