"""Self-consistent SSCHA variants (sample reuse, predicted steps) against the one-shot, over random MDR entries.

    python benchmarks/sc_reuse.py [--n 10] [--seed 1] [--name sc_reuse] [--variants sc_reuse sc_predict ...] [--resume]

Per entry (the same random sample of raw_lt20atoms entries as bench_targets.py: the first N of
``random.Random(seed).sample``), one run of ``run_temperature_phonons`` per variant at 300 K, MDR supercell,
automatic sample count, model loaded once:

* ``one-shot``: ``SSCHASettings()`` (always run);
* ``sc``: ``SSCHASettings(self_consistent=True, sc_predict=False)`` (fresh samples every iteration, linear
  mixing, the self-consistent default before predicted steps; always run);
* ``sc_reuse``: ``sc_reuse_samples=True`` (importance-reweighted reuse);
* ``sc_predict``: ``sc_predict=True`` (steps to the fixed point of the amplitude-scaling model, ``sscha.predictor``);
* ``sc_predict_reuse``: both.

Force calls = 1 (reference) + harmonic displacements + thermal samples (``potential_calls["forces"]``).
Per self-consistent iteration the samples drawn and the effective sample size are read from the
progress lines. Rows go to results/NAME.csv as each run finishes; results/NAME.md is the summary:
median / max of SC calls over one-shot calls per variant, |L2_variant - L2_sc| in units of
sqrt(se_variant^2 + se_sc^2), convergence counts, wall and fit times.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import time

import numpy as np
from _common import MDR, RESULTS, setup_env

FIELDS = ["material", "formula", "atoms_supercell", "variant", "force_calls", "harmonic_calls", "sample_calls",
          "l2_shift_pct", "l2_stderr_pct", "converged", "sc_converged", "stalled", "sc_iterations", "new_samples",
          "ess_pairs", "wall_s", "potential_s", "fit_s", "weights_s", "estimate_s", "loadavg1", "error",
          "residuals_thz", "predicted_steps"]
PREDICTED = re.compile(r"(\d+) of \d+ self-consistent steps sampled from a predicted fixed point")
VARIANTS = {
    "one-shot": {},
    "sc": {"self_consistent": True, "sc_reuse_samples": False, "sc_predict": False},
    "sc_reuse": {"self_consistent": True, "sc_reuse_samples": True, "sc_predict": False},
    "sc_predict": {"self_consistent": True, "sc_predict": True},
    "sc_predict_reuse": {"self_consistent": True, "sc_predict": True, "sc_reuse_samples": True},
}
DEFAULT_VARIANTS = ["one-shot", "sc", "sc_reuse"]
STEP = re.compile(r"self-consistent step (\d+)")
REUSED = re.compile(r"(\d+) samples \((\d+) new, effective (\d+)\)")
PLAIN = re.compile(r"K: (\d+) samples, L2")


def per_iteration(messages: list[str]) -> tuple[list[int], list[float]]:
    """Samples drawn and effective pairs per self-consistent iteration, from the progress lines."""
    new, ess, cur_new, cur_ess = [], [], 0, 0.0
    for msg in messages:
        if m := REUSED.search(msg):
            cur_new, cur_ess = int(m.group(2)), int(m.group(3)) / 2  # the last estimate's totals
        elif m := PLAIN.search(msg):
            cur_new, cur_ess = int(m.group(1)), int(m.group(1)) / 2
        elif STEP.search(msg):
            new.append(cur_new)
            ess.append(cur_ess)
    return new, ess


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--name", default="sc_reuse")
    ap.add_argument("--only", nargs="+", help="run only these materials of the sample")
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows of results/NAME.csv that have no error and run only what is missing")
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS),
                    help="one-shot and sc are always run (the baselines of the ratios)")
    args = ap.parse_args()
    args.variants = list(dict.fromkeys(["one-shot", "sc", *args.variants]))
    setup_env()
    from tdph_workflows.core.sscha import SSCHASettings
    from tdph_workflows.engine import run_temperature_phonons
    from tdph_workflows.potentials import resolve_calculator

    t0 = time.perf_counter()
    calc = resolve_calculator(None)
    print(f"model load {time.perf_counter() - t0:.1f} s, load {os.getloadavg()}", flush=True)
    with open(MDR / "index.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["lt20_atoms_primitive"] == "True"]
    rows = [r for r in rows if (MDR / "raw_lt20atoms" / r["raw_tarball"]).exists()]
    picked = random.Random(args.seed).sample(rows, args.n)
    if args.only:
        picked = [r for r in picked if r["mp_id"] in set(args.only)]
    out_csv = RESULTS / f"{args.name}.csv"
    done = set()
    if args.resume and out_csv.exists():
        with open(out_csv) as fh:
            kept = [row for row in csv.DictReader(fh) if not row["error"]]
        done = {(row["material"], row["variant"]) for row in kept}
    with open(out_csv, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(FIELDS)
        for row in kept if done else []:
            writer.writerow([row.get(k, "") for k in FIELDS])
    for r in picked:
        for variant in args.variants:
            if (r["mp_id"], variant) in done:
                continue
            opts = VARIANTS[variant]
            messages: list[str] = []
            rec = {"material": r["mp_id"], "formula": r["formula"], "variant": variant, "error": ""}
            t0 = time.perf_counter()
            try:
                res = run_temperature_phonons(MDR / "raw_lt20atoms" / r["raw_tarball"], calc, [300.0],
                                              settings=SSCHASettings(**opts), keep_force_constants=False,
                                              progress=messages.append)
                t = res.at(300.0)
                tt = t.timings
                new, ess = per_iteration(messages)
                samples = t.potential_calls.get("forces", 0)
                rec.update(atoms_supercell=res.n_atoms_supercell, harmonic_calls=1 + res.n_harmonic_displacements,
                           sample_calls=samples, force_calls=1 + res.n_harmonic_displacements + samples,
                           l2_shift_pct=round(100 * t.l2_shift, 3), l2_stderr_pct=round(100 * t.l2_stderr, 3),
                           converged=t.converged,
                           sc_converged="" if t.self_consistent_converged is None else t.self_consistent_converged,
                           stalled=any("stalled" in n for n in t.sampling_notes),
                           sc_iterations=len(t.self_consistent_changes_thz),
                           residuals_thz=";".join(f"{c:.3g}" for c in t.self_consistent_changes_thz),
                           predicted_steps=next((int(m.group(1)) for n in t.sampling_notes
                                                 if (m := PREDICTED.search(n))), 0),
                           new_samples=";".join(map(str, new)), ess_pairs=";".join(f"{e:g}" for e in ess),
                           potential_s=round(tt.get("potential", 0), 2), fit_s=round(tt.get("fit", 0), 2),
                           weights_s=round(tt.get("weights", 0), 3), estimate_s=round(tt.get("estimate", 0), 2))
            except Exception as exc:  # noqa: BLE001 (record and go on, as a campaign would)
                rec["error"] = f"{type(exc).__name__}: {exc}"[:120].replace(",", ";")
            rec["wall_s"] = round(time.perf_counter() - t0, 2)
            rec["loadavg1"] = round(os.getloadavg()[0], 2)
            with open(out_csv, "a", newline="") as fh:
                csv.writer(fh).writerow([rec.get(k, "") for k in FIELDS])
            print({k: rec.get(k) for k in ("material", "atoms_supercell", "variant", "force_calls", "l2_shift_pct",
                                            "l2_stderr_pct", "sc_iterations", "sc_converged", "new_samples",
                                            "wall_s", "residuals_thz", "error")}, flush=True)
    summarize(out_csv, args)


def summarize(out_csv, args) -> None:
    with open(out_csv) as fh:
        recs = list(csv.DictReader(fh))
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in recs)]
    others = [v for v in variants if v not in ("one-shot", "sc")]
    by = {}
    for r in recs:
        by.setdefault(r["material"], {})[r["variant"]] = r
    complete = {m: v for m, v in by.items() if all(k in v and not v[k]["error"] for k in variants)}
    calls = {k: np.array([int(v[k]["force_calls"]) for v in complete.values()]) for k in variants}
    ratio = {k: calls[k] / calls["one-shot"] for k in variants if k != "one-shot"}

    def zscore(k: str) -> np.ndarray:  # |L2_k - L2_sc| in combined standard errors
        return np.array([abs(float(v[k]["l2_shift_pct"]) - float(v["sc"]["l2_shift_pct"]))
                         / np.hypot(float(v[k]["l2_stderr_pct"]), float(v["sc"]["l2_stderr_pct"]))
                         for v in complete.values()])

    def conv(k: str) -> str:
        rows = [v[k] for v in complete.values()]
        ok = sum(r["sc_converged"] == "True" for r in rows)
        stalled = sum(r["stalled"] == "True" for r in rows)
        return f"{ok} / {len(rows)} (stalled {stalled})"

    def med(k: str, col: str) -> float:
        return float(np.median([float(v[k][col] or 0) for v in complete.values()]))

    sc_variants = ["sc", *others]
    names = {"sc": "sc (no reuse)"}

    def row(label: str, cells: list) -> str:
        return f"| {label} | " + " | ".join(str(c) for c in cells) + " |"

    lines = [
        (f"# Self-consistent SSCHA variants against the one-shot: {len(complete)} of {len(by)} random "
         f"raw_lt20atoms entries (seed {args.seed})"),
        "",
        "300 K, MDR supercell, automatic sample count, model loaded once, TDPH_TORCH_THREADS=1, 2 shared cores.",
        (f"Command: `python benchmarks/sc_reuse.py --n {args.n} --seed {args.seed}"
         + (f" --only {' '.join(args.only)}" if args.only else "")
         + (f" --variants {' '.join(args.variants)}" if args.variants != DEFAULT_VARIANTS else "")
         + (f" --name {args.name}" if args.name != "sc_reuse" else "")
         + "`. Force calls = 1 + harmonic displacements + thermal samples."),
        "",
        row("quantity", [names.get(k, k) for k in sc_variants]),
        "|---|" + "---|" * len(sc_variants),
        row("SC / one-shot force calls, median", [f"{np.median(ratio[k]):.2f}" for k in sc_variants]),
        row("SC / one-shot force calls, max", [f"{ratio[k].max():.2f}" for k in sc_variants]),
        row("SC / one-shot force calls, mean", [f"{ratio[k].mean():.2f}" for k in sc_variants]),
        row("converged (fixed point)", [conv(k) for k in sc_variants]),
        row("iterations, median", [f"{med(k, 'sc_iterations'):.0f}" for k in sc_variants]),
        row("wall per material, median (s)", [f"{med(k, 'wall_s'):.1f}" for k in sc_variants]),
        row("fit time, median (s)", [f"{med(k, 'fit_s'):.2f}" for k in sc_variants]),
        row("potential time, median (s)", [f"{med(k, 'potential_s'):.2f}" for k in sc_variants]),
        "",
        f"One-shot: median {np.median(calls['one-shot']):.0f} force calls, wall {med('one-shot', 'wall_s'):.1f} s.",
        "",
    ]
    for k in others:
        z = zscore(k)
        lines.append(f"L2 agreement of {k} with sc: |L2_{k} - L2_sc| / sqrt(se_{k}^2 + se_sc^2): median "
                     f"{np.median(z):.2f}, max {z.max():.2f}; {int((z < 2).sum())} of {len(z)} below 2.")
    lines += ["", row("material", ["atoms", "one-shot calls", *[f"{k} calls" for k in sc_variants],
                                   *[f"L2 {k} (%)" for k in sc_variants], *[f"{k} iters" for k in sc_variants],
                                   *[f"{k} new samples per iteration" for k in others]]),
              "|---|" + "---|" * (2 + 3 * len(sc_variants) + len(others))]
    for m, v in complete.items():
        a = v["one-shot"]
        lines.append(row(m, [a["atoms_supercell"], a["force_calls"], *[v[k]["force_calls"] for k in sc_variants],
                             *[f"{v[k]['l2_shift_pct']} +- {v[k]['l2_stderr_pct']}" for k in sc_variants],
                             *[v[k]["sc_iterations"] + ("" if v[k]["sc_converged"] == "True" else " (nc)")
                               for k in sc_variants],
                             *[v[k]["new_samples"].replace(";", " ") for k in others]]))
    failed = [f"{m} {k}: {r['error']}" for m, v in by.items() for k, r in v.items() if r["error"]]
    if failed:
        lines += ["", "Failed runs:", *[f"* {f}" for f in failed]]
    lines += ["", f"Per-run rows: `{out_csv.name}`."]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
