"""The whole engine on cheap EMT materials: interfaces, outputs, orderings, estimators."""

from __future__ import annotations

import json

import numpy as np
import phonopy
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from monty.json import MontyDecoder, MontyEncoder
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from tdph_workflows.cli import app
from tdph_workflows.core.sscha import SSCHASettings
from tdph_workflows.engine import run_temperature_phonons
from tdph_workflows.io.outputs import write_outputs
from tdph_workflows.schemas import TDPHResult


def cu3au(order=None) -> Structure:
    s = Structure.from_spacegroup(221, Lattice.cubic(3.75), ["Au", "Cu"], [[0, 0, 0], [0, 0.5, 0.5]])
    return Structure.from_sites([s[i] for i in order]) if order is not None else s


@pytest.fixture(scope="module")
def al_result():
    return run_temperature_phonons(bulk("Al", "fcc", a=4.05), EMT(), [100.0, 300.0, 600.0], [3, 3, 3])


def test_result_document_round_trips_and_files_reload(al_result, tmp_path):
    again = TDPHResult.model_validate_json(al_result.model_dump_json())
    assert again == al_result
    assert json.loads(json.dumps(al_result, cls=MontyEncoder), cls=MontyDecoder) == al_result
    files = write_outputs(al_result, tmp_path)
    doc = json.loads(files["result"].read_text())
    assert doc["temperatures"][1]["temperature"] == 300.0 and doc["harmonic_force_constants"] is None
    ph = phonopy.load(files["300K"], is_compact_fc=False, log_level=0)
    assert np.allclose(ph.force_constants, al_result.full_force_constants(300.0), atol=1e-10)
    ph.run_qpoints([[0.5, 0.5, 0.0]])
    ref = al_result.at(300.0).spectrum.special_points
    assert any(np.allclose(ph.get_qpoints_dict()["frequencies"][0], f, atol=1e-6) for f in ref.values())
    assert files["plot"].stat().st_size > 10_000


def test_force_constants_are_stored_compact_and_expand_to_what_the_engine_computed():
    """Documents hold phonopy's compact layout; expanding it by translations gives back the full arrays exactly."""
    from tdph_workflows.core.sscha import OneShotSSCHA
    from tdph_workflows.engine import HarmonicStage, harmonic_stage, renormalize
    from tdph_workflows.schemas import HarmonicResult

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.positions[1] += [0.05, 0.02, -0.03]  # no point symmetry left: a basis with every coupling free
    settings = SSCHASettings(min_pairs=16, max_pairs=16, n_groups=4, seed=2)
    stage = harmonic_stage(atoms, EMT(), [2, 2, 2], min_supercell_width=0, sampling_temperature=None)
    doc = stage.document()
    assert np.shape(doc.harmonic_force_constants) == (4, 32, 3, 3)
    again = HarmonicStage.from_document(HarmonicResult.model_validate_json(doc.model_dump_json()), EMT())
    assert np.abs(again.force_constants - stage.force_constants).max() < 1e-12  # translations: exact to rounding
    result = renormalize(stage, [300.0], settings)
    assert np.shape(result.at(300.0).force_constants) == (4, 32, 3, 3)
    engine = OneShotSSCHA(stage.phonon, stage.force_constants, lambda p: _emt_forces(stage, p), settings=settings,
                          reference_forces=stage.reference_forces)
    full = engine.run_temperature(300.0).force_constants
    assert np.abs(result.full_force_constants(300.0) - full).max() < 1e-12
    assert np.abs(result.full_force_constants() - stage.force_constants).max() < 1e-12
    assert np.array_equal(result.to_phonopy(300.0).force_constants, result.full_force_constants(300.0))


def _emt_forces(stage, positions):
    from tdph_workflows.io.structures import phonopy_to_ase
    from tdph_workflows.potentials import ForceModel

    return ForceModel(EMT(), phonopy_to_ase(stage.phonon.supercell), "Cu").forces(positions)


def test_temperatures_share_one_harmonic_step_and_shift_grows(al_result):
    shifts = [t.l2_shift for t in al_result.temperatures]
    assert shifts[0] < shifts[1] < shifts[2]
    assert all(t.converged for t in al_result.temperatures)
    for t in al_result.temperatures:
        assert t.l2_stderr <= max(0.005, 0.03 * t.l2_shift) + 1e-12
        assert t.history[-1].n_samples == t.n_samples and t.potential_calls["forces"] >= t.n_samples
        assert t.r_full_robust > 0 and t.r_onsite_max > 0 and len(t.sites) == 1
        assert t.sites[0].wyckoff == "a" and t.sites[0].element == "Al"


def test_estimators_agree_within_error_bars():
    al = bulk("Al", "fcc", a=4.05)
    fit = run_temperature_phonons(al, EMT(), [600.0], [2, 2, 2], SSCHASettings(seed=1)).at(600.0)
    hes = run_temperature_phonons(al, EMT(), [600.0], [2, 2, 2], SSCHASettings(estimator="hessian", seed=2)).at(600.0)
    assert fit.potential_calls["hessians"] == 0 and hes.potential_calls["hessians"] == hes.n_samples
    assert abs(fit.l2_shift - hes.l2_shift) < 3 * np.hypot(fit.l2_stderr, hes.l2_stderr)


def test_atom_order_of_the_input_does_not_change_the_physics():
    a = run_temperature_phonons(cu3au(), EMT(), [300.0], [2, 2, 2], SSCHASettings(min_pairs=256, max_pairs=256))
    b = run_temperature_phonons(cu3au([3, 1, 0, 2]), EMT(), [300.0], [2, 2, 2], SSCHASettings(min_pairs=256, max_pairs=256))
    assert np.allclose(sorted(a.harmonic.commensurate_frequencies), sorted(b.harmonic.commensurate_frequencies), atol=1e-8)
    ta, tb = a.at(300.0), b.at(300.0)
    assert abs(ta.l2_shift - tb.l2_shift) < 3 * np.hypot(ta.l2_stderr, tb.l2_stderr)
    by_elem = lambda t: {s.element: s.r_onsite for s in t.sites}  # noqa: E731
    ra, rb = by_elem(ta), by_elem(tb)
    se = max(s.r_onsite_stderr for s in ta.sites + tb.sites)
    for el in ("Au", "Cu"):
        assert abs(ra[el] - rb[el]) < 4 * se + 1e-3
    # the light and heavy species renormalize differently: a swapped mapping would show
    assert abs(ra["Au"] - ra["Cu"]) > 4 * se


def test_self_consistent_reports_iterations():
    r = run_temperature_phonons(bulk("Cu", "fcc", a=3.61), EMT(), [800.0], [2, 2, 2],
                                SSCHASettings(self_consistent=True, sc_max_iterations=4))
    t = r.at(800.0)
    assert 1 <= len(t.self_consistent_changes_thz) <= 4
    assert t.self_consistent_converged is not None
    one_shot = run_temperature_phonons(bulk("Cu", "fcc", a=3.61), EMT(), [800.0], [2, 2, 2]).at(800.0)
    # stiffening lowers the amplitudes, so the self-consistent shift is not larger
    assert t.l2_shift < one_shot.l2_shift + 3 * np.hypot(t.l2_stderr, one_shot.l2_stderr)


def test_cli_run_writes_outputs(tmp_path):
    cif = tmp_path / "Al.cif"
    Structure.from_spacegroup(225, Lattice.cubic(4.05), ["Al"], [[0, 0, 0]]).to(filename=str(cif))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["run", str(cif), "--calculator", "emt", "-T", "300", "-T", "500",
                                   "--supercell", "1 1 1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "L2 shift" in res.output and "R_onsite" in res.output
    for name in ("result.json", "phonopy_harmonic.yaml.xz", "phonopy_300K.yaml.xz", "phonopy_500K.yaml.xz", "dispersion.png"):
        assert (out / name).exists(), name
    res = CliRunner().invoke(app, ["run", str(cif), "--calculator", "emt", "--supercell", "1 1 1", "--out", str(out),
                                   "--overwrite", "--figure-format", "svg"])
    assert res.exit_code == 0, res.output
    assert (out / "dispersion.svg").read_text().lstrip().startswith("<?xml") and not (out / "dispersion.png").exists()


def test_result_gives_pymatgen_and_phonopy_objects(tmp_path):
    from pymatgen.phonon.bandstructure import PhononBandStructureSymmLine
    from pymatgen.phonon.dos import PhononDos
    from pymatgen.phonon.plotter import PhononBSPlotter

    structure = Structure.from_spacegroup(225, Lattice.cubic(4.05), ["Al"], [[0, 0, 0]])
    result = run_temperature_phonons(structure, "emt", [300.0], settings=SSCHASettings(min_pairs=8, max_pairs=8,
                                                                                       n_groups=4))
    bs = result.band_structure(300)
    assert isinstance(bs, PhononBandStructureSymmLine) and bs.nb_bands == 3
    assert {"Γ", "X", "L"} <= set(bs.labels_dict)
    gamma = [k for k, q in enumerate(bs.qpoints) if q.label == "Γ"]
    assert gamma and abs(bs.bands[:, gamma]).max() < 0.05  # acoustic modes at the labelled Gamma
    PhononBSPlotter(bs).get_plot()
    harmonic_max = result.band_structure().bands.max()
    assert bs.bands.max() != pytest.approx(harmonic_max)  # the renormalized bands, not the harmonic ones again
    dos = result.dos(300)
    assert isinstance(dos, PhononDos) and np.trapezoid(dos.densities, dos.frequencies) == pytest.approx(3, rel=0.05)
    phonon = result.to_phonopy(300)
    assert phonon.force_constants.shape == (len(phonon.supercell), len(phonon.supercell), 3, 3)
    props = result.thermal_properties(300)
    # 3 acoustic branches near the Dulong-Petit limit at 300 K for Al (Debye ~430 K): 23-25 J/K/mol
    assert 22 < props["harmonic"]["heat_capacity"] < 25 and 22 < props["renormalized"]["heat_capacity"] < 25
    assert props["renormalized"]["free_energy"] != pytest.approx(props["harmonic"]["free_energy"])
