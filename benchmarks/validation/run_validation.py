"""Validation flow with the potential on MDR entries: kappa_L at three levels, fit RMSE, time per step.

    python benchmarks/validation/run_validation.py --model TDPH-M3GNet-MDR-PBEsol-2026.11 \
        --mesh 8 --out benchmarks/results/validation  MDR_ENTRY [MDR_ENTRY ...]

Writes results.json and results.md (the table quoted in docs/validation.md) plus the figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from jobflow import run_locally

from tdph_workflows.makers.validation import ValidationMaker
from tdph_workflows.validation.plots import plot_kappa_bars


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("entries", nargs="+")
    p.add_argument("--model", default=None)
    p.add_argument("--mesh", type=int, default=8)
    p.add_argument("--fourph-mesh", type=int, default=None)
    p.add_argument("--n-structures", type=int, default=40)
    p.add_argument("--fit-method", default="lasso")
    p.add_argument("--temperature", type=float, nargs="+", default=[300.0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/validation"))
    a = p.parse_args()
    settings = {"kappa_mesh": [a.mesh] * 3, "fourph_mesh": [a.fourph_mesh or a.mesh] * 3,
                "n_structures": a.n_structures, "fit_method": a.fit_method, "temperatures": a.temperature}
    maker = ValidationMaker(calculator=a.model, settings=settings, out_dir=str(a.out))
    (a.out / "run").mkdir(parents=True, exist_ok=True)
    rows = []
    for entry in a.entries:
        flow = maker.make(entry)
        started = time.perf_counter()
        responses = run_locally(flow, ensure_success=True, log=False, root_dir=a.out / "run")
        wall = time.perf_counter() - started
        doc = responses[flow.jobs[-1].uuid][1].output
        for t in doc.temperatures:
            rows.append({"material": f"{doc.formula} ({doc.material_id})", "temperature": t.temperature,
                         "kappa mesh": a.mesh, "4ph mesh": a.fourph_mesh or a.mesh,
                         **{f"kappa {k}": round(v, 3) for k, v in t.kappa.items()},
                         "fit rmse (eV/A)": round(doc.fit["rmse_validation"], 5),
                         "fit relative rmse": round(doc.fit["relative_rmse_validation"], 4),
                         "fit R2": round(doc.fit["r2_validation"], 4), "shells 3/4": f"{doc.fit['shells_3']}/{doc.fit['shells_4']}",
                         "n clusters fc3/fc4": f"{doc.fit['n_clusters_fc3']}/{doc.fit['n_clusters_fc4']}",
                         "scph iterations": t.scph["iterations"], "scph converged": t.scph["converged"],
                         "imaginary harmonic/scph": f"{t.scph['n_imaginary_initial']}/{t.scph['n_imaginary_final']}",
                         **{k: round(v, 1) for k, v in {**doc.timings, **t.timings}.items()},
                         "wall_s": round(wall, 1)})
        print(json.dumps(rows[-1]), flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.json").write_text(json.dumps({"settings": settings, "model": a.model, "rows": rows}, indent=1))
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    (a.out / "results.md").write_text("\n".join(lines) + "\n")
    for temperature in sorted({r["temperature"] for r in rows}):
        plot_kappa_bars({r["material"]: {k[6:]: v for k, v in r.items() if k.startswith("kappa ") and "+" in k}
                         for r in rows if r["temperature"] == temperature},
                        a.out / f"kappa_levels_{temperature:g}K.png", temperature)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
