"""Files written by ``tdph run --out``: result JSON, phonopy-loadable force constants, plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plotting import plot_dispersion
from ..schemas import TDPHResult
from .inputs import phonopy_from_document


def phonopy_from_result(result: TDPHResult, force_constants: list | np.ndarray):
    """The phonopy object of a stored result with the given force constants (harmonic or at some T)."""
    _, ph = phonopy_from_document(result)
    ph.force_constants = np.asarray(force_constants, float)
    return ph


def write_outputs(result: TDPHResult, out_dir: str | Path) -> dict[str, Path]:
    """result.json (no force-constant arrays), phonopy_harmonic.yaml, phonopy_<T>K.yaml, dispersion.png.

    The yaml files hold structure, supercell/primitive matrices and full force
    constants: ``phonopy.load("phonopy_300K.yaml")`` gives the renormalized phonons.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    sets = {"harmonic": result.harmonic_force_constants}
    sets.update({f"{t.temperature:g}K": t.force_constants for t in result.temperatures})
    for name, fc in sets.items():
        if fc is None:
            continue
        path = out / f"phonopy_{name}.yaml"
        phonopy_from_result(result, fc).save(str(path), settings={"force_constants": True})
        written[name] = path
    slim = result.model_copy(deep=True)
    slim.harmonic_force_constants = None
    for t in slim.temperatures:
        t.force_constants = None
    written["result"] = out / "result.json"
    written["result"].write_text(slim.model_dump_json(indent=1))
    written["plot"] = plot_dispersion(result, out / "dispersion.png")
    return written
