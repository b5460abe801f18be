"""Loading matgl potentials once per process, and the thread counts a worker computes with."""

from __future__ import annotations

import functools
import logging

from ..settings import current_settings
from .registry import ModelError, model_folder, model_spec

log = logging.getLogger(__name__)


def load_potential(spec: str | None = None, dtype: str = "float32"):
    """Load a matgl potential by folder or name; cached per process.

    Parameters
    ----------
    spec
        A model folder, a shipped or ``TDPH_MODEL_PATH`` name, or a matgl hub name; None = ``model_spec()``.
        The cache is keyed by the resolved spec, so a later change of ``TDPH_MODEL`` is honoured.
    dtype
        ``float32`` (matgl's) or ``float64``.

    Raises
    ------
    ModelError
        Missing folder or files, or anything matgl cannot load, naming the model.
    """
    return _cached_potential(spec or model_spec(), dtype)


@functools.lru_cache(maxsize=4)
def _cached_potential(spec: str, dtype: str):
    import matgl

    folder = model_folder(spec)
    if folder is None:
        log.info("loading matgl model %r by name (matgl hub; needs network unless cached)", spec)
    try:
        pot = matgl.load_model(str(folder) if folder else spec)
    except Exception as exc:  # matgl raises many types; name the model either way
        raise ModelError(f"could not load matgl model {spec!r}: {exc}") from exc
    if not hasattr(pot, "model") or not hasattr(pot.model, "element_types"):
        raise ModelError(f"{spec!r} is not a matgl interatomic potential")
    if dtype == "float64":
        pot = pot.double()
    return pot


load_potential.cache_clear = _cached_potential.cache_clear  # type: ignore[attr-defined]
load_potential.cache_info = _cached_potential.cache_info  # type: ignore[attr-defined]


def apply_torch_threads() -> None:
    """``TDPH_TORCH_THREADS`` (1 is fastest per worker on CPU) applied on every resolve, not only the first load.

    The same count also caps numpy/scipy's BLAS threads (``TDPH_BLAS_THREADS`` overrides it):
    the engine's linear algebra (symfc basis, normal equations, Cholesky solves, eigh) ran with
    OpenBLAS's default of one thread per core, and on a loaded 2-core machine the spin-waiting
    threads made a 2000x2000 Cholesky solve 17x slower (2.26 s vs 0.13 s) and a 400x400 eigh
    100x slower; one campaign worker = one thread is what the per-worker targets assume.
    """
    settings = current_settings()
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    blas = settings.blas_threads or settings.torch_threads
    if blas:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=blas, user_api="blas")
