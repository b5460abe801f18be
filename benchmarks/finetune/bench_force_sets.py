"""Model vs DFT forces on the shared displacement-force sets, by displacement amplitude.

KCl-SSCHA (120 supercells, 0.03-1.5 A) checks the anharmonic regime SSCHA samples; NaCl-rd,
NaCl-alm and AlN-rd (0.03 A) the small-amplitude one. Evaluation only: none of these sets is in
any training set.

    python benchmarks/finetune/bench_force_sets.py --model pretrained=M3GNet-PES-MatPES-PBE-2025.2 \
        --model new=tdph_workflows/models/<folder> --model sevennet=sevenn.calculator:SevenNetCalculator

Writes benchmarks/results/finetune_force_sets.{md,csv}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import SHARED, setup_env, write_table

SETS = {
    "KCl-SSCHA 0.03-1.5 A": "phonopy_repo/KCl-SSCHA/phonopy_mlpsscha_params_KCl-120.yaml.xz",
    "NaCl-rd 0.03 A": "phono3py_repo/NaCl-rd_phono3py_params_NaCl.yaml.xz",
    "NaCl-alm 0.03 A": "phono3py_repo/NaCl-alm_phono3py_params_NaCl222.yaml.xz",
    "AlN-rd 0.03 A": "phono3py_repo/AlN-rd_phonopy_params_mp-661.yaml.xz",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="label=spec (matgl folder/name or module:factory)")
    parser.add_argument("--name", default="finetune_force_sets")
    args = parser.parse_args()
    setup_env()
    from tdph_workflows.finetune.force_sets import errors_by_amplitude, load_force_set, model_forces
    from tdph_workflows.potentials import resolve_calculator

    sets = {label: load_force_set(SHARED / "data" / rel, label) for label, rel in SETS.items()}
    rows = []
    for item in args.model:
        label, _, spec = item.partition("=")
        calc = resolve_calculator(spec)
        for fs in sets.values():
            t = time.perf_counter()
            pred = model_forces(fs, calc)
            seconds = time.perf_counter() - t
            for r in errors_by_amplitude(fs, pred):
                rows.append([label, r["set"], f"{r['amplitude_min']:.2f}-{r['amplitude_max']:.2f}", r["configs"],
                             f"{r['mean_abs_force_dft']:.3f}", f"{r['force_mae']:.4f}", f"{r['force_rmse']:.4f}",
                             f"{1000 * seconds / len(fs.forces) / len(fs.numbers) * 100:.0f}"])
            print(f"{label} {fs.name}: {seconds:.1f} s", file=sys.stderr)
    write_table(args.name, ["model", "set", "amplitude (A)", "configs", "mean |F| DFT (eV/A)", "force MAE (eV/A)",
                            "force RMSE (eV/A)", "ms per 100 atoms"], rows)


if __name__ == "__main__":
    main()
