"""Files written by ``tdph run --out``: result JSON, phonopy-loadable force constants, plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.phonons import compact_force_constants
from ..plotting import plot_dispersion
from ..schemas import TDPHResult
from .inputs import phonopy_from_document


def phonopy_from_result(result: TDPHResult, force_constants: list | np.ndarray):
    """The phonopy object of a stored result with the given force constants (harmonic or at some T).

    A polar MDR entry's Born charges and dielectric tensor come with it (``phonopy.load`` of a written
    file then gives the LO-TO splitting).
    """
    _, ph = phonopy_from_document(result, with_nac=True)
    ph.force_constants = np.asarray(force_constants, float)
    return ph


OUTPUT_PATTERNS = ("result.json", "phonopy_*.yaml", "phonopy_*.yaml.xz", "dispersion.*")  # what write_outputs writes


class OutputFolderError(ValueError):
    """An output folder that cannot take this run's files; checked before anything is computed."""


def prepare_output_folder(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Check (before any computing) that ``out_dir`` can take a run's files, and clear an earlier run's.

    Parameters
    ----------
    out_dir
        The folder; when missing, :func:`write_outputs` creates it (a refused run leaves nothing behind).
    overwrite
        Remove the files of an earlier run (:data:`OUTPUT_PATTERNS`) instead of refusing: two runs in
        one folder would mix their files (one material's result.json beside another's yaml).

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    OutputFolderError
        When it is a file, lies under a file, cannot be written, or holds an earlier run and ``overwrite``
        is False.
    """
    import os
    import tempfile

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"--out {out} is a file, not a folder")
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())  # created only when writing
    if not existing.is_dir():
        raise OutputFolderError(f"--out {out} cannot be written ({existing} is a file)")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".tdph-write-test-"):
            pass
    except OSError as exc:
        raise OutputFolderError(f"--out {out} cannot be written ({exc.strerror or exc})") from None
    if not out.exists():
        return out
    earlier = sorted({p.name for pattern in OUTPUT_PATTERNS for p in out.glob(pattern)})
    if earlier and not overwrite:
        raise OutputFolderError(f"--out {out} holds an earlier run ({', '.join(earlier[:3])}"
                                f"{', ...' if len(earlier) > 3 else ''}): pass --overwrite or choose another folder")
    for name in earlier:
        os.remove(out / name)
    return out


def write_outputs(result: TDPHResult, out_dir: str | Path, figure_format: str = "png",
                  dpi: float | None = None) -> dict[str, Path]:
    """result.json (no force-constant arrays), phonopy_harmonic.yaml.xz, phonopy_<T>K.yaml.xz, dispersion.<format>.

    ``figure_format`` is png, pdf or svg (vector formats for papers); ``dpi`` sets a png's resolution.

    The yaml files hold structure, supercell/primitive matrices, compact force constants and, for polar
    MDR entries, Born charges and dielectric tensor: ``phonopy.load("phonopy_300K.yaml.xz")`` gives the
    renormalized phonons.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    sets = {"harmonic": result.harmonic_force_constants}
    sets.update({f"{t.temperature:g}K": t.force_constants for t in result.temperatures})
    for name, fc in sets.items():
        if fc is None:
            continue
        phonon = phonopy_from_result(result, fc)
        # compact (primitive x supercell) force constants, xz-compressed: phonopy.load reads them as they are
        phonon.force_constants = compact_force_constants(phonon, phonon.force_constants)
        path = Path(phonon.save(str(out / f"phonopy_{name}.yaml"), settings={"force_constants": True},
                                compression=True))
        written[name] = path
    slim = result.model_copy(deep=True)
    slim.harmonic_force_constants = None
    for t in slim.temperatures:
        t.force_constants = None
    written["result"] = out / "result.json"
    written["result"].write_text(slim.model_dump_json(indent=1))
    written["plot"] = plot_dispersion(result, out / f"dispersion.{figure_format}", dpi)
    return written
