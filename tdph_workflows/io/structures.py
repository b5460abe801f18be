"""Structure input: files, pymatgen Structures and ASE Atoms -> checked PhonopyAtoms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from phonopy.structure.atoms import PhonopyAtoms
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

MAX_UNITCELL_ATOMS = 500


class InputError(ValueError):
    """Unusable input, with the material and the reason in the message."""


def load_structure(path: str | Path) -> Structure:
    """Read any file pymatgen reads (CIF, POSCAR, ...)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    try:
        return Structure.from_file(path)
    except Exception as exc:  # pymatgen raises many types for unreadable files
        raise InputError(f"{path.name}: not a readable structure ({type(exc).__name__}: {exc})") from exc


def to_phonopy_atoms(structure: Structure | Atoms | PhonopyAtoms, name: str | None = None) -> PhonopyAtoms:
    """Validate and convert; atom order is kept exactly as given.

    Raises
    ------
    InputError
        Naming the structure and the reason: no atoms, disorder, too many atoms, non-finite or
        degenerate lattice or coordinates (checked before any C library such as spglib sees them:
        a NaN coordinate crashed the process), overlapping sites, unknown masses.
    """
    if isinstance(structure, PhonopyAtoms):
        check_finite_cell(np.asarray(structure.cell, float), np.asarray(structure.scaled_positions, float),
                          name or "input")
        return structure
    if isinstance(structure, Atoms):
        structure = AseAtomsAdaptor.get_structure(structure)
    if not isinstance(structure, Structure):
        raise InputError(f"{name or 'input'}: expected a pymatgen Structure or ASE Atoms, got {type(structure).__name__}")
    name = name or structure.composition.reduced_formula if len(structure) else (name or "input")
    if len(structure) == 0:
        raise InputError(f"{name}: the structure has no atoms")
    if not structure.is_ordered:
        raise InputError(f"{name}: partial occupancy (disordered sites) is not supported; order the structure first")
    if len(structure) > MAX_UNITCELL_ATOMS:
        raise InputError(f"{name}: {len(structure)} atoms in the cell, more than the limit of {MAX_UNITCELL_ATOMS}")
    check_finite_cell(structure.lattice.matrix, structure.frac_coords, name)
    if structure.volume < 1e-3:
        raise InputError(f"{name}: degenerate lattice (volume {structure.volume:.3g} A^3)")
    dmin = structure.distance_matrix[np.triu_indices(len(structure), 1)].min() if len(structure) > 1 else np.inf
    if dmin < 0.5:
        raise InputError(f"{name}: atoms {dmin:.2f} A apart; overlapping sites")
    try:
        return PhonopyAtoms(
            symbols=[site.specie.symbol for site in structure],
            cell=structure.lattice.matrix,
            scaled_positions=structure.frac_coords,
        )
    except RuntimeError as exc:  # phonopy has no mass for Po, At, Rn, Fr, Ra, Pu and heavier
        raise InputError(f"{name}: element without a known atomic mass, not supported ({exc})") from exc


def check_finite_cell(lattice: np.ndarray, fractional: np.ndarray, name: str) -> None:
    """``InputError`` naming the structure when the lattice or any coordinate is NaN or infinite."""
    if not np.isfinite(lattice).all():
        raise InputError(f"{name}: the lattice has non-finite entries (NaN or inf)")
    bad = np.flatnonzero(~np.isfinite(fractional).all(axis=1))
    if bad.size:
        raise InputError(f"{name}: non-finite coordinates (NaN or inf) on site(s) {', '.join(map(str, bad[:5]))}")


def phonopy_to_ase(atoms: PhonopyAtoms) -> Atoms:
    """Periodic ASE ``Atoms`` with the same species, cell and atom order (no calculator)."""
    return Atoms(symbols=atoms.symbols, cell=atoms.cell, scaled_positions=atoms.scaled_positions, pbc=True)


def default_supercell_matrix(atoms: PhonopyAtoms, min_width: float = 7.5, max_atoms: int = 300) -> np.ndarray:
    """Diagonal supercell whose perpendicular widths are all >= ``min_width`` A.

    7.5 A reproduces phonondb's choice for cubic perovskites (2x2x2 of 3.9 A; the
    paper's 40-atom SrTiO3 cell). Capped so the supercell stays below ``max_atoms``.
    """
    cell = np.asarray(atoms.cell)
    vol = abs(np.linalg.det(cell))
    widths = np.array([vol / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)])
    mult = np.maximum(1, np.ceil(min_width / widths - 1e-6)).astype(int)
    while np.prod(mult) * len(atoms) > max_atoms and mult.max() > 1:
        mult[np.argmax(mult)] -= 1
    return np.diag(mult)
