"""Cost growth with supercell size: t ∝ N^p per stage and per estimator, one CPU thread.

    python benchmarks/bench_scaling.py [--sizes 2 3 4] [--hessian-rows 24]

Cubic SrTiO3 (``engine.cubic_srtio3``) as 2x2x2 (40), 3x3x3 (135), 4x4x4 (320 atoms), thermal-like
rattles (0.05 A). Stages: one force call (graph path, batch 1), one autograd Hessian, space-group
symmetrization (setup and one average + ASR), symfc basis, one normal-equation update with 32 samples
and one force-fit solve. The autograd Hessian is 3N backward passes; for N > 40 it is extrapolated from
``--hessian-rows`` timed rows (the 40-atom case times the full Hessian and checks the extrapolation).
Estimator totals are for one estimate at the engine's first batch: force fit = 32 force calls + basis +
normal equations + solve; Hessian average = 8 Hessians + symmetrization (4 pairs, the Hessian default).
Writes results/scaling.md/.csv and results/scaling.png (log-log, fitted exponents).
"""

from __future__ import annotations

# ruff: noqa: B023  (the timed lambdas run inside the loop iteration that defines them)
import argparse
import os
import time

import numpy as np
from _common import RESULTS, setup_env, write_table


def best_of(fn, repeat=3):
    fn()  # warm-up (graph caches, allocations)
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def hessian_row_time(model, positions, rows):
    """Seconds per Hessian row: forces with create_graph, then ``rows`` backward passes (as matgl does)."""
    import torch

    pot = model.calc.potential
    g, lat, state = model.graph_converter.get_graph(model._atoms_at(positions))
    lat = torch.as_tensor(np.asarray(lat), dtype=torch.float32).reshape(1, 3, 3)
    flags = (pot.calc_stresses, pot.calc_hessian)
    pot.calc_stresses, pot.calc_hessian = False, False
    pot.training_flag = None
    try:
        import copy

        g = copy.copy(g)
        st = lat.new_zeros([1, 3, 3])
        lattice = lat @ (torch.eye(3) + st)
        edge_batch = torch.zeros(g.edge_index.size(1), dtype=torch.long)
        g.lattice = lattice[edge_batch]
        g.pbc_offshift = (g.pbc_offset.unsqueeze(dim=-1) * g.lattice).sum(dim=1)
        g.pos = (g.frac_coords.unsqueeze(-1) * lattice[torch.zeros(g.num_nodes, dtype=torch.long)]).sum(dim=1)
        g.pos.requires_grad_(True)
        t0 = time.perf_counter()
        e = pot.data_std * pot.model(g=g, state_attr=torch.as_tensor(np.asarray(state), dtype=torch.float32)) + pot.data_mean
        (grads,) = torch.autograd.grad(e, [g.pos], grad_outputs=torch.ones_like(e), create_graph=True, retain_graph=True)
        t_first = time.perf_counter() - t0
        r = grads.view(-1)
        t0 = time.perf_counter()
        for i in range(rows):
            torch.autograd.grad([r[i]], g.pos, retain_graph=True)
        return t_first, (time.perf_counter() - t0) / rows
    finally:
        pot.calc_stresses, pot.calc_hessian = flags


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--hessian-rows", type=int, default=24)
    args = ap.parse_args()
    setup_env()
    from pymatgen.io.ase import AseAtomsAdaptor
    from symfc.solvers.solver_O2 import prepare_normal_equation_O2

    from tdph_workflows.core.estimators import ForceRegression, symfc_basis
    from tdph_workflows.core.symmetry import supercell_symmetry, symmetrize
    from tdph_workflows.engine import cubic_srtio3
    from tdph_workflows.potentials import ForceModel, resolve_calculator

    calc = resolve_calculator(None)
    rng = np.random.default_rng(0)
    rows, data = [], {}
    for m in args.sizes:
        atoms = AseAtomsAdaptor.get_atoms(cubic_srtio3()).repeat(m)
        n = len(atoms)
        model = ForceModel(calc, atoms, f"SrTiO3 {m}x{m}x{m}")
        pos = atoms.positions + 0.05 * rng.standard_normal((n, 3))
        t_force = best_of(lambda: model.forces(pos[None]))
        t_first, t_row = hessian_row_time(model, pos, args.hessian_rows)
        t_hess_extrap = t_first + 3 * n * t_row
        if n <= 40:
            t_hess = best_of(lambda: model.hessian(pos), repeat=1)
            hess_note = f"full {t_hess:.2f} s (extrapolated {t_hess_extrap:.2f})"
        else:
            t_hess, hess_note = t_hess_extrap, f"extrapolated from {args.hessian_rows} rows"
        frac, numbers, cell = atoms.get_scaled_positions(), atoms.numbers, np.array(atoms.cell)
        t0 = time.perf_counter()
        sym = supercell_symmetry(cell, frac, numbers)
        t_sym_setup = time.perf_counter() - t0
        fc = rng.standard_normal((n, n, 3, 3))
        t_sym = best_of(lambda: symmetrize(fc, sym, True), repeat=2)
        t0 = time.perf_counter()
        basis = symfc_basis(cell, frac, numbers)
        t_basis = time.perf_counter() - t0
        u = 0.05 * rng.standard_normal((32, 3 * n))
        f = -u @ rng.standard_normal((3 * n, 3 * n)) * 0.1
        t_normal = best_of(lambda: prepare_normal_equation_O2(u, f, basis), repeat=2)
        reg = ForceRegression(cell, frac, numbers, True, 8, basis)
        reg.add_forces(u.reshape(32, n, 3), f.reshape(32, n, 3))
        t_solve = best_of(lambda: reg.estimate(), repeat=2)
        t_fit = 32 * t_force + t_basis + t_normal + 9 * t_solve  # estimate + 8 jackknife solves
        t_hess_est = 8 * t_hess + 9 * t_sym  # 4 pairs; symmetrize estimate + 8 leave-one-out
        stage = {"force call": t_force, "autograd Hessian": t_hess, "symmetrization (avg + ASR)": t_sym,
                 "symmetry setup": t_sym_setup, "symfc basis": t_basis, "normal equations (32 samples)": t_normal,
                 "force-fit solve": t_solve, "estimator: force fit (32 samples)": t_fit,
                 "estimator: Hessian average (8 samples)": t_hess_est}
        data[n] = stage
        rows.append([n, sym.order] + [f"{v:.4g}" for v in stage.values()] + [hess_note])
        print(rows[-1], os.getloadavg(), flush=True)
    ns = np.array(sorted(data))
    names = list(next(iter(data.values())))
    fits = {k: np.polyfit(np.log(ns), np.log([data[n][k] for n in ns]), 1)[0] for k in names}
    header = ["atoms", "|G|"] + [f"{k} (s)" for k in names] + ["Hessian note"]
    rows.append(["exponent p", "-"] + [f"{fits[k]:.2f}" for k in names] + ["log-log least squares"])
    write_table("scaling", header, rows)
    with open(RESULTS / "scaling.md", "a") as fh:
        fh.write(f"\nLoad average at the end: {os.getloadavg()} (2 shared cores, TDPH_TORCH_THREADS=1).\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for k in names:
        if k.startswith(("symmetry setup", "force-fit solve")):
            continue
        ax.loglog(ns, [data[n][k] for n in ns], "o-", label=f"{k}: p = {fits[k]:.2f}")
    ax.set_xlabel("atoms in supercell (SrTiO3 2x2x2, 3x3x3, 4x4x4)")
    ax.set_ylabel("time (s), one CPU thread")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "scaling.png", dpi=120)


if __name__ == "__main__":
    main()
