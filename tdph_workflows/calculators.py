"""Calculators: model loading (once per process), ``module:factory`` specs, and
the force / Hessian callables the physics core consumes.

Any ASE calculator works. For matgl potentials there is a fast path: forces of
many displaced supercells are evaluated as one batched graph, and Hessians come
from autograd instead of 6N finite-difference force calls.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

log = logging.getLogger(__name__)

# the best measured model (docs/finetune.md): harmonic MAE vs DFT 0.81 THz on 50 held-out MDR compounds
# against 2.20 for its foundation model (stability classified as DFT does: 84 % vs 70 %)
DEFAULT_MODEL = "TDPH-M3GNet-MDR-PBEsol-2026.11"
# matgl's universal potential that the fine-tunes start from; loads by name (hub, or TDPH_MODEL_PATH)
FOUNDATION_MODEL = "M3GNet-PES-MatPES-PBE-2025.2"
MODEL_FILES = ("model.json", "model.pt", "state.pt")
SHIPPED_MODELS = Path(__file__).parent / "models"  # the project's own weights, selectable by folder name


def shipped_model(spec: str) -> Path | None:
    """The folder of a model shipped with tdph (e.g. ``TDPH-M3GNet-MDR-PBEsol``), else None."""
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
    for root in os.environ.get("TDPH_MODEL_PATH", "").split(os.pathsep):
        if root and (Path(root).expanduser() / spec / "model.json").is_file():
            return Path(root).expanduser() / spec
    return None


class ModelError(RuntimeError):
    """The potential could not be found, loaded or applied."""


class CalculatorError(RuntimeError):
    """A calculator returned unusable results (NaN, wrong shape)."""


def model_spec() -> str:
    """The model to use: ``TDPH_MODEL`` (folder or matgl name), else the default name."""
    return os.environ.get("TDPH_MODEL", "").strip() or DEFAULT_MODEL


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or os.sep in spec and Path(spec).parent.exists()


def load_potential(spec: str | None = None, dtype: str = "float32"):
    """Load a matgl potential by folder or hub name; cached per process.

    A folder must hold model.json, model.pt and state.pt: matgl silently falls
    back to the network for a mistyped path, which we never allow. The cache is
    keyed by the resolved spec, so a later change of ``TDPH_MODEL`` is honoured.
    """
    return _load_potential(spec or model_spec(), dtype)


@functools.lru_cache(maxsize=4)
def _load_potential(spec: str, dtype: str):
    import matgl

    path = named_model(spec) or Path(spec).expanduser()
    if path.is_dir():
        missing = [f for f in MODEL_FILES if not (path / f).is_file()]
        if missing:
            raise ModelError(f"model folder {path} is not a matgl model: missing {', '.join(missing)}")
        os.environ["HF_HUB_OFFLINE"] = "1"
        source = str(path.resolve())
    elif _looks_like_path(spec) or path.exists():
        raise ModelError(f"model folder {spec!r} does not exist (set TDPH_MODEL to a matgl model folder or name)")
    else:
        source = spec
        log.info("loading matgl model %r by name (matgl hub; needs network unless cached)", spec)
    try:
        pot = matgl.load_model(source)
    except Exception as exc:  # matgl raises many types; name the model either way
        raise ModelError(f"could not load matgl model {spec!r}: {exc}") from exc
    if not hasattr(pot, "model") or not hasattr(pot.model, "element_types"):
        raise ModelError(f"{spec!r} is not a matgl interatomic potential")
    if dtype == "float64":
        pot = pot.double()
    return pot


@functools.lru_cache(maxsize=16)
def model_fingerprint(spec: str) -> str | None:
    """sha256 (16 hex) of a model folder's files, for provenance; None for names and other calculators."""
    import hashlib

    path = named_model(spec) or Path(spec).expanduser()
    if not path.is_dir():
        return None
    h = hashlib.sha256()
    for name in MODEL_FILES:
        if (path / name).is_file():
            h.update((path / name).read_bytes())
    return h.hexdigest()[:16]


def apply_torch_threads() -> None:
    """``TDPH_TORCH_THREADS`` (1 is fastest per worker on CPU) applied on every resolve, not only the first load.

    The same count also caps numpy/scipy's BLAS threads (``TDPH_BLAS_THREADS`` overrides it):
    the engine's linear algebra (symfc basis, normal equations, Cholesky solves, eigh) ran with
    OpenBLAS's default of one thread per core, and on a loaded 2-core machine the spin-waiting
    threads made a 2000x2000 Cholesky solve 17x slower (2.26 s vs 0.13 s) and a 400x400 eigh
    100x slower; one campaign worker = one thread is what the per-worker targets assume.
    """
    threads = os.environ.get("TDPH_TORCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    blas = os.environ.get("TDPH_BLAS_THREADS") or threads
    if blas:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover (a core dependency; keep working without it)
            return
        threadpool_limits(limits=int(blas), user_api="blas")


load_potential.cache_clear = _load_potential.cache_clear  # type: ignore[attr-defined]
load_potential.cache_info = _load_potential.cache_info  # type: ignore[attr-defined]


def matgl_calculator(spec: str | None = None) -> Calculator:
    from matgl.ext.ase import PESCalculator

    pot = load_potential(spec)
    apply_torch_threads()
    return PESCalculator(pot, stress_unit="eV/A3")


def resolve_calculator(spec: str | None = None) -> Calculator:
    """None -> default model; ``module:factory`` -> factory(); ``emt`` -> ASE EMT;
    anything else -> a matgl folder or name."""
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


def is_matgl(calc: Calculator) -> bool:
    return hasattr(calc, "potential") and hasattr(calc, "_atoms2graph")


def check_elements(calc: Calculator, atoms: Atoms, material: str) -> None:
    """Fail early, naming the element, when the model was not trained on it."""
    if not is_matgl(calc):
        return
    known = set(calc.element_types)
    unknown = sorted(set(atoms.get_chemical_symbols()) - known)
    if unknown:
        raise ModelError(f"{material}: element(s) {', '.join(unknown)} outside the model's {len(known)} elements")


def _check_finite(arr: np.ndarray, what: str, material: str) -> np.ndarray:
    if not np.all(np.isfinite(arr)):
        raise CalculatorError(f"{material}: calculator returned non-finite {what}")
    return arr


class ForceModel:
    """Forces and Hessians of one supercell (fixed cell and species) for the core.

    Positions are passed in the supercell's own atom order; ``template`` fixes it.
    """

    def __init__(self, calc: Calculator, template: Atoms, material: str = "material",
                 batch_size: int | None = None, fd_step: float = 0.005) -> None:
        self.calc = calc
        self.template = template.copy()
        self.material = material
        self.fd_step = fd_step
        self.matgl = is_matgl(calc)
        self.batch_size = batch_size or self._default_batch_size()
        check_elements(calc, template, material)

    def _default_batch_size(self) -> int:
        """Measured (benchmarks/bench_forces.py): on CPU one graph per call is fastest
        (batches of 4 cost 1.7x per structure); batches pay off on a GPU."""
        if not self.matgl:
            return 1
        return 1 if self.calc.potential.data_mean.device.type == "cpu" else 16

    # forces ------------------------------------------------------------------
    def forces(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, float)
        if positions.ndim == 2:
            positions = positions[None]
        if self.matgl:
            out = np.concatenate([self._matgl_batch(positions[k:k + self.batch_size])
                                  for k in range(0, len(positions), self.batch_size)])
        else:
            out = np.array([self._ase_forces(p) for p in positions])
        if out.shape != positions.shape:
            raise CalculatorError(f"{self.material}: forces of shape {out.shape}, expected {positions.shape}")
        return _check_finite(out, "forces", self.material)

    def _atoms_at(self, positions: np.ndarray) -> Atoms:
        atoms = self.template.copy()
        atoms.positions = positions
        return atoms

    def _ase_forces(self, positions: np.ndarray) -> np.ndarray:
        atoms = self._atoms_at(positions)
        atoms.calc = self.calc
        return np.array(atoms.get_forces())

    def _matgl_batch(self, positions: np.ndarray) -> np.ndarray:
        # one collated graph per chunk; the forward call is shared with tdph_workflows.batching
        # (the GPU path), so per-structure and batched forces cannot drift apart
        from .batching import forward_forces

        converted = [self.calc._atoms2graph.get_graph(self._atoms_at(p)) for p in positions]
        return forward_forces(self.calc.potential, *zip(*converted, strict=True)).reshape(positions.shape)

    # Hessians ----------------------------------------------------------------
    def hessian(self, positions: np.ndarray) -> np.ndarray:
        """(3N, 3N) in eV/A^2: autograd for matgl, central differences otherwise."""
        h = self._matgl_hessian(positions) if self.matgl else self.fd_hessian(positions)
        h = _check_finite(np.asarray(h, float), "Hessian", self.material)
        return 0.5 * (h + h.T)

    def _matgl_hessian(self, positions: np.ndarray) -> np.ndarray:
        import torch

        pot = self.calc.potential
        g, lat, state = self.calc._atoms2graph.get_graph(self._atoms_at(positions))
        lat = torch.as_tensor(np.asarray(lat), dtype=torch.float32).reshape(1, 3, 3)
        flags = (pot.calc_stresses, pot.calc_hessian)
        pot.calc_stresses, pot.calc_hessian = False, True
        try:
            return pot(g, lat, torch.as_tensor(np.asarray(state), dtype=torch.float32))[3].detach().cpu().numpy()
        finally:
            pot.calc_stresses, pot.calc_hessian = flags

    def fd_hessian(self, positions: np.ndarray) -> np.ndarray:
        """Central finite differences: H_ij = -(F_i(x+h e_j) - F_i(x-h e_j)) / 2h."""
        positions = np.asarray(positions, float)
        n = len(positions)
        disp = np.zeros((6 * n, n, 3))
        for j in range(3 * n):
            disp[2 * j, j // 3, j % 3] = self.fd_step
            disp[2 * j + 1, j // 3, j % 3] = -self.fd_step
        f = self.forces(positions[None] + disp).reshape(3 * n, 2, 3 * n)
        return -((f[:, 0] - f[:, 1]) / (2 * self.fd_step)).T
