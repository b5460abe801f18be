"""Potentials: choosing and loading a model, its forces, Hessians and relaxations.

Which model (registry), loading it, forces and Hessians for the core, batched forces for GPUs,
relaxation, and a potential's harmonic accuracy against DFT.

Layer: above ``core`` and ``io``; below ``makers``, ``campaign`` and the CLI. Importing this
package imports neither torch nor matgl; they load on first use.
"""

from .accuracy import HarmonicComparison, compare_harmonic_to_dft, comparison_on
from .batched import BatchedForces, forward_forces
from .calculators import matgl_calculator, resolve_calculator
from .forces import CalculatorError, ForceModel, check_elements, is_matgl
from .loading import apply_torch_threads, load_potential
from .registry import (
    DEFAULT_MODEL,
    FOUNDATION_MODEL,
    ModelError,
    check_model_spec,
    model_fingerprint,
    model_spec,
    named_model,
    shipped_model,
)
from .relax import relax_structure

__all__ = [
    "DEFAULT_MODEL",
    "FOUNDATION_MODEL",
    "BatchedForces",
    "CalculatorError",
    "ForceModel",
    "HarmonicComparison",
    "ModelError",
    "apply_torch_threads",
    "check_elements",
    "check_model_spec",
    "compare_harmonic_to_dft",
    "comparison_on",
    "forward_forces",
    "is_matgl",
    "load_potential",
    "matgl_calculator",
    "model_fingerprint",
    "model_spec",
    "named_model",
    "relax_structure",
    "resolve_calculator",
    "shipped_model",
]
