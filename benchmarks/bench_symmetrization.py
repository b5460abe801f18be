"""Space-group averaging: naive loop over all operations vs the factored, vectorized version.

    python benchmarks/bench_symmetrization.py
"""

from __future__ import annotations

import time

import numpy as np
from _common import setup_env, write_table


def naive_average(fc, sym):
    """Reference: every operation g = translation o point op, one pair at a time."""
    n = len(fc)
    out = np.zeros_like(fc)
    count = 0
    for t in sym.translations_perm:
        for perm, r in zip(sym.point_perm, sym.point_rot_cart, strict=True):
            full = t[perm]
            for i in range(n):
                for j in range(n):
                    out[full[i], full[j]] += r @ fc[i, j] @ r.T
            count += 1
    return out / count


def main() -> None:
    setup_env()
    from pymatgen.core import Lattice, Structure

    from tdph_workflows.core.symmetry import space_group_average, supercell_symmetry

    s = Structure.from_spacegroup(221, Lattice.cubic(3.9), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5] * 3, [0.5, 0.5, 0]])
    rows = []
    for mult in (2, 3, 4):
        sc = s * (mult, mult, mult)
        t0 = time.perf_counter()
        sym = supercell_symmetry(sc.lattice.matrix, sc.frac_coords, np.array([x.Z for x in sc.species]))
        t_setup = time.perf_counter() - t0
        n = len(sc)
        fc = np.random.default_rng(0).standard_normal((n, n, 3, 3))
        t0 = time.perf_counter()
        fast = space_group_average(fc, sym)
        t_fast = time.perf_counter() - t0
        if n <= 40:
            t0 = time.perf_counter()
            slow = naive_average(fc, sym)
            t_naive = f"{time.perf_counter() - t0:.2f}"
            assert np.allclose(fast, slow)
        else:
            t_naive = "(skipped)"
        rows.append([n, sym.order, f"{t_setup:.3f}", f"{t_fast:.3f}", t_naive])
        print(rows[-1], flush=True)
    write_table("symmetrization", ["atoms", "|G|", "setup (s)", "factored (s)", "naive loop (s)"], rows)


if __name__ == "__main__":
    main()
