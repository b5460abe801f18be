"""Small @job functions: plain arguments in, pydantic documents out, arrays to the data store.

The calculator travels as a spec string (model folder/name, ``emt``,
``module:factory``) and is resolved once per worker process (cached).
"""

from __future__ import annotations

from typing import Any

from jobflow import job
from pymatgen.core import Structure

from ..core.sscha import SSCHASettings
from ..engine import HarmonicStage, harmonic_stage, renormalize, run_temperature_phonons
from ..io.inputs import StructureLike, resolve_input
from ..schemas import HarmonicResult, TDPHResult, register_monty_encoding
from .documents import MaterialSummary, RelaxResult

register_monty_encoding()  # the documents these jobs return are stored with packed arrays

# Output keys routed to the job store's "data" store (GridFS): never inline in the document.
DATA_KEYS = ["harmonic_force_constants", "force_constants", "reference_forces", "band_structure", "dos"]


def _structure(structure: StructureLike | dict) -> StructureLike:
    return Structure.from_dict(structure) if isinstance(structure, dict) else structure


@job(output_schema=RelaxResult)
def relax_job(structure: StructureLike | dict, calculator: str | None, fmax: float, material_id: str | None = None
              ) -> RelaxResult:
    """Relax positions and cell under the structure's symmetry to ``fmax`` (eV/A); id defaults to ``material``."""
    from ..potentials import relax_structure, resolve_calculator

    unitcell, _, _, mid = resolve_input(_structure(structure), material_id)
    relaxed, info = relax_structure(unitcell, resolve_calculator(calculator), fmax, mid or "material")
    return RelaxResult(material_id=mid or "material",
                       structure=Structure(relaxed.cell, relaxed.symbols, relaxed.scaled_positions).as_dict(),
                       relaxation=info)


@job(data=DATA_KEYS)  # no output_schema: monty would call the documents' as_dict on the class
def harmonic_job(structure: StructureLike | dict, calculator: str | None, supercell_matrix: list | None = None,
                 material_id: str | None = None) -> HarmonicResult:
    """Harmonic stage (supercell, reference forces, Phi_HA); supercell_matrix None: the entry's or the width rule."""
    return harmonic_stage(_structure(structure), calculator, supercell_matrix, material_id=material_id).document()


@job(data=DATA_KEYS)
def sscha_job(harmonic: HarmonicResult | dict, calculator: str | None, temperatures: list[float],
              settings: dict[str, Any]) -> TDPHResult:
    """One-shot renormalization at each temperature (K) from a harmonic document; settings: SSCHASettings kwargs."""
    doc = harmonic if isinstance(harmonic, HarmonicResult) else HarmonicResult.model_validate(harmonic)
    return renormalize(HarmonicStage.from_document(doc, calculator), temperatures, SSCHASettings(**settings))


@job(output_schema=MaterialSummary)
def metrics_job(result: TDPHResult | dict) -> MaterialSummary:
    """The queryable `MaterialSummary` of a result."""
    doc = result if isinstance(result, TDPHResult) else TDPHResult.model_validate(result)
    return MaterialSummary.from_result(doc)


def compute_material(structure: StructureLike | dict, calculator: str | None, temperatures: list[float],
                     settings: dict[str, Any], supercell_matrix: list | None = None, relax: bool = False,
                     material_id: str | None = None) -> TDPHResult:
    """Every step of one material from a job's plain arguments.

    Shared by ``material_job`` and the campaign's chunk job, so both compute a material the same way.
    """
    return run_temperature_phonons(_structure(structure), calculator, temperatures, supercell_matrix,
                                   SSCHASettings(**settings), relax=relax, material_id=material_id)


@job(data=DATA_KEYS)
def material_job(structure: StructureLike | dict, calculator: str | None, temperatures: list[float],
                 settings: dict[str, Any], supercell_matrix: list | None = None, relax: bool = False,
                 material_id: str | None = None) -> TDPHResult:
    """All steps of one material in one job: one model load per worker, one store write."""
    return compute_material(structure, calculator, temperatures, settings, supercell_matrix, relax, material_id)
