"""Which model: the default, names of shipped and local models, folders, provenance hashes.

No torch or matgl import here: resolving a name must stay cheap for the CLI and the campaign
submitter, which never evaluate a force.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from ..settings import current_settings

# the best measured model (docs/finetune.md): harmonic MAE vs DFT 0.81 THz on 50 held-out MDR compounds
# against 2.20 for its foundation model (stability classified as DFT does: 84 % vs 70 %)
DEFAULT_MODEL = "TDPH-M3GNet-MDR-PBEsol-2026.11"
# matgl's universal potential that the fine-tunes start from; loads by name (hub, or TDPH_MODEL_PATH)
FOUNDATION_MODEL = "M3GNet-PES-MatPES-PBE-2025.2"
MODEL_FILES = ("model.json", "model.pt", "state.pt")
SHIPPED_MODELS = Path(__file__).resolve().parent.parent / "models"  # the project's own weights


class ModelError(RuntimeError):
    """The potential could not be found, loaded or applied."""


def shipped_model(spec: str) -> Path | None:
    """The folder of a model shipped with tdph (e.g. ``TDPH-M3GNet-MDR-PBEsol-2026.11``), else None."""
    path = SHIPPED_MODELS / spec
    return path if "/" not in spec and spec and (path / "model.json").is_file() else None


def named_model(spec: str) -> Path | None:
    """The folder of a model known by name: shipped with tdph, else found in a folder of ``TDPH_MODEL_PATH``.

    ``TDPH_MODEL_PATH`` (folders separated by ``os.pathsep``) points names such as
    ``M3GNet-PES-MatPES-PBE-2025.2`` at local copies, so they load offline instead of from matgl's hub.
    """
    shipped = shipped_model(spec)
    if shipped or not spec or "/" in spec or os.sep in spec:
        return shipped
    for root in current_settings().model_path_folders():
        if (root / spec / "model.json").is_file():
            return root / spec
    return None


def model_spec() -> str:
    """The model to use: ``TDPH_MODEL`` (folder or matgl name), else the default name."""
    return current_settings().model or DEFAULT_MODEL


def looks_like_path(spec: str) -> bool:
    """True for specs a user meant as a folder (``./m``, ``/m``, ``~/m``, ``a/b`` with an existing parent)."""
    return spec.startswith((".", "/", "~")) or os.sep in spec and Path(spec).parent.exists()


def model_folder(spec: str) -> Path | None:
    """The local folder a spec names (shipped, ``TDPH_MODEL_PATH`` or a path), else None (a hub name).

    Raises
    ------
    ModelError
        The spec looks like a folder that does not exist or lacks a matgl model's files: matgl
        silently falls back to the network for a mistyped path, which we never allow.
    """
    path = named_model(spec) or Path(spec).expanduser()
    if path.is_dir():
        missing = [f for f in MODEL_FILES if not (path / f).is_file()]
        if missing:
            raise ModelError(f"model folder {path} is not a matgl model: missing {', '.join(missing)}")
        return path.resolve()
    if looks_like_path(spec) or path.exists():
        raise ModelError(f"model folder {spec!r} does not exist (set TDPH_MODEL to a matgl model folder or name)")
    return None


def check_model_spec(spec: str) -> str:
    """What a calculator spec names, checked without loading it (for ``campaign submit``).

    Returns
    -------
    str
        ``"emt"``, ``"factory"``, ``"folder"`` or ``"hub name"`` (not found locally: matgl would download it).

    Raises
    ------
    ModelError
        A folder that does not exist or is not a matgl model, or a ``module:factory`` whose module
        cannot be found.
    """
    import importlib.util

    if spec.lower() in ("emt", "", "default", "m3gnet"):
        return "emt" if spec.lower() == "emt" else "folder"
    if ":" in spec and not Path(spec).exists():
        module_name = spec.partition(":")[0]
        try:
            found = importlib.util.find_spec(module_name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise ModelError(f"calculator factory {spec!r}: module {module_name!r} cannot be imported here")
        return "factory"
    return "folder" if model_folder(spec) is not None else "hub name"


@functools.lru_cache(maxsize=16)
def model_fingerprint(spec: str) -> str | None:
    """sha256 (16 hex) of a model folder's files, for provenance; None for names and other calculators."""
    path = named_model(spec) or Path(spec).expanduser()
    if not path.is_dir():
        return None
    h = hashlib.sha256()
    for name in MODEL_FILES:
        if (path / name).is_file():
            h.update((path / name).read_bytes())
    return h.hexdigest()[:16]
