"""Makers on a real MongoDB-protocol server (SecantusDB): documents, GridFS arrays, validation."""

from __future__ import annotations

import bson
import numpy as np
import pytest
from ase.build import bulk
from jobflow import Flow, run_locally
from pymatgen.io.ase import AseAtomsAdaptor

from tdph_workflows.campaign.settings import DatabaseSettings
from tdph_workflows.campaign.stores import job_store
from tdph_workflows.makers import (
    HarmonicMaker,
    OneShotSSCHAMaker,
    PotentialRelaxMaker,
    TDPHFlowMaker,
    TDPHMaterialMaker,
)
from tdph_workflows.makers.jobs import DATA_KEYS
from tdph_workflows.packing import is_packed
from tdph_workflows.schemas import TDPHResult


@pytest.fixture
def store(database, request):
    s = job_store(DatabaseSettings(database.uri, f"test_{request.node.name[:40]}", "embedded"))
    s.connect()
    yield s
    s.close()


def al():
    return AseAtomsAdaptor.get_structure(bulk("Al", "fcc", a=4.05))


def test_flow_maker_runs_every_step_and_routes_arrays_to_gridfs(store):
    maker = TDPHFlowMaker(
        relax_maker=PotentialRelaxMaker(calculator="emt", fmax=1e-2),
        harmonic_maker=HarmonicMaker(calculator="emt", supercell_matrix=[2, 2, 2]),
        sscha_maker=OneShotSSCHAMaker(calculator="emt", temperatures=[300, 600]),
    )
    flow = maker.make(al(), material_id="Al-test")
    responses = run_locally(flow, store=store, ensure_success=True)
    assert len(responses) == 4
    summary = store.query_one({"name": "tdph metrics"})["output"]
    assert summary["material_id"] == "Al-test" and summary["spacegroup_number"] == 225
    assert [t["temperature"] for t in summary["temperatures"]] == [300.0, 600.0]
    assert summary["temperatures"][1]["l2_shift"] > summary["temperatures"][0]["l2_shift"] > 0
    raw = store.docs_store.query_one({"name": "tdph one-shot sscha"})
    fc_ref = raw["output"]["temperatures"][0]["force_constants"]
    assert set(fc_ref) >= {"blob_uuid", "store"} and fc_ref["store"] == "data"  # a reference, not the array
    loaded = store.get_output(raw["uuid"], load=True)
    assert is_packed(loaded["temperatures"][0]["force_constants"])  # compact binary form in GridFS
    result = TDPHResult.from_dict(loaded)
    assert np.shape(result.temperatures[0].force_constants) == (1, 64, 3, 3)  # compact: the primitive atom's row
    fc = result.full_force_constants(300.0)
    # 2x2x2 primitive Al cells are 4.68 A wide: extended x2 to the 5 A minimum width, and recorded
    assert fc.shape == (64, 64, 3, 3) and np.abs(fc.sum(axis=1)).max() < 1e-8
    assert TDPHResult.from_dict(loaded).supercell_extended_by == [2, 2, 2]


def test_material_maker_matches_the_step_flow(store):
    job = TDPHMaterialMaker(calculator="emt", temperatures=[300], supercell_matrix=[2, 2, 2],
                            settings={"seed": 4}).make(al(), material_id="Al-one-job")
    run_locally(Flow([job]), store=store, ensure_success=True)
    out = store.get_output(job.uuid, load=True)
    assert out["material_id"] == "Al-one-job" and out["temperatures"][0]["n_samples"] >= 32
    assert out["provenance"]["calculator"] == "emt"


def test_500_atom_force_constants_never_hit_the_16_mb_limit(store):
    n = 500
    fc = np.random.default_rng(0).standard_normal((n, n, 3, 3))
    doc = {"uuid": "big-1", "index": 1, "output": {"material_id": "big", "temperatures": [{"force_constants": fc}]}}
    assert len(bson.encode({"fc": fc.ravel().tolist()})) > 16 * 1024**2  # inline would fail
    store.update(doc, save={"data": DATA_KEYS})
    raw = store.docs_store.query_one({"uuid": "big-1"})
    assert len(bson.encode(raw)) < 100_000
    back = store.get_output("big-1", load=True)
    assert np.array_equal(np.array(back["temperatures"][0]["force_constants"]), fc)


def test_makers_validate_settings_before_any_job_runs():
    with pytest.raises(ValueError, match="estimator"):
        OneShotSSCHAMaker(settings={"estimator": "magic"})
    with pytest.raises(ValueError, match="temperatures"):
        TDPHMaterialMaker(temperatures=[-5])
    with pytest.raises(ValueError, match="fmax"):
        PotentialRelaxMaker(fmax=0)


def test_db_cli_start_status_stop_keeps_data(tmp_path):
    import pymongo
    from conftest import _free_port
    from typer.testing import CliRunner

    from tdph_workflows.cli import app

    port = str(_free_port())
    args = ["--data-dir", str(tmp_path / "db"), "--port", port]
    runner = CliRunner()
    assert runner.invoke(app, ["db", "status", *args]).exit_code == 1
    res = runner.invoke(app, ["db", "start", *args])
    assert res.exit_code == 0, res.output
    try:
        assert runner.invoke(app, ["db", "start", *args]).exit_code == 0  # idempotent
        assert runner.invoke(app, ["db", "status", *args]).exit_code == 0
        with pymongo.MongoClient(f"mongodb://127.0.0.1:{port}") as c:
            c.t.x.insert_one({"kept": True})
        assert "stopped" in runner.invoke(app, ["db", "stop", *args]).output
        assert runner.invoke(app, ["db", "start", *args]).exit_code == 0
        with pymongo.MongoClient(f"mongodb://127.0.0.1:{port}") as c:
            assert c.t.x.count_documents({"kept": True}) == 1  # WiredTiger data survived the restart
    finally:
        runner.invoke(app, ["db", "stop", *args])
    assert runner.invoke(app, ["db", "status", *args]).exit_code == 1


def test_flow_refuses_two_potentials():
    from tdph_workflows.makers import HarmonicMaker, OneShotSSCHAMaker, TDPHFlowMaker

    with pytest.raises(ValueError, match="one potential per flow"):
        TDPHFlowMaker(harmonic_maker=HarmonicMaker(calculator="emt"), sscha_maker=OneShotSSCHAMaker())
    flow = TDPHFlowMaker(harmonic_maker=HarmonicMaker(calculator="emt"),
                         sscha_maker=OneShotSSCHAMaker(calculator="emt", settings={"estimator": "hessian"}))
    assert flow.sscha_maker.settings.max_pairs == 32
