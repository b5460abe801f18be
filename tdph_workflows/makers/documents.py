"""Small output documents of the workflow steps (the large ones live in ``tdph_workflows.schemas``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from ..schemas import DFTReference, RelaxationInfo, SiteRenormalization, TDPHResult, structure_as_dict


class RelaxResult(BaseModel):
    """Output of `relax_job`: the relaxed unit cell and how the relaxation went."""

    material_id: str = Field(description="Material id (the file stem or MDR id when not given)")
    structure: dict = Field(description="pymatgen Structure dict of the relaxed cell")
    relaxation: RelaxationInfo = Field(description="How the relaxation went")

    _structure_dict = field_validator("structure", mode="before")(structure_as_dict)


class TemperatureSummary(BaseModel):
    """The scalar metrics of one `TemperatureResult` (K, fractions, THz, A; no arrays), for queries."""

    temperature: float = Field(description="Temperature (K)")
    l2_shift: float = Field(description="Relative L2 change of the commensurate frequencies, harmonic to T")
    l2_stderr: float = Field(description="Jackknife standard error of l2_shift")
    r_full: float = Field(description="||Phi(T) - Phi_HA|| / ||Phi_HA|| over the whole supercell")
    r_full_robust: float = Field(description="r_full with the noisiest long-range pairs left out")
    r_onsite_max: float = Field(description="Largest per-site on-site renormalization R_onsite")
    sites: list[SiteRenormalization] = Field(description="R_onsite of every unit-cell site")
    min_frequency: float = Field(description="Lowest commensurate frequency at T (THz; negative = imaginary)")
    n_imaginary: int = Field(description="Commensurate modes below -0.1 THz at T")
    n_samples: int = Field(description="Thermal samples (force calls) used at T")
    converged: bool = Field(description="Whether the error target was met before the sample cap")
    max_rms_displacement: float = Field(description="Largest per-atom rms sampled displacement (A)")
    lindemann_ratio: float | None = Field(None, description="3D rms displacement / nearest-neighbour distance")
    grade: str = Field("", description="Trust grade at this temperature: A, B, C or F ('' for ungraded results)")
    grade_reasons: list[str] = Field(default_factory=list, description="'<grade> <code>: <why>', worst first")


class MaterialSummary(BaseModel):
    """The queryable record of one material: metrics only, no arrays."""

    material_id: str = Field(description="Material id (MDR id, file stem or as given)")
    formula: str = Field(description="Reduced formula")
    elements: list[str] = Field(description="Element symbols, sorted")
    spacegroup: str = Field(description="International symbol and number, e.g. 'Pm-3m (221)'")
    spacegroup_number: int = Field(description="International space-group number")
    n_atoms_supercell: int = Field(description="Atoms in the sampled supercell")
    harmonic_min_frequency: float = Field(description="Lowest harmonic commensurate frequency (THz)")
    harmonic_n_imaginary: int = Field(description="Harmonic commensurate modes below -0.1 THz")
    temperatures: list[TemperatureSummary] = Field(description="The metrics at each temperature")
    calculator: str = Field(description="Model folder/name or calculator class")
    wall_time: float = Field(description="Seconds the whole material took")
    unitcell: dict | None = Field(None, description="pymatgen Structure dict (features, prototypes, polyhedra)")
    dft_reference: DFTReference | None = Field(None, description="Model vs DFT harmonic frequencies (MDR inputs)")
    supercell_extended_by: list[int] | None = Field(None, description="Multiples that widened a too-narrow supercell")
    grade: str = Field("", description="Trust grade of the material: the worst of its temperatures")
    grade_reasons: list[str] = Field(default_factory=list, description="Reasons of the material's grade, worst first")

    @classmethod
    def from_result(cls, result: TDPHResult) -> MaterialSummary:
        """The summary of a full result; ``wall_time`` is its ``total`` timing (s), 0 when missing."""
        from pymatgen.core import Structure

        elements = sorted({el.symbol for el in Structure.from_dict(result.unitcell).composition.elements})
        return cls(
            material_id=result.material_id,
            formula=result.formula,
            elements=elements,
            spacegroup=result.spacegroup,
            spacegroup_number=result.spacegroup_number,
            n_atoms_supercell=result.n_atoms_supercell,
            harmonic_min_frequency=result.harmonic.min_frequency,
            harmonic_n_imaginary=result.harmonic.n_imaginary,
            temperatures=[
                TemperatureSummary(
                    temperature=t.temperature, l2_shift=t.l2_shift, l2_stderr=t.l2_stderr, r_full=t.r_full,
                    r_full_robust=t.r_full_robust, r_onsite_max=t.r_onsite_max, sites=t.sites,
                    min_frequency=t.spectrum.min_frequency, n_imaginary=t.spectrum.n_imaginary,
                    n_samples=t.n_samples, converged=t.converged, max_rms_displacement=t.max_rms_displacement,
                    lindemann_ratio=t.lindemann_ratio, grade=t.trust.grade if t.trust else "", grade_reasons=t.trust.reasons if t.trust else [],
                )
                for t in result.temperatures
            ],
            calculator=result.provenance.calculator,
            wall_time=result.timings.get("total", 0.0),
            unitcell=result.unitcell,
            dft_reference=result.dft_reference,
            supercell_extended_by=result.supercell_extended_by,
            grade=result.trust.grade if result.trust else "",
            grade_reasons=result.trust.reasons if result.trust else [],
        )
