"""Side by side: our one-shot SSCHA vs phonopy's SSCHA (symfc) vs hiphive's self-consistent harmonic model.

    python benchmarks/bench_sscha_tools.py --materials al srtio3 kcl cspbbr3 --repeats 5 \
        --out benchmarks/results/sscha_tools
    python benchmarks/bench_sscha_tools.py --smoke          # EMT Al, tiny settings, < 60 s

Same machine, same calculator, same supercell and the same harmonic reference for all
three methods (EMT for fcc Al, the default M3GNet model otherwise; 300 K, quantum
statistics everywhere):

* ours      ``tdph_workflows.engine.run_temperature_phonons`` with default ``SSCHASettings``
            (only the seed changes between repeats); wall time end to end, its own
            harmonic stage included.
* phonopy   phonopy's own SSCHA loop ``phonopy.sscha.core.MLPSSCHA`` (sampling at T from the
            current force constants, symfc fit, no mixing), started from the harmonic
            force constants; the potential is plugged in through a ``PhonopyMLP`` adapter.
            Its time and force calls include the harmonic stage it starts from.
* hiphive   ``hiphive.self_consistent_phonons.self_consistent_harmonic_model`` with the
            tutorial settings; self-contained (its first model is fitted to rattled
            structures), the final parameters are those of the last iteration.

Every method's Phi(T) is judged with the same code: ``core.metrics.l2_shift`` of the
commensurate frequencies of the shared supercell against the shared harmonic reference,
the lowest optical frequency at Gamma and the lowest frequency at one zone-boundary point.

Each (material, method, seed) run is stored as JSON under OUT/raw/ as soon as it ends;
the table, CSV and plot are rebuilt from everything stored there (``--report-only`` does
only that), so materials may be run by separate invocations.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy: the machine has 2 shared cores

import numpy as np
from _common import MDR, ROOT, setup_env
from ase.calculators.calculator import Calculator, all_changes

METHODS = ("ours", "phonopy", "hiphive")
METHOD_LABEL = {"ours": "ours (tdph engine, force fit)", "phonopy": "phonopy SSCHA + symfc",
                "hiphive": "hiphive SCP"}


# --------------------------------------------------------------------------- materials
@dataclass
class Material:
    key: str
    label: str
    calculator: str  # "emt" or "m3gnet"
    structure: object
    supercell_matrix: list | None
    relax: bool
    boundary_label: str  # seekpath label of the zone-boundary point, or a name for ``boundary_q``
    boundary_q: list | None = None  # explicit primitive-reciprocal q when the label is not commensurate


def material(key: str) -> Material:
    from ase.build import bulk

    from tdph_workflows.engine import cubic_srtio3

    if key == "al":  # EMT's own lattice constant (E(V) fit: 3.994 A); 4x4x4 primitive = 64 atoms
        return Material(key, "Al fcc (EMT, 64 at.)", "emt", bulk("Al", "fcc", a=3.994), [[4, 0, 0], [0, 4, 0], [0, 0, 4]],
                        False, "X")
    if key == "srtio3":  # relaxed with the model like benchmarks/bench_estimators.py
        return Material(key, "SrTiO3 cubic (M3GNet, 40 at.)", "m3gnet", cubic_srtio3(), [[2, 0, 0], [0, 2, 0], [0, 0, 2]],
                        True, "R")
    if key == "kcl":
        return Material(key, "KCl mp-23193 (M3GNet, MDR 64 at.)", "m3gnet", MDR / "curated" / "mp-23193_KCl", None,
                        False, "X")
    if key == "cspbbr3":  # MDR 3x3x3 supercell: R is not commensurate, (1/3,1/3,1/3) is the nearest point to it
        return Material(key, "CsPbBr3 mp-600089 (M3GNet, MDR 135 at.)", "m3gnet", MDR / "curated" / "mp-600089_CsPbBr3",
                        None, False, "Λ(1/3,1/3,1/3)", [1 / 3, 1 / 3, 1 / 3])
    raise SystemExit(f"unknown material {key!r}")


_CALCS: dict = {}


def calculator(name: str):
    if name not in _CALCS:
        if name == "emt":
            from ase.calculators.emt import EMT

            _CALCS[name] = EMT()
        else:
            from tdph_workflows.potentials import resolve_calculator

            _CALCS[name] = resolve_calculator(None)
    return _CALCS[name]


# --------------------------------------------------------------------------- shared helpers
class CountingCalculator(Calculator):
    """ASE calculator that delegates to ``inner`` and counts the structures it evaluates."""

    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(self, inner: Calculator) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = self.inner
        forces = np.array(work.get_forces())
        energy = float(work.get_potential_energy())
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
        self.calls += 1


@dataclass
class Reference:
    """Harmonic stage shared by all methods plus the q-points the observables are read at."""

    stage: object
    freqs0: np.ndarray
    boundary_q: np.ndarray
    wall: float
    calls: int


def harmonic_reference(mat: Material) -> Reference:
    from tdph_workflows.core import phonons
    from tdph_workflows.engine import harmonic_stage

    t0 = time.perf_counter()
    stage = harmonic_stage(mat.structure, calculator(mat.calculator), mat.supercell_matrix, relax=mat.relax)
    wall = time.perf_counter() - t0 - stage.timings.get("relax", 0.0)
    if mat.boundary_q is not None:
        q = np.array(mat.boundary_q, float)
    else:
        q = np.array(phonons.special_points(stage.phonon.primitive)[0][mat.boundary_label], float)
    comm = phonons.commensurate_qpoints(stage.phonon)
    d = comm - q
    if not np.any(np.all(np.abs(d - np.rint(d)) < 1e-6, axis=1)):
        raise RuntimeError(f"{mat.key}: {mat.boundary_label} {q} is not commensurate with the supercell")
    freqs0 = phonons.commensurate_frequencies(stage.phonon, stage.force_constants)
    return Reference(stage, freqs0, q, wall, 1 + stage.n_displacements)


def observables(ref: Reference, fc: np.ndarray) -> dict:
    """L2 shift vs the harmonic reference, lowest Gamma optical and zone-boundary frequencies (THz)."""
    from tdph_workflows.core import metrics, phonons

    ph = ref.stage.phonon
    freqs = phonons.commensurate_frequencies(ph, fc)
    g, mask = phonons.acoustic_mask(ph, fc, np.zeros((1, 3)))
    gamma_opt = g[0][mask[0]]
    zb, _ = phonons.frequencies_and_vectors(ph, fc, ref.boundary_q[None])
    return {"l2_shift": metrics.l2_shift(ref.freqs0, freqs),
            "gamma_optical_min": float(gamma_opt.min()) if gamma_opt.size else None,
            "boundary_min": float(zb[0].min()),
            "min_frequency": float(freqs.min())}


@contextlib.contextmanager
def quiet():
    """Third-party progress prints and warnings swallowed."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def silenced(fn, *args, **kwargs):
    with quiet():
        return fn(*args, **kwargs)


# --------------------------------------------------------------------------- the three methods
def run_ours(mat: Material, ref: Reference, seed: int, opts: dict) -> dict:
    from tdph_workflows.core.sscha import SSCHASettings
    from tdph_workflows.engine import run_temperature_phonons

    settings = SSCHASettings(seed=seed, **opts.get("ours", {}))
    structure = ref.stage.unitcell if mat.relax else mat.structure  # relaxed once, shared by every method
    t0 = time.perf_counter()
    res = run_temperature_phonons(structure, calculator(mat.calculator), [opts["T"]], mat.supercell_matrix, settings)
    wall = time.perf_counter() - t0
    t = res.at(opts["T"])
    fc = res.full_force_constants(opts["T"])
    calls = 1 + res.n_harmonic_displacements + t.potential_calls.get("forces", 0)
    out = {"wall_s": wall, "force_calls": calls, "hessians": t.potential_calls.get("hessians", 0),
           "engine_l2_shift": t.l2_shift, "engine_l2_stderr": t.l2_stderr, "n_samples": t.n_samples,
           "engine_timings": {k: round(v, 2) for k, v in (res.timings | t.timings).items()},
           "settings": f"default SSCHASettings (force_fit, {settings.min_pairs}-{settings.max_pairs} pairs, "
                       f"stop at stderr<=max({settings.target_abs},{settings.target_rel}*L2)); "
                       f"used {t.n_samples} samples"}
    return out | observables(ref, fc)


def run_phonopy(mat: Material, ref: Reference, seed: int, opts: dict) -> dict:
    from phonopy.interface.mlp import PhonopyMLP
    from phonopy.sscha.core import MLPSSCHA

    from tdph_workflows.core import phonons
    from tdph_workflows.io.structures import phonopy_to_ase

    counter = CountingCalculator(calculator(mat.calculator))

    class CalculatorMLP(PhonopyMLP):
        """phonopy's MLP slot filled with an ASE calculator (energies, forces; no stresses)."""

        def evaluate(self, supercells):
            energies, forces = [], []
            for cell in supercells:
                atoms = phonopy_to_ase(cell)
                atoms.calc = counter
                forces.append(atoms.get_forces())
                energies.append(atoms.get_potential_energy())
            return np.array(energies), np.array(forces), np.zeros((len(energies), 6))

    n_iter, n_snap, mixing = opts["phonopy_iterations"], opts["phonopy_snapshots"], opts.get("phonopy_mixing", 1.0)
    start = phonons.with_force_constants(ref.stage.phonon, ref.stage.force_constants)
    t0 = time.perf_counter()
    sscha = MLPSSCHA(start, CalculatorMLP(mlp="ase"), temperature=opts["T"], number_of_snapshots=n_snap,
                     max_iterations=n_iter, fc_calculator="symfc", random_seed=seed)
    trace, t_obs = [], 0.0  # observables after every iteration; their own cost is kept out of the wall time
    with quiet():
        fc_previous = np.array(sscha.force_constants)
        for iteration in sscha:
            if mixing < 1.0:  # linear mixing, as hiphive's alpha: phonopy samples from what is set here
                sscha._ph.force_constants = (1.0 - mixing) * fc_previous + mixing * np.array(sscha.force_constants)
            fc_previous = np.array(sscha.force_constants)  # MLPSSCHA has no mixing option: set above
            t1 = time.perf_counter()
            obs = observables(ref, fc_previous)
            t_obs += time.perf_counter() - t1
            trace.append({"iteration": iteration, "wall_s": time.perf_counter() - t0 - t_obs + ref.wall,
                          "force_calls": counter.calls + ref.calls} | obs)
    wall = time.perf_counter() - t0 - t_obs
    fc = np.array(sscha.force_constants)
    return {"wall_s": wall + ref.wall, "method_wall_s": wall, "force_calls": counter.calls + ref.calls, "hessians": 0,
            "settings": f"MLPSSCHA {n_iter} it. x {n_snap} snapshots, symfc, from Phi_HA "
                        + (f"+ linear mixing {mixing:g} " if mixing < 1.0 else "")
                        + f"(+{ref.calls} harmonic calls)", "trace": trace} | observables(ref, fc)


def hiphive_cutoff(ref: Reference, fraction: float = 0.95) -> float:
    """A bit below half the smallest perpendicular width of the supercell."""
    cell = np.asarray(ref.stage.phonon.supercell.cell)
    vol = abs(np.linalg.det(cell))
    widths = [vol / np.linalg.norm(np.cross(cell[i - 2], cell[i - 1])) for i in range(3)]
    return round(fraction * min(widths) / 2, 2)


def run_hiphive(mat: Material, ref: Reference, seed: int, opts: dict) -> dict:
    from hiphive import ClusterSpace, ForceConstantPotential
    from hiphive.self_consistent_phonons import self_consistent_harmonic_model

    from tdph_workflows.io.structures import phonopy_to_ase

    counter = CountingCalculator(calculator(mat.calculator))
    prim = phonopy_to_ase(ref.stage.phonon.primitive)
    ideal = phonopy_to_ase(ref.stage.phonon.supercell)  # phonopy supercell order: fc arrays line up
    cutoff = hiphive_cutoff(ref)
    n_iter, n_struct, alpha = opts["hiphive_iterations"], opts["hiphive_structures"], opts["hiphive_alpha"]
    np.random.seed(seed)  # hiphive's phonon rattler draws from numpy's global generator
    t0 = time.perf_counter()
    cs = silenced(ClusterSpace, prim, [cutoff])
    traj = silenced(self_consistent_harmonic_model, ideal, counter, cs, opts["T"], alpha, n_iter, n_struct,
                    QM_statistics=True)
    fcp = silenced(ForceConstantPotential, cs, traj[-1])
    fc = silenced(fcp.get_force_constants, ideal).get_fc_array(order=2)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "method_wall_s": wall, "force_calls": counter.calls, "hessians": 0,
            "settings": f"{n_iter} it. x {n_struct} structures (+{n_struct} rattled start), alpha {alpha}, "
                        f"QM statistics, 2nd-order cutoff {cutoff} A"} | observables(ref, fc)


NOTES = (
    "Generated by `benchmarks/bench_sscha_tools.py`. 300 K, quantum (Bose-Einstein) statistics in all three "
    "methods; per material the same calculator, supercell and harmonic reference Phi_HA. L2 shift = "
    "`core.metrics.l2_shift` of the commensurate frequencies of that supercell (Gamma acoustic modes removed) vs "
    "Phi_HA, for every method. Wall times are end to end: ours includes its own harmonic stage; phonopy includes "
    "the harmonic stage it starts from (its calls are counted too); hiphive starts from its own rattled fit. "
    "Frequencies in THz (negative = imaginary); Γ = lowest optical mode at Gamma, ZB = lowest mode at the named "
    "zone-boundary point. Mean ± sample standard deviation over runs with different seeds. hiphive's force "
    "constants are truncated at its second-order cutoff, so its L2 shift also contains the truncation of Phi_HA's "
    "long-range part. 'ours' is the default one-shot (sampled from Phi_HA, imaginary modes at max(|omega|, 0.5 THz), "
    "the paper's method); 'ours [self-consistent]' is `SSCHASettings(self_consistent=True, sc_predict=False)`: "
    "coarse 32-sample iterations with damped mixing until Phi(T) is a fixed point within the noise, then full "
    "statistics (docs/method.md); 'ours [sc-predict]' steps to the amplitude model's predicted fixed point instead "
    "of mixing (`sc_predict=True`, opt-in); its runs had 4-5 processes on the 2 cores (load column), so compare "
    "its force calls, not its wall time. phonopy and hiphive iterate to self-consistency. Machine: 2 CPU cores, "
    "one torch thread, OMP_NUM_THREADS=1; up to two benchmark processes ran at once, see the load-average column."
)

RUNNERS = {"ours": run_ours, "phonopy": run_phonopy, "hiphive": run_hiphive}


# --------------------------------------------------------------------------- report
def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def fmt(values: list, digits: int = 2, scale: float = 1.0) -> str:
    vals = [scale * v for v in values if v is not None]
    if not vals:
        return "—"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{np.mean(vals):.{digits}f} ± {np.std(vals, ddof=1):.{digits}f}"


def mean(runs: list[dict], key: str) -> float:
    return float(np.mean([r[key] for r in runs]))


FIXED_ITERATIONS = 5  # the 'converged' phonopy setting: 5 iterations of 400 snapshots
TRACE_NOTES = (
    "phonopy's MLPSSCHA has no mixing: each iteration samples from the force constants the previous one fitted "
    "(runs marked 'linear mixing a' set (1 - a) Phi_previous + a Phi_fit between iterations, as hiphive's alpha). "
    "Each run's answer is the median over the second half of its iterations, with the interquartile range as the "
    "spread. 'Settled at' is the first iteration from which every later one lies within ±10 % of that median, with "
    "the wall time and calls up to it ('never' when the last iteration is outside). The observables of every "
    "iteration are stored in the run's JSON (`trace`)."
)


def _median_iqr(values: list) -> tuple[float, str]:
    v = np.array([x for x in values if x is not None], float)
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return float(med), f"{med:.2f} [{q1:.2f}, {q3:.2f}]"


def trace_summary(run: dict) -> dict:
    trace = run["trace"]
    tail = trace[len(trace) // 2:]
    l2 = [t["l2_shift"] for t in tail]
    med, _ = _median_iqr(l2)
    _, l2_text = _median_iqr([100 * x for x in l2])
    settled = None
    for i in range(len(trace) - 1, -1, -1):
        if abs(trace[i]["l2_shift"] - med) > 0.1 * med:
            break
        settled = trace[i]
    fifth = next((t for t in trace if t["iteration"] == FIXED_ITERATIONS), None)
    return {"l2_median": med, "l2_text": l2_text, "n": len(tail), "fifth": fifth,
            "fifth_text": "—" if fifth is None else f"{fifth['wall_s']:.0f} s, {100 * fifth['l2_shift']:.2f} %",
            "within": sum(abs(x - med) <= 0.1 * med for x in l2), "settled": settled,
            "settled_text": "never" if settled is None else
            f"it. {settled['iteration']}: {settled['wall_s']:.0f} s, {settled['force_calls']} calls",
            "gamma_text": _median_iqr([t["gamma_optical_min"] for t in tail])[1]
            if any(t["gamma_optical_min"] is not None for t in tail) else "—",
            "zb_text": _median_iqr([t["boundary_min"] for t in tail])[1],
            "zb_imaginary": sum(t["boundary_min"] < 0 for t in tail)}


def report(out: Path, load: str) -> None:
    raw = [json.loads(p.read_text()) for p in sorted((out / "raw").glob("*.json"))]
    if not raw:
        print("nothing to report")
        return
    order = ["al", "srtio3", "kcl", "cspbbr3"]
    groups: dict[tuple, list] = {}
    for r in raw:
        groups.setdefault((r["material"], r["method"], r.get("variant", "")), []).append(r)
    keys = sorted(groups, key=lambda k: (order.index(k[0]) if k[0] in order else 99, k[2], METHODS.index(k[1])))

    header = ["material", "method", "settings", "runs", "wall time (s)", "force calls", "Hessians", "L2 shift (%)",
              "Γ lowest optical (THz)", "zone-boundary point", "ZB lowest (THz)", "load avg (1 min)"]
    rows = []
    for k in keys:
        runs = groups[k]
        r0 = runs[0]
        name = METHOD_LABEL[k[1]] + (f" [supplementary: {k[2]}]" if k[2] else "")
        rows.append([r0["label"], name, r0["settings"], len(runs), fmt([r["wall_s"] for r in runs], 1),
                     fmt([r["force_calls"] for r in runs], 0), fmt([r["hessians"] for r in runs], 0),
                     fmt([r["l2_shift"] for r in runs], 2, 100), fmt([r["gamma_optical_min"] for r in runs]),
                     r0["boundary_label"], fmt([r["boundary_min"] for r in runs]),
                     fmt([r["loadavg_1min"] for r in runs], 1)])

    ratio_header = ["material", "ours", "vs", "speed-up (their wall / ours)", "call ratio (theirs / ours)",
                    "L2 ours (%)", "L2 theirs (%)", "ΔL2 / L2 theirs (%)"]
    ratio_rows = []  # every ours run (default first) against every phonopy / hiphive run of the same material
    name = {k: METHOD_LABEL[k[1]] + (f" [{k[2]}]" if k[2] else "") for k in keys}
    for k_ours in [k for k in keys if k[1] == "ours"]:
        ours = groups[k_ours]
        for k_other in [k for k in keys if k[0] == k_ours[0] and k[1] != "ours"]:
            theirs = groups[k_other]
            l2o, l2t = mean(ours, "l2_shift"), mean(theirs, "l2_shift")
            ratio_rows.append([ours[0]["label"], name[k_ours], name[k_other],
                               f"{mean(theirs, 'wall_s') / mean(ours, 'wall_s'):.1f}",
                               f"{mean(theirs, 'force_calls') / mean(ours, 'force_calls'):.1f}",
                               f"{100 * l2o:.2f}", f"{100 * l2t:.2f}", f"{100 * (l2o - l2t) / l2t:+.1f}"])

    def md(h, rs):
        lines = ["| " + " | ".join(h) + " |", "|" + "---|" * len(h)]
        return lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rs]

    traced = [r for r in raw if len(r.get("trace", [])) >= 10]
    trace_header = ["material", "phonopy run", "wall (s)", "force calls", "L2 median [IQR], 2nd half (%)",
                    "2nd-half iterations within ±10 % of median", "settled at",
                    f"after {FIXED_ITERATIONS} it.: wall, L2", "Γ median [IQR] (THz)", "ZB median [IQR] (THz)",
                    "iterations with imaginary ZB"]
    trace_rows, trace_ratio_rows = [], []
    for r in traced:
        t = trace_summary(r)
        trace_rows.append([r["label"], f"{r['settings']} (seed {r['seed']})", f"{r['wall_s']:.0f}", r["force_calls"],
                           t["l2_text"], f"{t['within']}/{t['n']}", t["settled_text"], t["fifth_text"],
                           t["gamma_text"], t["zb_text"], t["zb_imaginary"]])
        for k_ours in [k for k in keys if k[1] == "ours" and k[0] == r["material"]]:
            ours = groups[k_ours]
            l2o = mean(ours, "l2_shift")
            s_ = t["settled"]
            trace_ratio_rows.append([r["label"], f"{r['settings']} (seed {r['seed']})", name[k_ours],
                                     f"{r['wall_s'] / mean(ours, 'wall_s'):.1f}",
                                     "—" if s_ is None else f"{s_['wall_s'] / mean(ours, 'wall_s'):.1f}",
                                     "—" if t["fifth"] is None else f"{t['fifth']['wall_s'] / mean(ours, 'wall_s'):.1f}",
                                     f"{r['force_calls'] / mean(ours, 'force_calls'):.1f}", f"{100 * l2o:.2f}",
                                     f"{100 * t['l2_median']:.2f}",
                                     f"{100 * (l2o - t['l2_median']) / t['l2_median']:+.1f}"])

    text = ["# Our one-shot SSCHA vs phonopy SSCHA (symfc) vs hiphive SCP", "", NOTES,
            f"Load average when the report was written: `{load}`.", ""]
    text += md(header, rows) + ["", "## Ratios (mean over runs)", ""] + md(ratio_header, ratio_rows) + [""]
    if traced:
        text += ["## phonopy SSCHA iteration by iteration", "", TRACE_NOTES, ""] + md(trace_header, trace_rows)
        text += ["", ("Ours against each run's median (speed-ups: phonopy's wall for the whole run, and up to the "
                      "iteration it settled at, over ours):"), ""]
        text += md(["material", "phonopy run", "ours", "speed-up (whole run)", "speed-up (to settled)",
                    f"speed-up (to it. {FIXED_ITERATIONS})", "call ratio",
                    "L2 ours (%)", "L2 phonopy median (%)", "ΔL2 / median (%)"], trace_ratio_rows) + [""]
    (out / "sscha_tools.md").write_text("\n".join(text))

    columns = ["material", "method", "variant", "seed", "settings", "wall_s", "method_wall_s", "force_calls",
               "hessians", "l2_shift", "gamma_optical_min", "boundary_label", "boundary_min", "min_frequency",
               "loadavg_1min"]
    with open(out / "sscha_tools.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns, extrasaction="ignore")
        writer.writeheader()
        for k in keys:
            writer.writerows(groups[k])
    plot(out, groups, keys, traced)
    print("\n".join(text))


def plot(out: Path, groups: dict, keys: list, traced: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mats = list(dict.fromkeys(k[0] for k in keys))
    labels = {k[0]: groups[k][0]["label"].split(" ")[0] for k in keys}
    series = [(m, "") for m in METHODS] + sorted({k[1:] for k in keys if k[2]})  # supplementary runs last
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:cyan", "tab:red", "tab:purple", "tab:gray"]
    width = 0.8 / len(series)
    fig, axes = plt.subplots(1, 4 if traced else 3, figsize=(20 if traced else 15, 4.5))
    for j, (key, scale, title, log) in enumerate([("wall_s", 1, "wall time (s)", True),
                                                  ("force_calls", 1, "force calls", True),
                                                  ("l2_shift", 100, "L2 frequency shift (%)", False)]):
        ax = axes[j]
        for i, (m, variant) in enumerate(series):
            xs, ys, es = [], [], []
            for x, mat in enumerate(mats):
                runs = groups.get((mat, m, variant))
                if not runs:
                    continue
                v = scale * np.array([r[key] for r in runs], float)
                xs.append(x + (i - (len(series) - 1) / 2) * width)
                ys.append(v.mean())
                es.append(v.std(ddof=1) if len(v) > 1 else np.nan)
            name = METHOD_LABEL[m] + (f" [{variant}]" if variant else "")
            ax.bar(xs, ys, width, yerr=es, capsize=3, color=palette[i % len(palette)], label=name,
                   hatch="//" if variant else None)
        ax.set_xticks(range(len(mats)), [labels[m] for m in mats])
        ax.set_title(title)
        if log:
            ax.set_yscale("log")
    axes[2].legend(fontsize=7)
    if traced:
        plot_traces(axes[3], groups, traced)
    fig.tight_layout()
    fig.savefig(out / "sscha_tools.png", dpi=130)
    plt.close(fig)


def plot_traces(ax, groups: dict, traced: list) -> None:
    """L2 shift per phonopy iteration (solid: as shipped, dashed: with mixing); ours (SC) as mean ± sd bands."""
    mats = list(dict.fromkeys(r["material"] for r in traced))
    for run in traced:
        color = f"C{mats.index(run['material'])}"
        mixed = "mixing" in run["settings"]
        it = [t["iteration"] for t in run["trace"]]
        ax.plot(it, [100 * t["l2_shift"] for t in run["trace"]], "x--" if mixed else "o-", ms=3, lw=1, color=color,
                label=f"phonopy {run['label'].split(' ')[0]}" + (" + mixing" if mixed else ""))
    for mat in mats:
        ours = groups.get((mat, "ours", "self-consistent"))
        if ours:
            v = 100 * np.array([r["l2_shift"] for r in ours])
            sd = v.std(ddof=1) if len(v) > 1 else 0.0
            ax.axhspan(v.mean() - sd, v.mean() + sd, color=f"C{mats.index(mat)}", alpha=0.3,
                       label=f"ours self-consistent {ours[0]['label'].split(' ')[0]}")
    ax.set_yscale("log")
    ax.set_xlabel("phonopy SSCHA iteration")
    ax.set_title("L2 shift per iteration (%)")
    ax.legend(fontsize=6, ncol=2)


# --------------------------------------------------------------------------- driver
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--materials", nargs="+", default=["al", "srtio3", "kcl", "cspbbr3"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--repeats", type=int, default=5, help="seeds per (material, method) for EMT Al")
    ap.add_argument("--repeats-m3gnet", type=int, default=1, help="seeds per (material, method) with M3GNet")
    ap.add_argument("--temperature", type=float, default=300.0)
    ap.add_argument("--phonopy-iterations", type=int, default=5)
    ap.add_argument("--phonopy-snapshots", type=int, default=400)
    ap.add_argument("--phonopy-mixing", type=float, default=1.0,
                    help="weight of each new fit in the force constants phonopy samples from next (1: none)")
    ap.add_argument("--hiphive-iterations", type=int, default=30)
    ap.add_argument("--hiphive-structures", type=int, default=50)
    ap.add_argument("--hiphive-alpha", type=float, default=0.2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sscha_tools")
    ap.add_argument("--smoke", action="store_true", help="EMT Al with tiny settings (< 60 s), into OUT/smoke")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--variant", default="", help="name of a supplementary run (kept out of ratios and plot)")
    ap.add_argument("--ours-self-consistent", action="store_true", help="ours with self_consistent=True")
    ap.add_argument("--ours-sc-predict", action="store_true",
                    help="with --ours-self-consistent: predicted self-consistent steps (sc_predict=True); without: mixing")
    args = ap.parse_args()
    opts = {"T": args.temperature, "phonopy_iterations": args.phonopy_iterations,
            "phonopy_snapshots": args.phonopy_snapshots, "phonopy_mixing": args.phonopy_mixing,
            "hiphive_iterations": args.hiphive_iterations,
            "hiphive_structures": args.hiphive_structures, "hiphive_alpha": args.hiphive_alpha}
    if args.smoke:
        args.materials, args.repeats, args.out = ["al"], 1, args.out / "smoke"
        opts |= {"phonopy_iterations": 2, "phonopy_snapshots": 40, "hiphive_iterations": 3, "hiphive_structures": 10,
                 "ours": {"min_pairs": 8, "max_pairs": 8}}
    if args.ours_self_consistent:
        opts["ours"] = {"self_consistent": True, "sc_predict": args.ours_sc_predict}
    out = args.out
    tag = f"_{args.variant}" if args.variant else ""
    (out / "raw").mkdir(parents=True, exist_ok=True)
    if args.report_only:
        report(out, loadavg())
        return
    setup_env()
    logging.getLogger("hiphive").setLevel(logging.WARNING)
    for key in args.materials:
        mat = material(key)
        ref = harmonic_reference(mat)
        print(f"{mat.label}: harmonic reference {ref.wall:.1f} s, {ref.calls} calls, "
              f"{len(ref.stage.phonon.supercell)} atoms", flush=True)
        repeats = args.repeats if mat.calculator == "emt" else args.repeats_m3gnet
        for seed in range(repeats):  # seeds outermost: an interrupted run still has every method
            for method in args.methods:
                load = loadavg()
                rec = RUNNERS[method](mat, ref, seed, opts)
                rec |= {"material": key, "label": mat.label, "method": method, "variant": args.variant, "seed": seed,
                        "boundary_label": mat.boundary_label, "loadavg_before": load,
                        "loadavg_1min": float(loadavg().split()[0])}
                (out / "raw" / f"{key}_{method}{tag}_{seed}.json").write_text(json.dumps(rec, indent=1))
                print(f"  {method:8s} seed {seed}: {rec['wall_s']:7.1f} s, {rec['force_calls']:5d} calls, "
                      f"L2 {100 * rec['l2_shift']:.2f} %, Γ {rec['gamma_optical_min']}, "
                      f"{mat.boundary_label} {rec['boundary_min']:.3f} THz  [load {load}]", flush=True)
    report(out, loadavg())


if __name__ == "__main__":
    main()
