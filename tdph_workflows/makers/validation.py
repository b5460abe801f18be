"""DFT-validation flow (paper Fig. 4D-F) as jobflow jobs and a Maker.

relax -> displacements (phonopy +/- on the MDR supercell, hiphive MC-rattled supercells)
-> forces (the potential in-process, or VASP static runs through atomate2/custodian)
-> fc2 + fc3/fc4 fit -> per temperature: SCPH, kappa_L at three levels, figures.
The physics is in ``validation/pipeline.py``; these jobs only move data between its steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jobflow import Flow, Job, Maker, Response, job
from pydantic import BaseModel
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from ..packing import pack, unpack
from ..validation.pipeline import Setup, ValidationSettings

CALCULATORS_WITHOUT_MODEL = ("vasp",)


class TemperatureValidation(BaseModel):
    """Validation at one temperature (K): kappa_L per level (W/mK), SCPH summary, rates (1/ps), figure paths."""

    temperature: float
    kappa: dict[str, float]  # level -> W/mK (trace/3)
    kappa_tensor: dict[str, list]
    scph: dict
    n_imaginary_harmonic: int
    fourph_factor: float | None = None  # kappa(3+4ph)/kappa(3ph) on the coarser 4ph mesh, applied to SCPH+3ph
    figures: dict[str, str]
    timings: dict[str, float]
    rates: dict = {}  # packed (n_ir, n_band) arrays, 1/ps
    frequencies: dict = {}  # packed SCPH frequencies on the irreducible kappa mesh


class ValidationResult(BaseModel):
    """Output of the validation flow of one material: fit metrics and one `TemperatureValidation` per T."""

    material_id: str
    formula: str
    calculator: str
    settings: dict
    fit: dict
    temperatures: list[TemperatureValidation]
    timings: dict[str, float]


def _as_structure(value: Structure | dict) -> Structure:
    """A Structure from itself or its dict (jobflow hands MSONable dicts back as objects)."""
    return value if isinstance(value, Structure) else Structure.from_dict(value)


def _setup(doc: dict) -> Setup:
    from ..io.structures import to_phonopy_atoms

    pm = doc["primitive_matrix"]
    return Setup(doc["material_id"], to_phonopy_atoms(_as_structure(doc["unitcell"]), doc["material_id"]),
                 np.array(doc["supercell_matrix"], int), pm if isinstance(pm, str) else np.array(pm, float),
                 doc.get("nac_params"))


def _structure_of(relaxed: Any) -> Structure:
    """Our RelaxResult, an atomate2 TaskDoc (output.structure) or a Structure (dict)."""
    if hasattr(relaxed, "output") and hasattr(relaxed.output, "structure"):
        return relaxed.output.structure
    if isinstance(relaxed, dict) and "structure" in relaxed:
        relaxed = relaxed["structure"]
    elif hasattr(relaxed, "structure"):
        relaxed = relaxed.structure
    return _as_structure(relaxed)


@job
def displacements_job(relaxed: Any, source: str, settings: dict, material_id: str | None = None) -> dict:
    """The relaxed cell on the source's (MDR) supercell: phonopy's and the rattled supercells."""
    from ..io.inputs import choose_supercell, resolve_input
    from ..io.mdr import is_mdr_entry, load_mdr_entry
    from ..io.structures import to_phonopy_atoms
    from ..validation.pipeline import harmonic_displacements, rattled_supercells

    _, smat_entry, pmat, mid = resolve_input(source, material_id)
    structure = _structure_of(relaxed)
    unitcell = to_phonopy_atoms(structure, mid)
    smat, _ = choose_supercell(None, smat_entry, unitcell, mid)
    nac = load_mdr_entry(source).phonon.nac_params if is_mdr_entry(source) else None
    nac = None if nac is None else {k: np.asarray(v).tolist() if k in ("born", "dielectric") else v
                                    for k, v in nac.items()}
    setup = Setup(mid or structure.composition.reduced_formula, unitcell, smat, pmat, nac)
    ph, harmonic = harmonic_displacements(setup)
    rattled = rattled_supercells(setup, ValidationSettings.from_dict(settings))
    to_dict = [AseAtomsAdaptor.get_structure(a).as_dict() for a in (*harmonic, *rattled)]
    return {"material_id": setup.material_id, "formula": structure.composition.reduced_formula,
            "unitcell": structure.as_dict(), "supercell_matrix": np.asarray(smat).tolist(),
            "primitive_matrix": pmat if isinstance(pmat, str) else np.asarray(pmat).tolist(),
            "dataset": ph.dataset, "n_harmonic": len(harmonic), "supercells": to_dict, "nac_params": nac}


@job
def forces_job(displacements: dict, calculator: str | None, vasp_options: dict | None = None,
               category: str | None = None) -> Response | dict:
    """Forces on every supercell: in-process with the potential, or VASP static runs (a replacing flow)."""
    structures = [_as_structure(d) for d in displacements["supercells"]]
    if calculator == "vasp":
        from ..validation.vasp import paper_static_maker, vasp_force_flow

        flow = vasp_force_flow(structures, paper_static_maker(**(vasp_options or {})),
                               name=f"vasp forces {displacements['material_id']}")
        if category:  # the static fireworks created at run time go to the same workers as the rest
            flow.update_config({"manager_config": {"_category": category}})
        return Response(replace=flow)
    from ..potentials import ForceModel, resolve_calculator

    # displaced copies of one supercell: ForceModel checks the elements and the finiteness of the forces
    model = ForceModel(resolve_calculator(calculator), AseAtomsAdaptor.get_atoms(structures[0]),
                       displacements["material_id"])
    started = time.perf_counter()
    forces = model.forces(np.array([s.cart_coords for s in structures]))
    return {"forces": pack(forces), "seconds": time.perf_counter() - started}


def _forces_array(forces: dict) -> np.ndarray:
    value = forces["forces"]
    return unpack(value) if isinstance(value, dict) else np.array(value, float)


@job
def fit_job(displacements: dict, forces: dict, settings: dict) -> dict:
    """fc2 from the phonopy displacements, fc3/fc4 by compressive sensing on the rattled ones."""
    from ..validation.pipeline import fc2_from_forces, fcp_to_text, fit_anharmonic

    setup, cfg = _setup(displacements), ValidationSettings.from_dict(settings)
    all_forces, n_h = _forces_array(forces), displacements["n_harmonic"]
    t0 = time.perf_counter()
    fc2 = fc2_from_forces(setup, displacements["dataset"], all_forces[:n_h])
    t_fc2 = time.perf_counter() - t0
    rattled = [AseAtomsAdaptor.get_atoms(_as_structure(d)) for d in displacements["supercells"][n_h:]]
    fit, shells = fit_anharmonic(setup, rattled, all_forces[n_h:], fc2, cfg)
    metrics = {**fit.metrics(), "shells_3": shells[0], "shells_4": shells[1]}
    return {"fc2": pack(fc2), "fcp": fcp_to_text(fit.fcp), "fit": metrics,
            "timings": {"fc2_s": t_fc2, "fit_s": fit.wall_time_s}}


@job
def temperature_job(displacements: dict, fitted: dict, settings: dict, calculator: str, out_dir: str,
                    forces: dict | None = None) -> ValidationResult:
    """SCPH and kappa_L at three levels at each temperature, with the figures of paper Fig. 4E-F."""
    from ..validation.pipeline import fcp_from_text, kappa_levels, self_consistent_phonons, sparse_force_constants
    from ..validation.plots import plot_dispersion_with_pdos, plot_scattering_rates

    setup, cfg = _setup(displacements), ValidationSettings.from_dict(settings)
    fc2 = unpack(fitted["fc2"])
    t0 = time.perf_counter()
    fc3, fc4 = sparse_force_constants(fcp_from_text(fitted["fcp"]), setup.supercell_atoms())
    timings = {"expand_fcs_s": time.perf_counter() - t0, **fitted["timings"]}
    if forces is not None and "seconds" in forces:
        timings["forces_s"] = forces["seconds"]
    folder = Path(out_dir) / setup.material_id
    results = []
    for temperature in cfg.temperatures:
        t0 = time.perf_counter()
        scph = self_consistent_phonons(setup, fc2, fc4, temperature, cfg)
        t_scph = time.perf_counter() - t0
        levels = kappa_levels(setup, fc2, scph.fc2_eff, fc3, fc4, temperature, cfg)
        tag = f"{temperature:g}K"
        figures = {
            "scattering_rates": str(plot_scattering_rates(*levels.rate_plot,
                                                          folder / f"scattering_rates_{tag}.png",
                                                          f"{displacements['formula']} at {temperature:g} K")),
            "dispersion": str(plot_dispersion_with_pdos(setup.phonopy(with_nac=True), fc2, scph.fc2_eff, temperature,
                                                        folder / f"dispersion_pdos_{tag}.png",
                                                        title=f"{displacements['formula']}")),
        }
        results.append(TemperatureValidation(
            temperature=temperature, kappa=levels.kappa, kappa_tensor=levels.kappa_tensor, scph=scph.summary(),
            n_imaginary_harmonic=levels.n_imaginary_harmonic, figures=figures,
            timings={"scph_s": t_scph, **levels.timings}, fourph_factor=levels.fourph_factor,
            rates={k: pack(v) for k, v in levels.rates.items()}, frequencies={"scph": pack(levels.frequencies)}))
    return ValidationResult(material_id=setup.material_id, formula=displacements["formula"], calculator=calculator,
                            settings=cfg.as_dict(), fit=fitted["fit"], temperatures=results, timings=timings)


@job
def kappa_summary_job(results: list, out_dir: str) -> dict:
    """kappa_L of every validated material at three levels (paper Fig. 4D) and a CSV table."""
    from ..validation.plots import plot_kappa_bars

    docs = [r if isinstance(r, ValidationResult) else ValidationResult.model_validate(r) for r in results]
    rows, figures = [], {}
    temperatures = sorted({t.temperature for d in docs for t in d.temperatures})
    for temperature in temperatures:
        table = {f"{d.formula} ({d.material_id})": t.kappa for d in docs for t in d.temperatures
                 if t.temperature == temperature}
        figures[f"{temperature:g}"] = str(plot_kappa_bars(table, Path(out_dir) / f"kappa_levels_{temperature:g}K.png",
                                                          temperature))
        rows += [{"material": m, "temperature": temperature, **k} for m, k in table.items()]
    import pandas as pd

    pd.DataFrame(rows).to_csv(Path(out_dir) / "kappa_levels.csv", index=False)
    return {"rows": rows, "figures": figures}


@dataclass
class ValidationMaker(Maker):
    """First-principles validation of one material (paper Fig. 4): kappa_L at HA+3ph, SCPH+3ph, SCPH+3,4ph.

    Parameters
    ----------
    calculator
        "vasp" (atomate2 makers with the paper's PBEsol settings, custodian), or a potential spec
        (model folder/name, "emt"; None = the default model) evaluated in-process.
    settings
        ``ValidationSettings`` fields (temperatures, rattled structures, shells, fit method, meshes, SCPH).
    out_dir
        Folder for the figures (one sub-folder per material).
    relax_fmax
        Force tolerance of the potential's relaxation (eV/A); VASP uses EDIFFG = -1e-3.
    vasp_options
        Keyword arguments of ``paper_relax_maker`` / ``paper_static_maker`` (wall_time_s, vasp_cmd,
        potcar_spec, custodian_kwargs) for ``calculator="vasp"``.
    category
        FireWorks category of every job, including the VASP statics created at run time.
    """

    name: str = "tdph validation"
    calculator: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    out_dir: str = "tdph_out/validation"
    relax_fmax: float = 1e-3
    vasp_options: dict[str, Any] = field(default_factory=dict)
    category: str | None = "cpu"

    def __post_init__(self) -> None:
        ValidationSettings.from_dict(self.settings)  # fail before any job runs
        self.out_dir = str(Path(self.out_dir).resolve())

    def relax(self, source: str, material_id: str | None) -> Job | Flow:
        """The relaxation step: ``paper_relax_maker`` (atomate2) for ``vasp``, else ``relax_job`` with the potential."""
        if self.calculator == "vasp":
            from ..io.inputs import resolve_input
            from ..validation.vasp import paper_relax_maker

            unitcell, _, _, _ = resolve_input(source, material_id)
            structure = Structure(unitcell.cell, unitcell.symbols, unitcell.scaled_positions)
            return paper_relax_maker(**self.vasp_options).make(structure)
        from .jobs import relax_job

        return relax_job(source, self.calculator, self.relax_fmax, material_id)

    def make(self, source: str, material_id: str | None = None) -> Flow:
        """``source``: an MDR entry (its supercell is used) or a structure file."""
        source = str(Path(source).resolve())
        relax = self.relax(source, material_id)
        disp = displacements_job(relax.output, source, self.settings, material_id)
        forces = forces_job(disp.output, self.calculator, self.vasp_options, self.category)
        fitted = fit_job(disp.output, forces.output, self.settings)
        final = temperature_job(disp.output, fitted.output, self.settings, self.calculator or "model",
                                self.out_dir, forces.output)
        jobs = [relax, disp, forces, fitted, final]
        for j, step in zip(jobs[1:], ("displacements", "forces", "fit", "scph+kappa"), strict=True):
            j.name = f"{self.name} {step} {material_id or Path(source).name}"
        flow = Flow(jobs, output=final.output, name=f"{self.name} {material_id or Path(source).name}")
        if self.category:
            flow.update_config({"manager_config": {"_category": self.category}})
        return flow

    def make_many(self, sources: list[str]) -> Flow:
        """One flow per material plus the kappa bar chart over all of them (Fig. 4D)."""
        flows = [self.make(s) for s in sources]
        summary = kappa_summary_job([f.output for f in flows], self.out_dir)
        summary.name = f"{self.name} kappa summary"
        if self.category:
            summary.update_config({"manager_config": {"_category": self.category}})
        return Flow([*flows, summary], output=summary.output, name=f"{self.name} ({len(sources)} materials)")
