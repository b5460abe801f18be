"""Public entry point: temperature-dependent phonons of one material."""

from __future__ import annotations

import datetime
import logging
import platform
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import spglib
from ase.calculators.calculator import Calculator
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms
from pymatgen.core import Lattice, Structure

from . import __version__
from .core import phonons
from .core.sscha import OneShotSSCHA, SSCHASettings, TemperatureOutcome
from .io.inputs import (
    MIN_SUPERCELL_WIDTH,
    StructureLike,
    adequate_supercell,
    check_temperatures,
    choose_supercell,
    perpendicular_widths,
    phonopy_from_document,
    resolve_input,
    structure_dict,
)
from .io.mdr import MDREntry, is_mdr_entry, load_mdr_entry, nac_array, nac_document
from .io.structures import InputError, phonopy_to_ase
from .potentials import (
    ForceModel,
    check_elements,
    comparison_on,
    model_fingerprint,
    model_spec,
    relax_structure,
    resolve_calculator,
)
from .schemas import (
    ConvergenceRecord,
    DFTReference,
    HarmonicResult,
    PhononSpectrum,
    Provenance,
    RelaxationInfo,
    SiteRenormalization,
    TDPHResult,
    TemperatureResult,
    package_versions,
)
from .trust import failures_before_sampling, grade_result

log = logging.getLogger(__name__)

# A supercell may sample at most this multiple of the converged harmonic mean-square displacement of
# any atom (rms within 12 %): SiC mp-570690's MDR cell sampled 6.8x (rms 0.23 A against 0.10 A) and
# gave a 76 % "shift"; 3C-SiC cells of 16-54 atoms sample 0.8-0.9x and give 1.6-2.2 %.
THERMAL_SAMPLING_TOLERANCE = 1.25
MAX_WIDENED_ATOMS = 1000  # a widened supercell stops growing here (the grade then says the cell is too small)


def _spectrum(phonon: Phonopy, fc: np.ndarray, freqs: np.ndarray | None = None,
              nac_params: dict | None = None) -> PhononSpectrum:
    """Commensurate (given or computed), high-symmetry-point, band and DOS frequencies of ``fc``.

    ``nac_params`` (a polar entry's Born charges) enter the band structure only: LO-TO splitting.
    """
    freqs = phonons.commensurate_frequencies(phonon, fc) if freqs is None else freqs
    points, path = phonons.special_points(phonon.primitive)
    labels = sorted({lbl for seg in path for lbl in seg})
    qpts = np.array([points[lbl] for lbl in labels])
    special, _ = phonons.frequencies_and_vectors(phonon, fc, qpts)
    return PhononSpectrum(
        commensurate_frequencies=freqs.tolist(),
        min_frequency=float(freqs.min()),
        n_imaginary=int((freqs < -0.1).sum()),
        special_points={lbl.replace("GAMMA", "Γ"): f.tolist() for lbl, f in zip(labels, special, strict=True)},
        band_structure=phonons.band_structure(phonon, fc, nac_params=nac_array(nac_params)),
        dos=phonons.total_dos(phonon, fc),
    )


def _wyckoffs(unitcell: PhonopyAtoms, symprec: float) -> list[str]:
    data = spglib.get_symmetry_dataset(unitcell.totuple(), symprec=symprec)
    return list(data.wyckoffs) if data is not None else ["?"] * len(unitcell)


def nearest_neighbour_distances(cell: PhonopyAtoms) -> np.ndarray:
    """Distance (A) from each atom of a cell to its nearest neighbour, periodic images included."""
    from ase.neighborlist import neighbor_list

    atoms = phonopy_to_ase(cell)
    cutoff = 3.0
    while True:  # grow the search radius until every atom has a neighbour (sparse structures)
        first, dist = neighbor_list("id", atoms, cutoff)
        if len(np.unique(first)) == len(atoms):
            return np.array([dist[first == i].min() for i in range(len(atoms))])
        cutoff *= 2


def lindemann_ratio(phonon: Phonopy, fc: np.ndarray, temperature: float, nearest: np.ndarray) -> float:
    """Largest, over atoms, 3D rms thermal displacement sampled from ``fc`` over the nearest-neighbour distance.

    Measured with DFT force constants at 300 K: 0.08-0.10 for NaCl, KCl, KBr, CsCl, CsF, RbI (whose
    rms displacements reach 0.36 A), 0.06 for Si; crystals melt near 0.15-0.2 in this convention.
    """
    msd = phonons.mean_square_displacements(phonon, fc, temperature, phonons.commensurate_qpoints(phonon))
    return float(np.max(np.sqrt(msd) / nearest))


def _temperature_document(outcome: TemperatureOutcome, spectrum: PhononSpectrum, phonon: Phonopy,
                          wyckoffs: list[str], site_of_atom: np.ndarray, keep_fc: bool) -> TemperatureResult:
    """Per-site R_onsite (mean over each unit-cell site's supercell images) and the rest of the outcome.

    Phi(T) is kept in phonopy's compact layout (``core.phonons.compact_force_constants``).
    """
    unitcell = phonon.unitcell
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
        force_constants=phonons.compact_force_constants(phonon, outcome.force_constants).tolist() if keep_fc else None,
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


@dataclass
class HarmonicStage:
    """Everything the renormalization reuses: relaxed cell, phonopy object, Phi_HA, residual forces."""

    material_id: str
    formula: str
    unitcell: PhonopyAtoms
    phonon: Phonopy
    force_constants: np.ndarray
    reference_forces: np.ndarray
    spectrum: PhononSpectrum
    supercell_rule: str
    n_displacements: int
    relaxation: RelaxationInfo | None
    calc: Calculator
    calc_name: str
    timings: dict[str, float] = field(default_factory=dict)
    started: str = ""
    dft_reference: DFTReference | None = None
    supercell_extended_by: list[int] | None = None
    thermal_sampling_ratio: float | None = None
    nac_params: dict | None = None

    def document(self, keep_force_constants: bool = True) -> HarmonicResult:
        """Serializable form (jobs pass it between steps)."""
        return HarmonicResult(
            material_id=self.material_id,
            formula=self.formula,
            unitcell=structure_dict(self.unitcell),
            supercell_matrix=np.asarray(self.phonon.supercell_matrix, int).tolist(),
            primitive_matrix=np.asarray(self.phonon.primitive_matrix, float).tolist(),
            n_atoms_supercell=len(self.phonon.supercell),
            supercell_rule=self.supercell_rule,
            supercell_extended_by=self.supercell_extended_by,
            thermal_sampling_ratio=self.thermal_sampling_ratio,
            relaxation=self.relaxation,
            max_residual_force=float(np.linalg.norm(self.reference_forces, axis=1).max()),
            reference_forces=self.reference_forces.tolist(),
            harmonic=self.spectrum,
            harmonic_force_constants=(phonons.compact_force_constants(self.phonon, self.force_constants).tolist()
                                      if keep_force_constants else None),
            n_harmonic_displacements=self.n_displacements,
            dft_reference=self.dft_reference,
            nac_params=self.nac_params,
            timings=self.timings,
            calculator=self.calc_name,
        )

    @classmethod
    def from_document(cls, doc: HarmonicResult, calculator: Calculator | str | None = None) -> HarmonicStage:
        """The stage back from its stored document, with ``calculator`` (None = the default model) for later steps.

        Raises
        ------
        InputError
            The document was stored without its harmonic force constants.
        """
        if doc.harmonic_force_constants is None:
            raise InputError(f"{doc.material_id}: the harmonic document carries no force constants")
        calc, calc_name = _calculator(calculator)
        unitcell, phonon = phonopy_from_document(doc)
        fc = phonons.full_force_constants(phonon, doc.harmonic_force_constants)
        return cls(doc.material_id, doc.formula, unitcell, phonon, fc,
                   np.array(doc.reference_forces), doc.harmonic, doc.supercell_rule, doc.n_harmonic_displacements,
                   doc.relaxation, calc, calc_name, dict(doc.timings), dft_reference=doc.dft_reference,
                   supercell_extended_by=doc.supercell_extended_by,
                   thermal_sampling_ratio=doc.thermal_sampling_ratio, nac_params=doc.nac_params)


def _calculator(calculator: Calculator | str | None) -> tuple[Calculator, str]:
    if calculator is None or isinstance(calculator, str):
        return resolve_calculator(calculator), str(calculator or model_spec())
    return calculator, type(calculator).__name__


def harmonic_stage(
    structure: StructureLike,
    calculator: Calculator | str | None = None,
    supercell_matrix: Sequence | np.ndarray | None = None,
    relax: bool = False,
    relax_fmax: float = 1e-3,
    material_id: str | None = None,
    progress: Callable[[str], None] | None = None,
    min_supercell_width: float = MIN_SUPERCELL_WIDTH,
    sampling_temperature: float | None = 300.0,
    settings: SSCHASettings | None = None,
) -> HarmonicStage:
    """Input checks, optional relaxation, supercell choice and Phi_HA (see ``run_temperature_phonons``).

    ``sampling_temperature``: the temperature (K) at which the supercell must sample harmonic thermal
    displacements within ``THERMAL_SAMPLING_TOLERANCE`` of their converged value, else it is widened
    (``core.phonons.widen_for_thermal_sampling``) and Phi_HA recomputed; None skips the check.
    ``settings``: the engine settings the stage is for; with ``known_failure_keeps_cell`` a material
    graded F on its input cell before sampling (``trust.failures_before_sampling``) is not widened.
    """
    progress = progress or (lambda msg: None)
    started = datetime.datetime.now(datetime.UTC).isoformat()
    entry = load_mdr_entry(structure) if isinstance(structure, (str, Path)) and is_mdr_entry(structure) else structure
    unitcell, smat_entry, pmat, material_id = resolve_input(entry, material_id)
    formula = Structure(unitcell.cell, unitcell.symbols, unitcell.scaled_positions).composition.reduced_formula
    material_id = material_id or formula
    calc, calc_name = _calculator(calculator)
    check_elements(calc, phonopy_to_ase(unitcell), material_id)
    timings: dict[str, float] = {}

    relaxation = None
    if relax:
        t0 = time.perf_counter()
        progress(f"{material_id}: relaxing (fmax {relax_fmax} eV/A)")
        unitcell, relaxation = relax_structure(unitcell, calc, relax_fmax, material_id)
        timings["relax"] = time.perf_counter() - t0

    smat, rule = choose_supercell(supercell_matrix, smat_entry, unitcell, material_id)
    chosen = smat
    smat, multiples = adequate_supercell(smat, unitcell, min_supercell_width)
    extended_by = None if multiples == [1, 1, 1] else multiples
    if extended_by:
        narrow = perpendicular_widths(chosen @ np.asarray(unitcell.cell)).min()
        rule += (f"; extended x{'x'.join(map(str, multiples))} (narrowest width {narrow:.2f} A < "
                 f"{min_supercell_width:g} A)")
        progress(f"{material_id}: supercell {narrow:.2f} A wide, extended x{'x'.join(map(str, multiples))}")
    phonon, fc_ha, f_ref, n_disp = _harmonic(unitcell, smat, pmat, calc, material_id, timings, progress)
    sampling_ratio = None
    if sampling_temperature is not None:
        t0 = time.perf_counter()
        more, first, sampling_ratio = phonons.widen_for_thermal_sampling(
            phonon, fc_ha, sampling_temperature, THERMAL_SAMPLING_TOLERANCE, MAX_WIDENED_ATOMS)
        timings["sampling_check"] = time.perf_counter() - t0
        if more != [1, 1, 1] and settings is not None and settings.known_failure_keeps_cell:
            t0 = time.perf_counter()
            kept = _known_failure_on_input_cell(entry, phonon, fc_ha, relax or supercell_matrix is not None,
                                                extended_by is not None, settings)
            timings["harmonic_observables"] = time.perf_counter() - t0
            if kept:
                spectrum, dft, failures = kept
                rule += (f"; not widened although it sampled {first:.2f}x the converged harmonic mean-square "
                         f"displacement at {sampling_temperature:g} K: graded F before sampling "
                         f"({', '.join(failures)}; known_failure_keeps_cell)")
                progress(f"{material_id}: graded F on its input cell ({', '.join(failures)}), not widened")
                return HarmonicStage(material_id, formula, unitcell, phonon, fc_ha, f_ref, spectrum, rule, n_disp,
                                     relaxation, calc, calc_name, timings, started, dft, extended_by, first,
                                     _nac_of(entry))
        if more != [1, 1, 1]:
            multiples = [a * b for a, b in zip(multiples, more, strict=True)]
            extended_by = multiples
            rule += (f"; extended x{'x'.join(map(str, more))}: it sampled {first:.2f}x the converged harmonic "
                     f"mean-square displacement at {sampling_temperature:g} K, now {sampling_ratio:.2f}x")
            progress(f"{material_id}: supercell samples {first:.2f}x the converged thermal displacements, "
                     f"widened x{'x'.join(map(str, more))}")
            smat = np.diag(more) @ smat
            phonon, fc_ha, f_ref, n_disp = _harmonic(unitcell, smat, pmat, calc, material_id, timings, progress)
    nac = _nac_of(entry)
    t0 = time.perf_counter()
    spectrum = _spectrum(phonon, fc_ha, nac_params=nac)
    timings["harmonic_observables"] = timings.get("harmonic_observables", 0.0) + time.perf_counter() - t0
    dft = None
    if isinstance(entry, MDREntry) and not relax and supercell_matrix is None:
        dft = _dft_reference(entry, phonon, spectrum, fc_ha if extended_by else None)
    return HarmonicStage(material_id, formula, unitcell, phonon, fc_ha, f_ref, spectrum, rule, n_disp, relaxation,
                         calc, calc_name, timings, started, dft, extended_by, sampling_ratio, nac)


def _nac_of(entry) -> dict | None:
    # Born charges and dielectric tensor of an MDR entry: LO-TO splitting of its band structure
    return nac_document(entry.phonon.nac_params) if isinstance(entry, MDREntry) else None


def _known_failure_on_input_cell(entry, phonon: Phonopy, fc_ha: np.ndarray, own_cell_changed: bool,
                                 extended: bool, settings: SSCHASettings,
                                 ) -> tuple[PhononSpectrum, DFTReference | None, list[str]] | None:
    """Spectrum, DFT comparison and F codes of the input cell when it is graded F before sampling, else None.

    Every such reason is read at the cell's commensurate q-points (the spectrum's minimum, the DFT
    comparison), which a wider cell built from it contains: widening cannot lift the grade.
    """
    spectrum = _spectrum(phonon, fc_ha, nac_params=_nac_of(entry))
    dft = None
    if isinstance(entry, MDREntry) and not own_cell_changed:
        dft = _dft_reference(entry, phonon, spectrum, fc_ha if extended else None)
    failures = failures_before_sampling(spectrum, dft, settings.self_consistent)
    return (spectrum, dft, [code for _, code, _ in failures]) if failures else None


def _harmonic(unitcell, smat, pmat, calc, material_id, timings, progress):
    """Phonopy object, Phi_HA, residual forces and displacement count of one supercell (timed as "harmonic")."""
    phonon = phonons.build_phonopy(unitcell, smat, pmat)
    supercell = phonon.supercell
    model = ForceModel(calc, phonopy_to_ase(supercell), material_id)
    t0 = time.perf_counter()
    progress(f"{material_id}: harmonic phonons ({len(supercell)}-atom supercell)")
    f_ref = model.forces(supercell.positions[None])[0]
    fc_ha, n_disp = phonons.harmonic_force_constants(phonon, model.forces, reference_forces=f_ref)
    if not np.abs(fc_ha).max() > 1e-6:  # eV/A^2; zero or NaN: no phonons to speak of
        raise InputError(f"{material_id}: the potential gives no force on displaced atoms (all force constants "
                         "zero): isolated atoms, or neighbours beyond its cutoff")
    timings["harmonic"] = timings.get("harmonic", 0.0) + time.perf_counter() - t0
    return phonon, fc_ha, f_ref, n_disp


def _dft_reference(entry: MDREntry, phonon: Phonopy, spectrum: PhononSpectrum,
                   fc_extended: np.ndarray | None = None) -> DFTReference | None:
    """Model vs DFT harmonic frequencies at the q-points of the entry's own supercell (paper Methods B).

    ``fc_extended``: the model's force constants when the engine used a wider supercell than the
    entry's; they are compared at the entry's commensurate q-points, which the wider cell contains.
    """
    try:
        if fc_extended is None:
            model_frequencies = np.asarray(spectrum.commensurate_frequencies)
            own = phonon
        else:
            own = phonons.build_phonopy(entry.unitcell, entry.supercell_matrix, entry.primitive_matrix)
            model_frequencies = phonons.frequencies_at(phonon, fc_extended, phonons.commensurate_qpoints(own))
        comparison = comparison_on(entry, own, model_frequencies)
    except Exception as exc:  # noqa: BLE001 (a reference we cannot build is reported as missing, not fatal)
        log.warning("%s: no DFT reference frequencies (%s)", entry.material_id, exc)
        return None
    model, dft = comparison.frequencies_model, comparison.frequencies_dft
    if model.shape != dft.shape or not np.linalg.norm(dft):
        return None
    return DFTReference(mae_thz=comparison.mae_thz, relative_deviation=comparison.relative_deviation,
                        min_frequency_dft=float(comparison.frequencies_dft.min()))


def renormalize(
    stage: HarmonicStage,
    temperatures: Sequence[float] = (300.0,),
    settings: SSCHASettings | None = None,
    keep_force_constants: bool = True,
    progress: Callable[[str], None] | None = None,
) -> TDPHResult:
    """One-shot (or self-consistent) Phi(T) at each temperature on one harmonic stage."""
    progress = progress or (lambda msg: None)
    t_all = time.perf_counter()
    settings = settings or SSCHASettings()
    temps = check_temperatures(temperatures, stage.material_id)
    phonon, supercell = stage.phonon, stage.phonon.supercell
    model = ForceModel(stage.calc, phonopy_to_ase(supercell), stage.material_id)
    engine = OneShotSSCHA(phonon, stage.force_constants, model.forces, model.hessian, settings, progress,
                          reference_forces=stage.reference_forces)
    wyckoffs = _wyckoffs(stage.unitcell, settings.symprec)
    nearest = nearest_neighbour_distances(phonon.primitive)
    site_of_atom = np.array([supercell.u2u_map[i] for i in supercell.s2u_map])

    # a material graded F by its harmonic stage alone gets capped statistics (campaign setting)
    known_failures = failures_before_sampling(stage.spectrum, stage.dft_reference, settings.self_consistent)
    pair_cap = settings.known_failure_pairs if known_failures else None
    results = []
    for temp in temps:
        progress(f"{stage.material_id}: one-shot SSCHA at {temp:g} K ({settings.estimator})")
        outcome: TemperatureOutcome = engine.run_temperature(temp, pair_cap)
        if pair_cap is not None:
            outcome.policy_notes.append(
                f"statistics capped at {pair_cap} pairs (known_failure_pairs): graded F before sampling "
                f"({', '.join(code for _, code, _ in known_failures)})")
        t0 = time.perf_counter()
        spectrum = _spectrum(phonon, outcome.force_constants, outcome.frequencies, stage.nac_params)
        outcome.timings["observables"] = time.perf_counter() - t0
        doc = _temperature_document(outcome, spectrum, phonon, wyckoffs, site_of_atom, keep_force_constants)
        # what was sampled: Phi_HA for the one-shot, about Phi(T) at a self-consistent fixed point
        sampled_fc = outcome.force_constants if outcome.sc_converged else stage.force_constants
        doc.lindemann_ratio = lindemann_ratio(phonon, sampled_fc, temp, nearest)
        results.append(doc)
    timings = dict(stage.timings)
    timings["symmetry_setup"] = engine.time_symmetry_setup
    timings["symfc_basis"] = engine.time_basis
    timings["total"] = sum(v for k, v in stage.timings.items() if k != "total") + time.perf_counter() - t_all
    harmonic = stage.document(keep_force_constants)
    return grade_result(TDPHResult(
        **harmonic.model_dump(exclude={"timings", "calculator", "reference_forces"}),
        spacegroup=f"{engine.symmetry.spacegroup} ({engine.symmetry.spacegroup_number})",
        spacegroup_symbol=engine.symmetry.spacegroup,
        spacegroup_number=engine.symmetry.spacegroup_number,
        settings=asdict(settings),
        temperatures=results,
        timings=timings,
        provenance=Provenance(
            code_version=__version__,
            calculator=stage.calc_name,
            model_hash=model_fingerprint(stage.calc_name),
            host=socket.gethostname(),
            python=platform.python_version(),
            versions=package_versions(),
            started=stage.started or datetime.datetime.now(datetime.UTC).isoformat(),
        ),
    ))



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
    min_supercell_width: float = MIN_SUPERCELL_WIDTH,
    check_sampling: bool = True,
) -> TDPHResult:
    """Harmonic phonons and one-shot SSCHA force constants Phi(T) for one material.

    Parameters
    ----------
    structure
        pymatgen ``Structure``, ASE ``Atoms``, a structure file, or an MDR entry
        (tarball, folder, ``phonopy_params.yaml(.xz)``; its supercell is used).
    calculator
        Any ASE calculator; None = the default matgl model (``TDPH_MODEL``);
        a string is resolved by ``potentials.resolve_calculator``.
    temperatures
        All temperatures share one harmonic calculation.
    supercell_matrix
        Overrides the MDR supercell / the default rule (widths >= 7.5 A).
    min_supercell_width
        Any chosen supercell (user, MDR or default) narrower than this (A) is extended by the smallest
        integer multiples of its own vectors (``io.inputs.adequate_supercell``), recorded as
        ``supercell_extended_by``; 0 keeps the chosen cell as it is.
    check_sampling
        Widen a supercell whose commensurate q-points sample more than ``THERMAL_SAMPLING_TOLERANCE``
        times the converged harmonic mean-square displacement at the highest temperature (see
        ``harmonic_stage``); False keeps the cell (the result then still records nothing about it).
    settings
        Engine options (estimator, sampling, statistics, self-consistency); unset
        statistics follow the estimator (``SSCHASettings``), explicit ones are kept.
    """
    temps = check_temperatures(temperatures)  # validate before any potential call
    settings = settings or SSCHASettings()
    stage = harmonic_stage(structure, calculator, supercell_matrix, relax, relax_fmax, material_id, progress,
                           min_supercell_width, max(temps) if check_sampling else None, settings)
    return renormalize(stage, temps, settings, keep_force_constants, progress)
