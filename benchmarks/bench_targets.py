"""Engine speed targets (issue 7) over random MDR entries, one CPU thread per worker.

    python benchmarks/bench_targets.py [--random 50] [--seed 1]

Per material (harmonic + one-shot 300 K + metrics, automatic sample count, MDR supercell, residual
forces subtracted): wall time, symmetrization share, peak RSS and the force-call count/cost.

* wall: ``run_temperature_phonons`` end to end; the model is loaded once before (reported apart).
* symmetrization: supercell symmetry setup + symfc basis (the force fit's symmetry-adapted
  basis) + space-group averaging, over the wall time (the force fit builds symmetry into the
  basis, so the basis is counted as symmetrization, conservatively).
* peak RSS: a sampler thread reads this process's resident set (/proc/self/statm) every 20 ms
  and is reset per material, so the figure is the worker's peak while that material ran (model,
  torch and Python included); ru_maxrss of the whole run is printed too.
* force calls: reference + harmonic displacements + thermal samples; per-atom force-call cost =
  potential time / (calls x atoms), used by project_gpu_hours.py.

Targets: median < 15 s, symmetrization < 5 % of a material's time, peak RSS < 2 GB per worker.
Rows are appended to results/targets.csv as they finish; results/targets.md is the summary.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import threading
import time

import numpy as np
from _common import MDR, RESULTS, setup_env

PAGE = os.sysconf("SC_PAGE_SIZE")
FIELDS = ["material", "formula", "atoms_supercell", "wall_s", "harmonic_s", "potential_s", "fit_s", "estimate_s",
          "observables_s", "symmetrization_s", "sym_share", "peak_rss_mb", "samples", "force_calls",
          "s_per_atom_call", "l2_shift_pct", "l2_stderr_pct", "sc_iterations", "sc_converged", "loadavg1", "error"]


class RSSPeak:
    """Peak resident set of this process between ``reset()`` calls (sampled every ``dt`` s)."""

    def __init__(self, dt: float = 0.02) -> None:
        self.dt, self.peak, self._stop = dt, 0, False
        threading.Thread(target=self._run, daemon=True).start()

    @staticmethod
    def current() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * PAGE

    def _run(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, self.current())
            time.sleep(self.dt)

    def reset(self) -> None:
        self.peak = self.current()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--random", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--name", default="targets")
    ap.add_argument("--self-consistent", action="store_true", help="SSCHASettings(self_consistent=True)")
    ap.add_argument("--known-failure-pairs", type=int, help="SSCHASettings(known_failure_pairs=N), as campaigns")
    ap.add_argument("--known-failure-keeps-cell", action="store_true",
                    help="SSCHASettings(known_failure_keeps_cell=True), as campaigns")
    ap.add_argument("--only", nargs="+", help="rerun these materials of the sample; their rows in NAME.csv are replaced")
    args = ap.parse_args()
    setup_env()
    from tdph_workflows.core.sscha import SSCHASettings
    from tdph_workflows.engine import run_temperature_phonons
    from tdph_workflows.potentials import resolve_calculator

    settings = SSCHASettings(self_consistent=args.self_consistent, known_failure_pairs=args.known_failure_pairs,
                             known_failure_keeps_cell=args.known_failure_keeps_cell)

    rss = RSSPeak()
    t0 = time.perf_counter()
    calc = resolve_calculator(None)
    t_load = time.perf_counter() - t0
    rss_after_load = RSSPeak.current() / 2**20
    print(f"model load {t_load:.1f} s, RSS {rss_after_load:.0f} MB, load {os.getloadavg()}", flush=True)
    with open(MDR / "index.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["lt20_atoms_primitive"] == "True"]
    rows = [r for r in rows if (MDR / "raw_lt20atoms" / r["raw_tarball"]).exists()]
    picked = random.Random(args.seed).sample(rows, args.random)
    out_csv = RESULTS / f"{args.name}.csv"
    kept = []
    if args.only:  # keep the other rows (same sample, same code path for them); the reruns are appended
        picked = [r for r in picked if r["mp_id"] in set(args.only)]
        with open(out_csv) as fh:
            kept = [r for r in csv.DictReader(fh) if r["material"] not in set(args.only)]
    with open(out_csv, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(FIELDS)
        writer.writerows([[r.get(k, "") for k in FIELDS] for r in kept])
    done = []
    for r in picked:
        rss.reset()
        t0 = time.perf_counter()
        rec = {"material": r["mp_id"], "formula": r["formula"], "error": ""}
        try:
            res = run_temperature_phonons(MDR / "raw_lt20atoms" / r["raw_tarball"], calc, [300.0], settings=settings,
                                          keep_force_constants=False)
            wall = time.perf_counter() - t0
            t = res.at(300.0)
            tm, tt = res.timings, t.timings
            sym = tm.get("symmetry_setup", 0) + tm.get("symfc_basis", 0) + tt.get("symmetrize", 0)
            calls = 1 + res.n_harmonic_displacements + t.potential_calls.get("forces", 0)
            n = res.n_atoms_supercell
            pot = tm["harmonic"] + tt.get("potential", 0)  # harmonic stage is almost all force calls
            rec.update(atoms_supercell=n, wall_s=round(wall, 2), harmonic_s=round(tm["harmonic"], 2),
                       potential_s=round(tt.get("potential", 0), 2),
                       fit_s=round(tt.get("fit", 0), 2), estimate_s=round(tt.get("estimate", 0), 2),
                       observables_s=round(tm.get("harmonic_observables", 0) + tt.get("observables", 0), 2),
                       symmetrization_s=round(sym, 3), sym_share=round(sym / wall, 4),
                       samples=t.n_samples, force_calls=calls, s_per_atom_call=f"{pot / (calls * n):.3e}",
                       l2_shift_pct=round(100 * t.l2_shift, 2), l2_stderr_pct=round(100 * t.l2_stderr, 2),
                       sc_iterations=len(t.self_consistent_changes_thz),
                       sc_converged="" if t.self_consistent_converged is None else t.self_consistent_converged)
            done.append(rec)
        except Exception as exc:  # noqa: BLE001 (record and go on, as a campaign would)
            rec["error"] = f"{type(exc).__name__}: {exc}"[:120].replace(",", ";")
            rec["wall_s"] = round(time.perf_counter() - t0, 2)
        rec["peak_rss_mb"] = round(rss.peak / 2**20)
        rec["loadavg1"] = round(os.getloadavg()[0], 2)
        with open(out_csv, "a", newline="") as fh:
            csv.writer(fh).writerow([rec.get(k, "") for k in FIELDS])
        print({k: rec.get(k) for k in ("material", "formula", "atoms_supercell", "wall_s", "samples", "sym_share",
                                        "peak_rss_mb", "loadavg1", "error")}, flush=True)
    summarize(out_csv, args, t_load, rss_after_load)


def summarize(out_csv, args, t_load: float, rss_load: float) -> None:
    with open(out_csv) as fh:
        recs = list(csv.DictReader(fh))
    ok = [r for r in recs if not r["error"]]
    wall = np.array([float(r["wall_s"]) for r in ok])
    share = np.array([float(r["sym_share"]) for r in ok])
    rssmb = np.array([float(r["peak_rss_mb"]) for r in recs])
    samples = np.array([int(r["samples"]) for r in ok])
    load = np.array([float(r["loadavg1"]) for r in recs])
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [
        f"# Engine targets: {len(ok)} of {len(recs)} random raw_lt20atoms entries (seed {args.seed})",
        "",
        ("Harmonic + " + ("self-consistent" if args.self_consistent else "one-shot")
         + " 300 K + metrics per material, automatic sample count, one process,"),
        "TDPH_TORCH_THREADS=1 (torch and, since this change, BLAS: one thread).",
        f"Model load once: {t_load:.1f} s, RSS after load {rss_load:.0f} MB; whole-run ru_maxrss {maxrss:.0f} MB.",
        f"Load average (1 min) while running: median {np.median(load):.2f}, max {load.max():.2f} on 2 shared cores.",
        "",
        "| quantity | target | measured |",
        "|---|---|---|",
        f"| median wall per material | < 15 s | {np.median(wall):.1f} s |",
        f"| p90 wall | reported | {np.percentile(wall, 90):.1f} s (mean {wall.mean():.1f} s, max {wall.max():.1f} s) |",
        (f"| symmetrization share (median / p90 / max) | < 5 % | {100 * np.median(share):.2f} % / "
        f"{100 * np.percentile(share, 90):.2f} % / {100 * share.max():.2f} % |"),
        f"| peak RSS per worker (median / max) | < 2 GB | {np.median(rssmb):.0f} MB / {rssmb.max():.0f} MB |",
        (f"| samples (median / p90 / max) | - | {np.median(samples):.0f} / {np.percentile(samples, 90):.0f} / "
        f"{samples.max()} |"),
        f"| failed entries | - | {len(recs) - len(ok)} |",
        "",
        f"Per-material rows: `{out_csv.name}`.",
    ]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
