"""ASE calculators from a spec: a matgl model, ``emt``, or any ``module:factory``."""

from __future__ import annotations

import importlib
from pathlib import Path

from ase.calculators.calculator import Calculator

from .loading import apply_torch_threads, load_potential
from .registry import ModelError


def matgl_calculator(spec: str | None = None) -> Calculator:
    """The matgl ``PESCalculator`` (stress in eV/A^3) for a model folder or name; None = the default model."""
    from matgl.ext.ase import PESCalculator

    pot = load_potential(spec)
    apply_torch_threads()
    return PESCalculator(pot, stress_unit="eV/A3")


def resolve_calculator(spec: str | None = None) -> Calculator:
    """An ASE calculator for a user's spec.

    Parameters
    ----------
    spec
        None, ``""``, ``default`` or ``m3gnet``: the default model (``TDPH_MODEL``); ``emt``: ASE's EMT;
        ``module:factory``: ``factory()`` from an importable module (any ASE calculator, e.g.
        ``sevenn.calculator:SevenNetCalculator``); anything else: a matgl model folder or name.

    Raises
    ------
    ModelError
        The factory cannot be imported or returns something that is not a calculator, or the model
        cannot be loaded.
    """
    if spec is None or spec in ("", "default", "m3gnet"):
        return matgl_calculator(None)
    if spec.lower() == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    if ":" in spec and not Path(spec).exists():
        module_name, _, factory_name = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), factory_name)
        except (ImportError, AttributeError) as exc:
            raise ModelError(f"cannot import calculator factory {spec!r}: {exc}") from exc
        calc = factory()
        if not isinstance(calc, Calculator) and not hasattr(calc, "get_forces"):
            raise ModelError(f"{spec!r} returned {type(calc).__name__}, not an ASE calculator")
        return calc
    return matgl_calculator(spec)
