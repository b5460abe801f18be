"""Force-fit cost per material, before and after the folded normal equations, side by side in one run.

The campaign's engine time was 40 % force fit (4,876 of 12,220 s over 232 materials of the full MDR
campaign), most of it in six large low-symmetry cells. This replays each material's sampling pattern
(16 pairs, then batches doubling to its recorded sample count, a full and, when it is determined,
n_groups leave-one-out estimates after every batch) with the estimator of a given git revision (``--before``, symfc's
``prepare_normal_equation_O2`` per group and batch) and with the working tree's, on the same
displacements and forces, and checks that both give the same force constants.

    python benchmarks/bench_force_fit.py [--before 106f66d] [--out benchmarks/results/force_fit.md]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from phonopy import Phonopy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tdph_workflows.core import estimators as after
from tdph_workflows.io.mdr import load_mdr_entry

# (id, raw_lt20atoms file, supercell matrix the campaign used, samples it drew, its fit+estimate s)
CASES = [
    # widened to 960 atoms by the sampling check (96 translations); fit+estimate from bench_targets
    ("mp-5899", "materials-id-5899-ndalo3-r-3c-167.tar.lzma", [4, 4, 2], 32, 218.4),
    ("mp-574663", "materials-id-574663-cdi2-r3m-160.tar.lzma", [4, 4, 1], 32, 288.1),
    ("mp-753048", "materials-id-753048-tisno4-cm-8.tar.lzma", [1, 2, 2], 128, 468.1),
    ("mp-7596", "materials-id-7596-nbno-p2-1-c-14.tar.lzma", [3, 4, 4], 32, 289.0),
    ("mp-754004", None, [1, 3, 3], 64, 11.0),
    ("mp-6647", None, [3, 1, 2], 32, 2.2),
]


def load_revision(rev: str):
    """The estimators module as it was at git revision ``rev``."""
    text = subprocess.run(["git", "show", f"{rev}:tdph_workflows/core/estimators.py"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / f"estimators_{rev}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"estimators_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def batches(n_samples: int, first_pairs: int = 16) -> list[int]:
    """Pairs per batch: the first batch, then doubling the total, up to n_samples / 2 pairs."""
    out, total = [first_pairs], first_pairs
    while total < n_samples // 2:
        out.append(total)
        total *= 2
    return out


def replay(module, sc, basis, pattern, rng_seed: int, n_groups: int = 8):
    """Seconds in add + estimates, and the last full estimate."""
    rng = np.random.default_rng(rng_seed)
    n = len(sc)
    coefs = rng.normal(size=basis.blocked_basis_set.shape[1])
    phi = np.asarray(basis.compression_matrix @ (basis.blocked_basis_set @ coefs)).reshape(n, n, 3, 3)
    fit = module.ForceRegression(sc.cell, sc.scaled_positions, sc.numbers, True, n_groups, basis)
    t0 = time.perf_counter()
    for pairs in pattern:
        u = rng.normal(size=(pairs, n, 3)) * 0.05
        u = np.concatenate([u, -u])[np.argsort(np.r_[np.arange(pairs) * 2, np.arange(pairs) * 2 + 1])]
        forces = -np.einsum("ijab,sjb->sia", phi, u) + rng.normal(size=u.shape) * 1e-3
        fit.add(u, forces)
        try:  # as the sampler: an underdetermined full or leave-one-out fit means "draw more"
            full = fit.estimate()
            for g in range(n_groups):
                fit.estimate(g)
        except ValueError:
            continue
    return time.perf_counter() - t0, full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="106f66d")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/force_fit.md"))
    args = parser.parse_args()
    before = load_revision(args.before)
    mdr = Path(os.environ.get("TDPH_DATA", ROOT.parent / "shared/data")) / "phonondb_pbesol_20180417/raw_lt20atoms"
    rows = []
    for mid, name, diag, n_samples, campaign_s in CASES:
        name = name or next(mdr.glob(f"materials-id-{mid[3:]}-*")).name
        entry = load_mdr_entry(mdr / name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sc = Phonopy(entry.phonon.unitcell, np.diag(diag), primitive_matrix="P").supercell
        basis = after.symfc_basis(sc.cell, sc.scaled_positions, sc.numbers)
        pattern = batches(n_samples)
        t_new, fc_new = replay(after, sc, basis, pattern, 7)
        t_old, fc_old = replay(before, sc, basis, pattern, 7)
        diff = np.abs(fc_new - fc_old).max() / np.abs(fc_old).max()
        rows.append((mid, len(sc), basis.blocked_basis_set.shape[1], n_samples, campaign_s, t_old, t_new, diff))
        print(f"{mid}: {len(sc)} atoms, {rows[-1][2]} parameters, {n_samples} samples: "
              f"before {t_old:.1f} s, after {t_new:.1f} s ({t_old / t_new:.1f}x), max |dPhi|/|Phi| {diff:.1e}",
              flush=True)
        write_table(rows, args)  # after every material: a run cut short keeps what it measured


def write_table(rows: list[tuple], args) -> None:
    old, new = sum(r[5] for r in rows), sum(r[6] for r in rows)
    lines = [
        "# Force fit: symfc's per-group normal equations vs folded sufficient statistics",
        "",
        (f"`python benchmarks/bench_force_fit.py --before {args.before}` ({time.strftime('%Y-%m-%d')}, "
         f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, beside two campaign workers)."),
        "Each material replays its campaign sampling pattern (batches of pairs doubling to the samples it drew,",
        "a full and 8 leave-one-out estimates per batch) with both estimators on the same samples.",
        "",
        ("| material | supercell atoms | basis parameters | samples | campaign fit+estimate (s) | before (s) | "
         "after (s) | speed-up | max rel. FC difference |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {m} | {n} | {nb} | {s} | {c:.1f} | {o:.1f} | {w:.1f} | {o / w:.1f}x | {d:.0e} |"
              for m, n, nb, s, c, o, w, d in rows]
    lines += ["", (f"Total over {len(rows)} of {len(CASES)} materials: before {old:.0f} s, after {new:.0f} s "
                   f"({old / new:.1f}x).")]
    Path(args.out).write_text("\n".join(lines) + "\n")

if __name__ == "__main__":
    main()
