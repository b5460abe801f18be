"""What a material's input resolves to.

Unit cell, supercell and id; temperatures; stored documents back to phonopy objects.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms
from pymatgen.core import Structure

from ..core import phonons
from ..core.phonons import perpendicular_widths
from ..schemas import HarmonicResult, TDPHResult
from ..settings import current_settings
from .mdr import MDREntry, is_mdr_entry, load_mdr_entry, nac_array
from .structures import InputError, check_finite_cell, default_supercell_matrix, load_structure, to_phonopy_atoms

# Smallest perpendicular width (A) of a supercell used for thermal sampling. Narrower cells make an
# atom move in lock-step with its own near images, and sample a handful of q-points only: SiC
# mp-570690's MDR cell (2.67 A wide in-plane) gave a 76 % L2 shift at 300 K. The value is the
# M3GNet cutoff (5 A): wider, no atom feels its own image directly. 34 of the 3,992 shared MDR entries are
# narrower (benchmarks/results/supercell_widths.md); SiC before and after: docs/trust.md.
MIN_SUPERCELL_WIDTH = 5.0

StructureLike = Structure | Atoms | PhonopyAtoms | MDREntry | str | Path
"""Anything a material can be given as (a path is a structure file or an MDR entry)."""


def check_temperatures(temperatures: Sequence[float], material_id: str | None = None) -> list[float]:
    """Finite, non-negative temperatures as floats; ``InputError`` (a ValueError) otherwise."""
    temps = [float(t) for t in temperatures]
    if not temps or any(not np.isfinite(t) or t < 0 for t in temps):
        prefix = f"{material_id}: " if material_id else ""
        raise InputError(f"{prefix}temperatures must be finite and >= 0 K, got {list(temperatures)}")
    return temps


def resolve_input(structure: StructureLike, material_id: str | None):
    """Unit cell, supercell matrix (None unless an MDR entry gives one), primitive matrix and id of an input.

    Parameters
    ----------
    structure
        A pymatgen ``Structure``, ASE ``Atoms``, ``PhonopyAtoms``, an ``MDREntry``, or a path to a
        structure file or an MDR entry (tarball, folder, ``phonopy_params.yaml(.xz)``).
    material_id
        Overrides the id (default: the MDR id, else the file stem, else None).

    Returns
    -------
    tuple
        ``(unitcell, supercell_matrix or None, primitive_matrix or "auto", material_id)``.
    """
    if isinstance(structure, (str, Path)):
        if is_mdr_entry(structure):
            structure = load_mdr_entry(structure)
        else:
            path = Path(structure)
            structure = load_structure(path)
            material_id = material_id or path.stem
    if isinstance(structure, MDREntry):
        material_id = material_id or structure.material_id
        unitcell = structure.unitcell
        check_finite_cell(np.asarray(unitcell.cell, float), np.asarray(unitcell.scaled_positions, float), material_id)
        return unitcell, structure.supercell_matrix, structure.primitive_matrix, material_id
    unitcell = to_phonopy_atoms(structure, material_id)
    return unitcell, None, "auto", material_id


# the widest MDR supercell has 306 atoms; the one-shot fit of 864 atoms took 18 GB, growing as N^2
MAX_SUPERCELL_ATOMS = 1500


def choose_supercell(requested, from_entry, unitcell: PhonopyAtoms, material_id: str) -> tuple[np.ndarray, str]:
    """The supercell matrix and where it came from: user matrix (3 or 9 integers) > MDR entry's > width rule.

    Raises
    ------
    InputError
        A singular or malformed matrix, naming the material.
    """
    if requested is not None:
        arr = np.array(requested, int)
        smat, rule = (arr.reshape(3, 3) if arr.size == 9 else np.diag(arr)), "user"
    elif from_entry is not None:
        smat, rule = from_entry, "MDR entry"
    else:
        smat, rule = default_supercell_matrix(unitcell), "diagonal, widths >= 7.5 A"
    if smat.shape != (3, 3) or abs(np.linalg.det(smat)) < 0.5:
        raise InputError(f"{material_id}: singular or malformed supercell matrix {smat.tolist()}")
    if np.linalg.det(smat) < 0:
        raise InputError(f"{material_id}: supercell matrix {smat.tolist()} has a negative determinant "
                         "(a left-handed cell); swap two rows")
    n_atoms = round(abs(np.linalg.det(smat))) * len(unitcell)
    limit = current_settings().max_supercell_atoms or MAX_SUPERCELL_ATOMS
    if n_atoms > limit:  # checked before any symmetry search, which would sit silent for long
        raise InputError(f"{material_id}: the {rule} supercell {smat.tolist()} has {n_atoms} atoms, more than "
                         f"{limit} (TDPH_MAX_SUPERCELL_ATOMS): the force-constant fit grows as N^2 in memory "
                         "(864 atoms took 18 GB); choose a smaller --supercell")
    return smat, rule


def phonopy_from_document(doc: HarmonicResult | TDPHResult, with_nac: bool = False) -> tuple[PhonopyAtoms, Phonopy]:
    """Unit cell and phonopy object (no force constants) of a stored harmonic or full result.

    ``with_nac`` sets the entry's Born charges and dielectric tensor (``doc.nac_params``), for files and
    dispersions that show the LO-TO splitting; the engine's own objects never carry them.
    """
    unitcell = to_phonopy_atoms(Structure.from_dict(doc.unitcell), doc.material_id)
    phonon = phonons.build_phonopy(unitcell, np.array(doc.supercell_matrix), np.array(doc.primitive_matrix))
    if with_nac and doc.nac_params:
        phonon.nac_params = nac_array(doc.nac_params)
    return unitcell, phonon


def structure_dict(unitcell: PhonopyAtoms) -> dict:
    """The pymatgen ``Structure`` dict of a phonopy cell (what result documents store)."""
    return json.loads(Structure(unitcell.cell, unitcell.symbols, unitcell.scaled_positions).to_json())


def adequate_supercell(supercell_matrix: np.ndarray, unitcell: PhonopyAtoms,
                       min_width: float = MIN_SUPERCELL_WIDTH) -> tuple[np.ndarray, list[int]]:
    """The supercell matrix extended by the smallest integer multiples that make it wide enough.

    The multiples act along the supercell's own lattice vectors, so each perpendicular width
    grows by its multiple until all are at least ``min_width`` A.

    Returns
    -------
    tuple
        ``(matrix, multiples)``: ``diag(multiples) @ supercell_matrix`` and the three multiples
        (``[1, 1, 1]`` when the cell is wide enough already; the matrix is then returned unchanged).
    """
    smat = np.asarray(supercell_matrix, int)
    widths = perpendicular_widths(smat @ np.asarray(unitcell.cell, float))
    multiples = [int(m) for m in np.maximum(1, np.ceil(min_width / widths - 1e-9))]
    return (smat if multiples == [1, 1, 1] else np.diag(multiples) @ smat), multiples
