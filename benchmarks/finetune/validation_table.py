"""One table from several `tdph finetune evaluate` runs, on the compounds they share.

    python benchmarks/finetune/validation_table.py tdph_finetune/eval_baselines tdph_finetune/eval_new \
        [--only ids.txt] [--exclude-for LABEL=ids.txt] [--name finetune_validation]

Each folder is an evaluate --out folder; its scores.csv has one row per (model, compound), which is
all the table needs (the all-modes MAE is the per-compound MAE weighted by the number of modes).
Only compounds scored in every folder enter (and only those in --only when given), so models are
compared like with like. --exclude-for drops compounds for one model (e.g. the ones it trained on).
Writes benchmarks/results/<name>.{md,csv}.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import RESULTS, write_table

FAMILIES = ("alkali_halide", "perovskite", "double_perovskite", "other")


def read_ids(path: Path) -> set[str]:
    return {line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--only", type=Path, help="file of material ids to restrict to")
    parser.add_argument("--exclude-for", action="append", default=[], help="LABEL=file of ids left out for LABEL")
    parser.add_argument("--name", default="finetune_validation")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    scores: dict[str, list[dict]] = {}
    shared: set[str] | None = None
    for folder in args.folders:
        with open(folder / "scores.csv") as fh:
            rows = list(csv.DictReader(fh))
        ids = {r["material_id"] for r in rows}
        shared = ids if shared is None else shared & ids
        for r in rows:
            scores.setdefault(r["model"], []).append(r)
    assert shared is not None
    if args.only:
        shared &= read_ids(args.only)
    excluded = {label: read_ids(Path(f)) for label, _, f in (x.partition("=") for x in args.exclude_for)}
    table = []
    for label, rows in scores.items():
        keep = [r for r in rows if r["material_id"] in shared and r["material_id"] not in excluded.get(label, set())]
        ok = [r for r in keep if not r["error"]]
        mae = np.array([float(r["mae_thz"]) for r in ok])
        modes = np.array([int(r["n_modes"]) for r in ok])
        agree = np.array([r["stability_agrees"] == "True" for r in ok])
        fam = {f: [float(r["mae_thz"]) for r in ok if r["family"] == f] for f in FAMILIES}
        table.append([label, len(ok), len(keep) - len(ok), f"{(mae * modes).sum() / modes.sum():.3f}",
                      f"{mae.mean():.3f}", f"{np.median(mae):.3f}", f"{100 * agree.mean():.1f} %",
                      *(f"{np.mean(v):.3f} ({len(v)})" if v else "-" for v in fam.values())])
    write_table(args.name, ["model", "compounds", "failed", "MAE all modes (THz)", "mean per compound",
                            "median per compound", "stability agrees with DFT", "alkali halides", "cubic perovskites",
                            "double perovskites", "other"], table)


if __name__ == "__main__":
    main()
