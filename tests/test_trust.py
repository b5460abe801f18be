"""Trust grades (tdph_workflows.trust) and supercell adequacy (io.inputs.adequate_supercell)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from phonopy.structure.atoms import PhonopyAtoms

from tdph_workflows.core.sscha import SSCHASettings
from tdph_workflows.engine import run_temperature_phonons
from tdph_workflows.io.inputs import adequate_supercell, perpendicular_widths
from tdph_workflows.schemas import DFTReference
from tdph_workflows.trust import grade_result, grade_temperature, worst


@pytest.fixture(scope="module")
def copper():
    return run_temperature_phonons(bulk("Cu", "fcc", a=3.61, cubic=True), "emt", [300.0],
                                   supercell_matrix=[2, 2, 2], settings=SSCHASettings(min_pairs=16, max_pairs=16))


def codes(result, **changes) -> list[str]:
    r = result.model_copy(deep=True)
    t = r.temperatures[0]
    for key, value in changes.items():
        obj, _, field = key.rpartition("__")
        target = {"": r, "t": t, "spectrum": t.spectrum, "harmonic": r.harmonic}[obj]
        setattr(target, field, value)
    return grade_temperature(r, t).codes


def test_engine_grades_every_temperature(copper):
    t = copper.temperatures[0]
    assert 0.03 < t.lindemann_ratio < 0.15  # copper at 300 K is far from melting
    assert t.trust is not None and copper.trust is not None
    assert t.trust.grade == "B" and t.trust.codes == ["one_shot"]  # stable, converged, but one-shot
    assert copper.trust.grade == worst(x.trust.grade for x in copper.temperatures)


def test_each_check_sets_its_grade(copper):
    assert codes(copper, t__self_consistent_converged=True) == []  # a fixed point of a stable crystal: A
    assert codes(copper, t__self_consistent_converged=False, t__self_consistent_changes_thz=[1.0] * 40)[0] == \
        "sc_not_converged"
    assert codes(copper, harmonic__min_frequency=-1.0)[0] == "oneshot_on_unstable"
    assert codes(copper, spectrum__min_frequency=-2.0)[0] == "became_unstable"
    assert "unstable_at_T" in codes(copper, spectrum__min_frequency=-2.0, t__self_consistent_converged=True)
    stabilized = codes(copper, harmonic__min_frequency=-1.0, t__self_consistent_converged=True)
    assert stabilized == ["stabilized"]
    assert codes(copper, t__lindemann_ratio=0.2)[0] == "large_displacements"
    assert "large_displacements" not in codes(copper, t__max_rms_displacement=0.4)  # 0.4 A can be fine: ratio rules
    assert codes(copper, t__lindemann_ratio=None, t__max_rms_displacement=0.4)[0] == "large_displacements"
    assert codes(copper, t__converged=False)[0] == "error_target"
    assert "supercell_extended" in codes(copper, supercell_extended_by=[2, 2, 1])
    far = DFTReference(mae_thz=2.0, relative_deviation=0.35, min_frequency_dft=1.0)
    assert codes(copper, dft_reference=far)[0] == "dft_deviation"
    unstable_dft = DFTReference(mae_thz=0.1, relative_deviation=0.05, min_frequency_dft=-1.0)
    assert codes(copper, dft_reference=unstable_dft)[0] == "dft_stability"


def test_grades_order_worst_first(copper):
    r = copper.model_copy(deep=True)
    r.temperatures[0].lindemann_ratio = 0.2
    r.harmonic.min_frequency = -1.0
    grade_result(r)
    assert r.trust.grade == "F"
    assert [x[0] for x in r.trust.reasons] == sorted((x[0] for x in r.trust.reasons), key="ABCF".index, reverse=True)


def test_narrow_supercells_are_extended_by_the_smallest_multiples():
    # SiC mp-570690's MDR cell: hexagonal a = 3.08 A, so 2.67 A between opposite faces in-plane
    cell = np.array([[3.0801, 0, 0], [-1.54, 2.6674, 0], [0, 0, 68.03]])
    unitcell = PhonopyAtoms(symbols=["Si", "C"], cell=cell, scaled_positions=[[0, 0, 0], [1 / 3, 2 / 3, 0.01]])
    smat, multiples = adequate_supercell(np.eye(3, dtype=int), unitcell, 5.0)
    assert multiples == [2, 2, 1]
    widths = perpendicular_widths(smat @ cell)
    assert widths.min() >= 5.0 > perpendicular_widths(cell).min()  # x2 is needed and enough
    wide, same = adequate_supercell(np.diag([2, 2, 1]), unitcell, 5.0)
    assert same == [1, 1, 1] and np.array_equal(wide, np.diag([2, 2, 1]))


def test_engine_extends_a_narrow_user_supercell_and_says_so():
    al = bulk("Al", "fcc", a=4.05)  # primitive cell: 2.34 A between faces
    r = run_temperature_phonons(al, "emt", [300.0], supercell_matrix=[1, 1, 1],
                                settings=SSCHASettings(min_pairs=8, max_pairs=8), min_supercell_width=5.0)
    assert r.supercell_extended_by == [3, 3, 3] and "extended x3x3x3" in r.supercell_rule
    assert r.n_atoms_supercell == 27 and "supercell_extended" in r.trust.codes
    kept = run_temperature_phonons(al, "emt", [300.0], supercell_matrix=[2, 2, 2],  # 4.68 A wide
                                   settings=SSCHASettings(min_pairs=8, max_pairs=8), min_supercell_width=4.0)
    assert kept.supercell_extended_by is None and kept.n_atoms_supercell == 8
    assert "supercell_extended" not in kept.trust.codes


def test_a_cell_that_oversamples_soft_modes_is_widened_where_its_q_points_are_coarse():
    from ase.build import fcc111

    from tdph_workflows.core import phonons
    from tdph_workflows.engine import THERMAL_SAMPLING_TOLERANCE, harmonic_stage

    # twelve (111) layers of Al, one atom wide in-plane: like SiC mp-570690's MDR cell, its q-points run
    # along c only and over-weight the soft long waves
    tall = fcc111("Al", size=(1, 1, 12), a=4.05, periodic=True, orthogonal=False)
    narrow = harmonic_stage(tall, "emt", supercell_matrix=[1, 1, 1], min_supercell_width=0, sampling_temperature=None)
    ratio = phonons.thermal_sampling_ratio(narrow.phonon, narrow.force_constants, 300.0,
                                           narrow.phonon.supercell_matrix)
    assert ratio > THERMAL_SAMPLING_TOLERANCE and narrow.supercell_extended_by is None
    widened = harmonic_stage(tall, "emt", supercell_matrix=[1, 1, 1], min_supercell_width=0, sampling_temperature=300)
    assert widened.supercell_extended_by == [2, 2, 1]  # in-plane only, where the q-points were coarse
    assert widened.thermal_sampling_ratio <= THERMAL_SAMPLING_TOLERANCE < ratio
    assert "converged harmonic mean-square displacement" in widened.supercell_rule
    # a cell that samples well is left alone
    cubic = harmonic_stage(bulk("Al", "fcc", a=4.05), "emt", supercell_matrix=[3, 3, 3], min_supercell_width=0)
    assert cubic.supercell_extended_by is None and cubic.thermal_sampling_ratio <= THERMAL_SAMPLING_TOLERANCE


@pytest.mark.data
def test_too_few_samples_for_a_low_symmetry_basis_means_more_samples_not_garbage(mdr_dir):
    """SiC mp-570690 (R3m, 54 atoms): 16 pairs leave 5 of the 954 symmetry-adapted parameters free.

    symfc's solver dropped LAPACK's status and returned garbage force constants: a 99 % "shift" at
    1 K with exactly harmonic forces. Now the sampler draws more until the fit is determined.
    """
    from tdph_workflows.core import phonons
    from tdph_workflows.core.sscha import OneShotSSCHA
    from tdph_workflows.io.mdr import load_mdr_entry

    entry = load_mdr_entry(mdr_dir / "raw_lt20atoms" / "materials-id-570690-sic-r3m-160.tar.lzma")
    ph = phonons.build_phonopy(entry.unitcell, entry.supercell_matrix, entry.primitive_matrix)
    fc = entry.dft_force_constants()
    pos0 = np.array(ph.supercell.positions)

    def harmonic_forces(positions):
        return -np.einsum("ijab,njb->nia", fc, np.asarray(positions) - pos0[None])

    engine = OneShotSSCHA(ph, fc, harmonic_forces, settings=SSCHASettings(quantum=False, seed=0),
                          reference_forces=np.zeros_like(pos0))
    out = engine.run_temperature(300.0)
    assert out.l2_shift < 1e-6 and np.abs(out.force_constants - fc).max() < 1e-6  # a harmonic crystal: no shift
    assert out.n_samples > 32  # 16 pairs were not enough for this basis
    # a statistics cap (coarse self-consistent steps, known failures) never stops the fit short of determined
    capped = engine.run_temperature(300.0, pair_cap=16)
    assert capped.n_samples > 32 and np.abs(capped.force_constants - fc).max() < 1e-6


def test_a_material_graded_f_before_sampling_gets_capped_statistics():
    """known_failure_pairs: DFT says unstable where the model says stable, so no number of samples helps."""
    from tdph_workflows.engine import harmonic_stage, renormalize

    stage = harmonic_stage(bulk("Cu", "fcc", a=3.61, cubic=True), "emt", [2, 2, 2])
    stage.dft_reference = DFTReference(mae_thz=0.1, relative_deviation=0.05, min_frequency_dft=-1.0)
    strict = {"min_pairs": 8, "n_groups": 4, "max_pairs": 64, "target_abs": 1e-6, "target_rel": 1e-4, "seed": 3}
    full = renormalize(stage, [300.0], SSCHASettings(**strict)).temperatures[0]
    capped = renormalize(stage, [300.0], SSCHASettings(**strict, known_failure_pairs=8)).temperatures[0]
    assert full.n_samples == 128 and capped.n_samples == 16
    assert capped.trust.grade == "F" and "dft_stability" in capped.trust.codes
    assert any("capped at 8 pairs" in note and "dft_stability" in note for note in capped.sampling_notes)
    assert not any("capped" in note for note in full.sampling_notes)
    # a material with no failure known before sampling is not capped
    stage.dft_reference = None
    assert renormalize(stage, [300.0], SSCHASettings(**strict, known_failure_pairs=8)).temperatures[0].n_samples == 128


@pytest.mark.data
@pytest.mark.model
@pytest.mark.slow
def test_a_material_graded_f_on_its_input_cell_keeps_it(mdr_dir, model_dir):
    """known_failure_keeps_cell, on WS2 mp-224 (150 atoms) with the shipped fine-tuned model.

    Its MDR cell samples too much of the soft interlayer modes, so the check widens it to 300 atoms;
    but the model already has imaginary modes at that cell's own q-points where DFT has none (F
    before sampling), and a wider cell holds those q-points too: keeping the cell loses no grade.
    """
    from tdph_workflows.engine import THERMAL_SAMPLING_TOLERANCE, harmonic_stage, renormalize

    entry = mdr_dir / "raw_lt20atoms" / "materials-id-224-ws2-p6-3-mmc-194.tar.lzma"
    model = "TDPH-M3GNet-MDR-PBEsol-2026.11"
    kept = harmonic_stage(entry, model, settings=SSCHASettings(known_failure_keeps_cell=True))
    assert len(kept.phonon.supercell) == 150 and kept.supercell_extended_by is None
    assert kept.thermal_sampling_ratio > THERMAL_SAMPLING_TOLERANCE
    assert "not widened" in kept.supercell_rule and "dft_stability, oneshot_on_unstable" in kept.supercell_rule
    assert kept.spectrum.min_frequency < -1.0 < 0 < kept.dft_reference.min_frequency_dft
    result = renormalize(kept, [300.0], SSCHASettings(known_failure_pairs=16, known_failure_keeps_cell=True))
    t = result.temperatures[0]
    assert t.n_samples == 32 and t.trust.grade == "F"
    assert {"dft_stability", "oneshot_on_unstable", "supercell_too_small"} <= set(t.trust.codes)
    # without the setting the same material is widened, and is graded F for the same reasons
    widened = harmonic_stage(entry, model)
    assert widened.supercell_extended_by == [1, 1, 2] and len(widened.phonon.supercell) == 300
    assert widened.spectrum.min_frequency < -1.0 and widened.thermal_sampling_ratio < kept.thermal_sampling_ratio
    assert abs(widened.dft_reference.relative_deviation - kept.dft_reference.relative_deviation) < 0.01


def test_a_slab_with_vacuum_is_flagged_and_a_bulk_crystal_is_not(copper):
    from pymatgen.core import Lattice, Structure

    slab = Structure(Lattice.from_parameters(2.86, 2.86, 30, 90, 90, 120), ["Al", "Al"], [[0, 0, 0], [1 / 3, 2 / 3, 0.08]])
    result = run_temperature_phonons(slab, "emt", [300.0], settings=SSCHASettings(min_pairs=8, max_pairs=8, n_groups=4))
    assert any(r.startswith("B vacuum: 27.6 A of vacuum along c") for r in result.trust.reasons), result.trust.reasons
    assert not any("vacuum" in r for r in copper.trust.reasons)
