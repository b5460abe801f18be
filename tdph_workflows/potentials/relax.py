"""Relaxation of positions and cell with the potential, keeping the space group."""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator
from ase.constraints import FixSymmetry
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS
from phonopy.structure.atoms import PhonopyAtoms

from ..io.structures import phonopy_to_ase
from ..schemas import RelaxationInfo


def relax_structure(unitcell: PhonopyAtoms, calc: Calculator, fmax: float = 1e-3, material: str = "material",
                    max_steps: int = 500) -> tuple[PhonopyAtoms, RelaxationInfo]:
    """BFGS on positions and cell (FrechetCellFilter) under FixSymmetry.

    Keeping the symmetry means the space-group averaging still applies to the relaxed cell.
    ``fmax`` is in eV/A; ValueError when the positions become non-finite.
    """
    atoms = phonopy_to_ase(unitcell)
    atoms.calc = calc
    atoms.set_constraint(FixSymmetry(atoms))
    e0, v0 = float(atoms.get_potential_energy()), float(atoms.get_volume())
    opt = BFGS(FrechetCellFilter(atoms), logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=max_steps))
    if not np.all(np.isfinite(atoms.positions)):
        raise ValueError(f"{material}: relaxation diverged")
    relaxed = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=np.array(atoms.cell),
                           scaled_positions=atoms.get_scaled_positions())
    info = RelaxationInfo(fmax=fmax, steps=int(opt.nsteps), converged=converged, energy_initial=e0,
                          energy_final=float(atoms.get_potential_energy()), volume_initial=v0,
                          volume_final=float(atoms.get_volume()))
    return relaxed, info
