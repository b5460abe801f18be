"""Lattice thermal conductivity in the relaxation-time approximation with phono3py.

HA+3ph: harmonic fc2 with fc3; SCPH+3ph: the SCPH effective fc2 at T with the same fc3
(run once per temperature, since fc2_eff depends on T). The per-mode arrays phono3py
exposes are kept so that an extra scattering channel (4-phonon rates) can be added
later through :func:`kappa_from_modes`, which reproduces phono3py's RTA formula

    kappa = 1 / (N_q V) sum_{q in IBZ, s} C_qs (v (x) v)_qs^star tau_qs,
    tau_qs = 1 / (2 * 2pi * Gamma_qs)  (Gamma in THz, tau in ps),

where (v (x) v)^star sums the outer product over the star of q. Given only the
irreducible velocities, sum_star (Rv)(Rv)^T = w_q/|G| sum_{R in G} R v v^T R^T, so the
weighted sum is averaged over the point group at the end (``rotations_cartesian``).
A 4-phonon rate 1/tau4 enters as Gamma4 = (1/tau4) / (2 * 2pi) added to Gamma.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..core.higher_order import SparseFC

VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def _unit_to_wmk() -> float:
    from phono3py.conductivity.utils import get_unit_to_WmK

    return float(get_unit_to_WmK())


def voigt_to_tensor(v: np.ndarray) -> np.ndarray:
    """(..., 6) in phono3py's order xx, yy, zz, yz, xz, xy -> (..., 3, 3)."""
    v = np.asarray(v, float)
    out = np.zeros((*v.shape[:-1], 3, 3))
    for k, (a, b) in enumerate(VOIGT):
        out[..., a, b] = v[..., k]
        out[..., b, a] = v[..., k]
    return out


@dataclass
class KappaResult:
    """Output of `kappa_rta`: kappa_L (W/mK) per temperature and the mode quantities it was summed from."""

    temperatures: np.ndarray  # (n_T,)
    kappa: np.ndarray  # (n_T, 3, 3) W/mK
    mesh: tuple[int, int, int]
    qpoints: np.ndarray  # (n_ir, 3) irreducible q-points, reduced coordinates of the primitive reciprocal cell
    weights: np.ndarray  # (n_ir,) symmetry weights, sum = n_qpoints
    frequencies: np.ndarray  # (n_ir, n_band) THz
    group_velocities: np.ndarray  # (n_ir, n_band, 3) THz*A
    gv_by_gv: np.ndarray | None  # (n_ir, n_band, 3, 3) star-summed outer products (phono3py's), THz^2 A^2
    heat_capacities: np.ndarray  # (n_T, n_ir, n_band) eV/K
    gamma: np.ndarray  # (n_T, n_ir, n_band) THz, phono3py's Gamma (imag. self-energy): tau = 1/(2*2pi*Gamma) ps
    volume: float  # primitive-cell volume, A^3
    n_qpoints: int
    cutoff_frequency: float  # THz; modes below it carry no heat (phono3py's rule)
    rotations_cartesian: np.ndarray  # (n_rot, 3, 3) point group used to symmetrise kappa_from_modes
    n_imaginary: int  # modes (counted with their weights) with frequency < -cutoff_frequency
    n_ignored: int  # modes (weighted) below the cutoff, imaginary ones included
    wall_time_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def kappa_scalar(self) -> np.ndarray:
        """Scalar kappa_L (trace/3) per temperature, W/mK."""
        return np.trace(self.kappa, axis1=1, axis2=2) / 3.0

    @property
    def lifetimes_ps(self) -> np.ndarray:
        """Phonon lifetimes tau = 1/(2 * 2pi * Gamma), (n_T, n_ir, n_band) in ps; 0 where Gamma <= 0."""
        with np.errstate(divide="ignore"):
            return np.where(self.gamma > 0, 1.0 / (2 * 2 * np.pi * np.where(self.gamma > 0, self.gamma, 1)), 0.0)

    def kappa_with_extra_gamma(self, extra_gamma_thz: np.ndarray, use_gv_by_gv: bool = True) -> np.ndarray:
        """The kappa_L (n_T, 3, 3) in W/mK with an extra linewidth (n_T, n_ir, n_band) THz added to Gamma (e.g. 4ph)."""
        extra = np.broadcast_to(np.asarray(extra_gamma_thz, float), self.gamma.shape)
        return np.array(
            [
                kappa_from_modes(
                    self.heat_capacities[t],
                    self.group_velocities,
                    self.gamma[t] + extra[t],
                    self.weights,
                    self.volume,
                    self.n_qpoints,
                    frequencies=self.frequencies,
                    cutoff_frequency=self.cutoff_frequency,
                    rotations_cartesian=self.rotations_cartesian,
                    gv_by_gv=self.gv_by_gv if use_gv_by_gv else None,
                )
                for t in range(len(self.temperatures))
            ]
        )

    def summary(self) -> dict:
        """JSON-ready scalars: temperatures (K), kappa (W/mK), mesh and mode counts."""
        return {
            "temperatures": self.temperatures.tolist(),
            "kappa_scalar_WmK": self.kappa_scalar.tolist(),
            "kappa_WmK": self.kappa.tolist(),
            "mesh": list(self.mesh),
            "n_irreducible_qpoints": len(self.qpoints),
            "n_imaginary": self.n_imaginary,
            "n_ignored": self.n_ignored,
            "wall_time_s": self.wall_time_s,
            "notes": list(self.notes),
        }


def kappa_from_modes(
    heat_capacity: np.ndarray,
    group_velocity: np.ndarray,
    gamma_total_thz: np.ndarray,
    weights: np.ndarray,
    volume: float,
    n_qpoints: int,
    frequencies: np.ndarray | None = None,
    cutoff_frequency: float = 1e-4,
    rotations_cartesian: np.ndarray | None = None,
    gv_by_gv: np.ndarray | None = None,
) -> np.ndarray:
    """RTA kappa (3, 3) in W/mK from per-mode arrays at one temperature.

    ``heat_capacity`` (n_ir, n_band) eV/K, ``group_velocity`` (n_ir, n_band, 3) THz*A,
    ``gamma_total_thz`` (n_ir, n_band) the total Gamma (tau = 1/(2*2pi*Gamma) ps),
    ``weights`` (n_ir,), ``volume`` of the primitive cell (A^3), ``n_qpoints`` of the full
    mesh. Modes with ``frequencies`` < ``cutoff_frequency`` or Gamma <= 0 are dropped.
    With ``gv_by_gv`` (n_ir, n_band, 3, 3 or 6; phono3py's star sum) the weights are
    already inside it; otherwise w_q v (x) v is summed and averaged over
    ``rotations_cartesian`` (the crystal's point group; without it only the trace is exact).
    """
    cv = np.asarray(heat_capacity, float)
    gamma = np.asarray(gamma_total_thz, float)
    valid = gamma > 0
    if frequencies is not None:
        valid &= np.asarray(frequencies) >= cutoff_frequency
    inv2g = np.where(valid, 1.0 / (2.0 * np.where(valid, gamma, 1.0)), 0.0)
    if gv_by_gv is not None:
        vv = np.asarray(gv_by_gv, float)
        if vv.shape[-1] == 6:
            vv = voigt_to_tensor(vv)
        k = np.einsum("qs,qsab->ab", cv * inv2g, vv)
    else:
        v = np.asarray(group_velocity, float)
        w = np.asarray(weights, float)
        k = np.einsum("q,qs,qsa,qsb->ab", w, cv * inv2g, v, v)
        if rotations_cartesian is not None:
            rots = np.asarray(rotations_cartesian, float)
            k = np.einsum("rac,cd,rbd->ab", rots, k, rots) / len(rots)
    return k * _unit_to_wmk() / (volume * n_qpoints)


def _phono3py_fc3(fc3, ph3) -> np.ndarray:
    n = len(ph3.supercell)
    if isinstance(fc3, SparseFC):
        from .anharmonic import fc3_to_phono3py

        if fc3.n_atoms != n:
            raise ValueError(f"fc3 has {fc3.n_atoms} atoms, phono3py's supercell {n}")
        return fc3_to_phono3py(fc3, ph3.primitive.p2s_map)
    fc3 = np.asarray(fc3, float)
    if fc3.shape[1:] != (n, n, 3, 3, 3) or fc3.shape[0] not in (n, len(ph3.primitive)):
        raise ValueError(f"fc3 of shape {fc3.shape} does not fit phono3py's supercell of {n} atoms")
    return fc3


def point_group_cartesian(ph3) -> np.ndarray:
    """Point-group rotations of the primitive cell in Cartesian coordinates (n_rot, 3, 3)."""
    lat = np.asarray(ph3.primitive.cell, float).T  # columns = lattice vectors
    rots = np.asarray(ph3.primitive_symmetry.pointgroup_operations, float)
    return np.array([lat @ r @ np.linalg.inv(lat) for r in rots])


def kappa_rta(
    unitcell,
    supercell_matrix,
    primitive_matrix,
    fc2_full: np.ndarray,
    fc3,
    mesh: Sequence[int] | int,
    temperatures: Sequence[float],
    phonon_supercell_matrix=None,
    cutoff_frequency: float = 1e-4,
    symprec: float = 1e-5,
    nac_params: dict | None = None,
    log_level: int = 0,
) -> KappaResult:
    """RTA kappa with phono3py from our fc2 and fc3 (tetrahedron method, no isotopes).

    ``unitcell`` is a PhonopyAtoms (e.g. ``MDREntry.unitcell``); ``fc2_full`` (N2, N2, 3, 3)
    on the phonon supercell (``phonon_supercell_matrix``, default ``supercell_matrix``),
    ``fc3`` a :class:`SparseFC` on phono3py's supercell or an array (full or compact, phono3py
    layout). Modes below ``cutoff_frequency`` (THz), imaginary ones included, carry no heat
    (phono3py's rule); their weighted count is reported.
    """
    from phono3py import Phono3py

    t0 = time.perf_counter()
    mesh_t = (int(mesh),) * 3 if np.isscalar(mesh) else tuple(int(m) for m in mesh)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ph3 = Phono3py(
            unitcell,
            supercell_matrix=np.asarray(supercell_matrix, int),
            primitive_matrix=primitive_matrix,
            phonon_supercell_matrix=None if phonon_supercell_matrix is None else np.asarray(phonon_supercell_matrix, int),
            cutoff_frequency=cutoff_frequency,
            symprec=symprec,
            log_level=log_level,
        )
    n2 = len(ph3.phonon_supercell)
    fc2_full = np.ascontiguousarray(fc2_full, dtype=float)
    if fc2_full.shape != (n2, n2, 3, 3):
        raise ValueError(f"fc2 of shape {fc2_full.shape}, phonon supercell has {n2} atoms")
    ph3.fc2 = fc2_full
    ph3.fc3 = np.ascontiguousarray(_phono3py_fc3(fc3, ph3))
    if nac_params is not None:
        ph3.nac_params = nac_params
    ph3.mesh_numbers = mesh_t
    ph3.init_phph_interaction()
    temps = np.atleast_1d(np.asarray(temperatures, float))
    ph3.run_thermal_conductivity(is_LBTE=False, temperatures=temps)
    tc = ph3.thermal_conductivity
    kappa = voigt_to_tensor(np.asarray(tc.kappa)[0])  # first (only) sigma: tetrahedron
    gamma = np.asarray(tc.gamma)[0]
    freqs = np.asarray(tc.frequencies)
    weights = np.asarray(tc.grid_weights)
    try:
        gvgv = voigt_to_tensor(np.asarray(tc.gv_by_gv))
    except (AttributeError, TypeError):
        gvgv = None
    n_q = int(np.prod(mesh_t))
    imag = freqs < -cutoff_frequency
    ignored = freqs < cutoff_frequency
    notes = []
    n_imag = int((imag * weights[:, None]).sum())
    if n_imag:
        notes.append(f"{n_imag} imaginary modes on the {mesh_t} mesh excluded from kappa (below the cutoff)")
    return KappaResult(
        temperatures=temps,
        kappa=kappa,
        mesh=mesh_t,
        qpoints=np.asarray(tc.qpoints),
        weights=weights,
        frequencies=freqs,
        group_velocities=np.asarray(tc.group_velocities),
        gv_by_gv=gvgv,
        heat_capacities=np.asarray(tc.mode_heat_capacities),
        gamma=gamma,
        volume=float(ph3.primitive.volume),
        n_qpoints=n_q,
        cutoff_frequency=cutoff_frequency,
        rotations_cartesian=point_group_cartesian(ph3),
        n_imaginary=n_imag,
        n_ignored=int((ignored * weights[:, None]).sum()),
        wall_time_s=time.perf_counter() - t0,
        notes=notes,
    )
