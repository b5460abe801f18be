"""Batched force evaluation (tdph_workflows.potentials): time per structure at batch 1/4/16.

    python benchmarks/bench_batching.py

Rattled SrTiO3 2x2x2 (40 atoms) samples of one material, and a mixed queue of different materials
(SrTiO3 2x2x2, NaCl 2x2x2 conventional = 64, SrTiO3 3x3x3 = 135). Runs on CUDA when available,
else CPU (one torch thread). Also checks batched == per-structure forces (max |diff|).
"""

from __future__ import annotations

import os
import time

import numpy as np
from _common import MDR, setup_env, write_table


def main() -> None:
    setup_env()
    from pymatgen.io.ase import AseAtomsAdaptor

    from tdph_workflows.engine import cubic_srtio3
    from tdph_workflows.io.mdr import load_mdr_entry
    from tdph_workflows.io.structures import phonopy_to_ase
    from tdph_workflows.potentials import BatchedForces, resolve_calculator

    calc = resolve_calculator(None)
    rng = np.random.default_rng(0)
    sto = AseAtomsAdaptor.get_atoms(cubic_srtio3())
    nacl = phonopy_to_ase(load_mdr_entry(MDR / "curated" / "mp-22862_NaCl").unitcell)

    def rattled(a, k):
        out = []
        for _ in range(k):
            b = a.copy()
            b.positions = b.positions + rng.normal(0, 0.05, b.positions.shape)
            out.append(b)
        return out

    queues = {"SrTiO3 2x2x2 samples (40 atoms)": rattled(sto.repeat(2), 16),
              "mixed: SrTiO3 40 / NaCl 64 / SrTiO3 135": [x for _ in range(6) for x in
                                                      (rattled(sto.repeat(2), 1) + rattled(nacl.repeat(2), 1)
                                                       + rattled(sto.repeat(3), 1))][:16]}
    rows = []
    for label, frames in queues.items():
        ref = BatchedForces(calc.potential, max_structures=1)(frames)
        for b in (1, 4, 16):
            bf = BatchedForces(calc.potential, max_structures=b, max_atoms=10**6)
            bf(frames[:b])  # warm-up
            t0 = time.perf_counter()
            got = bf(frames)
            dt = time.perf_counter() - t0
            diff = max(float(np.abs(g - r).max()) for g, r in zip(got, ref, strict=True))
            rows.append([label, bf.device, b, len(frames), f"{dt / len(frames):.4f}",
                         f"{1e3 * dt / sum(len(f) for f in frames):.3f}", f"{diff:.1e}", f"{os.getloadavg()[0]:.2f}"])
            print(rows[-1], flush=True)
    write_table("batching", ["queue", "device", "batch", "structures", "s per structure", "ms per atom",
                             "max |F_batch - F_single| (eV/A)", "load avg"], rows)


if __name__ == "__main__":
    main()
