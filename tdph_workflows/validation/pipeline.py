"""The validation steps as plain functions (paper Sec. on DFT validation, Fig. 4D-F).

Each step takes arrays and returns arrays, with no workflow import, so the Makers in
``makers/validation.py`` only wire them, and a script can call them in one process:

    displacements -> forces (any evaluator: the potential, VASP) -> fc2 (phonopy) and
    fc3/fc4 (hiphive, compressive sensing) -> SCPH at T -> kappa_L (phono3py RTA)
    at HA+3ph, SCPH+3ph, and SCPH+3,4ph (our 4-phonon rates added to the phono3py rates).
"""

from __future__ import annotations

import base64
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from ase import Atoms
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

from ..core.higher_order import SparseFC
from ..core.phonons import build_phonopy
from ..core.scph import SCPHResult, run_scph
from ..core.symmetry import supercell_symmetry, symmetrize
from ..io.structures import phonopy_to_ase


@dataclass(frozen=True)
class ValidationSettings:
    """Paper defaults where it states them; the rest sized for a workstation run.

    Parameters
    ----------
    temperatures
        K; SCPH and kappa at each.
    n_structures, rattle_rms, seed
        Random-displacement supercells for the anharmonic fit (hiphive MC rattle), rms per
        Cartesian component in A, spread evenly over the listed amplitudes.
    shells_3, shells_4
        Neighbour shells within the 3rd- and 4th-order cutoffs (paper: 4 and 2).
    fit_method
        trainstation method: "lasso" (compressive sensing, the paper's), "ardr", "omp", "least-squares".
    kappa_mesh, fourph_mesh, fourph_sigma_thz
        q-meshes for phono3py's 3ph kappa and for the 4ph rates, Gaussian width of the 4ph energy
        delta (None: the 4ph code's mesh heuristic). 4ph rates cost ~N_q^2 per mode; on a coarser
        ``fourph_mesh`` the kappa reduction by 4ph is measured there and applied to the fine-mesh
        SCPH+3ph kappa (recorded as ``fourph_factor``); equal meshes need no such step.
    scph_alpha, scph_tol_thz, scph_max_iter
        Linear mixing, convergence on the largest commensurate-frequency change, iteration cap.
    """

    temperatures: tuple[float, ...] = (300.0,)
    n_structures: int = 40
    rattle_rms: tuple[float, ...] = (0.01, 0.03, 0.05)
    seed: int = 7
    shells_3: int = 4
    shells_4: int = 2
    fit_method: str = "lasso"
    kappa_mesh: tuple[int, int, int] = (8, 8, 8)
    fourph_mesh: tuple[int, int, int] = (6, 6, 6)  # 4x4x4 overestimates 4ph (NaCl factor 0.36 vs 0.55 at 6x6x6)
    fourph_sigma_thz: float | None = None
    scph_alpha: float = 0.5
    scph_tol_thz: float = 1e-3
    scph_max_iter: int = 300

    def __post_init__(self):
        if not self.temperatures or min(self.temperatures) <= 0:
            raise ValueError(f"temperatures must be positive, got {self.temperatures}")
        if self.n_structures < 5:
            raise ValueError(f"n_structures must be >= 5 for a cross-validated fit, got {self.n_structures}")
        if self.shells_3 < 1 or self.shells_4 < 1:
            raise ValueError("shells_3 and shells_4 must be >= 1")

    def as_dict(self) -> dict:
        """JSON-ready fields (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict | None) -> ValidationSettings:
        """Settings from a dict of fields (lists accepted for the tuple fields); None or {} = the defaults."""
        d = dict(d or {})
        for k in ("temperatures", "rattle_rms", "kappa_mesh", "fourph_mesh"):
            if k in d and d[k] is not None:
                d[k] = tuple(d[k])
        return cls(**d)


@dataclass
class Setup:
    """Unit cell, supercell and primitive matrices (from the MDR entry when there is one)."""

    material_id: str
    unitcell: PhonopyAtoms
    supercell_matrix: np.ndarray
    primitive_matrix: np.ndarray | str
    nac_params: dict | None = None  # Born charges and dielectric tensor of the MDR entry (polar materials)

    def phonopy(self, with_nac: bool = False) -> Phonopy:
        """A fresh phonopy object (callers set force constants on it).

        ``with_nac`` adds the LO-TO correction (dispersions, phono3py), not used for fits.
        """
        ph = build_phonopy(self.unitcell, self.supercell_matrix, self.primitive_matrix)
        if with_nac and self.nac_params is not None:
            ph.nac_params = self.nac()
        return ph

    def nac(self) -> dict | None:
        """NAC parameters with array values, as phonopy and phono3py take them."""
        if self.nac_params is None:
            return None
        return {k: np.asarray(v, float) if k in ("born", "dielectric") else v for k, v in self.nac_params.items()}

    @cached_property
    def _cells(self) -> tuple[Atoms, Atoms]:
        # one symmetry search for both cells; they are asked for by several steps
        ph = self.phonopy()
        return phonopy_to_ase(ph.supercell), phonopy_to_ase(ph.primitive)

    def supercell_atoms(self) -> Atoms:
        """A copy of phonopy's supercell as ASE ``Atoms`` (phonopy's atom order)."""
        return self._cells[0].copy()

    def primitive_atoms(self) -> Atoms:
        """A copy of phonopy's primitive cell as ASE ``Atoms``."""
        return self._cells[1].copy()


def harmonic_displacements(setup: Setup, distance: float = 0.01) -> tuple[Phonopy, list[Atoms]]:
    """The phonopy object and its symmetry-reduced +/- displacements (``distance`` in A) on the (MDR) supercell."""
    ph = setup.phonopy()
    ph.generate_displacements(distance=distance, is_plusminus=True)
    cells = [Atoms(c.symbols, cell=c.cell, positions=c.positions, pbc=True) for c in ph.supercells_with_displacements]
    return ph, cells


def fc2_from_forces(setup: Setup, dataset: dict, forces: np.ndarray) -> np.ndarray:
    """Harmonic force constants from the displacement dataset and its forces (sum rules imposed)."""
    ph = setup.phonopy()
    ph.dataset = dataset
    ph.forces = np.asarray(forces, float)
    ph.produce_force_constants()
    ph.symmetrize_force_constants()
    return np.array(ph.force_constants)


def rattled_supercells(setup: Setup, settings: ValidationSettings) -> list[Atoms]:
    """The MC-rattled supercells of the anharmonic fit (``n_structures`` spread over ``rattle_rms``, seeded)."""
    from .anharmonic import random_displacement_supercells

    return random_displacement_supercells(setup.supercell_atoms(), settings.n_structures,
                                          list(settings.rattle_rms), seed=settings.seed)


def fit_anharmonic(setup: Setup, rattled: list[Atoms], forces: np.ndarray, fc2: np.ndarray,
                   settings: ValidationSettings):
    """Fit orders 3 and 4 with hiphive on the residual of the harmonic forces -> (fit, shells used)."""
    from .anharmonic import attach_forces, fit_force_constants, shell_cutoffs

    supercell, prim = setup.supercell_atoms(), setup.primitive_atoms()
    shells = (settings.shells_3, settings.shells_4)
    while True:  # fewer shells where the supercell is too small for the requested ones (recorded)
        try:
            cutoffs = shell_cutoffs(prim, *shells, supercell=supercell)
            break
        except ValueError as exc:
            if shells == (1, 1):
                raise ValueError(f"{setup.material_id}: {exc}") from exc
            shells = (max(1, shells[0] - 1), max(1, shells[1] - (shells[1] >= shells[0])))
    fit = fit_force_constants(prim, supercell, attach_forces(rattled, forces), cutoffs,
                              fit_method=settings.fit_method, fc2=fc2, seed=settings.seed)
    return fit, shells


def fcp_to_text(fcp) -> str:
    """A hiphive ForceConstantPotential as base64 text: small (irreducible parameters), unlike its fc4."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "potential.fcp"
        fcp.write(str(path))
        return base64.b64encode(path.read_bytes()).decode()


def fcp_from_text(text: str):
    """The hiphive ForceConstantPotential written by `fcp_to_text`."""
    from hiphive import ForceConstantPotential

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "potential.fcp"
        path.write_bytes(base64.b64decode(text))
        return ForceConstantPotential.read(str(path))


def sparse_force_constants(fcp, supercell: Atoms) -> tuple[SparseFC, SparseFC | None]:
    """fc3 and fc4 of a fitted potential on a supercell (all index permutations, our SparseFC)."""
    from .anharmonic import quiet_hiphive, sparse_higher_orders

    with quiet_hiphive():
        fcs = fcp.get_force_constants(supercell)
    return sparse_higher_orders(fcs, len(supercell), with_fc4=4 in fcs.orders)


def self_consistent_phonons(setup: Setup, fc2: np.ndarray, fc4: SparseFC, temperature: float,
                            settings: ValidationSettings) -> SCPHResult:
    """SCPH on the supercell, Phi_eff symmetrized over the full space group at each step."""
    sc = setup.phonopy().supercell
    sym = supercell_symmetry(np.asarray(sc.cell), np.asarray(sc.scaled_positions), np.asarray(sc.numbers))
    return run_scph(fc2, fc4, np.asarray(sc.masses), temperature, alpha=settings.scph_alpha,
                    tol_thz=settings.scph_tol_thz, max_iter=settings.scph_max_iter,
                    symmetrizer=lambda fc: symmetrize(fc, sym, True))


@dataclass
class KappaLevels:
    """Output of `kappa_levels`: kappa_L (W/mK) per level, scattering rates (1/ps) and SCPH frequencies (THz)."""

    temperature: float
    kappa: dict[str, float]  # level -> trace/3, W/mK
    kappa_tensor: dict[str, list]  # level -> 3x3
    frequencies: np.ndarray  # (n_ir, n_band) THz, SCPH phonons
    rates: dict[str, np.ndarray]  # "3ph (HA)", "3ph (SCPH)", "4ph (SCPH)": 1/tau in 1/ps
    weights: np.ndarray
    n_imaginary_harmonic: int
    timings: dict = field(default_factory=dict)
    fourph_factor: float | None = None  # kappa(3+4ph)/kappa(3ph) on the fourph mesh, when it differs
    rate_plot: tuple = ()  # (frequencies, {label: 1/tau}) of the SCPH phonons where 4ph rates exist


def kappa_levels(setup: Setup, fc2: np.ndarray, fc2_scph: np.ndarray, fc3: SparseFC, fc4: SparseFC | None,
                 temperature: float, settings: ValidationSettings) -> KappaLevels:
    """kappa_L at HA+3ph, SCPH+3ph (phono3py RTA) and SCPH+3,4ph (adding our 4ph rates)."""
    from ..core.fourphonon import four_phonon_rates
    from .thermal import kappa_rta

    timings = {}
    t0 = time.perf_counter()
    args = (setup.unitcell, setup.supercell_matrix, setup.primitive_matrix)
    nac = {"nac_params": setup.nac()}  # phono3py's 3ph part with LO-TO; the 4ph rates without (small effect)
    ha = kappa_rta(*args, fc2, fc3, settings.kappa_mesh, [temperature], **nac)
    timings["kappa_ha_3ph_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sc = kappa_rta(*args, fc2_scph, fc3, settings.kappa_mesh, [temperature], **nac)
    timings["kappa_scph_3ph_s"] = time.perf_counter() - t0
    kappa = {"HA+3ph": float(ha.kappa_scalar[0]), "SCPH+3ph": float(sc.kappa_scalar[0])}
    tensors = {"HA+3ph": ha.kappa[0].tolist(), "SCPH+3ph": sc.kappa[0].tolist()}
    to_rate = 2 * 2 * np.pi  # phono3py Gamma (THz) -> 1/tau (1/ps)
    rates = {"3ph (HA)": to_rate * ha.gamma[0], "3ph (SCPH)": to_rate * sc.gamma[0]}
    if fc4 is not None:
        t0 = time.perf_counter()
        ph = setup.phonopy()
        ph.force_constants = fc2_scph
        same_mesh = tuple(settings.fourph_mesh) == tuple(settings.kappa_mesh)
        # 4ph rates cost ~N_q^2 per mode: on a coarser mesh, the 4ph reduction factor of kappa is taken
        # there (3ph and 4ph on the same points) and applied to the SCPH+3ph kappa of the fine mesh
        coarse = sc if same_mesh else kappa_rta(*args, fc2_scph, fc3, settings.fourph_mesh, [temperature], **nac)
        four = four_phonon_rates(ph, fc4, settings.fourph_mesh, coarse.qpoints, temperature, settings.fourph_sigma_thz)
        rate4 = np.asarray(four.rates)
        k34 = coarse.kappa_with_extra_gamma(rate4[None] / to_rate)[0]
        factor = np.trace(k34) / np.trace(coarse.kappa[0])
        kappa["SCPH+3,4ph"] = float(kappa["SCPH+3ph"] * factor)
        tensors["SCPH+3,4ph"] = (k34 if same_mesh else sc.kappa[0] * factor).tolist()
        timings["fourph_s"] = time.perf_counter() - t0
        fourph_factor = None if same_mesh else float(factor)
        rates["4ph (SCPH)"] = rate4  # on the irreducible points of the fourph mesh
        r3 = to_rate * coarse.gamma[0]
        rate_plot = (coarse.frequencies, {"SCPH+3ph": r3, "SCPH+3,4ph": r3 + rate4})
    else:
        fourph_factor = None
        rate_plot = (sc.frequencies, {"SCPH+3ph": rates["3ph (SCPH)"]})
    return KappaLevels(temperature, kappa, tensors, sc.frequencies, rates, sc.weights, int(ha.n_imaginary), timings,
                       fourph_factor, rate_plot)
