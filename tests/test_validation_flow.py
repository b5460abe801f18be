"""The validation flow end to end with EMT (cheap, same code path as the potential) on SecantusDB,
and `tdph validate` choosing candidates from a screened database."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from jobflow import run_locally
from pymatgen.io.ase import AseAtomsAdaptor
from typer.testing import CliRunner

from tdph_workflows.campaign.settings import DatabaseSettings
from tdph_workflows.campaign.stores import job_store
from tdph_workflows.makers.validation import ValidationMaker, ValidationResult
from tdph_workflows.validation.pipeline import ValidationSettings

FAST = {"n_structures": 8, "fit_method": "least-squares", "kappa_mesh": [4, 4, 4], "fourph_mesh": [4, 4, 4],
        "temperatures": [300.0, 600.0]}


@pytest.fixture
def store(database):
    s = job_store(DatabaseSettings(database.uri, "test_validation_flow", "embedded"))
    s.connect()
    yield s
    s.close()


def test_validation_flow_gives_kappa_at_three_levels_and_figures(store, tmp_path):
    cif = tmp_path / "Al.cif"
    AseAtomsAdaptor.get_structure(bulk("Al", "fcc", a=4.05)).to(str(cif))
    maker = ValidationMaker(calculator="emt", settings=FAST, out_dir=str(tmp_path / "out"))
    flow = maker.make_many([str(cif)])
    responses = run_locally(flow, store=store, ensure_success=True, root_dir=tmp_path / "run")
    doc = ValidationResult.model_validate(store.query_one({"uuid": flow.jobs[0].output.uuid})["output"])
    assert doc.fit["relative_rmse_validation"] < 0.3 and doc.fit["n_clusters_fc4"] > 0
    assert {"fc2_s", "fit_s", "forces_s", "expand_fcs_s"} <= set(doc.timings)
    k300, k600 = (t.kappa for t in doc.temperatures)
    for k in (k300, k600):
        assert set(k) == {"HA+3ph", "SCPH+3ph", "SCPH+3,4ph"} and all(np.isfinite(v) and v > 0 for v in k.values())
        assert k["SCPH+3,4ph"] < k["SCPH+3ph"]  # an extra scattering channel only lowers kappa
    assert k600["HA+3ph"] < k300["HA+3ph"]  # 3ph scattering grows with T
    for t in doc.temperatures:
        assert t.scph["converged"] and {"scph_s", "fourph_s"} <= set(t.timings)
        for path in t.figures.values():
            assert (tmp_path / "out" / "Al").joinpath(path.rsplit("/", 1)[-1]).stat().st_size > 10_000
    summary = responses[flow.jobs[-1].uuid][1].output
    assert [r["temperature"] for r in summary["rows"]] == [300.0, 600.0]
    assert (tmp_path / "out" / "kappa_levels.csv").exists() and (tmp_path / "out" / "kappa_levels_300K.png").exists()


def test_settings_are_checked_before_any_job_runs():
    with pytest.raises(ValueError, match="n_structures"):
        ValidationMaker(calculator="emt", settings={"n_structures": 2})
    with pytest.raises(TypeError):
        ValidationMaker(calculator="emt", settings={"no_such_field": 1})
    assert ValidationSettings.from_dict(ValidationSettings().as_dict()) == ValidationSettings()


def test_validate_cli_submits_the_top_screened_candidates(database, monkeypatch, tmp_path):
    from tdph_workflows.campaign import registry
    from tdph_workflows.campaign.settings import launchpad, resolve
    from tdph_workflows.cli import app

    name = "test_validate_cli"
    monkeypatch.setenv("TDPH_DB_URI", database.uri)
    monkeypatch.setenv("TDPH_DB_NAME", name)
    coll = registry.collection(DatabaseSettings(database.uri, name, "embedded"))
    coll.delete_many({})
    for k, r in enumerate([0.05, 0.40, 0.20, 0.90]):
        cif = tmp_path / f"m{k}.cif"
        AseAtomsAdaptor.get_structure(bulk("Cu", "fcc", a=3.6)).to(str(cif))
        coll.insert_one({"key": f"k{k}", "material_id": f"m{k}", "campaign": "c", "state": "COMPLETED",
                         "source": str(cif), "summary": {"temperatures": [{"r_onsite_max": r}]}})
    lp = launchpad(resolve(None))
    lp.reset("", require_password=False)
    runner = CliRunner()
    r = runner.invoke(app, ["validate", "--from-screening", "2", "--model", "emt", "--out", str(tmp_path / "v")])
    assert r.exit_code == 0, r.output
    assert r.output.index("m3") < r.output.index("m1") and "m2" not in r.output  # ranked by max R_onsite
    fws = [lp.get_fw_by_id(i) for i in lp.get_fw_ids()]
    assert len(fws) == 2 * 5 + 1 and {fw.spec["_category"] for fw in fws} == {"cpu"}
    assert runner.invoke(app, ["validate"]).exit_code == 2
    assert runner.invoke(app, ["validate", "--from-screening", "1", "--threshold", "2"]).exit_code == 1
    assert runner.invoke(app, ["validate", "x.cif", "--calculator", "castep"]).exit_code == 2


def test_vasp_branch_of_the_flow_through_custodian_with_a_stand_in_vasp(tmp_path, monkeypatch):
    """calculator="vasp": atomate2 relax and static makers, custodian, parsed VASP outputs feed the fits.
    The stand-in executable computes EMT forces, so the force constants must match the EMT flow's."""
    import sys

    monkeypatch.setenv("TDPH_FAKE_VASP_CALCULATOR", "emt")
    monkeypatch.setenv("TDPH_FAKE_VASP_ENERGY_SHIFT", "-3.5")  # a cohesive-energy-like reference
    monkeypatch.delenv("TDPH_FAKE_VASP_FAIL", raising=False)
    cif = tmp_path / "Cu.cif"
    AseAtomsAdaptor.get_structure(bulk("Cu", "fcc", a=3.6)).to(str(cif))
    settings = {**FAST, "temperatures": [300.0], "n_structures": 6, "kappa_mesh": [6, 6, 6]}  # 4ph on 4x4x4
    options = {"vasp_cmd": f"{sys.executable} -m tdph_workflows.testing.fake_vasp", "potcar_spec": True,
               "custodian_kwargs": {"polling_time_step": 0.1, "monitor_freq": 20}}
    vasp = ValidationMaker(calculator="vasp", settings=settings, out_dir=str(tmp_path / "vasp"), vasp_options=options)
    flow = vasp.make(str(cif))
    responses = run_locally(flow, ensure_success=True, root_dir=tmp_path / "run", create_folders=True)
    doc = responses[flow.jobs[-1].uuid][1].output
    assert doc.calculator == "vasp"
    k = doc.temperatures[0].kappa
    assert set(k) == {"HA+3ph", "SCPH+3ph", "SCPH+3,4ph"} and all(np.isfinite(v) and v > 0 for v in k.values())
    n_statics = sum(1 for j in responses.values() for r in j.values()
                    if getattr(r.output, "task_label", None) or type(r.output).__name__ == "TaskDoc")
    assert n_statics >= 1 + 6  # relax + every displaced supercell ran through custodian
    assert doc.fit["relative_rmse_validation"] < 0.3
    assert 0 < doc.temperatures[0].fourph_factor < 1  # 4ph measured on the coarser mesh, applied to the fine one
    assert k["SCPH+3,4ph"] == pytest.approx(k["SCPH+3ph"] * doc.temperatures[0].fourph_factor)


def test_vasp_statics_created_at_run_time_keep_the_worker_category():
    from tdph_workflows.makers.validation import forces_job

    cell = AseAtomsAdaptor.get_structure(bulk("Cu", "fcc", a=3.6))
    response = forces_job.original({"supercells": [cell.as_dict()] * 2, "material_id": "Cu"}, "vasp",
                                   {"potcar_spec": True}, "cpu")
    jobs = list(response.replace.iterflow()) if hasattr(response.replace, "iterflow") else response.replace.jobs
    jobs = [j[0] if isinstance(j, tuple) else j for j in jobs]
    assert len(jobs) == 3 and all(j.config.manager_config.get("_category") == "cpu" for j in jobs)


def test_polar_mdr_entry_carries_born_charges_into_dispersions(mdr_dir):
    """NaCl's MDR entry has BORN: the validation set-up keeps it, and the plots show the LO-TO splitting."""
    from tdph_workflows.core.phonons import band_structure
    from tdph_workflows.io.mdr import load_mdr_entry
    from tdph_workflows.validation.pipeline import Setup

    entry = load_mdr_entry(mdr_dir / "curated" / "mp-22862_NaCl")
    nac = {k: np.asarray(v).tolist() if k in ("born", "dielectric") else v for k, v in entry.phonon.nac_params.items()}
    setup = Setup(entry.material_id, entry.unitcell, entry.supercell_matrix, entry.primitive_matrix, nac)
    fc = entry.dft_force_constants()
    near_gamma = [max(seg[1]) for seg in band_structure(setup.phonopy(with_nac=True), fc, keep_nac=True)["frequencies"][:1]]
    without = [max(seg[1]) for seg in band_structure(setup.phonopy(), fc)["frequencies"][:1]]
    assert near_gamma[0] > 7.0 and without[0] < 5.5  # LO ~7.7 THz vs TO ~5.1 THz next to Gamma
    assert setup.nac()["born"].shape == (2, 3, 3)
