"""Four-phonon scattering rates: vectorized routine vs an independent brute-force sum, and physics checks.

Model systems (no DFT, no files):
* fcc argon, 1 atom/cell, Lennard-Jones nearest-neighbour pair potential at its equilibrium
  spacing (Feng & Ruan's own test material); fc2 and fc4 are the exact analytic 2nd/4th
  derivatives of the periodic pair energy on a 2x2x2 (8-atom) supercell.
* rock-salt "NaCl", 2 atoms/cell, central springs to 1st and 2nd neighbours for fc2 on a 2x2x2
  primitive (16-atom) supercell.
* For the brute-force comparison also a *generic* synthetic fc4: a random tensor symmetrised over
  all 24 index permutations and averaged over the supercell's lattice translations, with 3- and
  4-body clusters (pair potentials only give 2-body ones).

The brute force shares only the formula's definition with the package code: explicit loops over
q1, q2, the three process classes and branches s1, s2, s3, the matrix element from the dense
real-space Phi4 (fc4.to_dense()) with its own shortest-image search, q3 never folded back
(q3 = q +- q1 +- q2 exactly), eigenvectors per q from phonopy, SI units throughout.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

from tdph_workflows.core import fourphonon as fp
from tdph_workflows.core.fourphonon import four_phonon_rates
from tdph_workflows.core.higher_order import SparseFC

# ----------------------------------------------------------------------------- model systems

LJ_EPS, LJ_SIG = 0.0104, 3.40  # eV, A (argon)
LJ_TERMS = [(4 * LJ_EPS * LJ_SIG**12, -12), (-4 * LJ_EPS * LJ_SIG**6, -6)]  # phi = sum C r^n
A_AR = np.sqrt(2.0) * 2 ** (1 / 6) * LJ_SIG  # fcc lattice constant with NN at the LJ minimum
A_NACL = 5.64


def fcc_primitive(a):
    return np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]) * a


def radial_derivatives(terms, r):
    """D_k = ((1/r) d/dr)^k phi for k = 1..4, phi = sum C r^n."""
    out = []
    for k in range(1, 5):
        val = 0.0
        for c, n in terms:
            coef = c
            for m in range(k):
                coef *= n - 2 * m
            val += coef * r ** (n - 2 * k)
        out.append(val)
    return out


def pair_k2_k4(terms, x):
    """Cartesian 2nd and 4th derivative tensors of phi(|x|)."""
    r = np.linalg.norm(x)
    d1, d2, d3, d4 = radial_derivatives(terms, r)
    e = np.eye(3)
    k2 = e * d1 + np.outer(x, x) * d2
    xx = np.einsum("a,b->ab", x, x)
    k4 = d2 * (np.einsum("ab,cd->abcd", e, e) + np.einsum("ac,bd->abcd", e, e) + np.einsum("ad,bc->abcd", e, e))
    k4 += d3 * (
        np.einsum("ab,cd->abcd", e, xx)
        + np.einsum("ac,bd->abcd", e, xx)
        + np.einsum("ad,bc->abcd", e, xx)
        + np.einsum("bc,ad->abcd", e, xx)
        + np.einsum("bd,ac->abcd", e, xx)
        + np.einsum("cd,ab->abcd", e, xx)
    )
    k4 += d4 * np.einsum("a,b,c,d->abcd", x, x, x, x)
    return k2, k4


def periodic_pairs(scell, rc):
    """Ordered pairs (i, j, d_cart) over periodic images with 0 < |d| < rc, i != j."""
    lat = scell.cell
    pos = scell.scaled_positions
    nrep = np.ceil(rc * np.linalg.norm(np.linalg.inv(lat), axis=0)).astype(int) + 1
    shifts = np.array(list(itertools.product(*[range(-n, n + 1) for n in nrep])))
    out = []
    for i in range(len(pos)):
        for j in range(len(pos)):
            if i == j:
                continue  # u_j - u_i = 0 for self-images: no contribution
            d = (pos[j] - pos[i] + shifts) @ lat
            for x in d[np.linalg.norm(d, axis=1) < rc]:
                out.append((i, j, x))
    return out


def pair_potential_fcs(scell, terms, rc):
    """fc2 (N,N,3,3) and fc4 (SparseFC) of V = 1/2 sum_{i != j, images} phi(|r_j - r_i + u_j - u_i|)."""
    n = len(scell)
    fc2 = np.zeros((n, n, 3, 3))
    blocks4: dict = {}
    for i, j, x in periodic_pairs(scell, rc):
        k2, k4 = pair_k2_k4(terms, x)
        for slots in itertools.product((i, j), repeat=2):
            sign = (-1) ** sum(s == i for s in slots)
            fc2[slots] += 0.5 * sign * k2
        for slots in itertools.product((i, j), repeat=4):
            sign = (-1) ** sum(s == i for s in slots)
            blocks4[slots] = blocks4.get(slots, 0.0) + 0.5 * sign * k4
    return fc2, SparseFC.from_dict(4, n, blocks4)


def spring_fc2(scell, shells):
    """fc2 of central springs: shells = [(r_max, k eV/A^2)], tension-free (K = k xhat xhat)."""
    n = len(scell)
    fc2 = np.zeros((n, n, 3, 3))
    for i, j, x in periodic_pairs(scell, max(r for r, _ in shells)):
        r = np.linalg.norm(x)
        k = next(k for rmax, k in shells if r < rmax)
        kk = k * np.outer(x, x) / r**2
        fc2[i, j] -= kk
        fc2[i, i] += kk
    return fc2


def argon_phonon(dim=2):
    cell = PhonopyAtoms(symbols=["Ar"], cell=fcc_primitive(A_AR), scaled_positions=[[0, 0, 0]])
    ph = Phonopy(cell, supercell_matrix=np.diag([dim] * 3))
    fc2, fc4 = pair_potential_fcs(ph.supercell, LJ_TERMS, rc=0.5 * (A_AR / np.sqrt(2) + A_AR))  # NN only
    ph.force_constants = fc2
    return ph, fc4


def nacl_phonon():
    cell = PhonopyAtoms(symbols=["Na", "Cl"], cell=fcc_primitive(A_NACL), scaled_positions=[[0, 0, 0], [0.5] * 3])
    ph = Phonopy(cell, supercell_matrix=np.diag([2, 2, 2]))
    d1 = A_NACL / 2
    ph.force_constants = spring_fc2(ph.supercell, [(1.1 * d1, 2.0), (1.1 * d1 * np.sqrt(2), 0.4)])
    return ph


def translation_maps(scell, prim_lattice):
    """Atom permutations of the supercell for every primitive lattice translation inside it."""
    pos = scell.scaled_positions
    lat = scell.cell
    perms = []
    for p in pos:
        shift = p - pos[0]
        cart = shift @ lat
        frac_prim = cart @ np.linalg.inv(prim_lattice)
        if np.abs(frac_prim - np.rint(frac_prim)).max() > 1e-6:
            continue  # not a lattice translation (basis atom of another species/site)
        moved = np.mod(pos + shift, 1.0)
        diff = moved[:, None, :] - pos[None, :, :]
        diff -= np.rint(diff)
        perm = np.argmin(np.linalg.norm(diff, axis=2), axis=1)
        perms.append(perm)
    return perms


def synthetic_fc4(ph, rc, seed=0, scale=1.0):
    """Random fc4: clusters with all pair distances < rc (min image), symmetric under the 24 index
    permutations and invariant under the supercell's lattice translations."""
    scell = ph.supercell
    n = len(scell)
    pos, lat = scell.scaled_positions, scell.cell
    diff = pos[:, None, :] - pos[None, :, :]
    diff -= np.rint(diff)
    dist = np.linalg.norm(diff @ lat, axis=2)
    near = dist < rc
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n, n, n, n, 3, 3, 3, 3)) * scale
    mask = near[:, :, None, None] & near[:, None, :, None] & near[:, None, None, :]
    mask = mask & near[None, :, :, None] & near[None, :, None, :] & near[None, None, :, :]
    raw *= mask[..., None, None, None, None]
    sym = np.zeros_like(raw)
    for perm in itertools.permutations(range(4)):
        sym += raw.transpose(*perm, *(p + 4 for p in perm))
    sym /= 24
    out = np.zeros_like(sym)
    perms = translation_maps(scell, ph.primitive.cell)
    for t in perms:
        out += sym[np.ix_(t, t, t, t)]
    out /= len(perms)
    return SparseFC.from_dense(out)


# ----------------------------------------------------------------------------- brute force

HBAR, EV, ANG, AMU, KB = 1.054571817e-34, 1.602176634e-19, 1e-10, 1.66053906660e-27, 1.380649e-23
CUTOFF_THZ = 1e-3
DEG_TOL_THZ = 1e-4


def _bose_si(w, temperature):
    return 1.0 / np.expm1(HBAR * w / (KB * temperature)) if temperature > 0 else 0.0


def _shortest_images(scell, prim, i_s, j):
    """All shortest vectors r_j - r_i (+ supercell lattice vectors), in primitive fractional coords."""
    lat = scell.cell
    d0 = scell.scaled_positions[j] - scell.scaled_positions[i_s]
    d0 -= np.rint(d0)
    cands = [(d0 + np.array(t)) @ lat for t in itertools.product((-1, 0, 1), repeat=3)]
    lens = np.array([np.linalg.norm(c) for c in cands])
    best = [c for c, length in zip(cands, lens) if length < lens.min() + 1e-5]
    return [c @ np.linalg.inv(prim.cell) for c in best]


def brute_force_rates(phonon, fc4, mesh, qpoints, temperature, sigma_thz):
    """Reference 1/tau (1/ps) per process class by explicit loops (see module docstring)."""
    prim, scell = phonon.primitive, phonon.supercell
    dense = fc4.to_dense()
    n_s, n_p = len(scell), len(prim)
    nb = 3 * n_p
    p2s = list(prim.p2s_map)
    # supercell atom -> primitive atom index
    s2pp = [list(p2s).index(prim.s2p_map[j]) for j in range(n_s)]
    m_s = scell.masses
    tau = prim.scaled_positions
    images = [[_shortest_images(scell, prim, p2s[b], j) for j in range(n_s)] for b in range(n_p)]
    grid = [np.array(a, dtype=float) / np.array(mesh) for a in itertools.product(*[range(m) for m in mesh])]
    n_q = len(grid)
    sig_w = 2 * np.pi * 1e12 * sigma_thz

    cache: dict = {}

    def modes(q):
        key = ("modes", *np.round(q, 12))
        if key not in cache:
            f, e = phonon.get_frequencies_with_eigenvectors(q)
            cache[key] = (np.asarray(f), np.asarray(e))
        return cache[key]

    rows = np.array([3 * s2pp[j] + a for j in range(n_s) for a in range(3)])
    inv_sqrt_m = 1.0 / np.sqrt(np.repeat(m_s, 3))

    def partner_vectors(q, e, sign):
        """[b][s] -> W[(j, beta)] = <exp(2 pi i sign q.(tau_b + d_bj))>_images e_j(+-q, s) / sqrt(m_j)."""
        key = ("w", sign, *np.round(q, 12))
        if key in cache:
            return cache[key]
        ev = e[rows, :] if sign > 0 else np.conj(e[rows, :])  # (3 n_s, nb)
        out = []
        for b in range(n_p):
            ph = np.array(
                [np.mean(np.exp(2j * np.pi * sign * (tau[b] + np.array(images[b][j])) @ q)) for j in range(n_s)]
            )
            out.append((np.repeat(ph, 3) * inv_sqrt_m)[None, :] * ev.T)  # (nb, 3 n_s)
        cache[key] = out
        return out

    classes = {"++": (1, 1, -1), "+-": (1, -1, -1), "--": (-1, -1, -1)}
    weights = {"++": 0.5, "+-": 0.5, "--": 1.0 / 6.0}
    result = {p: np.zeros((len(qpoints), nb)) for p in classes}
    freqs_out = np.zeros((len(qpoints), nb))
    for iq, q in enumerate(np.asarray(qpoints, dtype=float)):
        f0, e0 = modes(q)
        freqs_out[iq] = f0
        # Phi contracted with the target mode on the first atom: P0[b][s] -> (j1,b1,j2,b2,j3,b3)
        P0 = []
        for b in range(n_p):
            blk = dense[p2s[b]]  # (j1, j2, j3, a, b, g, t)
            vec = e0[3 * b : 3 * b + 3, :] / np.sqrt(prim.masses[b]) * np.exp(2j * np.pi * q @ tau[b])
            # P0[b]: ((j1 b1), s, (j2 b2), (j3 b3)) flattened to (3 n_s, nb * (3 n_s)^2)
            P0.append(np.einsum("xyzabgt,as->xbsygzt", blk, vec).reshape(3 * n_s, -1))
        q1_cache: dict = {}  # (q1 index, sign, s1) -> Phi contracted with target and partner 1
        for i1, q1 in enumerate(grid):
            f1, e1 = modes(q1)
            for q2 in grid:
                f2, e2 = modes(q2)
                for proc, (g1, g2, g3) in classes.items():
                    q3 = -g3 * (q + g1 * q1 + g2 * q2)  # unfolded: q + g1 q1 + g2 q2 + g3 q3 = 0
                    f3, e3 = modes(q3)
                    w1, w2, w3 = partner_vectors(q1, e1, g1), partner_vectors(q2, e2, g2), partner_vectors(q3, e3, g3)
                    for s1 in range(nb):
                        if (i1, g1, s1) not in q1_cache:
                            q1_cache[i1, g1, s1] = [
                                (w1[b][s1] @ P0[b]).reshape(nb, 3 * n_s, 3 * n_s) for b in range(n_p)
                            ]
                        Q1 = q1_cache[i1, g1, s1]  # [b] -> (s, (j2 b2), (j3 b3))
                        for s2 in range(nb):
                            Q2 = [np.einsum("syz,y->sz", Q1[b], w2[b][s2]) for b in range(n_p)]  # (s, (j3 b3))
                            for s3 in range(nb):
                                V = sum(Q2[b] @ w3[b][s3] for b in range(n_p))  # (s,)
                                if min(f1[s1], f2[s2], f3[s3]) <= CUTOFF_THZ:
                                    continue
                                w_1, w_2, w_3 = (2 * np.pi * 1e12 * f for f in (f1[s1], f2[s2], f3[s3]))
                                n1, n2, n3 = (_bose_si(w, temperature) for w in (w_1, w_2, w_3))
                                for s in range(nb):
                                    if f0[s] <= CUTOFF_THZ:
                                        continue
                                    w0 = 2 * np.pi * 1e12 * f0[s]
                                    if proc == "++":
                                        dw = w0 + w_1 + w_2 - w_3
                                        bose = n1 * n2 * (1 + n3) - (1 + n1) * (1 + n2) * n3
                                    elif proc == "+-":
                                        dw = w0 + w_1 - w_2 - w_3
                                        bose = n1 * (1 + n2) * (1 + n3) - (1 + n1) * n2 * n3
                                    else:
                                        dw = w0 - w_1 - w_2 - w_3
                                        bose = (1 + n1) * (1 + n2) * (1 + n3) - n1 * n2 * n3
                                    delta = np.exp(-0.5 * (dw / sig_w) ** 2) / (np.sqrt(2 * np.pi) * sig_w)
                                    v_si = abs(V[s]) ** 2 * (EV / (ANG**4 * AMU**2)) ** 2
                                    gam = np.pi * HBAR**2 / (8 * n_q**2) * v_si / (w0 * w_1 * w_2 * w_3) * bose * delta
                                    result[proc][iq, s] += weights[proc] * gam * 1e-12  # 1/s -> 1/ps
        # average over degenerate target modes
        for proc in classes:
            r = result[proc][iq].copy()
            for s in range(nb):
                grp = [t for t in range(nb) if abs(f0[t] - f0[s]) < DEG_TOL_THZ]
                result[proc][iq, s] = np.mean(r[grp])
    return freqs_out, result


# ----------------------------------------------------------------------------- tests


def _compare(res, ref_f, ref):
    np.testing.assert_allclose(res.frequencies, ref_f, atol=1e-6)
    worst = 0.0
    for proc in fp.PROCESSES:
        a, b = res.rates_by_process[proc], ref[proc]
        scale = np.abs(b).max()
        assert scale > 0, f"class {proc} has no processes: test would be vacuous"
        sel = np.abs(b) > 1e-10 * scale
        worst = max(worst, float((np.abs(a - b)[sel] / np.abs(b)[sel]).max()))
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12 * scale)
    np.testing.assert_allclose(res.rates, sum(ref.values()), rtol=1e-8, atol=1e-12 * np.abs(res.rates).max())
    return worst


@pytest.mark.parametrize(
    "mesh,qpoints",
    [
        ((2, 2, 2), [[0.5, 0, 0], [0.5, 0.5, 0], [0.5, 0.5, 0.5]]),  # commensurate with the supercell
        ((3, 3, 3), [[1 / 3, 0, 0], [2 / 3, 1 / 3, 0]]),  # not commensurate: image multiplicities matter
    ],
)
def test_vectorized_matches_brute_force_fcc(mesh, qpoints):
    ph, _ = argon_phonon()
    fc4 = synthetic_fc4(ph, rc=4.0, seed=1, scale=0.05)
    assert len({len(set(c)) for c in fc4.clusters}) >= 3  # 2-, 3- and 4-body clusters present
    res = four_phonon_rates(ph, fc4, mesh, qpoints, 300.0, sigma_thz=0.4)
    ref_f, ref = brute_force_rates(ph, fc4, mesh, qpoints, 300.0, 0.4)
    worst = _compare(res, ref_f, ref)
    print(f"fcc mesh {mesh}: max relative difference {worst:.2e}")


def test_vectorized_matches_brute_force_rocksalt():
    ph = nacl_phonon()
    fc4 = synthetic_fc4(ph, rc=4.1, seed=2, scale=0.05)
    qpoints = [[0, 0, 0], [0.5, 0, 0], [0.5, 0.5, 0.5]]
    res = four_phonon_rates(ph, fc4, (2, 2, 2), qpoints, 500.0, sigma_thz=0.6)
    ref_f, ref = brute_force_rates(ph, fc4, (2, 2, 2), qpoints, 500.0, 0.6)
    worst = _compare(res, ref_f, ref)
    print(f"rocksalt: max relative difference {worst:.2e}")
    assert np.all(res.rates[0, :3] == 0)  # acoustic at Gamma
    assert np.all(res.rates[0, 3:] > 0)  # optical at Gamma scatter


def test_pair_potential_fc4_matches_finite_differences():
    """The analytic LJ fc4 is the 4th derivative of the energy (checks the model fc used below)."""
    ph, fc4 = argon_phonon()
    scell = ph.supercell
    rng = np.random.default_rng(3)
    u = rng.normal(size=(len(scell), 3)) * 0.03

    def energy(disp):
        e = 0.0
        for i, j, x in periodic_pairs(scell, 0.5 * (A_AR / np.sqrt(2) + A_AR)):
            r = np.linalg.norm(x + disp[j] - disp[i])
            e += 0.5 * sum(c * r**n for c, n in LJ_TERMS)
        return e

    # E(t u) = E0 + t^2/2 u.fc2.u + t^3 (...) + t^4/24 Phi4 u^4 + ...; isolate the t^4 term
    hs = np.array([-2, -1, 1, 2]) * 1.0
    e = {h: energy(h * u) for h in hs}
    e0 = energy(0 * u)
    fourth = e[2.0] - 4 * e[1.0] + 6 * e0 - 4 * e[-1.0] + e[-2.0]  # ~ d^4E/dt^4 (h=1) + O(h^2)
    exact = fc4.energy(u) * 24
    assert fourth == pytest.approx(exact, rel=2e-2)


def _argon_rates(temperature, qpoints, mesh=(4, 4, 4), sigma=0.15):
    ph, fc4 = argon_phonon()
    return four_phonon_rates(ph, fc4, mesh, qpoints, temperature, sigma_thz=sigma)


AR_Q = [[0.25, 0, 0], [0.5, 0, 0], [0.25, 0.25, 0], [0.5, 0.25, 0], [0.5, 0.5, 0], [0.5, 0.25, 0.75]]


def test_rates_finite_nonnegative_and_quadratic_in_temperature():
    r300 = _argon_rates(300.0, AR_Q)
    r600 = _argon_rates(600.0, AR_Q)
    for r in (r300, r600):
        assert np.all(np.isfinite(r.rates))
        assert np.all(r.rates >= 0)
        for p in fp.PROCESSES:
            assert np.all(np.isfinite(r.rates_by_process[p]))
    assert r300.rates.max() > 0
    sel = r300.rates > 1e-6 * r300.rates.max()
    ratio = r600.rates[sel] / r300.rates[sel]
    # classical limit (LJ Ar: Debye ~90 K): 1/tau_4ph ~ T^2
    np.testing.assert_allclose(ratio, 4.0, rtol=0.15)
    assert r600.rates.sum() / r300.rates.sum() == pytest.approx(4.0, rel=0.05)


def test_symmetry_equivalent_qpoints_have_equal_rates():
    # permutations of the fcc primitive reciprocal axes and q -> -q are symmetries of fcc
    qs = [[0.25, 0, 0], [0, 0.25, 0], [0, 0, 0.75], [0.5, 0.25, 0], [0.25, 0, 0.5], [0.5, 0.75, 0]]
    r = _argon_rates(300.0, qs)
    np.testing.assert_allclose(r.rates[1:3], np.repeat(r.rates[:1], 2, axis=0), rtol=1e-9)
    np.testing.assert_allclose(r.rates[4:6], np.repeat(r.rates[3:4], 2, axis=0), rtol=1e-9)


def test_rates_invariant_to_eigenvector_gauge(monkeypatch):
    """Random unitary rotations inside degenerate subspaces (and random phases) change nothing."""
    ph = nacl_phonon()
    fc4 = synthetic_fc4(ph, rc=4.1, seed=5, scale=0.05)
    qpoints = [[0, 0, 0], [0.5, 0, 0], [0.5, 0.5, 0.5]]  # degenerate TA/TO at X and L, optical at Gamma
    ref = four_phonon_rates(ph, fc4, (2, 2, 2), qpoints, 300.0, sigma_thz=0.6)

    original = fp._phonon_modes
    rng = np.random.default_rng(7)

    def rotated(phonon, qs):
        f, e = original(phonon, qs)
        e = e.copy()
        for k in range(len(f)):
            order = np.argsort(f[k])
            groups, cur = [], [order[0]]
            for a, b in itertools.pairwise(order):
                if f[k][b] - f[k][a] < 1e-4:
                    cur.append(b)
                else:
                    groups.append(cur)
                    cur = [b]
            groups.append(cur)
            for g in groups:
                z = rng.normal(size=(len(g), len(g))) + 1j * rng.normal(size=(len(g), len(g)))
                u, _ = np.linalg.qr(z)
                e[k][:, g] = e[k][:, g] @ u
        return f, e

    monkeypatch.setattr(fp, "_phonon_modes", rotated)
    rot = four_phonon_rates(ph, fc4, (2, 2, 2), qpoints, 300.0, sigma_thz=0.6)
    assert ref.rates.max() > 0
    np.testing.assert_allclose(rot.rates, ref.rates, rtol=1e-9, atol=1e-12 * ref.rates.max())
    for p in fp.PROCESSES:
        np.testing.assert_allclose(
            rot.rates_by_process[p], ref.rates_by_process[p], rtol=1e-9, atol=1e-12 * ref.rates.max()
        )


def test_bad_inputs():
    ph, fc4 = argon_phonon()
    with pytest.raises(ValueError, match="mesh"):
        four_phonon_rates(ph, fc4, (4, 4, 4), [[0.1, 0, 0]], 300.0)
    fc3 = SparseFC(3, fc4.n_atoms, np.zeros((0, 3), int), np.zeros((0, 3, 3, 3)))
    with pytest.raises(ValueError, match="order 4"):
        four_phonon_rates(ph, fc3, (2, 2, 2), [[0, 0, 0]], 300.0)


def test_default_sigma_and_zero_temperature():
    ph, fc4 = argon_phonon()
    t0 = time.perf_counter()
    r = four_phonon_rates(ph, fc4, (4, 4, 4), [[0.5, 0.5, 0.5]], 0.0)
    assert time.perf_counter() - t0 < 30
    assert r.sigma_thz > 0
    # at T = 0 only spontaneous decay (--) survives
    assert np.all(r.rates_by_process["++"] == 0) and np.all(r.rates_by_process["+-"] == 0)
    assert np.all(r.rates >= 0)


def test_p2_chunking_does_not_change_results(monkeypatch):
    ph = nacl_phonon()
    fc4 = synthetic_fc4(ph, rc=4.1, seed=2, scale=0.05)
    qpoints = [[0, 0, 0], [0.5, 0, 0]]
    full = four_phonon_rates(ph, fc4, (2, 2, 2), qpoints, 300.0, sigma_thz=0.6)
    monkeypatch.setattr(fp, "_CHUNK_BYTES", 1)  # one p2 point per chunk
    chunked = four_phonon_rates(ph, fc4, (2, 2, 2), qpoints, 300.0, sigma_thz=0.6)
    np.testing.assert_allclose(chunked.rates, full.rates, rtol=1e-12, atol=1e-14 * full.rates.max())
