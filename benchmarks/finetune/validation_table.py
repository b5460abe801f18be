"""One table from several `tdph finetune evaluate` runs on the same held-out compounds.

    python benchmarks/finetune/validation_table.py tdph_finetune/eval_baselines tdph_finetune/eval_new

Each argument is an evaluate --out folder (summary.json, scores.csv). Writes
benchmarks/results/finetune_validation.{md,csv}: MAE over all modes, mean and median per compound,
stability agreement, MAE by family (mean of compounds, count), seconds per compound.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import RESULTS, write_table

FAMILIES = ("alkali_halide", "perovskite", "double_perovskite", "other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--name", default="finetune_validation")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows, compounds = [], None
    for folder in args.folders:
        summary = json.loads((folder / "summary.json").read_text())
        with open(folder / "scores.csv") as fh:
            ids = sorted({r["material_id"] for r in csv.DictReader(fh)})
        if compounds is not None and ids != compounds:
            raise SystemExit(f"{folder}: other compounds than {args.folders[0]}; compare like with like")
        compounds = ids
        for label, s in summary["by_model"].items():
            fam = s["by_family"]
            rows.append([label, s["compounds"], len(s["failed"]), f"{s['mae_thz_all_modes']:.3f}",
                         f"{s['mae_thz_mean_of_compounds']:.3f}", f"{s['mae_thz_median_of_compounds']:.3f}",
                         f"{100 * s['stability_agreement']:.1f} %",
                         *(f"{fam[f]['mae_thz_mean_of_compounds']:.3f} ({fam[f]['compounds']})" if f in fam else "-"
                           for f in FAMILIES),
                         f"{s['seconds'] / max(1, s['compounds'] + len(s['failed'])):.1f}" if "seconds" in s else "-"])
    write_table(args.name, ["model", "compounds", "failed", "MAE all modes (THz)", "mean per compound",
                            "median per compound", "stability agrees with DFT", "alkali halides", "cubic perovskites",
                            "double perovskites", "other", "s per compound"], rows)


if __name__ == "__main__":
    main()
