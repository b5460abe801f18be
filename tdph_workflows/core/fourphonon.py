"""Four-phonon (4ph) scattering rates in the relaxation-time approximation.

Why we implement it ourselves: no maintained pip library provides 4ph scattering rates from
real-space 4th-order force constants in a form we can call (FourPhonon is a Fortran ShengBTE
extension; phono3py does 3ph only).

Formulas: T. Feng and X. Ruan, Phys. Rev. B 93, 045202 (2016); T. Feng, L. Lindsay and X. Ruan,
Phys. Rev. B 96, 161201(R) (2017) (same expressions as the FourPhonon code, Z. Han et al., Comput. Phys. Commun. (2022)).

Theory (re-derived here from Fermi's golden rule, so every factor is accounted for)
----------------------------------------------------------------------------------
Displacements in phonopy's convention (eigenvectors e_b(q s) of phonopy's dynamical matrix,
phase exp(i q . r_lb) with the *atomic* position r_lb = R_l + tau_b):

    u_lb = sum_{qs} sqrt(hbar / (2 N m_b w_qs)) e_b(qs) exp(i q.r_lb) (a_qs + a^+_{-q s}),

N = number of q-points of the mesh (= cells of the Born-von Karman crystal).  Inserting this into
H4 = (1/24) sum Phi u u u u and summing over the cell of the first atom gives

    H4 = hbar^2 / (96 N) sum_{l l1 l2 l3} Delta_G(q+q1+q2+q3) V(l,l1,l2,l3)/sqrt(w w1 w2 w3) A A A A

with the matrix element (the V of Feng & Ruan, Eq. 5)

    V(l,l1,l2,l3) = sum_{b, l1b1, l2b2, l3b3} sum_{abgt} Phi^{abgt}_{0b,l1b1,l2b2,l3b3}
                    e^a_l(b) e^b_l1(b1) e^g_l2(b2) e^t_l3(b3) / sqrt(m_b m_b1 m_b2 m_b3)
                    * exp(i [q.r_0b + q1.r_l1b1 + q2.r_l2b2 + q3.r_l3b3]),

"-l" meaning (-q, s) with e(-q) = e(q)^*.  For four distinct modes 4! orderings cancel the 1/24;
the golden rule W = (2 pi/hbar) |<f|H4|i>|^2 delta(E_f - E_i) then gives, per process,
pi hbar^2/(8 N^2) |V|^2 / (w w1 w2 w3) * (occupation products) * delta(w-balance).  Linearising
the collision term in the deviation of n_l only (RTA) gives

    1/tau_l = sum_{l1 l2 l3} [ 1/2 G++ + 1/2 G+- + 1/6 G-- ],
    G^{+-...} = pi hbar^2 / (8 N^2) |V|^2 / (w w1 w2 w3) * B * delta(D),

    ++ : l + l1 + l2 -> l3,   q3 = q + q1 + q2 (mod G),  D = w + w1 + w2 - w3,
         V(l, l1, l2, -l3),   B = n1 n2 (1+n3) - (1+n1)(1+n2) n3
    +- : l + l1 -> l2 + l3,   q2 + q3 = q + q1 (mod G),  D = w + w1 - w2 - w3,
         V(l, l1, -l2, -l3),  B = n1 (1+n2)(1+n3) - (1+n1) n2 n3
    -- : l -> l1 + l2 + l3,   q1 + q2 + q3 = q (mod G),  D = w - w1 - w2 - w3,
         V(l, -l1, -l2, -l3), B = (1+n1)(1+n2)(1+n3) - n1 n2 n3

The sums run over q1, q2 on the mesh and all branches s1, s2, s3 (q3 fixed by momentum
conservation); 1/2, 1/2, 1/6 remove the double counting of interchangeable partners.  B is the
derivative of the net rate with respect to n_l (the difference forms used by FourPhonon; on shell
they equal e.g. (1+n1)(1+n2)n3/n for ++).  delta is a Gaussian of standard deviation sigma (THz,
phono3py's convention for sigma; FourPhonon's exp(-x^2/s^2) differs by sqrt(2)).  Caveat: off shell
the difference forms of B change sign, so with sigma comparable to the frequency of a mode its ++
(and +-) class can come out negative (measured: LJ Ar, 8x8x8 mesh, f = 0.30 THz, sigma = 0.5 THz
gives ++ = -1.2/ps against a total of +6.7/ps; none for sigma = 0.15 THz).  Keep sigma well below
the frequencies of interest and converge it together with the mesh.

Implementation notes
--------------------
* All three classes use one matrix element: with p_k = +-q_k the signed momenta, V(l, +-l1, +-l2,
  +-l3) = W(q; p1, p2, p3) with p3 = -(q+p1+p2) folded onto the mesh and eigenvectors taken at p_k.
  W is computed once per (q, p1, p2) for all branch quadruples and the three classes differ only
  in the energy balance and B.
* Fourier transform of fc4: clusters are grouped by their first atom (the supercell images of the
  primitive atoms, phonopy's p2s_map).  For each pair (primitive atom b, supercell atom j) the
  phase uses phonopy's shortest vectors d (primitive.get_smallest_vectors), averaged over
  equidistant images exactly as phonopy does for fc2 / phono3py for fc3; r_j = tau_b + d, so
  exp(i[q.tau_b + sum_k p_k.r_k]) = exp(i G.tau_b) prod_k exp(i p_k.d_k), G = q+p1+p2+p3.
  On a mesh commensurate with the supercell the image choice does not matter.
* The contraction is done in a dense *local* basis: atoms j that appear with first atom b
  (M = 3 * n_local), T_b[a, j1b, j2g, j3t]; then per p1 one matmul against T, and one batched
  matmul over all p2 at once.
* Degenerate target modes (|df| < 1e-4 THz) get the average over their subspace, so results do
  not depend on the eigenvector basis; partner sums are basis-independent by construction.
* Modes with frequency below CUTOFF_FREQUENCY_THZ (acoustic at Gamma, imaginary) get rate 0 and
  are excluded as partners.

Units: input Phi in eV/A^4, masses in amu, phonopy frequencies f in THz (w = 2 pi f), hbar in J s.
|V|^2 is accumulated in (eV / (A^4 amu^2))^2; the SI conversion is folded into _RATE_PREFACTOR.
Output rates are 1/tau in 1/ps (phono3py's linewidth Gamma in THz relates as 1/tau = 4 pi Gamma).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits  # a core dependency: pins BLAS threads (see BLAS_THREADS)

from .units import AMU, ANGSTROM, EV, HBAR, THZ, THZ_TO_KELVIN

CUTOFF_FREQUENCY_THZ = 1e-3
DEGENERACY_TOL_THZ = 1e-4

# 1/tau [1/ps] = _RATE_PREFACTOR / N^2 * sum |V|^2[(eV/A^4/amu^2)^2] / (f f1 f2 f3)[THz^4] * B * g(D_f)[1/THz]
#  - pi hbar^2 / 8                                   (J s)^2
#  - |V|^2: (eV / (A^4 amu^2))^2 -> SI               * (EV / (ANGSTROM^4 AMU^2))^2
#  - 1/(w w1 w2 w3) with w = 2 pi THZ f               / (2 pi THZ)^4
#  - delta(D_w) = g(D_f) / (2 pi THZ), g in 1/THz     / (2 pi THZ)
#  - 1/s -> 1/ps                                      / THZ
_RATE_PREFACTOR = np.pi * HBAR**2 / 8.0 * (EV / (ANGSTROM**4 * AMU**2)) ** 2 / (2 * np.pi * THZ) ** 5 / THZ

# The GEMMs here are small (~2000 x 60 x 400); multi-threaded OpenBLAS gains little on them and,
# on a loaded machine, spin-waiting threads made one NaCl q-point ~30x slower (measured: 0.54 s
# vs 0.016 s per inner step with 2 threads vs 1 under load 4 on 2 cores).  The routine therefore
# runs with this many BLAS threads (threadpoolctl, if installed); None leaves the setting alone.
BLAS_THREADS: int | None = 1

_CHUNK_BYTES = 64 * 2**20  # memory bound for the per-chunk intermediates

PROCESSES = ("++", "+-", "--")
_COMBINATORIAL = {"++": 0.5, "+-": 0.5, "--": 1.0 / 6.0}


@dataclass
class FourPhononResult:
    """Four-phonon RTA rates at the requested q-points (rates are 1/tau, 1/ps)."""

    qpoints: np.ndarray  # (nq, 3) reduced coordinates as requested
    temperature: float  # K
    sigma_thz: float  # Gaussian width used for the energy delta, THz
    mesh: tuple  # (3,) q-mesh of the partner sums
    frequencies: np.ndarray  # (nq, nbands) THz
    rates: np.ndarray  # (nq, nbands) 1/ps
    rates_by_process: dict = field(default_factory=dict)  # {"++","+-","--"} -> (nq, nbands) 1/ps


def bose(freq_thz: np.ndarray, temperature: float) -> np.ndarray:
    """Bose-Einstein occupation for f in THz (0 at T = 0, and for f <= 0)."""
    f = np.asarray(freq_thz, dtype=float)
    out = np.zeros_like(f)
    if temperature <= 0:
        return out
    pos = f > 0
    out[pos] = 1.0 / np.expm1(THZ_TO_KELVIN * f[pos] / temperature)
    return out


def gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised Gaussian of standard deviation sigma (1/THz for x, sigma in THz)."""
    return np.exp(-0.5 * (x / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)


def _phonon_modes(phonon, qpoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (nq, nb) THz and eigenvectors (nq, 3*natom, nb) from phonopy (columns = modes).

    Uses phonopy's own dynamical matrix, so the eigenvector/phase convention is phonopy's.
    (Side effect: sets phonon's q-point run.)  Kept as a separate function so tests can wrap it,
    e.g. to rotate eigenvectors inside degenerate subspaces.
    """
    phonon.run_qpoints(np.asarray(qpoints, dtype=float), with_eigenvectors=True)
    d = phonon.get_qpoints_dict()
    return np.asarray(d["frequencies"], dtype=float), np.asarray(d["eigenvectors"], dtype=complex)


def _mesh_grid(mesh: np.ndarray) -> np.ndarray:
    """Integer addresses (N, 3) of a Gamma-centred mesh, C order (last index fastest)."""
    return np.array(list(np.ndindex(*mesh)), dtype=int).reshape(-1, 3)


def _grid_index(addr: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    return np.ravel_multi_index(tuple(np.mod(addr, mesh).T), tuple(mesh))


def _degenerate_average(freqs: np.ndarray, values: np.ndarray, tol: float = DEGENERACY_TOL_THZ) -> np.ndarray:
    """Average `values` (nb,) over groups of consecutive (sorted) bands with |df| < tol."""
    out = values.copy()
    order = np.argsort(freqs)
    start = 0
    for k in range(1, len(order) + 1):
        if k == len(order) or freqs[order[k]] - freqs[order[k - 1]] >= tol:
            grp = order[start:k]
            out[grp] = values[grp].mean()
            start = k
    return out


def _local_fc4(phonon, fc4, b: int):
    """Dense local fc4 block for primitive atom b: (atoms j, tensor T[3, M, M, M]) with M = 3*len(j)."""
    i_s = int(phonon.primitive.p2s_map[b])
    sel = fc4.clusters[:, 0] == i_s
    cl = fc4.clusters[sel][:, 1:]
    vals = fc4.values[sel]
    atoms = np.unique(cl)
    if len(atoms) == 0:
        return atoms, np.zeros((3, 0, 0, 0))
    loc = np.searchsorted(atoms, cl)  # (n, 3) local indices
    n = len(atoms)
    dense = np.zeros((n, n, n, 3, 3, 3, 3))
    dense[loc[:, 0], loc[:, 1], loc[:, 2]] = vals  # clusters are unique ordered tuples
    # axes (a, j1, b, j2, g, j3, t) -> T[a, (j1 b), (j2 g), (j3 t)]
    T = dense.transpose(3, 0, 4, 1, 5, 2, 6).reshape(3, 3 * n, 3 * n, 3 * n)
    return atoms, T


def _pair_phases(phonon, b: int, atoms: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """F[p, j] = mean over shortest images d of exp(2 pi i q_p . d(b -> atoms[j])); d in primitive coords."""
    svecs, multi = phonon.primitive.get_smallest_vectors()
    F = np.empty((len(qs), len(atoms)), dtype=complex)
    for k, j in enumerate(atoms):
        m, start = multi[j, b]
        d = svecs[start : start + m]  # (m, 3) primitive fractional coordinates
        F[:, k] = np.exp(2j * np.pi * qs @ d.T).mean(axis=1)
    return F


def four_phonon_rates(phonon, fc4, mesh, qpoints, temperature, sigma_thz=None) -> FourPhononResult:
    """Four-phonon RTA scattering rates 1/tau (1/ps) of the modes at `qpoints`.

    phonon: phonopy.Phonopy with force_constants (fc2, full (N, N, 3, 3)) on the supercell of fc4.
    fc4: SparseFC of order 4 on the same supercell (eV/A^4, all permutations present).
    mesh: Gamma-centred q-mesh for the partner sums over q1, q2 (q3 by momentum conservation).
    qpoints: (nq, 3) reduced coordinates; each must be a point of `mesh`.
    temperature: K.
    sigma_thz: Gaussian width (std. dev., THz) of the energy delta.  None -> f_max / (2 max(mesh)),
        a coarse-mesh heuristic (pass an explicit value and check convergence for production).
    """
    ctx = contextlib.nullcontext()
    if BLAS_THREADS is not None:
        ctx = threadpool_limits(limits=BLAS_THREADS, user_api="blas")
    with ctx:
        return _four_phonon_rates(phonon, fc4, mesh, qpoints, temperature, sigma_thz)


def _four_phonon_rates(phonon, fc4, mesh, qpoints, temperature, sigma_thz=None) -> FourPhononResult:
    """Implementation of four_phonon_rates (BLAS threads already pinned)."""
    if fc4.order != 4:
        raise ValueError(f"fc4 must be of order 4, got {fc4.order}")
    scell, prim = phonon.supercell, phonon.primitive
    if fc4.n_atoms != len(scell):
        raise ValueError(f"fc4 is for {fc4.n_atoms} atoms, phonon supercell has {len(scell)}")
    if phonon.force_constants is None:
        raise ValueError("phonon.force_constants (fc2) must be set")
    mesh = np.asarray(mesh, dtype=int).reshape(3)
    if np.any(mesh < 1):
        raise ValueError(f"bad mesh {mesh}")
    qpoints = np.atleast_2d(np.asarray(qpoints, dtype=float)).reshape(-1, 3)
    temperature = float(temperature)

    # target q-points must lie on the mesh (q3 = -(q+p1+p2) is then on the mesh too)
    qaddr_f = qpoints * mesh
    qaddr = np.rint(qaddr_f).astype(int)
    if np.abs(qaddr_f - qaddr).max(initial=0.0) > 1e-6:
        raise ValueError("every requested q-point must be a point of the Gamma-centred mesh")

    addr = _mesh_grid(mesh)  # (N, 3)
    n_grid = len(addr)
    grid_q = addr / mesh  # reduced coordinates in [0, 1)
    freqs, eigvecs = _phonon_modes(phonon, grid_q)  # (N, nb), (N, 3 na, nb)
    nb = freqs.shape[1]
    n_prim = len(prim)

    if sigma_thz is None:
        sigma_thz = float(max(freqs.max(), 1e-3)) / (2.0 * mesh.max())
    sigma = float(sigma_thz)
    if sigma <= 0:
        raise ValueError("sigma_thz must be > 0")

    valid = freqs > CUTOFF_FREQUENCY_THZ
    f_safe = np.where(valid, freqs, 1.0)
    n_occ = bose(freqs, temperature)

    # p3 index for every (p1, p2): fold(-(p1 + p2 + q)) handled per q below via integer addresses
    masses_p = np.asarray(prim.masses, dtype=float)
    masses_s = np.asarray(scell.masses, dtype=float)
    s2p = np.asarray(prim.s2p_map)
    p2p = prim.p2p_map
    s2pp = np.array([p2p[int(x)] for x in s2p], dtype=int)
    tau = np.asarray(prim.scaled_positions, dtype=float)

    # local fc4 blocks and partner vectors X_b[p, (j, beta), s] = F[p, j] e_{jb}(p, s) / sqrt(m_j)
    blocks = []
    for b in range(n_prim):
        atoms, T = _local_fc4(phonon, fc4, b)
        if len(atoms) == 0:
            continue
        F = _pair_phases(phonon, b, atoms, grid_q)  # (N, n_loc)
        rows = (3 * s2pp[atoms][:, None] + np.arange(3)[None, :]).ravel()  # (M,)
        X = eigvecs[:, rows, :] * (np.repeat(F, 3, axis=1) / np.sqrt(np.repeat(masses_s[atoms], 3)))[:, :, None]
        M = X.shape[1]
        # X2[a2, (p2, s2)] for the batched contraction over all p2
        X2 = np.ascontiguousarray(X.transpose(1, 0, 2).reshape(M, n_grid * nb))
        blocks.append((b, T, X, X2, M))

    # p2 chunk size: keep the (nb^2 M) x (chunk nb) intermediate B below ~_CHUNK_BYTES
    m_max = max((blk[4] for blk in blocks), default=1)
    chunk = int(max(1, min(n_grid, _CHUNK_BYTES // (16 * nb**3 * m_max))))

    nq = len(qpoints)
    out_f = np.zeros((nq, nb))
    rates_proc = {p: np.zeros((nq, nb)) for p in PROCESSES}
    for iq in range(nq):
        gq = int(_grid_index(qaddr[iq][None, :], mesh)[0])
        f0 = freqs[gq]
        out_f[iq] = f0
        q_rep = grid_q[gq]
        acc = {p: np.zeros(nb) for p in PROCESSES}
        # target vectors E0[a, s] per block (first atom; its phase exp(i G.tau_b) is applied per p2)
        T0s = []
        for b, T, X, X2, M in blocks:
            E0 = eigvecs[gq, 3 * b : 3 * b + 3, :] / np.sqrt(masses_p[b])  # (3, nb)
            T0 = np.tensordot(E0, T, axes=([0], [0]))  # (s, a1, a2, a3)
            # -> (a1, s*a2*a3) for the per-p1 matmul
            T0s.append(np.ascontiguousarray(T0.transpose(1, 0, 2, 3).reshape(M, nb * M * M)))
        for p1 in range(n_grid):
            # per block: Phi contracted with the target mode and partner 1 -> rows (s1, s, a3), cols a2
            As = []
            for (b, T, X, X2, M), T0r in zip(blocks, T0s):
                A = (X[p1].T @ T0r).reshape(nb, nb, M, M)  # (s1, s, a2, a3)
                As.append(np.ascontiguousarray(A.transpose(0, 1, 3, 2)).reshape(nb * nb * M, M))
            for c0 in range(0, n_grid, chunk):
                p2 = np.arange(c0, min(c0 + chunk, n_grid))
                n2 = len(p2)
                # signed partner momenta: p2 runs over the mesh, p3 = -(q + p1 + p2) folded
                p3 = _grid_index(-(qaddr[iq] + addr[p1] + addr[p2]), mesh)  # (n2,)
                G = q_rep + grid_q[p1] + grid_q[p2] + grid_q[p3]  # (n2, 3) integer vectors
                V = np.zeros((n2, nb, nb, nb, nb), dtype=complex)  # (p2, s1, s, s2, s3)
                for (b, T, X, X2, M), A in zip(blocks, As):
                    B = (A @ X2[:, c0 * nb : (c0 + n2) * nb]).reshape(nb * nb, M, n2, nb)  # (s1 s, a3, p2, s2)
                    B = B.transpose(2, 0, 3, 1).reshape(n2, nb * nb * nb, M)  # (p2, s1 s s2, a3)
                    Vb = np.matmul(B, X[p3])  # (p2, s1 s s2, s3)
                    phase = np.exp(2j * np.pi * (G @ tau[b]))  # exp(i G.tau_b) of the first atom
                    V += (Vb * phase[:, None, None]).reshape(n2, nb, nb, nb, nb)
                V2 = (V.real**2 + V.imag**2).transpose(0, 2, 1, 3, 4)  # (p2, s, s1, s2, s3)

                ok = (
                    valid[p1][None, None, :, None, None]
                    & valid[p2][:, None, None, :, None]
                    & valid[p3][:, None, None, None, :]
                )
                denom = (
                    f_safe[gq][None, :, None, None, None]
                    * f_safe[p1][None, None, :, None, None]
                    * f_safe[p2][:, None, None, :, None]
                    * f_safe[p3][:, None, None, None, :]
                )
                w = np.where(ok, V2 / denom, 0.0)
                F0 = f0[None, :, None, None, None]
                F1 = freqs[p1][None, None, :, None, None]
                F2 = freqs[p2][:, None, None, :, None]
                F3 = freqs[p3][:, None, None, None, :]
                N1 = n_occ[p1][None, None, :, None, None]
                N2 = n_occ[p2][:, None, None, :, None]
                N3 = n_occ[p3][:, None, None, None, :]
                b_pp = N1 * N2 * (1 + N3) - (1 + N1) * (1 + N2) * N3
                b_pm = N1 * (1 + N2) * (1 + N3) - (1 + N1) * N2 * N3
                b_mm = (1 + N1) * (1 + N2) * (1 + N3) - N1 * N2 * N3
                acc["++"] += np.einsum("psabc->s", w * b_pp * gaussian(F0 + F1 + F2 - F3, sigma))
                acc["+-"] += np.einsum("psabc->s", w * b_pm * gaussian(F0 + F1 - F2 - F3, sigma))
                acc["--"] += np.einsum("psabc->s", w * b_mm * gaussian(F0 - F1 - F2 - F3, sigma))
        for p in PROCESSES:
            r = _COMBINATORIAL[p] * _RATE_PREFACTOR / n_grid**2 * acc[p]
            r = np.where(f0 > CUTOFF_FREQUENCY_THZ, r, 0.0)
            rates_proc[p][iq] = _degenerate_average(f0, r)

    total = rates_proc["++"] + rates_proc["+-"] + rates_proc["--"]
    return FourPhononResult(
        qpoints=qpoints,
        temperature=temperature,
        sigma_thz=sigma,
        mesh=tuple(int(m) for m in mesh),
        frequencies=out_f,
        rates=total,
        rates_by_process=rates_proc,
    )
