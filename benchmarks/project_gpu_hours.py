"""Projected GPU-hours of the full campaign from measured per-material costs (issue 7).

    python benchmarks/project_gpu_hours.py [--targets results/targets.csv] [--speedup 20 100]

Inputs (measured here, one CPU thread): per-material force-call counts and per-atom force-call
cost from ``bench_targets.py`` (results/targets.csv), non-force CPU work per material (wall minus
force calls), and the campaign's entries from index.csv (``lt20_atoms_primitive`` = True, with their
supercell sizes and phonopy displacement counts). Writes results/gpu_hours.md.

Model, per entry i with supercell N_i and d_i symmetry-reduced displacements (index.csv):
    calls_i = 1 + r_disp * d_i + S,   r_disp = measured harmonic calls / index displacements (plus/minus)
    CPU force time_i = calls_i * N_i * c,  c = measured seconds per atom per force call (atom-call-weighted mean)
    GPU force time_i = CPU force time_i / speedup
S is the measured mean sample count (mean, not median: the total is a sum; the 512-sample cap
tail matters). No GPU was available, so the speed-up is an ASSUMPTION given as a range.
"""

from __future__ import annotations

import argparse
import csv
import os

import numpy as np
from _common import MDR, RESULTS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default=str(RESULTS / "targets.csv"))
    ap.add_argument("--speedup", type=float, nargs=2, default=[20.0, 100.0])
    args = ap.parse_args()
    with open(args.targets) as fh:
        runs = [r for r in csv.DictReader(fh) if not r["error"]]
    with open(MDR / "index.csv") as fh:
        index = list(csv.DictReader(fh))
    by_id = {r["mp_id"]: r for r in index}
    campaign = [r for r in index if r["lt20_atoms_primitive"] == "True"]

    samples = np.array([int(r["samples"]) for r in runs])
    harm_calls = np.array([int(r["force_calls"]) - 1 - int(r["samples"]) for r in runs])
    # per-atom force-call cost from the harmonic stage (reference + displacements, nothing else
    # of note is timed there); the sampling stage's "potential" time also held the normal-equation
    # update in runs made before the timings were split
    c_atom = np.array([float(r["harmonic_s"]) / ((h + 1) * int(r["atoms_supercell"]))
                       for r, h in zip(runs, harm_calls, strict=True)])
    idx_disp = np.array([int(by_id[r["material"]]["n_displacements"]) for r in runs])
    r_disp = float(harm_calls.sum() / idx_disp.sum())
    n_run = np.array([int(r["atoms_supercell"]) for r in runs])
    force_s = np.array([int(r["force_calls"]) for r in runs]) * n_run * c_atom  # all force calls, at that cost
    other_s = np.array([float(r["wall_s"]) for r in runs]) - force_s
    load = np.array([float(r["loadavg1"]) for r in runs])

    n_sc = np.array([int(r["natoms_supercell"]) for r in campaign])
    d = np.array([int(r["n_displacements"]) for r in campaign])
    s_mean = samples.mean()
    calls = 1 + r_disp * d + s_mean
    # campaign total = sum, so the atom-call-weighted mean cost, not the median (dense cells with
    # many neighbours cost up to ~5x the median per atom)
    c_med = float(sum(float(r["harmonic_s"]) for r in runs) / ((harm_calls + 1) * n_run).sum())
    cpu_force_h = float((calls * n_sc * c_med).sum() / 3600)
    cpu_other_h = float(len(campaign) * other_s.mean() / 3600)
    lo, hi = args.speedup
    gpu_hi, gpu_lo = cpu_force_h / lo, cpu_force_h / hi
    atom_calls = float((calls * n_sc).sum())
    lines = [
        "# Projected cost of the full MDR campaign (< 20 atoms in the primitive cell)",
        "",
        (f"Entries: {len(campaign)} of {len(index)} in index.csv (`lt20_atoms_primitive`); supercells "
        f"{n_sc.min()}-{n_sc.max()} atoms, median {np.median(n_sc):.0f}, mean {n_sc.mean():.0f}."),
        (f"Measured on {len(runs)} random entries (`{os.path.basename(args.targets)}`, one CPU thread, load average "
        f"median {np.median(load):.1f} on 2 shared cores, so CPU costs are inflated):"),
        f"- samples per material: mean {s_mean:.0f}, median {np.median(samples):.0f}, max {samples.max()};",
        f"- harmonic force calls = {r_disp:.2f} x index displacements (plus/minus pairs);",
        (f"- CPU seconds per atom per force call (harmonic stage): weighted mean {c_med:.2e}, median "
        f"{np.median(c_atom):.2e} (p10 {np.percentile(c_atom, 10):.2e}, "
        f"p90 {np.percentile(c_atom, 90):.2e});"),
        f"- non-force work per material (fit, jackknife, symmetry, spectra; stays on CPU): mean {other_s.mean():.1f} s.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| force calls, whole campaign | {calls.sum():.3g} ({atom_calls:.3g} atom-evaluations) |",
        f"| CPU core-hours in force calls (this machine) | {cpu_force_h:.1f} |",
        f"| CPU core-hours outside force calls | {cpu_other_h:.1f} |",
        f"| **GPU-hours (H100), force calls, assumed speed-up {lo:.0f}-{hi:.0f}x** | **{gpu_lo:.1f}-{gpu_hi:.1f}** |",
        (f"| GPU-hours if the CPU-side work is not overlapped (1 GPU fed by 1 core) | "
        f"{gpu_lo + cpu_other_h:.1f}-{gpu_hi + cpu_other_h:.1f} |"),
        (f"| same, CPU-side work spread over 16 host cores per GPU | {gpu_lo + cpu_other_h / 16:.1f}-"
        f"{gpu_hi + cpu_other_h / 16:.1f} |"),
        "",
        "Assumptions (not measured; no GPU was available in this session):",
        f"- an H100 evaluates M3GNet forces {lo:.0f}-{hi:.0f}x faster per atom than one core of this CPU when",
        "  thermal samples are batched (tdph_workflows.potentials, 16 supercells of ~110 atoms per graph);",
        "  unbatched single-supercell calls on a GPU are launch-bound and would be far below this range;",
        "- the sample-count distribution of the measured entries holds for the campaign (random draw);",
        "- cost per atom per call is flat in N (bench_scaling.py: force-call exponent near 1 for 40-320 atoms);",
        "- one temperature (300 K); more temperatures reuse the harmonic stage and multiply the sample part;",
        "- model load (~5-9 s per worker) and orchestration overhead are excluded.",
    ]
    (RESULTS / "gpu_hours.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
