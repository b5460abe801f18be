"""campaign.queries: the registry and job-store queries behind `tdph query/status/validate/analyze/report`."""

from __future__ import annotations

import datetime
import io
import time

import pytest
from pymatgen.core import Lattice, Structure

from tdph_workflows.analysis.results import from_database
from tdph_workflows.campaign import queries, registry
from tdph_workflows.campaign.settings import DatabaseSettings, launchpad

T0 = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


def _summary(mid: str, formula: str, elements: list[str], sg: int, r_max: float, l2: float) -> dict:
    site = {"index": 0, "element": elements[0], "wyckoff": "a", "r_onsite": r_max, "r_onsite_stderr": 0.01}
    return {"material_id": mid, "formula": formula, "elements": elements, "spacegroup": f"X ({sg})",
            "spacegroup_number": sg, "n_atoms_supercell": 8, "harmonic_min_frequency": 1.234, "harmonic_n_imaginary": 0,
            "calculator": "synthetic", "wall_time": 1.0, "unitcell": None, "dft_reference": None,
            "temperatures": [{"temperature": 300.0, "l2_shift": l2, "l2_stderr": 0.0031, "r_full": r_max,
                              "r_full_robust": 0.5 * r_max, "r_onsite_max": r_max, "sites": [site],
                              "min_frequency": 0.987, "n_imaginary": 0, "n_samples": 64, "converged": True,
                              "max_rms_displacement": 0.1}]}


# material id: (campaign, state, summary or error, finished after T0 in hours)
RECORDS = {
    "mp-a": ("c1", "COMPLETED", _summary("mp-a", "CsCl", ["Cl", "Cs"], 221, 0.301234, 0.1234), 0),
    "mp-b": ("c1", "COMPLETED", _summary("mp-b", "NaCl", ["Cl", "Na"], 225, 0.1, 0.05), 1),
    "mp-c": ("c2", "COMPLETED", _summary("mp-c", "KF", ["F", "K"], 221, 0.2, 0.08), 2),
    "mp-d": ("c1", "FAILED", "ValueError: boom", 3),
    "mp-e": ("c1", "WAITING", None, None),
}


@pytest.fixture(scope="module")
def registry_db(database):
    db = DatabaseSettings(database.uri, "test_campaign_queries", "env")
    coll = registry.collection(db)
    coll.delete_many({})
    for mid, (campaign, state, payload, hours) in RECORDS.items():
        rec = {"key": f"key-{mid}", "material_id": mid, "source": f"/data/{mid}.cif", "campaign": campaign,
               "state": state, "job_uuid": None, "wall_time": None if mid == "mp-b" else 12.345}  # mp-b: dropped
        if state == "COMPLETED":
            rec["summary"] = payload
        elif state == "FAILED":
            rec["error"] = payload
        if hours is not None:
            rec["finished"] = T0 + datetime.timedelta(hours=hours)
        coll.insert_one(rec)
    return db


def test_filters_are_built_in_one_place():
    assert registry.match() == {}
    assert registry.match("FAILED", "c1") == {"state": "FAILED", "campaign": "c1"}
    assert registry.match(campaign="", keys=("k2", "k1"), material_ids={"b", "a"}) == {
        "material_id": {"$in": ["a", "b"]}, "key": {"$in": ["k2", "k1"]}}
    assert queries.completed_filter() == {"state": "COMPLETED"}
    assert queries.completed_filter("c", ["k"], element="Cs", spacegroup=221, r_onsite_min=0.0, stored=True) == {
        "state": "COMPLETED", "campaign": "c", "key": {"$in": ["k"]}, "job_uuid": {"$ne": None},
        "summary.elements": "Cs", "summary.spacegroup_number": 221, "summary.temperatures.0.r_onsite_max": {"$gte": 0.0}}


def test_query_rows_filters_and_ranks(registry_db):
    rows = queries.query_rows(registry_db)
    assert [r["material_id"] for r in rows] == ["mp-a", "mp-c", "mp-b"]  # completed only, highest R_onsite first
    assert rows[0] == {"material_id": "mp-a", "formula": "CsCl", "spacegroup": "X (221)", "spacegroup_number": 221, "T": 300.0,
                       "r_onsite_max": 0.3012, "l2_shift_pct": 12.34, "l2_stderr_pct": 0.31, "r_full_robust": 0.1506,
                       "harmonic_min_thz": 1.23, "min_thz": 0.99, "wall_s": 12.3, "grade": "",
                       "grade_reasons": ""}
    assert rows[2]["wall_s"] is None  # a wall time dropped from the record (worker paused) stays unknown

    def ids(**filters) -> list[str]:
        return [r["material_id"] for r in queries.query_rows(registry_db, **filters)]

    assert ids(campaign="c1") == ["mp-a", "mp-b"]
    assert ids(element="Cl") == ["mp-a", "mp-b"]
    assert ids(spacegroup=221) == ["mp-a", "mp-c"]
    assert ids(r_onsite_min=0.15) == ["mp-a", "mp-c"]
    assert ids(keys=["key-mp-b", "key-mp-d"]) == ["mp-b"]
    assert ids(keys=[]) == []
    assert ids(campaign="c2", element="Cl") == []


def test_screened_sources_top_n_above_threshold(registry_db):
    assert queries.screened_sources(registry_db, 1, None, 0.15) == [("mp-a", "/data/mp-a.cif", 0.301234)]
    assert [m for m, _, _ in queries.screened_sources(registry_db, 5, None, 0.1)] == ["mp-a", "mp-c", "mp-b"]
    assert queries.screened_sources(registry_db, 5, "c2", 0.0) == [("mp-c", "/data/mp-c.cif", 0.2)]
    assert queries.screened_sources(registry_db, 5, None, 0.5) == []


def test_campaign_status_counts_throughput_and_failures(registry_db):
    status = queries.campaign_status(registry_db, "c1")
    assert status.counts == {"COMPLETED": 2, "FAILED": 1, "WAITING": 1}
    assert status.throughput == pytest.approx(1.0)  # two completions one hour apart
    assert status.eta_hours == pytest.approx(1.0)  # one waiting
    assert [(f["material_id"], f["error"]) for f in status.failures] == [("mp-d", "ValueError: boom")]
    everything = queries.campaign_status(registry_db)
    assert everything.counts["COMPLETED"] == 3 and everything.throughput == pytest.approx(1.0)  # 2 in 2 h
    single = queries.campaign_status(registry_db, "c2")
    assert single.counts == {"COMPLETED": 1} and single.throughput is None and single.eta_hours is None
    assert single.failures == []


def test_completed_summaries_feed_the_analysis_tables(registry_db):
    coll = queries.registry_of(registry_db)
    assert sorted(s["material_id"] for s in queries.completed_summaries(coll, "c1")) == ["mp-a", "mp-b"]
    materials, sites = from_database(registry_db)
    assert sorted(materials["material_id"]) == ["mp-a", "mp-b", "mp-c"] and len(sites) == 3


def test_rows_as_csv(tmp_path):
    rows = [{"material_id": "mp-a", "r_onsite_max": 0.3}, {"material_id": "mp-b", "r_onsite_max": 0.1}]
    assert queries.rows_csv(rows) == "material_id,r_onsite_max\r\nmp-a,0.3\r\nmp-b,0.1\r\n"
    buf = io.StringIO()
    queries.write_rows_csv(rows, buf)
    assert buf.getvalue() == queries.rows_csv(rows)
    path = queries.write_ranked_csv(rows, tmp_path / "ranked.csv")
    assert path == tmp_path / "ranked.csv" and path.read_bytes() == queries.rows_csv(rows).encode()
    assert queries.write_ranked_csv([], tmp_path / "empty.csv").read_text() == "" and queries.rows_csv([]) == ""


def test_demo_structures_are_written_as_cifs(tmp_path):
    from tdph_workflows.campaign.submit import DEMO_MATERIALS, write_demo_structures

    items = write_demo_structures(tmp_path)
    assert [i.material_id for i in items] == list(DEMO_MATERIALS)
    for item in items:
        assert Structure.from_file(item.source).composition.reduced_formula == item.material_id


@pytest.fixture(scope="module")
def stored_db(database, tmp_path_factory):
    """Two EMT materials computed through the campaign job into the registry and the job store."""
    from jobflow import run_locally

    from tdph_workflows.campaign.jobs import campaign_chunk_job
    from tdph_workflows.campaign.stores import job_store

    db = DatabaseSettings(database.uri, "test_campaign_queries_store", "env")
    launchpad(db).reset("", require_password=False)
    coll = registry.collection(db)
    folder = tmp_path_factory.mktemp("stored")
    items = []
    for el, a in (("Al", 4.05), ("Cu", 3.61)):
        path = folder / f"{el}.cif"
        Structure.from_spacegroup(225, Lattice.cubic(a), [el], [[0, 0, 0]]).to(filename=str(path))
        items.append({"key": f"key-{el}", "material_id": el, "source": str(path)})
        registry.register(coll, f"key-{el}", el, str(path), "stored")
    job = campaign_chunk_job(items, "emt", [300.0], {"min_pairs": 8, "max_pairs": 8, "n_groups": 4})
    with pytest.MonkeyPatch.context() as mp:  # the job finds the registry as a worker does: from its environment
        for name, value in db.worker_environment().items():
            mp.setenv(name, value)
        mp.setenv("TDPH_DB_URI", db.uri)
        run_locally(job, store=job_store(db), log=False, ensure_success=True, root_dir=folder)
    # a completed record without a stored output (job_uuid None) is not a full result
    registry.record_success(coll, "key-none", {"material_id": "none"}, None, 1.0)
    return db


def test_full_results_and_dispersion_plots(stored_db, tmp_path):
    got = {rec["material_id"]: result for rec, result in queries.full_results(stored_db)}
    assert set(got) == {"Al", "Cu"}
    assert got["Al"].formula == "Al" and got["Al"].temperatures[0].temperature == 300.0
    assert [r.material_id for _, r in queries.full_results(stored_db, "stored", {"Cu"})] == ["Cu"]
    assert [rec["key"] for rec, _ in queries.full_results(stored_db, keys=["key-Al"])] == ["key-Al"]
    assert list(queries.full_results(stored_db, "other")) == []
    assert queries.write_dispersion_plots(stored_db, "stored", tmp_path, keys=["key-Cu"]) == 1
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")) == ["Cu/dispersion.png"]
    assert (tmp_path / "Cu" / "dispersion.png").read_bytes()[:4] == b"\x89PNG"
    assert queries.write_dispersion_plots(stored_db, None, tmp_path) == 2


def test_rerun_fireworks_puts_fizzled_ones_back(database):
    from fireworks import Firework, ScriptTask

    db = DatabaseSettings(database.uri, "test_campaign_queries_rerun", "env")
    lp = launchpad(db)
    lp.reset("", require_password=False)
    for _ in range(2):
        lp.add_wf(Firework(ScriptTask.from_str("true")))
    fizzled = lp.get_fw_ids()[0]
    lp.fireworks.update_one({"fw_id": fizzled}, {"$set": {"state": "FIZZLED"}})
    assert queries.rerun_fireworks(db, "FIZZLED") == (1, 0)
    assert lp.get_fw_ids({"state": "FIZZLED"}) == [] and len(lp.get_fw_ids({"state": "READY"})) == 2
    assert queries.rerun_fireworks(db, "FIZZLED", lost=True, expiration_secs=600) == (0, 0)


def test_rerun_takes_over_a_lock_nobody_holds(database, monkeypatch):
    """A connection cut mid-update leaves a workflow locked by nobody: rerun frees it (CI saw a 5-min stall, then an error)."""
    from fireworks import Firework, ScriptTask

    from tdph_workflows.campaign import worker

    monkeypatch.setattr(worker, "STALE_LOCK_SECS", 2)
    db = DatabaseSettings(database.uri, "test_campaign_queries_lock", "env")
    lp = launchpad(db)
    lp.reset("", require_password=False)
    lp.add_wf(Firework(ScriptTask.from_str("true")))
    (fw_id,) = lp.get_fw_ids()
    lp.fireworks.update_one({"fw_id": fw_id}, {"$set": {"state": "FIZZLED"}})
    lp.workflows.update_one({"nodes": fw_id}, {"$set": {"locked": True}})
    start = time.monotonic()
    assert queries.rerun_fireworks(db, "FIZZLED") == (1, 0)
    assert 2 <= time.monotonic() - start < 60  # waited for the lock to prove stale, not FireWorks' 300 s
    assert lp.get_fw_ids({"state": "READY"}) == [fw_id]
    assert lp.workflows.find_one({"nodes": fw_id}).get("locked") is None


def test_structure_fingerprint_is_the_same_on_both_sides_of_a_cell_boundary():
    from pymatgen.core import Lattice, Structure

    from tdph_workflows.campaign.keys import structure_fingerprint

    def cscl(x: float) -> Structure:
        return Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[x, x, x], [0.5, 0.5, 0.5]])

    # 0.9999999 rounded to 6 digits is 1.0, which is the same position as 0.0 (was a different key)
    assert structure_fingerprint(cscl(-1e-7)) == structure_fingerprint(cscl(0.0)) == structure_fingerprint(cscl(1e-7))
    assert structure_fingerprint(cscl(0.3)) == structure_fingerprint(cscl(1.3))
    assert structure_fingerprint(cscl(0.3)) != structure_fingerprint(cscl(0.31))


def test_trusted_grades_rank_first_and_filter(database):
    db = DatabaseSettings(database.uri, "test_campaign_queries_grades", "env")
    coll = registry.collection(db)
    coll.delete_many({})
    graded = {"mp-f": ("F", 0.9), "mp-b": ("B", 0.2), "mp-a": ("A", 0.1), "mp-old": ("", 0.5)}
    for mid, (grade, r_max) in graded.items():
        summary = _summary(mid, "CsCl", ["Cl", "Cs"], 221, r_max, 0.1)
        if grade:
            summary.update(grade=grade, grade_reasons=[f"{grade} code: why"] if grade != "A" else [])
        coll.insert_one({"key": f"k-{mid}", "material_id": mid, "campaign": "g", "state": "COMPLETED",
                         "summary": summary, "finished": T0, "wall_time": 1.0})
    rows = queries.query_rows(db)
    # the strongest "shift" is the untrustworthy one: it must not lead the table
    assert [r["material_id"] for r in rows] == ["mp-a", "mp-b", "mp-f", "mp-old"]
    assert rows[2]["grade_reasons"] == "F code: why"
    assert [r["material_id"] for r in queries.query_rows(db, grades="AB")] == ["mp-a", "mp-b"]
    assert [r["material_id"] for r in queries.query_rows(db, grades=["A", ""])] == ["mp-a", "mp-old"]
    assert queries.campaign_status(db, "g").grades == {"A": 1, "B": 1, "F": 1, "": 1}


def test_a_setting_added_later_at_its_neutral_value_keeps_existing_keys():
    from dataclasses import asdict

    from tdph_workflows.campaign.keys import item_key
    from tdph_workflows.core.sscha import SSCHASettings

    before = {k: v for k, v in asdict(SSCHASettings()).items() if k != "sc_reuse_samples"}  # a campaign's old key
    assert item_key("m", "f", asdict(SSCHASettings()), "x") == item_key("m", "f", before, "x")
    reuse = asdict(SSCHASettings(self_consistent=True, sc_reuse_samples=True))
    assert item_key("m", "f", reuse, "x") != item_key("m", "f", {**reuse, "sc_reuse_samples": False}, "x")


def test_export_then_import_resumes_a_campaign_elsewhere_without_recomputing(database, tmp_path):
    from tdph_workflows.campaign.submit import Item, submit

    here = DatabaseSettings(database.uri, "export_here", "embedded")
    there = DatabaseSettings(database.uri, "export_there", "embedded")
    items = []
    for el, a in (("Al", 4.05), ("Cu", 3.61), ("Ni", 3.52)):
        path = tmp_path / f"{el}.cif"
        Structure.from_spacegroup(225, Lattice.cubic(a), [el], [[0, 0, 0]]).to(filename=str(path))
        items.append(Item(el, str(path)))
    report = submit(items, here, calculator="emt", campaign="carry")
    coll = registry.collection(here)
    for key, el in zip(report.keys, ("Al", "Cu"), strict=False):  # two done, one still waiting
        registry.record_success(coll, key, {"material_id": el, "temperatures": []}, "some-uuid", 2.0)
    note = "wall time not measured: the worker was paused"  # a corrected record keeps its reason across machines
    coll.update_one({"key": report.keys[0]}, {"$set": {"wall_time": None, "wall_time_note": note}})
    n = queries.export_records(here, tmp_path / "carry.jsonl.gz", "carry")
    assert n == 2  # settled records only: the waiting one is computed wherever the campaign goes on
    assert queries.import_records(there, tmp_path / "carry.jsonl.gz") == (2, 0)
    assert queries.import_records(there, tmp_path / "carry.jsonl.gz") == (0, 2)  # never overwritten
    imported = registry.collection(there).find_one({"state": "COMPLETED"})
    assert imported["job_uuid"] is None and imported["exported_job_uuid"] == "some-uuid"
    corrected = registry.collection(there).find_one({"key": report.keys[0]})
    assert corrected["wall_time"] is None and corrected["wall_time_note"] == note
    again = submit(items, there, calculator="emt", campaign="carry")
    assert again.new == 1 and again.skipped == 2  # only the one that was not done is submitted
