"""Batched matgl force evaluation: many structures, one graph, one forward/backward.

Structures of one material (thermal samples) or of different materials (a
campaign's queue) are converted to PyG graphs, collated into one ``Batch``
and sent through ``Potential.forward`` once; forces come back per structure.
This is the GPU path: on CUDA a batch of 16 supercells costs little more than
one. On this project's CPU it is slower per structure (see
``benchmarks/results/batching.md``), which is why ``ForceModel`` defaults to
batch 1 on CPU and 16 on CUDA.

    from tdph_workflows.potentials import BatchedForces
    bf = BatchedForces()                      # default model, cuda if available
    forces = bf([atoms_a, atoms_b, atoms_c])  # list of (N_i, 3) arrays, eV/A
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import numpy as np
from ase import Atoms

from .loading import load_potential


def default_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def potential_on(potential, device: str):
    """``potential`` on ``device`` (compared by device type only, e.g. ``cuda``).

    A moved copy when it lives elsewhere, so the per-process cached CPU model that other callers
    share is never moved under them.
    """
    current, wanted = str(potential.data_mean.device), str(device)
    if current == wanted or ":" not in wanted and current.split(":")[0] == wanted:
        return potential
    return copy.deepcopy(potential).to(device)


def forward_forces(potential, graphs: Sequence, lattices: Sequence, states: Sequence) -> np.ndarray:
    """One batched forward/backward; (sum N_i, 3) forces in graph order (float64 numpy).

    Only forces are requested: stress and Hessian flags are switched off for the
    call and restored afterwards (the potential object is shared).
    """
    import torch
    from torch_geometric.data import Batch

    device = potential.data_mean.device
    batch = Batch.from_data_list(list(graphs)).to(device)
    lat = torch.stack([torch.as_tensor(np.asarray(x), dtype=torch.float32).reshape(3, 3) for x in lattices]).to(device)
    state = torch.cat([torch.as_tensor(np.asarray(s), dtype=torch.float32).reshape(1, -1) for s in states]).to(device)
    flags = (potential.calc_stresses, potential.calc_hessian)
    potential.calc_stresses, potential.calc_hessian = False, False
    try:
        result = potential(batch, lat, state)
    finally:
        potential.calc_stresses, potential.calc_hessian = flags
    return result[1].detach().cpu().numpy().astype(float)


class BatchedForces:
    """Forces of many structures through batched matgl graphs.

    Parameters
    ----------
    potential
        A matgl ``Potential``; None = the default model (``TDPH_MODEL``).
    device
        ``cuda`` / ``cpu``; None = ``cuda`` when available.
    max_structures, max_atoms
        A batch closes when either limit would be exceeded (GPU memory grows
        with the total atom and edge count, not with the structure count).
    """

    def __init__(self, potential=None, device: str | None = None, max_structures: int = 16,
                 max_atoms: int = 4096) -> None:
        from matgl.ext.ase import Atoms2Graph

        if max_structures < 1 or max_atoms < 1:
            raise ValueError("batch limits must be >= 1")
        self.device = device or default_device()
        self.potential = potential_on(potential if potential is not None else load_potential(), self.device)
        model = self.potential.model
        self.converter = Atoms2Graph(model.element_types, model.cutoff)
        self.max_structures = max_structures
        self.max_atoms = max_atoms

    def _chunks(self, sizes: Sequence[int]) -> Iterator[slice]:
        start, atoms = 0, 0
        for k, n in enumerate(sizes):
            if k > start and (k - start >= self.max_structures or atoms + n > self.max_atoms):
                yield slice(start, k)
                start, atoms = k, 0
            atoms += n
        if start < len(sizes):
            yield slice(start, len(sizes))

    def __call__(self, structures: Sequence[Atoms]) -> list[np.ndarray]:
        """Forces (N_i, 3) in eV/A of each structure, in input order; RuntimeError on bad shapes or values."""
        structures = list(structures)
        sizes = [len(a) for a in structures]
        out: list[np.ndarray] = []
        for sl in self._chunks(sizes):
            converted = [self.converter.get_graph(a) for a in structures[sl]]
            f = forward_forces(self.potential, *zip(*converted, strict=True))
            out.extend(np.split(f, np.cumsum(sizes[sl])[:-1]))
        for a, f in zip(structures, out, strict=True):
            if f.shape != (len(a), 3) or not np.all(np.isfinite(f)):
                raise RuntimeError(f"batched forces of shape {f.shape} (finite: {np.isfinite(f).all()}) "
                                   f"for a {len(a)}-atom structure")
        return out

    def displaced(self, template: Atoms, positions: np.ndarray) -> np.ndarray:
        """Forces (n, N, 3) of one supercell at n sets of Cartesian positions (thermal samples)."""
        frames = []
        for p in np.asarray(positions, float):
            a = template.copy()
            a.positions = p
            frames.append(a)
        return np.array(self(frames))
