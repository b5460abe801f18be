"""Per-material cost of two ``bench_targets.py`` runs over the same entries, side by side.

    python benchmarks/compare_targets.py BEFORE.csv AFTER.csv --out benchmarks/results/NAME.md [--title T]

Both runs should have gone at the same time on the same machine (the ratio is what carries over).
Writes the per-material table, the means and medians, the ratio of the summed wall times, and the
projection of a campaign over all 3,992 shared entries at 2 workers from each mean.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

N_ENTRIES = 3992  # shared raw_lt20atoms entries


def read(path: str) -> dict[str, dict]:
    with open(path) as fh:
        return {r["material"]: r for r in csv.DictReader(fh)}


def number(row: dict, key: str) -> float:
    return float(row.get(key) or 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", default="Per-material cost before and after")
    ap.add_argument("--note", default="", help="a sentence on how the runs were made")
    args = ap.parse_args()
    before, after = read(args.before), read(args.after)
    both = [m for m in before if m in after and not before[m]["error"] and not after[m]["error"]]
    lines = [f"# {args.title}", "", args.note, "",
             ("| material | supercell atoms | wall before (s) | wall after (s) | fit+estimate before (s) | "
              "fit+estimate after (s) | samples before | samples after | L2 before (%) | L2 after (%) |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m in both:
        b, a = before[m], after[m]
        lines.append(f"| {m} | {a['atoms_supercell']} | {b['wall_s']} | {a['wall_s']} | "
                     f"{number(b, 'fit_s') + number(b, 'estimate_s'):.2f} | {number(a, 'fit_s') + number(a, 'estimate_s'):.2f} | "
                     f"{b['samples']} | {a['samples']} | {b['l2_shift_pct']} ± {b['l2_stderr_pct']} | "
                     f"{a['l2_shift_pct']} ± {a['l2_stderr_pct']} |")
    wb = np.array([number(before[m], "wall_s") for m in both])
    wa = np.array([number(after[m], "wall_s") for m in both])
    fb = np.array([number(before[m], "fit_s") + number(before[m], "estimate_s") for m in both])
    fa = np.array([number(after[m], "fit_s") + number(after[m], "estimate_s") for m in both])
    same = sum(before[m]["samples"] == after[m]["samples"] and before[m]["l2_shift_pct"] == after[m]["l2_shift_pct"]
               for m in both)
    failed = [m for m in set(before) | set(after) if m not in both]
    lines += ["",
              f"{len(both)} materials in both runs" + (f" ({len(failed)} failed in one: {', '.join(sorted(failed))})"
                                                       if failed else "") + ".",
              (f"- wall: mean {wb.mean():.1f} -> {wa.mean():.1f} s, median {np.median(wb):.1f} -> "
               f"{np.median(wa):.1f} s, sum ratio {wb.sum() / wa.sum():.2f}x"),
              f"- fit + estimate: {fb.sum():.0f} -> {fa.sum():.0f} s in all ({fb.sum() / max(fa.sum(), 1e-9):.1f}x)",
              (f"- identical sample count and L2 shift: {same} of {len(both)} (the others differ by a setting of "
               "the after run, e.g. a statistics cap)"),
              (f"- {N_ENTRIES} entries at 2 workers from the mean wall: {N_ENTRIES * wb.mean() / 2 / 3600:.1f} h "
               f"before, {N_ENTRIES * wa.mean() / 2 / 3600:.1f} h after (this machine, this load)")]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-5:]))


if __name__ == "__main__":
    main()
