"""Campaign submission and local workers on real FireWorks + SecantusDB (EMT materials, seconds each)."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure

from tdph_workflows.campaign import registry
from tdph_workflows.campaign.settings import DatabaseSettings, launchpad
from tdph_workflows.campaign.submit import Item, submit
from tdph_workflows.campaign.worker import start_workers

SETTINGS = {"min_pairs": 8, "max_pairs": 8, "n_groups": 4}


def _fcc(tmp_path, el, a):
    path = tmp_path / f"{el}.cif"
    Structure.from_spacegroup(225, Lattice.cubic(a), [el], [[0, 0, 0]]).to(filename=str(path))
    return Item(el, str(path))


@pytest.fixture
def campaign_db(database, request):
    db = DatabaseSettings(database.uri, f"c_{request.node.name[:30]}", "embedded")
    launchpad(db).reset("", require_password=False)
    return db


def _run_workers(db, tmp_path, n=2):
    for proc in start_workers(n, db, ["gpu", "cpu"], tmp_path / "work", timeout=300):
        assert proc.wait(timeout=400) == 0


def test_campaign_completes_good_items_and_records_bad_ones(campaign_db, tmp_path):
    items = [_fcc(tmp_path, "Al", 4.05), _fcc(tmp_path, "Cu", 3.61), _fcc(tmp_path, "Ni", 3.52)]
    corrupt = tmp_path / "broken.cif"
    corrupt.write_text("data_x\n_cell_length_a oops\n")
    unsupported = _fcc(tmp_path, "Ca", 5.58)  # EMT has no parameters for Ca
    tarball = tmp_path / "materials-id-999-x-pm-3m-221.tar.lzma"
    tarball.write_bytes(bytes(range(256)) * 8)  # a corrupt MDR entry
    items += [Item("broken", str(corrupt)), unsupported, Item("mp-999", str(tarball))]
    report = submit(items, campaign_db, calculator="emt", temperatures=[300], settings=SETTINGS,
                    chunk_size=1, category="cpu", campaign="t1")
    assert (report.new, report.skipped, report.fireworks) == (6, 0, 6)
    _run_workers(campaign_db, tmp_path)

    lp = launchpad(campaign_db)
    states = {fw["spec"]["tdph_keys"][0]: fw["state"] for fw in lp.fireworks.find({}, {"spec.tdph_keys": 1, "state": 1})}
    coll = registry.collection(campaign_db)
    records = {r["material_id"]: r for r in coll.find({"campaign": "t1"})}
    for el in ("Al", "Cu", "Ni"):
        assert records[el]["state"] == "COMPLETED" and states[records[el]["key"]] == "COMPLETED"
        assert records[el]["summary"]["temperatures"][0]["l2_shift"] > 0
    for bad, reason in (("broken", "broken.cif"), ("Ca", "Ca"), ("mp-999", "corrupt or unreadable MDR entry")):
        assert records[bad]["state"] == "FAILED" and reason in records[bad]["error"]
        assert states[records[bad]["key"]] == "FIZZLED"
    assert registry.counts(coll, "t1") == {"COMPLETED": 3, "FAILED": 3}

    again = submit(items, campaign_db, calculator="emt", temperatures=[300], settings=SETTINGS, campaign="t1")
    assert (again.new, again.fireworks) == (0, 0)  # resubmission computes nothing new
    # capping the statistics of known failures changes the key, but an uncapped result satisfies it
    capped = submit(items, campaign_db, calculator="emt", temperatures=[300], campaign="t1",
                    settings={**SETTINGS, "known_failure_pairs": 4})
    assert (capped.new, capped.fireworks) == (0, 0) and sorted(capped.keys) == sorted(report.keys)
    # not the other way round: a capped result does not satisfy a request without the cap
    items_capped_first = [_fcc(tmp_path, "Pd", 3.89)]
    first = submit(items_capped_first, campaign_db, calculator="emt", temperatures=[300], campaign="t1",
                   settings={**SETTINGS, "known_failure_pairs": 4})
    uncapped = submit(items_capped_first, campaign_db, calculator="emt", temperatures=[300], campaign="t1",
                      settings=SETTINGS)
    assert first.new == 1 and uncapped.new == 1
    # with both known-failure savings on, a result computed with either, both or neither satisfies the request
    both = submit(items + items_capped_first, campaign_db, calculator="emt", temperatures=[300], campaign="t1",
                  settings={**SETTINGS, "known_failure_pairs": 4, "known_failure_keeps_cell": True})
    assert (both.new, both.fireworks) == (0, 0)


def test_satisfying_settings_put_back_every_subset_of_the_savings():
    from tdph_workflows.campaign.keys import satisfying_settings

    assert satisfying_settings({"seed": 0}) == []
    assert satisfying_settings({"known_failure_pairs": 16}) == [{"known_failure_pairs": None}]
    both = satisfying_settings({"seed": 0, "known_failure_pairs": 16, "known_failure_keeps_cell": True})
    assert both == [{"seed": 0, "known_failure_pairs": None, "known_failure_keeps_cell": True},
                    {"seed": 0, "known_failure_pairs": 16, "known_failure_keeps_cell": False},
                    {"seed": 0, "known_failure_pairs": None, "known_failure_keeps_cell": False}]


def test_chunked_mode_stores_each_material(campaign_db, tmp_path):
    items = [_fcc(tmp_path, el, a) for el, a in (("Al", 4.05), ("Cu", 3.61), ("Ni", 3.52), ("Ag", 4.09))]
    report = submit(items, campaign_db, calculator="emt", temperatures=[300], settings=SETTINGS,
                    chunk_size=2, campaign="t2")
    assert report.fireworks == 2
    _run_workers(campaign_db, tmp_path, n=1)
    coll = registry.collection(campaign_db)
    records = list(coll.find({"campaign": "t2"}))
    assert len(records) == 4 and all(r["state"] == "COMPLETED" for r in records)
    assert len({r["job_uuid"] for r in records}) == 2  # two jobs, four individual records
    # the lookups jobflow makes for every stored output are indexed (else each store scans all earlier ones)
    database = campaign_db.client()[campaign_db.database]
    indexed = lambda name: {k for ix in database[name].index_information().values() for k, _ in ix["key"]}
    assert "uuid" in indexed("outputs")
    assert {"metadata.job_uuid", "metadata.blob_uuid"} <= indexed("outputs_blobs.files")


def test_withdraw_removes_only_what_no_worker_started(campaign_db, tmp_path):
    from tdph_workflows.campaign.queries import withdraw_waiting

    done = submit([_fcc(tmp_path, "Al", 4.05)], campaign_db, calculator="emt", temperatures=[300],
                  settings=SETTINGS, campaign="t3")
    _run_workers(campaign_db, tmp_path, n=1)
    items = [_fcc(tmp_path, el, a) for el, a in (("Cu", 3.61), ("Ni", 3.52))]
    waiting = submit(items, campaign_db, calculator="emt", temperatures=[300], settings=SETTINGS, campaign="t3",
                     chunk_size=2)
    other = submit([_fcc(tmp_path, "Ag", 4.09)], campaign_db, calculator="emt", temperatures=[300],
                   settings=SETTINGS, campaign="elsewhere")
    assert (done.new, waiting.fireworks, other.new) == (1, 1, 1)
    assert withdraw_waiting(campaign_db, "t3") == 2
    coll = registry.collection(campaign_db)
    assert registry.counts(coll, "t3") == {"COMPLETED": 1}
    assert registry.counts(coll, "elsewhere") == {"WAITING": 1}
    lp = launchpad(campaign_db)
    assert sorted(fw["state"] for fw in lp.fireworks.find({}, {"state": 1})) == ["COMPLETED", "READY"]
    again = submit(items, campaign_db, calculator="emt", temperatures=[300], campaign="t3",
                   settings={**SETTINGS, "n_groups": 2})
    assert again.new == 2


def test_blob_store_writes_without_probing_the_chunks_before_each_file(campaign_db, monkeypatch):
    """pymongo's GridIn runs an unfiltered find_one on the chunks collection before each file; the embedded
    database reads chunks to answer it (8.7 s at 600 materials). The campaign's blob store makes the
    indexes once and never probes; what it writes reads back as plain GridFS."""
    import gridfs
    import numpy as np
    from pymongo.collection import Collection

    from tdph_workflows.campaign.stores import job_store
    from tdph_workflows.packing import pack, unpack

    store = job_store(campaign_db)
    store.connect()
    blobs = store.additional_stores["data"]
    database = campaign_db.client()[campaign_db.database]
    assert {"files_id", "n"} <= {k for ix in database["outputs_blobs.chunks"].index_information().values()
                                 for k, _ in ix["key"]}
    probes = []
    real_find_one = Collection.find_one

    def counting(self, *args, **kwargs):
        probes.append(self.name)
        return real_find_one(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "find_one", counting)
    fc = np.random.default_rng(0).standard_normal((2, 16, 3, 3))
    for k in range(3):
        blobs.update({"blob_uuid": f"b{k}", "job_uuid": "j", "data": pack(fc * k)}, key="blob_uuid")
    assert "outputs_blobs.chunks" not in probes and "outputs_blobs.files" not in probes
    monkeypatch.undo()
    assert np.array_equal(unpack(blobs.query_one({"blob_uuid": "b2"})["data"]), 2 * fc)
    files = gridfs.GridFS(database, "outputs_blobs")
    assert len(list(files.find({"metadata.job_uuid": "j"}))) == 3
