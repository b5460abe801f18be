"""A trust grade on every material and temperature, from what the engine measured.

A screening table is judged by its top rows, and the strongest "shifts" are where artefacts
live: a harmonic reference that is already unstable, a self-consistent loop that stalled, samples
that left the harmonic regime, a potential that disagrees with DFT. Each check below either passes
or adds a reason with a code; the grade is the worst grade among the reasons.

=====  =====================================================================================
grade  meaning
=====  =====================================================================================
A      trusted: stable reference that agrees with DFT where known, converged statistics,
       self-consistent fixed point
B      usable: one caveat that moves numbers, not conclusions (one-shot estimate, extended
       supercell, a harmonic instability that the self-consistent solution removes)
C      qualitative: unstable at T, thermal displacements beyond the harmonic regime, or the
       error target not met
F      not a result: a stalled or unconverged self-consistent loop, a one-shot estimate on an
       unstable reference, a stable crystal that turns unstable at T, or a potential that
       disagrees with DFT
=====  =====================================================================================
"""

from __future__ import annotations

from collections.abc import Iterable

from .schemas import DFTReference, PhononSpectrum, TDPHResult, TemperatureResult, TrustGrade

GRADES = ("A", "B", "C", "F")
IMAGINARY_THZ = -0.1  # below this a mode counts as imaginary (the spectra's own n_imaginary rule)
MAX_DFT_DEVIATION = 0.20  # the paper's outlier rule: ||w_model - w_DFT|| / ||w_DFT|| above 20 %
# 3D rms thermal displacement over the nearest-neighbour distance beyond which samples leave the harmonic
# regime: 0.08-0.10 for stable alkali halides at 300 K (DFT force constants), crystals melt near 0.15-0.2
MAX_LINDEMANN_RATIO = 0.15
# an empty slab wider than this between atomic planes: no bulk crystal has one (the widest of the 3,992
# shared MDR entries is 3.94 A, layered LuI3; graphite and BN ~3.3-3.9 A)
MAX_VACUUM_GAP = 7.0
# fallback for documents without the ratio (absolute rms; flags stable alkali halides, whose rms reach 0.36 A)
MAX_RMS_DISPLACEMENT = 0.25
# engine.THERMAL_SAMPLING_TOLERANCE is what widening aims at; a cell still above it (too many atoms to
# widen) over-samples thermal displacements
THERMAL_SAMPLING_LIMIT = 1.25


def vacuum_gap(result: TDPHResult) -> tuple[float, str]:
    """Widest empty slab (A) between atomic planes along any cell vector of the unit cell, and that vector."""
    import numpy as np

    structure = result.structure()
    frac = np.mod(structure.frac_coords, 1.0)
    inv = np.linalg.inv(structure.lattice.matrix)
    best, axis = 0.0, "a"
    for k, name in enumerate("abc"):
        spacing = 1.0 / np.linalg.norm(inv[:, k])  # distance between the lattice planes k = 0 and k = 1
        x = np.sort(frac[:, k])
        gaps = np.diff(np.concatenate([x, [x[0] + 1.0]]))
        if gaps.max() * spacing > best:
            best, axis = float(gaps.max() * spacing), name
    return best, axis


def worst(grades: Iterable[str]) -> str:
    """The worst of some grades (``A`` for none)."""
    return max(grades, key=GRADES.index, default="A")


def failures_before_sampling(harmonic: PhononSpectrum, dft: DFTReference | None,
                             self_consistent: bool) -> list[tuple[str, str, str]]:
    """The F reasons known from the harmonic stage alone, as (grade, code, text).

    A material with any is graded F whatever its samples show, so a campaign may cap its
    statistics (``SSCHASettings.known_failure_pairs``).

    Parameters
    ----------
    harmonic
        The model's harmonic spectrum.
    dft
        Model vs DFT comparison of the input's own harmonic frequencies, when it has them.
    self_consistent
        Whether Phi(T) will be iterated (an unstable reference is then not a failure yet).
    """
    reasons = []
    harmonic_min = harmonic.min_frequency
    harmonic_unstable = harmonic_min < IMAGINARY_THZ
    if dft is not None:
        dft_unstable = dft.min_frequency_dft < IMAGINARY_THZ
        if dft_unstable != harmonic_unstable:
            text = (f"harmonic spectrum {'unstable' if harmonic_unstable else 'stable'} (min {harmonic_min:.2f} "
                    f"THz) where DFT's is {'unstable' if dft_unstable else 'stable'} (min {dft.min_frequency_dft:.2f} THz)")
            reasons.append(("F", "dft_stability", text))
        if dft.relative_deviation > MAX_DFT_DEVIATION:
            text = (f"harmonic frequencies {100 * dft.relative_deviation:.0f} % from DFT "
                    f"(> {100 * MAX_DFT_DEVIATION:.0f} %, the paper's outlier rule)")
            reasons.append(("F", "dft_deviation", text))
    if harmonic_unstable and not self_consistent:
        text = (f"one-shot estimate on an unstable harmonic reference (min {harmonic_min:.2f} THz, soft modes "
                "sampled at a floor): use --self-consistent")
        reasons.append(("F", "oneshot_on_unstable", text))
    return reasons


def grade_temperature(result: TDPHResult, t: TemperatureResult) -> TrustGrade:
    """Grade one temperature of a result; every failed check is a reason ``"<grade> <code>: <text>"``.

    Parameters
    ----------
    result
        The material's result (harmonic spectrum, DFT reference, supercell, settings).
    t
        One of ``result.temperatures``.
    """
    reasons: list[tuple[str, str, str]] = []

    def fail(grade: str, code: str, text: str) -> None:
        reasons.append((grade, code, text))

    harmonic_min = result.harmonic.min_frequency
    harmonic_unstable = harmonic_min < IMAGINARY_THZ
    unstable_at_t = t.spectrum.min_frequency < IMAGINARY_THZ
    self_consistent = t.self_consistent_converged is not None
    fixed_point = t.self_consistent_converged is True
    stalled = any("stalled" in note for note in t.sampling_notes)

    reasons += failures_before_sampling(result.harmonic, result.dft_reference, self_consistent)
    if self_consistent and not fixed_point:
        what = "stalled" if stalled else f"did not converge in {len(t.self_consistent_changes_thz)} iterations"
        fail("F", "sc_not_converged", f"self-consistent loop {what}: Phi(T) is an iterate, not a result")
    if not harmonic_unstable and unstable_at_t:
        code, grade = ("unstable_at_T", "C") if fixed_point else ("became_unstable", "F")
        cause = "" if fixed_point else ": samples left the harmonic regime"
        fail(grade, code, f"stable harmonic spectrum but imaginary at {t.temperature:g} K (min "
                 f"{t.spectrum.min_frequency:.2f} THz){cause}")
    if harmonic_unstable and fixed_point:
        if unstable_at_t:
            fail("C", "unstable_at_T", f"unstable at {t.temperature:g} K: the self-consistent Phi(T) keeps "
                 f"{t.spectrum.n_imaginary} imaginary modes (min {t.spectrum.min_frequency:.2f} THz)")
        else:
            fail("B", "stabilized", f"harmonic reference unstable (min {harmonic_min:.2f} THz), stable at "
                 f"{t.temperature:g} K after self-consistency")
    lindemann = getattr(t, "lindemann_ratio", None)
    if lindemann is not None:
        if lindemann > MAX_LINDEMANN_RATIO:
            fail("C", "large_displacements", f"rms displacement {100 * lindemann:.0f} % of the nearest-neighbour "
                 f"distance (> {100 * MAX_LINDEMANN_RATIO:.0f} %, near melting): beyond the harmonic regime")
    elif t.max_rms_displacement > MAX_RMS_DISPLACEMENT:  # documents stored before the Lindemann ratio
        fail("C", "large_displacements", f"rms displacement up to {t.max_rms_displacement:.2f} A "
             f"(> {MAX_RMS_DISPLACEMENT} A): beyond the harmonic regime")
    if not t.converged:
        fail("C", "error_target", f"error target not met: L2 shift {100 * t.l2_shift:.1f} +- "
                 f"{100 * t.l2_stderr:.1f} % after {t.n_samples} samples")
    if not self_consistent:
        fail("B", "one_shot", "one-shot estimate (overstates the self-consistent shift, median +35 % "
                 "on 50 MDR entries)")
    ratio = result.thermal_sampling_ratio
    if ratio is not None and ratio > THERMAL_SAMPLING_LIMIT:
        fail("C", "supercell_too_small", f"the supercell samples {ratio:.1f}x the converged harmonic mean-square "
             "displacement (after any widening): thermal samples too large")
    gap, axis = vacuum_gap(result)
    if gap > MAX_VACUUM_GAP:
        fail("B", "vacuum", f"{gap:.1f} A of vacuum along {axis}: a slab, wire or molecule; its phonons are "
             "those of a periodic stack of them, not of a bulk crystal")
    if result.supercell_extended_by:
        fail("B", "supercell_extended", f"supercell extended x{'x'.join(map(str, result.supercell_extended_by))} "
                 "to the minimum width")
    reasons.sort(key=lambda r: GRADES.index(r[0]), reverse=True)
    return TrustGrade(grade=worst(g for g, _, _ in reasons), reasons=[f"{g} {code}: {text}" for g, code, text in reasons])


def grade_result(result: TDPHResult) -> TDPHResult:
    """Set the grade of every temperature and the material's (its worst), in place; returns the result."""
    for t in result.temperatures:
        t.trust = grade_temperature(result, t)
    result.trust = TrustGrade(grade=worst(t.trust.grade for t in result.temperatures),
                              reasons=sorted({r for t in result.temperatures for r in t.trust.reasons},
                                             key=lambda r: GRADES.index(r[0]), reverse=True))
    return result
