"""One-shot vs self-consistent Phi(T) over the same random MDR entries (reads two bench_targets.py CSVs).

    python benchmarks/bench_targets.py --random 50 --seed 1 --name targets_scratchcopy
    python benchmarks/bench_targets.py --random 50 --seed 1 --self-consistent --name targets_sc
    python benchmarks/oneshot_vs_sc.py --one-shot targets_scratchcopy --self-consistent targets_sc

Writes results/oneshot_vs_sc.md and .png: the one-shot L2 shift's bias against the self-consistent
one, how often it lies within 10 %, whether it ranks materials the same (Spearman, top-10 overlap),
and the cost of each mode.
"""

from __future__ import annotations

import argparse
import csv

import numpy as np
from _common import RESULTS
from scipy.stats import spearmanr


def load(name: str) -> dict[str, dict]:
    with open(RESULTS / f"{name}.csv") as fh:
        return {r["material"]: r for r in csv.DictReader(fh) if not r["error"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one-shot", default="targets_scratchcopy")
    ap.add_argument("--self-consistent", default="targets_sc")
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args()
    one, sc = load(args.one_shot), load(args.self_consistent)
    common = sorted(set(one) & set(sc))
    l2_one = np.array([float(one[m]["l2_shift_pct"]) for m in common])
    l2_sc = np.array([float(sc[m]["l2_shift_pct"]) for m in common])
    wall_one = np.array([float(one[m]["wall_s"]) for m in common])
    wall_sc = np.array([float(sc[m]["wall_s"]) for m in common])
    calls_one = sum(int(one[m]["force_calls"]) for m in common)
    calls_sc = sum(int(sc[m]["force_calls"]) for m in common)
    iters = np.array([int(sc[m]["sc_iterations"]) for m in common])
    conv = np.array([sc[m]["sc_converged"] == "True" for m in common])
    rel = (l2_one - l2_sc) / l2_sc
    rho = spearmanr(l2_one, l2_sc).statistic
    top_one = set(np.array(common)[np.argsort(-l2_one)[: args.top]])
    top_sc = set(np.array(common)[np.argsort(-l2_sc)[: args.top]])
    lines = [
        f"# One-shot vs self-consistent L2 shift at 300 K: {len(common)} random raw_lt20atoms entries",
        "",
        (f"Same entries, model and settings; one-shot from `{args.one_shot}.csv`, self-consistent from "
         f"`{args.self_consistent}.csv` (benchmarks/bench_targets.py). Bias = (one-shot − SC) / SC."),
        "",
        "| quantity | value |",
        "|---|---|",
        f"| self-consistent loops converged | {conv.sum()} / {len(common)} |",
        f"| SC iterations (median / max) | {np.median(iters):.0f} / {iters.max()} |",
        (f"| one-shot bias: median [IQR] | {100 * np.median(rel):+.1f} % [{100 * np.percentile(rel, 25):+.1f}, "
         f"{100 * np.percentile(rel, 75):+.1f}] |"),
        f"| one-shot within ±10 % of SC | {np.sum(np.abs(rel) <= 0.10)} / {len(common)} |",
        f"| one-shot more than 50 % high | {np.sum(rel > 0.5)} / {len(common)} |",
        f"| Spearman rank correlation of L2 | {rho:.3f} |",
        f"| top-{args.top} overlap | {len(top_one & top_sc)} / {args.top} |",
        f"| wall per material, one-shot: median / p90 | {np.median(wall_one):.1f} / {np.percentile(wall_one, 90):.1f} s |",
        f"| wall per material, SC: median / p90 | {np.median(wall_sc):.1f} / {np.percentile(wall_sc, 90):.1f} s |",
        f"| SC / one-shot wall (median of ratios) | {np.median(wall_sc / wall_one):.1f} |",
        f"| SC / one-shot force calls (sums) | {calls_sc} / {calls_one} = {calls_sc / calls_one:.1f} |",
        "",
        "| material | formula | L2 one-shot (%) | L2 SC (%) | bias (%) | SC iterations | wall one-shot / SC (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for i in np.argsort(-rel):
        m = common[i]
        lines.append(f"| {m} | {sc[m]['formula']} | {l2_one[i]:.2f} | {l2_sc[i]:.2f} | {100 * rel[i]:+.0f} | "
                     f"{iters[i]}{'' if conv[i] else ' (not converged)'} | {wall_one[i]:.1f} / {wall_sc[i]:.1f} |")
    (RESULTS / "oneshot_vs_sc.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:19]))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4.2))
    ax[0].loglog(l2_sc, l2_one, "o", ms=4)
    lim = [min(l2_sc.min(), l2_one.min()) * 0.8, max(l2_sc.max(), l2_one.max()) * 1.2]
    ax[0].plot(lim, lim, "k-", lw=1)
    ax[0].fill_between(lim, [0.9 * v for v in lim], [1.1 * v for v in lim], color="gray", alpha=0.3, label="±10 %")
    ax[0].set_xlabel("L2 shift, self-consistent (%)")
    ax[0].set_ylabel("L2 shift, one-shot (%)")
    ax[0].set_title(f"{len(common)} MDR entries, 300 K (Spearman {rho:.2f})")
    ax[0].legend()
    ax[1].hist(100 * rel, bins=20)
    ax[1].set_xlabel("one-shot bias vs self-consistent (%)")
    ax[1].set_ylabel("materials")
    fig.tight_layout()
    fig.savefig(RESULTS / "oneshot_vs_sc.png", dpi=130)


if __name__ == "__main__":
    main()
