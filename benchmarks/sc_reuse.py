"""Self-consistent SSCHA with and without sample reuse against the one-shot, over random MDR entries.

    python benchmarks/sc_reuse.py [--n 10] [--seed 1] [--name sc_reuse]

Per entry (the same random sample of raw_lt20atoms entries as bench_targets.py: the first N of
``random.Random(seed).sample``), three runs of ``run_temperature_phonons`` at 300 K, MDR supercell,
automatic sample count, model loaded once:

* ``one-shot``: ``SSCHASettings()``;
* ``sc``: ``SSCHASettings(self_consistent=True, sc_reuse_samples=False)`` (fresh samples every iteration);
* ``sc_reuse``: ``SSCHASettings(self_consistent=True)`` (importance-reweighted reuse, the default).

Force calls = 1 (reference) + harmonic displacements + thermal samples (``potential_calls["forces"]``).
Per self-consistent iteration the samples drawn and the effective sample size are read from the
progress lines. Rows go to results/NAME.csv as each run finishes; results/NAME.md is the summary:
median / max of SC calls over one-shot calls per variant, |L2_reuse - L2_sc| in units of
sqrt(se_reuse^2 + se_sc^2), convergence counts, wall and fit times.
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
          "ess_pairs", "wall_s", "potential_s", "fit_s", "weights_s", "estimate_s", "loadavg1", "error"]
VARIANTS = {
    "one-shot": {},
    "sc": {"self_consistent": True, "sc_reuse_samples": False},
    "sc_reuse": {"self_consistent": True, "sc_reuse_samples": True},
}
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
    args = ap.parse_args()
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
    with open(out_csv, "w", newline="") as fh:
        csv.writer(fh).writerow(FIELDS)
    for r in picked:
        for variant, opts in VARIANTS.items():
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
                                            "wall_s", "error")}, flush=True)
    summarize(out_csv, args)


def summarize(out_csv, args) -> None:
    with open(out_csv) as fh:
        recs = list(csv.DictReader(fh))
    by = {}
    for r in recs:
        by.setdefault(r["material"], {})[r["variant"]] = r
    complete = {m: v for m, v in by.items() if all(k in v and not v[k]["error"] for k in VARIANTS)}
    calls = {k: np.array([int(v[k]["force_calls"]) for v in complete.values()]) for k in VARIANTS}
    ratio = {k: calls[k] / calls["one-shot"] for k in ("sc", "sc_reuse")}
    z = np.array([abs(float(v["sc_reuse"]["l2_shift_pct"]) - float(v["sc"]["l2_shift_pct"]))
                  / np.hypot(float(v["sc_reuse"]["l2_stderr_pct"]), float(v["sc"]["l2_stderr_pct"]))
                  for v in complete.values()])

    def conv(k: str) -> str:
        rows = [v[k] for v in complete.values()]
        ok = sum(r["sc_converged"] == "True" for r in rows)
        stalled = sum(r["stalled"] == "True" for r in rows)
        return f"{ok} / {len(rows)} (stalled {stalled})"

    def med(k: str, col: str) -> float:
        return float(np.median([float(v[k][col] or 0) for v in complete.values()]))

    lines = [
        (f"# Self-consistent SSCHA with sample reuse: {len(complete)} of {len(by)} random raw_lt20atoms entries "
         f"(seed {args.seed})"),
        "",
        "300 K, MDR supercell, automatic sample count, model loaded once, TDPH_TORCH_THREADS=1, 2 shared cores.",
        (f"Command: `python benchmarks/sc_reuse.py --n {args.n} --seed {args.seed}"
         + (f" --only {' '.join(args.only)}" if args.only else "")
         + (f" --name {args.name}" if args.name != "sc_reuse" else "")
         + "`. Force calls = 1 + harmonic displacements + thermal samples."),
        "",
        "| quantity | sc (no reuse) | sc_reuse |",
        "|---|---|---|",
        f"| SC / one-shot force calls, median | {np.median(ratio['sc']):.2f} | {np.median(ratio['sc_reuse']):.2f} |",
        f"| SC / one-shot force calls, max | {ratio['sc'].max():.2f} | {ratio['sc_reuse'].max():.2f} |",
        f"| SC / one-shot force calls, mean | {ratio['sc'].mean():.2f} | {ratio['sc_reuse'].mean():.2f} |",
        f"| converged (fixed point) | {conv('sc')} | {conv('sc_reuse')} |",
        f"| iterations, median | {med('sc', 'sc_iterations'):.0f} | {med('sc_reuse', 'sc_iterations'):.0f} |",
        f"| wall per material, median (s) | {med('sc', 'wall_s'):.1f} | {med('sc_reuse', 'wall_s'):.1f} |",
        f"| fit time, median (s) | {med('sc', 'fit_s'):.2f} | {med('sc_reuse', 'fit_s'):.2f} |",
        f"| potential time, median (s) | {med('sc', 'potential_s'):.2f} | {med('sc_reuse', 'potential_s'):.2f} |",
        "",
        f"One-shot: median {np.median(calls['one-shot']):.0f} force calls, wall {med('one-shot', 'wall_s'):.1f} s.",
        "",
        (f"L2 agreement: |L2_reuse - L2_sc| / sqrt(se_reuse^2 + se_sc^2): median {np.median(z):.2f}, "
         f"max {z.max():.2f}; {int((z < 2).sum())} of {len(z)} below 2."),
        "",
        ("| material | atoms | one-shot calls | sc calls | sc_reuse calls | L2 sc (%) | L2 sc_reuse (%) | z | "
         "sc iters | sc_reuse iters | sc_reuse new samples per iteration | sc_reuse ESS (pairs) |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (m, v), zi in zip(complete.items(), z, strict=True):
        a, b, c = v["one-shot"], v["sc"], v["sc_reuse"]
        lines.append(f"| {m} | {a['atoms_supercell']} | {a['force_calls']} | {b['force_calls']} | {c['force_calls']} | "
                     f"{b['l2_shift_pct']} +- {b['l2_stderr_pct']} | {c['l2_shift_pct']} +- {c['l2_stderr_pct']} | "
                     f"{zi:.2f} | {b['sc_iterations']}{'' if b['sc_converged'] == 'True' else ' (nc)'} | "
                     f"{c['sc_iterations']}{'' if c['sc_converged'] == 'True' else ' (nc)'} | "
                     f"{c['new_samples'].replace(';', ' ')} | {c['ess_pairs'].replace(';', ' ')} |")
    failed = [f"{m} {k}: {r['error']}" for m, v in by.items() for k, r in v.items() if r["error"]]
    if failed:
        lines += ["", "Failed runs:", *[f"* {f}" for f in failed]]
    lines += ["", f"Per-run rows: `{out_csv.name}`."]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
