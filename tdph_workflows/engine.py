"""Public entry point: temperature-dependent phonons of one material."""

from __future__ import annotations

import datetime
import json
import platform
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import spglib
from ase import Atoms
from ase.calculators.calculator import Calculator
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms
from pymatgen.core import Lattice, Structure

from . import __version__
from .calculators import ForceModel, check_elements, model_spec, resolve_calculator
from .core import phonons
from .core.sscha import OneShotSSCHA, SSCHASettings, TemperatureOutcome
from .io.mdr import MDREntry, is_mdr_entry, load_mdr_entry
from .io.structures import InputError, default_supercell_matrix, load_structure, phonopy_to_ase, to_phonopy_atoms
from .relax import relax_structure
from .schemas import (
    ConvergenceRecord,
    PhononSpectrum,
    Provenance,
    SiteRenormalization,
    TDPHResult,
    TemperatureResult,
)

StructureLike = Structure | Atoms | PhonopyAtoms | MDREntry | str | Path


def _spectrum(phonon: Phonopy, fc: np.ndarray, with_bands: bool = True) -> PhononSpectrum:
    freqs = phonons.commensurate_frequencies(phonon, fc)
    points, path = phonons.special_points(phonon.primitive)
    labels = sorted({lbl for seg in path for lbl in seg})
    qpts = np.array([points[lbl] for lbl in labels])
    special, _ = phonons.frequencies_and_vectors(phonon, fc, qpts)
    return PhononSpectrum(
        commensurate_frequencies=freqs.tolist(),
        min_frequency=float(freqs.min()),
        n_imaginary=int((freqs < -0.1).sum()),
        special_points={lbl.replace("GAMMA", "Γ"): f.tolist() for lbl, f in zip(labels, special, strict=True)},
        band_structure=phonons.band_structure(phonon, fc) if with_bands else {},
        dos=phonons.total_dos(phonon, fc) if with_bands else {},
    )


def _wyckoffs(unitcell: PhonopyAtoms, symprec: float) -> list[str]:
    data = spglib.get_symmetry_dataset(unitcell.totuple(), symprec=symprec)
    return list(data.wyckoffs) if data is not None else ["?"] * len(unitcell)


def _resolve_input(structure: StructureLike, material_id: str | None):
    """-> (unitcell, supercell matrix or None, primitive matrix, id, dft entry or None)."""
    if isinstance(structure, (str, Path)):
        if is_mdr_entry(structure):
            structure = load_mdr_entry(structure)
        else:
            path = Path(structure)
            structure = load_structure(path)
            material_id = material_id or path.stem
    if isinstance(structure, MDREntry):
        return (structure.unitcell, structure.supercell_matrix, structure.primitive_matrix,
                material_id or structure.material_id, structure)
    unitcell = to_phonopy_atoms(structure, material_id)
    return unitcell, None, "auto", material_id, None


def _choose_supercell(requested, from_entry, unitcell: PhonopyAtoms, material_id: str) -> tuple[np.ndarray, str]:
    """User matrix (3 or 9 integers) > MDR entry's matrix > the diagonal width rule."""
    if requested is not None:
        arr = np.array(requested, int)
        smat, rule = (arr.reshape(3, 3) if arr.size == 9 else np.diag(arr)), "user"
    elif from_entry is not None:
        smat, rule = from_entry, "MDR entry"
    else:
        smat, rule = default_supercell_matrix(unitcell), "diagonal, widths >= 7.5 A"
    if smat.shape != (3, 3) or abs(np.linalg.det(smat)) < 0.5:
        raise InputError(f"{material_id}: singular or malformed supercell matrix {smat.tolist()}")
    return smat, rule


def _temperature_document(outcome: TemperatureOutcome, spectrum: PhononSpectrum, unitcell: PhonopyAtoms,
                          wyckoffs: list[str], site_of_atom: np.ndarray, keep_fc: bool) -> TemperatureResult:
    """Per-site R_onsite (mean over each unit-cell site's supercell images) and the rest of the outcome."""
    sites = [
        SiteRenormalization(
            index=i,
            element=unitcell.symbols[i],
            wyckoff=wyckoffs[i],
            r_onsite=float(outcome.r_onsite_atoms[site_of_atom == i].mean()),
            r_onsite_stderr=float(outcome.r_onsite_atoms_stderr[site_of_atom == i].mean()),
        )
        for i in range(len(unitcell))
    ]
    return TemperatureResult(
        temperature=outcome.temperature,
        spectrum=spectrum,
        force_constants=outcome.force_constants.tolist() if keep_fc else None,
        l2_shift=outcome.l2_shift,
        l2_stderr=outcome.l2_stderr,
        r_full=outcome.r_full,
        r_full_stderr=outcome.r_full_stderr,
        r_full_robust=outcome.r_full_robust,
        r_full_robust_stderr=outcome.r_full_robust_stderr,
        r_onsite_max=max(s.r_onsite for s in sites),
        sites=sites,
        n_samples=outcome.n_samples,
        converged=outcome.converged,
        history=[ConvergenceRecord(**asdict(h)) for h in outcome.history],
        self_consistent_changes_thz=outcome.sc_iterations,
        self_consistent_converged=outcome.sc_converged,
        n_imaginary_sampled=outcome.n_imaginary_sampled,
        n_floored=outcome.n_floored,
        max_rms_displacement=outcome.max_rms_displacement,
        sampling_notes=outcome.policy_notes,
        potential_calls=outcome.potential_calls,
        timings=outcome.timings,
    )


def cubic_srtio3(a: float = 3.905) -> Structure:
    """Cubic perovskite SrTiO3 (Pm-3m), built in code for demos and tests."""
    return Structure.from_spacegroup(221, Lattice.cubic(a), ["Sr", "Ti", "O"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])


def run_temperature_phonons(
    structure: StructureLike,
    calculator: Calculator | str | None = None,
    temperatures: Sequence[float] = (300.0,),
    supercell_matrix: Sequence | np.ndarray | None = None,
    settings: SSCHASettings | None = None,
    relax: bool = False,
    relax_fmax: float = 1e-3,
    material_id: str | None = None,
    keep_force_constants: bool = True,
    progress: Callable[[str], None] | None = None,
) -> TDPHResult:
    """Harmonic phonons and one-shot SSCHA force constants Phi(T) for one material.

    Parameters
    ----------
    structure
        pymatgen ``Structure``, ASE ``Atoms``, a structure file, or an MDR entry
        (tarball, folder, ``phonopy_params.yaml(.xz)``; its supercell is used).
    calculator
        Any ASE calculator; None = the default matgl model (``TDPH_MODEL``);
        a string is resolved by ``calculators.resolve_calculator``.
    temperatures
        All temperatures share one harmonic calculation.
    supercell_matrix
        Overrides the MDR supercell / the default rule (widths >= 7.5 A).
    settings
        Engine options (estimator, sampling, statistics, self-consistency).
        With ``estimator="hessian"`` and default statistics, 4 pairs in 4
        jackknife groups are used (a Hessian costs ~3N force calls).
    """
    progress = progress or (lambda msg: None)
    started = datetime.datetime.now(datetime.UTC).isoformat()
    t_all = time.perf_counter()
    settings = settings or SSCHASettings()
    if settings.estimator == "hessian" and settings.min_pairs == SSCHASettings.min_pairs:
        n_groups = 4 if settings.n_groups == SSCHASettings.n_groups else settings.n_groups
        settings = replace(settings, min_pairs=n_groups, n_groups=n_groups, max_pairs=min(settings.max_pairs, 32))
    temps = [float(t) for t in temperatures]
    if not temps or any(not np.isfinite(t) or t < 0 for t in temps):
        raise InputError(f"temperatures must be finite and >= 0 K, got {temperatures}")
    unitcell, smat_entry, pmat, material_id, entry = _resolve_input(structure, material_id)
    formula = Structure(unitcell.cell, unitcell.symbols, unitcell.scaled_positions).composition.reduced_formula
    material_id = material_id or formula
    calc = resolve_calculator(calculator) if calculator is None or isinstance(calculator, str) else calculator
    calc_name = calculator if isinstance(calculator, str) else (model_spec() if calculator is None else type(calc).__name__)
    check_elements(calc, phonopy_to_ase(unitcell), material_id)
    timings: dict[str, float] = {}

    relaxation = None
    if relax:
        t0 = time.perf_counter()
        progress(f"{material_id}: relaxing (fmax {relax_fmax} eV/A)")
        unitcell, relaxation = relax_structure(unitcell, calc, relax_fmax, material_id)
        timings["relax"] = time.perf_counter() - t0

    smat, rule = _choose_supercell(supercell_matrix, smat_entry, unitcell, material_id)

    phonon = phonons.build_phonopy(unitcell, smat, pmat)
    supercell = phonon.supercell
    model = ForceModel(calc, phonopy_to_ase(supercell), material_id)

    t0 = time.perf_counter()
    progress(f"{material_id}: harmonic phonons ({len(supercell)}-atom supercell)")
    f_ref = model.forces(supercell.positions[None])[0]
    fc_ha, n_disp = phonons.harmonic_force_constants(phonon, model.forces, reference_forces=f_ref)
    timings["harmonic"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    harmonic = _spectrum(phonon, fc_ha)
    timings["harmonic_observables"] = time.perf_counter() - t0

    engine = OneShotSSCHA(phonon, fc_ha, model.forces, model.hessian, settings, progress, reference_forces=f_ref)
    wyckoffs = _wyckoffs(unitcell, settings.symprec)
    s2u = np.array(supercell.s2u_map)
    u2u = supercell.u2u_map
    site_of_atom = np.array([u2u[i] for i in s2u])

    results = []
    for temp in temps:
        progress(f"{material_id}: one-shot SSCHA at {temp:g} K ({settings.estimator})")
        outcome: TemperatureOutcome = engine.run_temperature(temp)
        t0 = time.perf_counter()
        spectrum = _spectrum(phonon, outcome.force_constants)
        outcome.timings["observables"] = time.perf_counter() - t0
        results.append(_temperature_document(outcome, spectrum, unitcell, wyckoffs, site_of_atom,
                                             keep_force_constants))
    timings["symmetry_setup"] = engine.time_symmetry_setup
    timings["symfc_basis"] = engine.time_basis
    timings["total"] = time.perf_counter() - t_all
    return TDPHResult(
        material_id=material_id,
        formula=formula,
        spacegroup=f"{engine.symmetry.spacegroup} ({engine.symmetry.spacegroup_number})",
        unitcell=json.loads(Structure(unitcell.cell, unitcell.symbols, unitcell.scaled_positions).to_json()),
        supercell_matrix=np.asarray(smat, int).tolist(),
        primitive_matrix=np.asarray(phonon.primitive_matrix, float).tolist(),
        n_atoms_supercell=len(supercell),
        supercell_rule=rule,
        relaxation=relaxation,
        max_residual_force=float(np.linalg.norm(f_ref, axis=1).max()),
        settings=asdict(settings),
        harmonic=harmonic,
        harmonic_force_constants=fc_ha.tolist() if keep_force_constants else None,
        n_harmonic_displacements=n_disp,
        temperatures=results,
        timings=timings,
        provenance=Provenance(
            code_version=__version__,
            calculator=str(calc_name),
            host=socket.gethostname(),
            python=platform.python_version(),
            started=started,
        ),
    )
