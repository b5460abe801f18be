"""Timing of tdph_workflows.core.fourphonon.four_phonon_rates.

1. Tiny cases: vectorized routine vs the independent brute-force loops of tests/test_fourphonon.py
   (fcc Ar 8-atom supercell, rock-salt 16-atom supercell; synthetic many-body fc4), with the max
   relative difference of the rates.
2. NaCl-sized case: 2-atom rock-salt primitive, 64-atom (2x2x2 conventional) supercell, fc4 of a
   pair potential with a 4.0 A cutoff (1st + 2nd neighbours), 4x4x4 mesh, all irreducible q-points.
   The routine's cost depends on the number of atoms inside the cutoff of each primitive atom
   (dense local blocks), not on how sparse the fc4 is inside that set, so the timing stands for
   a fitted (hiphive) fc4 with the same cutoff.

Usage: python benchmarks/bench_fourphonon.py   (no model files, no network; 2 cores ~ 1-2 min)
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tdph_workflows.core import fourphonon as fp
from tdph_workflows.core.fourphonon import PROCESSES, four_phonon_rates

_spec = importlib.util.spec_from_file_location("_tfp", ROOT / "tests" / "test_fourphonon.py")
tfp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tfp)


def _max_rel(res, ref):
    worst = 0.0
    for p in PROCESSES:
        a, b = res.rates_by_process[p], ref[p]
        sel = np.abs(b) > 1e-10 * np.abs(b).max()
        worst = max(worst, float((np.abs(a - b)[sel] / np.abs(b)[sel]).max()))
    return worst


def tiny_cases():
    rows = []
    ar, _ = tfp.argon_phonon()
    ar_fc4 = tfp.synthetic_fc4(ar, rc=4.0, seed=1, scale=0.05)
    nacl = tfp.nacl_phonon()
    nacl_fc4 = tfp.synthetic_fc4(nacl, rc=4.1, seed=2, scale=0.05)
    cases = [
        ("fcc Ar, 8-atom sc", ar, ar_fc4, (2, 2, 2), [[0.5, 0, 0], [0.5, 0.5, 0], [0.5, 0.5, 0.5]], 0.4),
        ("fcc Ar, 8-atom sc", ar, ar_fc4, (3, 3, 3), [[1 / 3, 0, 0], [2 / 3, 1 / 3, 0]], 0.4),
        ("rock-salt, 16-atom sc", nacl, nacl_fc4, (2, 2, 2), [[0, 0, 0], [0.5, 0, 0], [0.5, 0.5, 0.5]], 0.6),
    ]
    for name, ph, fc4, mesh, qs, sigma in cases:
        t0 = time.perf_counter()
        res = four_phonon_rates(ph, fc4, mesh, qs, 300.0, sigma_thz=sigma)
        t_vec = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, ref = tfp.brute_force_rates(ph, fc4, mesh, qs, 300.0, sigma)
        t_bf = time.perf_counter() - t0
        rows.append((name, mesh, len(qs), t_vec, t_bf, t_bf / t_vec, _max_rel(res, ref)))
    print("\n## tiny cases: vectorized vs brute force (T = 300 K)")
    print("| system | mesh | nq | vectorized s | brute force s | speed-up | max rel diff |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {'x'.join(map(str, r[1]))} | {r[2]} | {r[3]:.3f} | {r[4]:.2f} | {r[5]:.0f}x | {r[6]:.1e} |")


def nacl_64():
    a = tfp.A_NACL
    conv = PhonopyAtoms(
        symbols=["Na"] * 4 + ["Cl"] * 4,
        cell=np.eye(3) * a,
        scaled_positions=[
            [0, 0, 0],
            [0, 0.5, 0.5],
            [0.5, 0, 0.5],
            [0.5, 0.5, 0],
            [0.5, 0.5, 0.5],
            [0.5, 0, 0],
            [0, 0.5, 0],
            [0, 0, 0.5],
        ],
    )
    ph = Phonopy(conv, supercell_matrix=np.diag([2, 2, 2]), primitive_matrix="F")
    d1 = a / 2
    ph.force_constants = tfp.spring_fc2(ph.supercell, [(1.1 * d1, 2.0), (1.1 * d1 * np.sqrt(2), 0.4)])
    # a Born-Mayer-like repulsion + r^-6 term as the anharmonic pair potential (eV, A)
    terms = [(0.3 * d1**9, -9), (-0.05 * d1**6, -6)]
    t0 = time.perf_counter()
    _, fc4 = tfp.pair_potential_fcs(ph.supercell, terms, rc=4.0)
    t_fc = time.perf_counter() - t0
    mesh = (4, 4, 4)
    ph.run_mesh(mesh, is_gamma_center=True)
    ir = ph.mesh.ir_grid_points
    qs = ph.mesh.grid_address[ir] / np.array(mesh)
    t0 = time.perf_counter()
    res = four_phonon_rates(ph, fc4, mesh, qs, 300.0, sigma_thz=0.3)
    t_run = time.perf_counter() - t0
    first = fc4.clusters[:, 0]
    n_local = [len(np.unique(fc4.clusters[first == i][:, 1:])) for i in ph.primitive.p2s_map]
    print("\n## NaCl-sized case")
    print(
        f"supercell {len(ph.supercell)} atoms, fc4 cutoff 4.0 A: {len(fc4.clusters)} clusters "
        f"({t_fc:.1f} s to build), atoms in the local set of each primitive atom: {n_local}"
    )
    print(f"mesh {mesh}, {len(qs)} irreducible q-points, {len(qs) * 64 * 64} (q, q1, q2) triples x 6^4 branches")
    print(
        f"four_phonon_rates: {t_run:.2f} s wall ({t_run / len(qs):.2f} s per q-point), "
        f"BLAS threads pinned to {fp.BLAS_THREADS}, cores={os.cpu_count()}"
    )
    print(f"rates range {res.rates[res.rates > 0].min():.3e} .. {res.rates.max():.3e} 1/ps (synthetic potential)")


if __name__ == "__main__":
    tiny_cases()
    nacl_64()
