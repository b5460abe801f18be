"""Cost of each potential-evaluation path and accuracy per unit cost of the two estimators.

    python benchmarks/bench_estimators.py [--hessian-pairs 4] [--fit-pairs 64]

On built-in cubic SrTiO3 2x2x2 (40 atoms, relaxed) and MDR KCl at 300 K, one CPU thread:
time per force call (direct graph path vs the ASE calculator), per autograd and per
finite-difference Hessian; then each estimator at a fixed sample count, its L2 shift with
jackknife error, CPU time in potential calls, and error^2 x time (lower is better).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import MDR, setup_env, write_table


def timed(fn, repeat=3):
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hessian-pairs", type=int, default=4)
    ap.add_argument("--fit-pairs", type=int, default=64)
    args = ap.parse_args()
    setup_env()
    from tdph_workflows.core.sscha import SSCHASettings
    from tdph_workflows.engine import cubic_srtio3, run_temperature_phonons
    from tdph_workflows.io.structures import phonopy_to_ase
    from tdph_workflows.io.outputs import phonopy_from_result
    from tdph_workflows.potentials import ForceModel, resolve_calculator

    calc = resolve_calculator(None)
    cases = [("SrTiO3 2x2x2", cubic_srtio3(), [2, 2, 2], True), ("KCl (MDR)", MDR / "curated" / "mp-23193_KCl", None, False)]
    cost_rows, est_rows = [], []
    for label, structure, smat, relax in cases:
        fit = run_temperature_phonons(structure, calc, [300.0], smat,
                                      SSCHASettings(min_pairs=args.fit_pairs, max_pairs=args.fit_pairs), relax=relax)
        ph = phonopy_from_result(fit, fit.harmonic_force_constants)
        model = ForceModel(calc, phonopy_to_ase(ph.supercell), label)
        pos = ph.supercell.positions + 0.03 * np.random.default_rng(0).standard_normal((len(ph.supercell), 3))
        t_force = timed(lambda: model.forces(pos[None]))
        atoms = phonopy_to_ase(ph.supercell)
        atoms.positions = pos
        atoms.calc = calc
        t_ase = timed(lambda: (atoms.calc.reset(), atoms.get_forces()))
        t_hess = timed(lambda: model.hessian(pos), repeat=1)
        t_fd = timed(lambda: model.fd_hessian(pos), repeat=1)
        cost_rows.append([label, len(ph.supercell), f"{t_force:.3f}", f"{t_ase:.3f}", f"{t_hess:.1f}", f"{t_fd:.1f}",
                          f"{t_hess / t_force:.0f}"])
        print(cost_rows[-1], flush=True)
        hes = run_temperature_phonons(structure, calc, [300.0], smat,
                                      SSCHASettings(estimator="hessian", min_pairs=args.hessian_pairs,
                                                    max_pairs=args.hessian_pairs, n_groups=args.hessian_pairs),
                                      relax=relax)
        for name, res in (("force fit", fit), ("Hessian average", hes)):
            t = res.at(300.0)
            cpu = t.timings["potential"]
            est_rows.append([label, name, t.n_samples, f"{100 * t.l2_shift:.2f} ± {100 * t.l2_stderr:.2f}",
                             f"{cpu:.1f}", f"{(100 * t.l2_stderr) ** 2 * cpu:.2f}",
                             f"{t.timings.get('symmetrize', 0) + t.timings.get('estimate', 0):.2f}"])
            print(est_rows[-1], flush=True)
    write_table("evaluation_costs", ["material", "atoms", "force call (s)", "ASE calculator force call (s)",
                                     "autograd Hessian (s)", "FD Hessian (s)", "Hessian / force call"], cost_rows)
    write_table("estimators", ["material", "estimator", "samples", "L2 shift (%)", "potential time (s)",
                               "stderr^2 x time (pp^2 s)", "fit+symmetrize+jackknife (s)"], est_rows)


if __name__ == "__main__":
    main()
