"""MDR / phonondb entries: raw ``.tar.lzma`` tarball, extracted folder, or ``phonopy_params.yaml(.xz)``."""

from __future__ import annotations

import re
import tarfile
import tempfile
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import phonopy
from phonopy import Phonopy
from phonopy.structure.cells import PrimitiveMatrixAutoDefaultWarning

from .structures import InputError

_TARBALL = re.compile(r"\.tar(\.lzma|\.xz|\.gz|\.bz2)?$")


@dataclass
class MDREntry:
    """One entry: the DFT phonopy object (forces, no force constants yet) and its id."""

    material_id: str
    phonon: Phonopy
    source: str

    @property
    def unitcell(self):
        """The DFT unit cell (``PhonopyAtoms``)."""
        return self.phonon.unitcell

    @property
    def supercell_matrix(self) -> np.ndarray:
        """Integer supercell matrix (3, 3) of the DFT displacements."""
        return np.array(self.phonon.supercell_matrix)

    @property
    def primitive_matrix(self) -> np.ndarray:
        """Primitive matrix (3, 3) of the entry (``PRIMITIVE_AXIS``, or phonopy's ``auto`` choice)."""
        return np.array(self.phonon.primitive_matrix)

    def dft_force_constants(self) -> np.ndarray:
        """Symmetrized DFT harmonic force constants (phonopy order)."""
        if self.phonon.force_constants is None:
            self.phonon.produce_force_constants()
            self.phonon.symmetrize_force_constants()
        return np.array(self.phonon.force_constants)


def is_mdr_entry(path: str | Path) -> bool:
    """True when ``path`` looks like an MDR entry (by name or folder contents; the files are not parsed)."""
    p = Path(path)
    if p.is_dir():
        return (p / "phonopy.conf").exists() or any(p.glob("phonopy_params.yaml*")) or any(p.glob("*/phonopy.conf"))
    return bool(_TARBALL.search(p.name)) or p.name.startswith("phonopy_params.yaml") or p.name.endswith(
        ("phonopy_params.yaml", "phonopy_params.yaml.xz")
    )


def _parse_matrix(text: str, key: str) -> np.ndarray | None:
    m = re.search(rf"^\s*{key}\s*=\s*(.+)$", text, re.MULTILINE)
    if not m:
        return None
    vals = [float(Fraction(v)) for v in m.group(1).split()]
    if len(vals) == 3:
        return np.diag(vals)
    if len(vals) != 9:
        raise ValueError(f"{key} needs 3 or 9 numbers, got {len(vals)}")
    return np.array(vals).reshape(3, 3)


_MP_ID = re.compile(r"(?<![A-Za-z0-9])mp-\d+")


def material_id_from_path(path: Path) -> str:
    """The MDR id of an entry path, else the file name up to its first dot.

    Its own name first (``materials-id-<n>-...`` or ``mp-<n>...``), then the nearest parent folder
    with an id; never a stray ``mp-<digits>`` such as ``tmp-2024``.
    """
    m = re.search(r"materials-id-(\d+)", path.name)
    if m:
        return f"mp-{m.group(1)}"
    for part in (path.name, *(parent.name for parent in path.parents)):
        m = _MP_ID.search(part)
        if m:
            return m.group(0)
    return path.name.split(".")[0]


def _load_folder(folder: Path, material_id: str) -> Phonopy:
    params = sorted(folder.glob("phonopy_params.yaml*"))
    if params:
        return phonopy.load(params[0], produce_fc=False, log_level=0)
    conf = folder / "phonopy.conf"
    if not conf.exists():
        inner = [d for d in folder.iterdir() if d.is_dir() and (d / "phonopy.conf").exists()]
        if len(inner) != 1:
            raise InputError(f"{material_id}: no phonopy.conf or phonopy_params.yaml in {folder}")
        folder, conf = inner[0], inner[0] / "phonopy.conf"
    text = conf.read_text()
    dim = _parse_matrix(text, "DIM")
    if dim is None:
        raise InputError(f"{material_id}: phonopy.conf has no DIM")
    pmat = _parse_matrix(text, "PRIMITIVE_AXIS")
    for required in ("POSCAR-unitcell", "FORCE_SETS"):
        if not (folder / required).exists():
            raise InputError(f"{material_id}: {required} missing in {folder}")
    born = folder / "BORN"
    return phonopy.load(
        supercell_matrix=np.rint(dim).astype(int),
        primitive_matrix=pmat if pmat is not None else "auto",
        unitcell_filename=str(folder / "POSCAR-unitcell"),
        force_sets_filename=str(folder / "FORCE_SETS"),
        born_filename=str(born) if born.exists() else None,
        produce_fc=False,
        log_level=0,
    )


def nac_document(nac_params: dict | None) -> dict | None:
    """Phonopy ``nac_params`` as plain lists (for result documents); None when the entry has no Born charges."""
    if not nac_params or nac_params.get("born") is None or nac_params.get("dielectric") is None:
        return None
    return {"born": np.asarray(nac_params["born"], float).tolist(),
            "dielectric": np.asarray(nac_params["dielectric"], float).tolist(),
            "factor": float(nac_params["factor"]) if nac_params.get("factor") is not None else None}


def nac_array(nac: dict | None) -> dict | None:
    """A stored ``nac_params`` document back as phonopy wants it (arrays; the default factor when None)."""
    if not nac:
        return None
    out = {"born": np.asarray(nac["born"], float), "dielectric": np.asarray(nac["dielectric"], float)}
    if nac.get("factor") is not None:
        out["factor"] = float(nac["factor"])
    return out


def load_mdr_entry(path: str | Path) -> MDREntry:
    """Load any MDR entry form; every failure is an ``InputError`` naming the entry."""
    path = Path(path)
    material_id = material_id_from_path(path)
    if not path.exists():
        raise InputError(f"{material_id}: {path} not found")
    # phonopy 4 notes once per entry that an omitted primitive matrix now means 'auto'; the matrix it
    # picks is kept on the entry, so the note would only flood campaign and fine-tuning logs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrimitiveMatrixAutoDefaultWarning)
        try:
            if path.is_dir():
                ph = _load_folder(path, material_id)
            elif _TARBALL.search(path.name):
                with tempfile.TemporaryDirectory(prefix="tdph-mdr-") as tmp:
                    with tarfile.open(path) as tar:
                        tar.extractall(tmp, filter="data")
                    ph = _load_folder(Path(tmp), material_id)
            else:
                ph = phonopy.load(path, produce_fc=False, log_level=0)
        except InputError:
            raise
        except Exception as exc:  # corrupt archives and files raise many types
            raise InputError(f"{material_id}: corrupt or unreadable MDR entry ({type(exc).__name__}: {exc})") from exc
    if ph.dataset is None or (not ph.dataset.get("first_atoms") and ph.dataset.get("forces") is None):
        raise InputError(f"{material_id}: MDR entry has no displacement-force data")
    forces = ph.dataset.get("forces")
    if forces is None:
        forces = [d.get("forces") for d in ph.dataset.get("first_atoms", []) if d.get("forces") is not None]
    if any(not np.all(np.isfinite(np.asarray(f, float))) for f in (forces if isinstance(forces, list) else [forces])):
        # the DFT reference would silently come out empty: a corrupt entry is refused by name instead
        raise InputError(f"{material_id}: the entry's DFT forces contain NaN or inf (corrupt FORCE_SETS or "
                         "phonopy_params)")
    return MDREntry(material_id=material_id, phonon=ph, source=str(path))
