"""torch.compile of the M3GNet model against eager, per force call (issue 18; measured, not adopted).

    python benchmarks/bench_compile.py

A 128-atom NaCl cell (2x2x4 conventional) with 0.15 A random displacements, the shipped model, one torch
thread: 10 eager calls, then the same graphs through ``torch.compile(model, dynamic=True)`` (its first two
calls include compilation). Forces come from autograd.grad, so inductor's donated buffers are switched off.
Prints compile time, seconds per call both ways and the largest force difference.
"""

from __future__ import annotations

import time

import numpy as np
from _common import setup_env


def main() -> None:
    setup_env()
    import torch
    import torch._functorch.config as functorch_config
    from ase.build import bulk
    from matgl.ext.ase import Atoms2Graph

    from tdph_workflows.potentials.batched import forward_forces
    from tdph_workflows.potentials.loading import load_potential

    pot = load_potential("TDPH-M3GNet-MDR-PBEsol-2026.11")
    cell = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((2, 2, 4))
    conv = Atoms2Graph(pot.model.element_types, pot.model.cutoff)
    rng = np.random.default_rng(0)
    graphs = []
    for _ in range(12):
        atoms = cell.copy()
        atoms.positions += rng.normal(0, 0.15, atoms.positions.shape)
        graphs.append(conv.get_graph(atoms))

    def call(g):
        return forward_forces(pot, [g[0]], [g[1]], [g[2]])

    ref = [call(g) for g in graphs]
    t0 = time.perf_counter()
    for g in graphs[2:]:
        call(g)
    eager = (time.perf_counter() - t0) / 10
    functorch_config.donated_buffer = False
    pot.model = torch.compile(pot.model, dynamic=True)
    t0 = time.perf_counter()
    out = [call(g) for g in graphs[:2]]
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out += [call(g) for g in graphs[2:]]
    compiled = (time.perf_counter() - t0) / 10
    diff = max(abs(a - b).max() for a, b in zip(ref, out, strict=True))
    print(f"{len(cell)} atoms: compile + 2 calls {compile_s:.1f} s; eager {eager:.3f} s, compiled {compiled:.3f} s "
          f"per call ({eager / compiled:.2f}x); max |dF| {diff:.1e} eV/A")


if __name__ == "__main__":
    main()
