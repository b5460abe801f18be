"""Convergence of the SCPH+3,4ph kappa reduction with the 4ph q-mesh and the Gaussian width.

    python benchmarks/validation/fourph_convergence.py MDR_ENTRY --model TDPH-M3GNet-MDR-PBEsol-2026.11

One fit (as in the validation flow, the MDR unit cell unrelaxed), SCPH at T, then the 4ph factor
kappa(3+4ph)/kappa(3ph) on each (mesh, sigma); prints a table and writes it as Markdown.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from tdph_workflows.core.fourphonon import four_phonon_rates
from tdph_workflows.io.mdr import load_mdr_entry
from tdph_workflows.potentials import resolve_calculator
from tdph_workflows.validation.pipeline import (
    Setup,
    ValidationSettings,
    fc2_from_forces,
    fit_anharmonic,
    harmonic_displacements,
    rattled_supercells,
    self_consistent_phonons,
)
from tdph_workflows.validation.thermal import kappa_rta


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("entry")
    p.add_argument("--model", default=None)
    p.add_argument("--temperature", type=float, default=300.0)
    p.add_argument("--meshes", type=int, nargs="+", default=[4, 6])
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.5, 0.25])  # 0 = the module's default
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/validation/fourph_convergence.md"))
    a = p.parse_args()
    entry = load_mdr_entry(a.entry)
    setup = Setup(entry.material_id, entry.unitcell, entry.supercell_matrix, entry.primitive_matrix)
    cfg = ValidationSettings(n_structures=30, temperatures=(a.temperature,))
    calc = resolve_calculator(a.model)
    ph, harmonic = harmonic_displacements(setup)
    rattled = rattled_supercells(setup, cfg)

    def forces(cells):
        out = []
        for c in cells:
            c = c.copy()
            c.calc = calc
            out.append(c.get_forces())
        return np.array(out)

    fc2 = fc2_from_forces(setup, ph.dataset, forces(harmonic))
    fit, _ = fit_anharmonic(setup, rattled, forces(rattled), fc2, cfg)
    scph = self_consistent_phonons(setup, fc2, fit.fc4, a.temperature, cfg)
    args = (setup.unitcell, setup.supercell_matrix, setup.primitive_matrix)
    rows = []
    for mesh in a.meshes:
        k3 = kappa_rta(*args, scph.fc2_eff, fit.fc3, [mesh] * 3, [a.temperature])
        phs = setup.phonopy()
        phs.force_constants = scph.fc2_eff
        for sigma in a.sigmas:
            t0 = time.perf_counter()
            four = four_phonon_rates(phs, fit.fc4, [mesh] * 3, k3.qpoints, a.temperature, sigma or None)
            k34 = k3.kappa_with_extra_gamma(np.asarray(four.rates)[None] / (4 * np.pi))[0]
            rows.append((mesh, four.sigma_thz, float(k3.kappa_scalar[0]), float(np.trace(k34) / 3),
                         float(np.trace(k34) / np.trace(k3.kappa[0])), time.perf_counter() - t0))
            m, sg, k3s, k34s, fac, dt = rows[-1]
            print(f"mesh {m} sigma {sg:.3f} THz: kappa 3ph {k3s:.3f}, 3+4ph {k34s:.3f} W/mK, factor {fac:.3f} ({dt:.1f} s)",
                  flush=True)
    lines = [f"# 4ph factor convergence: {entry.material_id} at {a.temperature:g} K ({a.model or 'default model'})", "",
             "| 4ph mesh | sigma (THz) | kappa SCPH+3ph (W/mK) | kappa SCPH+3,4ph (W/mK) | factor | 4ph time (s) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {m} | {sg:.3f} | {k3s:.3f} | {k34s:.3f} | {fac:.3f} | {dt:.1f} |" for m, sg, k3s, k34s, fac, dt in rows]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
