"""Harmonic phonons and phonon observables through phonopy.

Force constants travel as plain (N, N, 3, 3) arrays in phonopy's supercell
atom order, the single order used everywhere in the engine; ``forces_fn``
receives positions in that order too, so no second ordering can creep in.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable

import numpy as np
import seekpath
from phonopy import Phonopy
from phonopy.harmonic.dynmat_to_fc import get_commensurate_points
from phonopy.structure.atoms import PhonopyAtoms

from .sampling import is_translation_invariant

ForcesFn = Callable[[np.ndarray], np.ndarray]
"""positions (n, N, 3) of the supercell in phonopy order -> forces (n, N, 3), eV/A."""


def build_phonopy(
    unitcell: PhonopyAtoms,
    supercell_matrix: np.ndarray,
    primitive_matrix: str | np.ndarray | None = "auto",
    symprec: float = 1e-5,
) -> Phonopy:
    """A silent ``Phonopy`` for a unit cell and integer supercell matrix (3, 3); ``symprec`` in A."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # phonopy warns about its changed 'auto' default
        return Phonopy(
        unitcell,
            supercell_matrix=np.asarray(supercell_matrix, int),
            primitive_matrix=primitive_matrix,
            symprec=symprec,
            log_level=0,
        )


def harmonic_force_constants(
    phonon: Phonopy,
    forces_fn: ForcesFn,
    reference_forces: np.ndarray | None = None,
    distance: float = 0.01,
) -> tuple[np.ndarray, int]:
    """Phi_HA from phonopy's symmetry-reduced finite displacements (plus/minus pairs).

    Residual forces of the undistorted supercell are subtracted when given.
    The sum rule and permutation symmetry are imposed only when the raw force
    constants are translation invariant (they are not for on-site model potentials).
    """
    phonon.generate_displacements(distance=distance, is_plusminus=True)
    cells = phonon.supercells_with_displacements
    positions = np.array([c.positions for c in cells])
    forces = np.asarray(forces_fn(positions), float)
    if reference_forces is not None:
        forces = forces - reference_forces[None]
    phonon.forces = forces
    phonon.produce_force_constants()
    fc = np.array(phonon.force_constants)
    if is_translation_invariant(fc, rtol=5e-2):
        phonon.symmetrize_force_constants()
        fc = np.array(phonon.force_constants)
    return fc, len(cells)


def with_force_constants(phonon: Phonopy, fc: np.ndarray, keep_nac: bool = False) -> Phonopy:
    """A copy of ``phonon`` carrying ``fc`` (never mutate the harmonic object).

    phonopy's copy drops the NAC parameters; ``keep_nac`` carries them over (LO-TO splitting in plots).
    """
    ph = phonon.copy()
    ph.force_constants = np.ascontiguousarray(fc, dtype=float)
    if keep_nac and phonon.nac_params is not None:
        ph.nac_params = phonon.nac_params
    return ph


def compact_force_constants(phonon: Phonopy, fc: np.ndarray) -> np.ndarray:
    """Phonopy's compact layout (n_primitive, N, 3, 3) of supercell force constants, full or already compact.

    The rows of the primitive cell's atoms: every other row is one of them moved by a lattice
    translation, so nothing is lost for translation-invariant force constants (finite
    displacements, symfc fits). Stored results hold this layout: N / n_primitive times smaller.
    """
    from phonopy.harmonic.force_constants import full_fc_to_compact_fc

    fc = np.asarray(fc, float)
    return fc if fc.shape[0] != fc.shape[1] else full_fc_to_compact_fc(phonon.primitive, fc)


def full_force_constants(phonon: Phonopy, fc: np.ndarray) -> np.ndarray:
    """Full (N, N, 3, 3) supercell force constants from the compact layout (or a full array, returned as is)."""
    from phonopy.harmonic.force_constants import compact_fc_to_full_fc

    fc = np.asarray(fc, float)
    return fc if fc.shape[0] == fc.shape[1] else compact_fc_to_full_fc(phonon.primitive, fc)


def commensurate_qpoints(phonon: Phonopy) -> np.ndarray:
    """q-points (primitive reciprocal, fractional) commensurate with the supercell."""
    smat = np.linalg.inv(phonon.primitive_matrix) @ phonon.supercell_matrix
    return get_commensurate_points(np.rint(smat).astype(int))


# One scratch copy per harmonic phonopy object for the q-point hot path: Phonopy.copy() re-runs
# the symmetry search (~0.04 s), and the jackknife asked for commensurate frequencies 9 times per
# estimate (measured ~0.7 s of a 13 s material). Setting force_constants rebuilds the dynamical
# matrix, and only fresh arrays leave this function, so reuse cannot leak one fc into another result.
_SCRATCH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _scratch(phonon: Phonopy, fc: np.ndarray) -> Phonopy:
    """The reusable copy of ``phonon`` (never NAC: only ``with_force_constants`` adds that) carrying ``fc``."""
    ph = _SCRATCH.get(phonon)
    if ph is None:
        ph = _SCRATCH[phonon] = phonon.copy()
    ph.force_constants = np.ascontiguousarray(fc, dtype=float)
    return ph


def frequencies_and_vectors(phonon: Phonopy, fc: np.ndarray, qpoints: np.ndarray):
    """Frequencies (nq, 3n) in THz (negative = imaginary) and eigenvectors (nq, 3n, 3n, as columns) at ``qpoints``."""
    ph = _scratch(phonon, fc)
    ph.run_qpoints(qpoints, with_eigenvectors=True)
    d = ph.get_qpoints_dict()
    return np.array(d["frequencies"]), np.array(d["eigenvectors"])


def acoustic_mask(phonon: Phonopy, fc: np.ndarray, qpoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies at ``qpoints`` and a mask that is False for the 3 Gamma acoustic modes.

    Acoustic modes are found by overlap with rigid translations, not by frequency
    order: imaginary optical modes can lie below them.
    """
    freqs, vecs = frequencies_and_vectors(phonon, fc, qpoints)
    mask = np.ones(freqs.shape, bool)
    if not is_translation_invariant(fc, rtol=5e-2):
        return freqs, mask
    masses = phonon.primitive.masses
    trans = np.zeros((3 * len(masses), 3))
    for a in range(3):
        trans[a::3, a] = np.sqrt(masses)
    trans /= np.linalg.norm(trans, axis=0)
    for iq, q in enumerate(qpoints):
        if np.allclose(q - np.rint(q), 0):
            overlap = np.linalg.norm(trans.T @ vecs[iq], axis=0)
            mask[iq, np.argsort(overlap)[-3:]] = False
    return freqs, mask


def commensurate_frequencies(phonon: Phonopy, fc: np.ndarray) -> np.ndarray:
    """Frequencies (THz, negative = imaginary) at commensurate q-points, Gamma acoustic removed."""
    return frequencies_at(phonon, fc, commensurate_qpoints(phonon))


def frequencies_at(phonon: Phonopy, fc: np.ndarray, qpoints: np.ndarray) -> np.ndarray:
    """Frequencies (THz, negative = imaginary) at ``qpoints``, Gamma acoustic removed.

    ``qpoints`` are fractional in the primitive reciprocal basis; the result is flat, in q-point order.
    """
    freqs, mask = acoustic_mask(phonon, fc, np.asarray(qpoints, float))
    return freqs[mask]


def special_points(primitive: PhonopyAtoms) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    """High-symmetry points from seekpath in the basis of *our* primitive cell, and its path.

    seekpath standardizes (and may rotate) the cell; its coordinates are mapped
    back through its rotation matrix, unlike phonopy's helper which uses them
    as-is (wrong labels for a non-standard setting, e.g. tetragonal c along x).
    """
    p = seekpath.get_path(primitive.totuple())
    rec = np.asarray(p["reciprocal_primitive_lattice"])
    rot = np.asarray(p["rotation_matrix"])
    cell = np.asarray(primitive.cell)
    points = {
        label: rot.T @ (np.asarray(q) @ rec) @ cell.T / (2 * np.pi) for label, q in p["point_coords"].items()
    }
    return points, [tuple(seg) for seg in p["path"]]


def band_structure(phonon: Phonopy, fc: np.ndarray, npoints: int = 51, keep_nac: bool = False,
                   nac_params: dict | None = None) -> dict:
    """Dispersion along seekpath's standard path for the primitive cell.

    With ``keep_nac`` (``phonon``'s own) or ``nac_params`` (Born charges, dielectric tensor, factor) the
    non-analytical term gives the LO-TO splitting near Gamma.
    """
    points, path = special_points(phonon.primitive)
    qpts = [np.linspace(points[a], points[b], npoints) for a, b in path]
    connections = [path[k][1] == path[k + 1][0] for k in range(len(path) - 1)] + [False]
    labels = [path[0][0]]
    for k, (_, end) in enumerate(path):
        labels.append(end)
        if not connections[k] and k + 1 < len(path):
            labels.append(path[k + 1][0])
    # the scratch copy: a fresh one costs a symmetry search (~0.3 s, 40 % of an EMT Al material)
    if nac_params is not None:
        ph = with_force_constants(phonon, fc)
        ph.nac_params = nac_params
    else:
        ph = with_force_constants(phonon, fc, keep_nac) if keep_nac else _scratch(phonon, fc)
    ph.run_band_structure(qpts, path_connections=connections, labels=labels)
    d = ph.get_band_structure_dict()
    return {
        "qpoints": [np.asarray(s).tolist() for s in d["qpoints"]],
        "distances": [np.asarray(s).tolist() for s in d["distances"]],
        "frequencies": [np.asarray(s).tolist() for s in d["frequencies"]],
        "labels": [str(x).replace("GAMMA", "Γ") for x in labels],  # as special_points: one spelling
        "path_connections": connections,
    }


def total_dos(phonon: Phonopy, fc: np.ndarray, mesh: float = 30.0) -> dict:
    """Total phonon DOS on a mesh of the given length density."""
    ph = _scratch(phonon, fc)
    ph.run_mesh(mesh, is_gamma_center=True)
    ph.run_total_dos()
    d = ph.get_total_dos_dict()
    return {"frequency_points": d["frequency_points"].tolist(), "total_dos": d["total_dos"].tolist()}


def mean_square_displacements(phonon: Phonopy, fc: np.ndarray, temperature: float, qpoints: np.ndarray,
                              floor_thz: float = 0.5) -> np.ndarray:
    """Harmonic mean-square displacement (A^2) of each primitive-cell atom, averaged over ``qpoints``.

    Quantum (Bose-Einstein) thermal average over the given q-points, Gamma acoustic modes left out,
    imaginary and very soft modes taken at ``floor_thz`` as the sampler does. On a supercell's
    commensurate q-points this is what thermal sampling of that supercell draws; on a dense mesh it
    is the converged value.
    """
    from .sampling import mode_variances

    freqs, vecs = frequencies_and_vectors(phonon, fc, qpoints)
    _, mask = acoustic_mask(phonon, fc, qpoints)
    masses = np.repeat(np.asarray(phonon.primitive.masses, float), 3)
    msd = np.zeros(len(phonon.primitive))
    for iq in range(len(qpoints)):
        keep = mask[iq]
        # variance of each mode coordinate (A^2 amu), spread over atoms by |e|^2 / m
        var = mode_variances(np.maximum(np.abs(freqs[iq][keep]), floor_thz), temperature)
        weight = np.abs(vecs[iq][:, keep]) ** 2 / masses[:, None]
        msd += (weight @ var).reshape(-1, 3).sum(axis=1)
    return msd / len(qpoints)


def perpendicular_widths(lattice: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of a cell (A), one per lattice vector: volume / face area."""
    lattice = np.asarray(lattice, float)
    volume = abs(np.linalg.det(lattice))
    return np.array([volume / np.linalg.norm(np.cross(lattice[(i + 1) % 3], lattice[(i + 2) % 3])) for i in range(3)])


def commensurate_qpoints_of(phonon: Phonopy, supercell_matrix: np.ndarray) -> np.ndarray:
    """q-points commensurate with another supercell matrix of the same unit cell and primitive cell."""
    smat = np.linalg.inv(phonon.primitive_matrix) @ np.asarray(supercell_matrix, float)
    return get_commensurate_points(np.rint(smat).astype(int))


def thermal_sampling_ratio(phonon: Phonopy, fc: np.ndarray, temperature: float, supercell_matrix: np.ndarray,
                           converged: np.ndarray | None = None) -> float:
    """Largest ratio, over atoms, of the harmonic mean-square displacement a supercell samples to the converged one.

    A supercell samples only its commensurate q-points. When they over-weight soft modes (a cell one
    layer wide in-plane but many layers tall: SiC mp-570690's 54-atom MDR cell samples 6.8x the
    converged value), thermal samples move atoms far beyond what the crystal does. ``converged`` is
    the dense-mesh value (``mean_square_displacements`` on ``dense_qmesh``), computed when not given.
    """
    if converged is None:
        converged = mean_square_displacements(phonon, fc, temperature, dense_qmesh(phonon))
    sampled = mean_square_displacements(phonon, fc, temperature, commensurate_qpoints_of(phonon, supercell_matrix))
    return float(np.max(sampled / converged))


def widen_for_thermal_sampling(phonon: Phonopy, fc: np.ndarray, temperature: float, tolerance: float = 1.25,
                               max_atoms: int = 1000) -> tuple[list[int], float, float]:
    """Multiples of ``phonon``'s supercell vectors that bring ``thermal_sampling_ratio`` to ``tolerance`` or below.

    The narrowest direction grows first (its q-points are the coarsest), one step at a time, using
    ``fc`` Fourier-interpolated to the wider cells: no force call is needed to decide. Growth stops at
    ``max_atoms``.

    Returns
    -------
    tuple
        ``(multiples, ratio of the given supercell, ratio of the widened one)``.
    """
    smat = np.asarray(phonon.supercell_matrix, int)
    cell = np.asarray(phonon.unitcell.cell, float)
    n_unit = len(phonon.unitcell)
    converged = mean_square_displacements(phonon, fc, temperature, dense_qmesh(phonon))
    first = ratio = thermal_sampling_ratio(phonon, fc, temperature, smat, converged)
    multiples = np.ones(3, int)
    while ratio > tolerance:
        widths = perpendicular_widths(np.diag(multiples) @ smat @ cell)
        grown = multiples + (widths <= widths.min() * (1 + 1e-6))
        if n_unit * round(abs(np.linalg.det(np.diag(grown) @ smat))) > max_atoms:
            break
        multiples = grown
        ratio = thermal_sampling_ratio(phonon, fc, temperature, np.diag(multiples) @ smat, converged)
    return [int(m) for m in multiples], first, ratio


def dense_qmesh(phonon: Phonopy, length: float = 40.0) -> np.ndarray:
    """A Gamma-centred q-mesh (primitive reciprocal, fractional) with about ``length`` / |a_i| points per axis."""
    from phonopy.phonon.grid import length2mesh

    mesh = length2mesh(length, phonon.primitive.cell)
    axes = [np.arange(n) / n for n in mesh]
    return np.array(np.meshgrid(*axes, indexing="ij")).reshape(3, -1).T
