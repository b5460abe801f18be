"""Forces and Hessians of one supercell, the callables the physics core consumes.

Any ASE calculator works. For matgl potentials there is a fast path: forces of many displaced
supercells go through one graph per chunk (``batched.forward_forces``, shared with the GPU
path), and Hessians come from autograd instead of 6N finite-difference force calls.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from .batched import forward_forces
from .registry import ModelError


class CalculatorError(RuntimeError):
    """A calculator returned unusable results (NaN, wrong shape)."""


def is_matgl(calc: Calculator) -> bool:
    """True for matgl's ``PESCalculator`` (it carries the potential the fast paths use)."""
    return hasattr(calc, "potential") and hasattr(calc.potential, "model") and hasattr(calc, "element_types")


def check_elements(calc: Calculator, atoms: Atoms, material: str) -> None:
    """Fail early, naming the element, when the model was not trained on it."""
    if not is_matgl(calc):
        return
    known = set(calc.element_types)
    unknown = sorted(set(atoms.get_chemical_symbols()) - known)
    if unknown:
        raise ModelError(f"{material}: element(s) {', '.join(unknown)} outside the model's {len(known)} elements")


def checked_finite(arr: np.ndarray, what: str, material: str) -> np.ndarray:
    """``arr`` unchanged, or ``CalculatorError`` naming the material when anything is NaN or infinite."""
    if not np.all(np.isfinite(arr)):
        raise CalculatorError(f"{material}: calculator returned non-finite {what}")
    return arr


class ForceModel:
    """Forces and Hessians of one supercell (fixed cell and species) for the core.

    Positions are passed in the supercell's own atom order; ``template`` fixes it.
    """

    def __init__(self, calc: Calculator, template: Atoms, material: str = "material",
                 batch_size: int | None = None, fd_step: float = 0.005) -> None:
        self.calc = calc
        self.template = template.copy()
        self.material = material
        self.fd_step = fd_step
        self.matgl = is_matgl(calc)
        self.batch_size = batch_size or self._default_batch_size()
        check_elements(calc, template, material)
        if self.matgl:
            from matgl.ext.ase import Atoms2Graph

            # the same converter PESCalculator builds for itself (matgl keeps its own private)
            self.graph_converter = Atoms2Graph(calc.element_types, calc.cutoff)

    def _default_batch_size(self) -> int:
        """Structures per matgl call: 1 on CPU, 16 on a GPU, 1 for other calculators.

        Measured (benchmarks/bench_batching.py, results/batching.md): on CPU one graph per call is
        fastest (batches of 4 cost 1.7x per structure); batches pay off on a GPU.
        """
        if not self.matgl:
            return 1
        return 1 if self.calc.potential.data_mean.device.type == "cpu" else 16

    # forces ------------------------------------------------------------------
    def forces(self, positions: np.ndarray) -> np.ndarray:
        """Forces (n, N, 3) in eV/A at Cartesian positions (n, N, 3) or (N, 3) (then n = 1), in A.

        Raises
        ------
        CalculatorError
            Forces of the wrong shape or not finite, naming the material.
        """
        positions = np.asarray(positions, float)
        if positions.ndim == 2:
            positions = positions[None]
        if self.matgl:
            out = np.concatenate([self._matgl_batch(positions[k:k + self.batch_size])
                                  for k in range(0, len(positions), self.batch_size)])
        else:
            out = np.array([self._ase_forces(p) for p in positions])
        if out.shape != positions.shape:
            raise CalculatorError(f"{self.material}: forces of shape {out.shape}, expected {positions.shape}")
        return checked_finite(out, "forces", self.material)

    def _atoms_at(self, positions: np.ndarray) -> Atoms:
        atoms = self.template.copy()
        atoms.positions = positions
        return atoms

    def _ase_forces(self, positions: np.ndarray) -> np.ndarray:
        atoms = self._atoms_at(positions)
        atoms.calc = self.calc
        return np.array(atoms.get_forces())

    def _matgl_batch(self, positions: np.ndarray) -> np.ndarray:
        # one collated graph per chunk; the forward call is shared with BatchedForces (the GPU
        # path), so per-structure and batched forces cannot drift apart
        converted = [self.graph_converter.get_graph(self._atoms_at(p)) for p in positions]
        return forward_forces(self.calc.potential, *zip(*converted, strict=True)).reshape(positions.shape)

    # Hessians ----------------------------------------------------------------
    def hessian(self, positions: np.ndarray) -> np.ndarray:
        """(3N, 3N) in eV/A^2: autograd for matgl, central differences otherwise."""
        h = self._matgl_hessian(positions) if self.matgl else self.fd_hessian(positions)
        h = checked_finite(np.asarray(h, float), "Hessian", self.material)
        return 0.5 * (h + h.T)

    def _matgl_hessian(self, positions: np.ndarray) -> np.ndarray:
        import torch

        pot = self.calc.potential
        g, lat, state = self.graph_converter.get_graph(self._atoms_at(positions))
        lat = torch.as_tensor(np.asarray(lat), dtype=torch.float32).reshape(1, 3, 3)
        flags = (pot.calc_stresses, pot.calc_hessian)
        pot.calc_stresses, pot.calc_hessian = False, True
        try:
            return pot(g, lat, torch.as_tensor(np.asarray(state), dtype=torch.float32))[3].detach().cpu().numpy()
        finally:
            pot.calc_stresses, pot.calc_hessian = flags

    def fd_hessian(self, positions: np.ndarray) -> np.ndarray:
        """Central finite differences: H_ij = -(F_i(x+h e_j) - F_i(x-h e_j)) / 2h."""
        positions = np.asarray(positions, float)
        n = len(positions)
        disp = np.zeros((6 * n, n, 3))
        for j in range(3 * n):
            disp[2 * j, j // 3, j % 3] = self.fd_step
            disp[2 * j + 1, j // 3, j % 3] = -self.fd_step
        f = self.forces(positions[None] + disp).reshape(3 * n, 2, 3 * n)
        return -((f[:, 0] - f[:, 1]) / (2 * self.fd_step)).T
