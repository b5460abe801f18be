"""Faults on real parts: a worker SIGKILLed mid-material, the database restarted, a corrupt input fixed."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import _free_port
from pymatgen.core import Lattice, Structure

from tdph_workflows.campaign import registry
from tdph_workflows.campaign.database import EmbeddedDatabase
from tdph_workflows.campaign.queries import rerun_fireworks
from tdph_workflows.campaign.settings import DatabaseSettings, launchpad
from tdph_workflows.campaign.submit import Item, submit
from tdph_workflows.campaign.worker import start_workers

SLOW = {"min_pairs": 512, "max_pairs": 512, "n_groups": 8}  # tens of seconds per EMT material
FAST = {"min_pairs": 8, "max_pairs": 8, "n_groups": 4}


def _items(tmp_path, names):
    consts = {"Al": 4.05, "Cu": 3.61, "Ni": 3.52, "Ag": 4.09, "Au": 4.08, "Pd": 3.89, "Pt": 3.92}
    out = []
    for el in names:
        path = tmp_path / f"{el}.cif"
        Structure.from_spacegroup(225, Lattice.cubic(consts[el]), [el], [[0, 0, 0]]).to(filename=str(path))
        out.append(Item(el, str(path)))
    return out


def _wait(predicate, timeout, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


@pytest.fixture
def own_db(tmp_path, database):  # `database` only to require SecantusDB; this test owns its server
    db = EmbeddedDatabase(tmp_path / "db", port=_free_port())
    db.start()
    yield db
    db.stop()


def test_sigkilled_worker_is_detected_rerun_and_gives_exactly_one_result(own_db, tmp_path):
    db = DatabaseSettings(own_db.uri, "faults", "embedded")
    submit(_items(tmp_path, ["Cu"]), db, calculator="emt", settings=SLOW, campaign="kill")
    lp = launchpad(db)
    (worker,) = start_workers(1, db, ["gpu", "cpu"], tmp_path / "w1")
    assert _wait(lambda: lp.fireworks.count_documents({"state": "RUNNING"}) == 1, 60)
    time.sleep(1.0)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert lp.fireworks.find_one({})["state"] == "RUNNING"  # nobody told the database
    time.sleep(2.0)
    _, lost_fws, _ = lp.detect_lostruns(expiration_secs=1, rerun=True)
    assert len(lost_fws) == 1 and lp.fireworks.find_one({})["state"] == "READY"
    (worker,) = start_workers(1, db, ["gpu", "cpu"], tmp_path / "w2", timeout=300)
    assert worker.wait(timeout=400) == 0
    assert lp.fireworks.find_one({})["state"] == "COMPLETED"
    coll = registry.collection(db)
    assert coll.count_documents({"campaign": "kill"}) == 1
    assert coll.find_one({"campaign": "kill"})["state"] == "COMPLETED"
    outputs = list(launchpad(db).db["outputs"].find({"name": {"$regex": "^tdph Cu"}}))
    assert len(outputs) == 1  # the rerun overwrote, it did not duplicate


def _log(work_dir) -> str:
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(work_dir.glob("worker-*.log")))


def test_database_restart_mid_campaign_then_rerun_finishes(own_db, tmp_path, monkeypatch):
    monkeypatch.setenv("TDPH_WORKER_PING_SECS", "2")  # lost runs are found after 3 pings, 6 s
    db = DatabaseSettings(own_db.uri, "restart", "embedded")
    names = ["Al", "Cu", "Ni", "Ag", "Au"]
    submit(_items(tmp_path, names), db, calculator="emt", settings=FAST, campaign="restart")
    coll = registry.collection(db)
    (worker,) = start_workers(1, db, ["gpu", "cpu"], tmp_path / "w1", timeout=120)
    assert _wait(lambda: coll.count_documents({"state": "COMPLETED"}) >= 1, 120), _log(tmp_path / "w1")
    own_db.stop()  # clean shutdown while the worker is busy
    time.sleep(3.0)
    own_db.start()
    lp = launchpad(db)
    # a connection cut mid-update can leave a workflow locked by nobody (FireWorks' WFLock); the workers
    # take a lock over after 30 s instead of stalling 5 minutes on it
    lp.workflows.update_one({"state": {"$ne": "COMPLETED"}}, {"$set": {"locked": True}})
    try:
        worker.wait(timeout=240)  # recovered or failed cleanly; either way it ends
    except subprocess.TimeoutExpired:
        worker.kill()
        pytest.fail("worker hung after the database restart:\n" + _log(tmp_path / "w1"))
    time.sleep(7.0)  # anything still RUNNING is now silent for longer than 3 pings
    rerun_fireworks(db, "FIZZLED", lost=True, expiration_secs=6)
    (worker,) = start_workers(1, db, ["gpu", "cpu"], tmp_path / "w2", timeout=300)
    assert worker.wait(timeout=400) == 0, _log(tmp_path / "w2")
    assert lp.fireworks.count_documents({"state": "COMPLETED"}) == len(names), _log(tmp_path / "w2")
    assert coll.count_documents({"campaign": "restart"}) == len(names)
    assert coll.count_documents({"campaign": "restart", "state": "COMPLETED"}) == len(names)


def test_rerun_refuses_an_expiration_shorter_than_three_worker_pings(own_db):
    db = DatabaseSettings(own_db.uri, "pings", "embedded")
    with pytest.raises(ValueError, match="3 worker pings"):
        rerun_fireworks(db, lost=True, expiration_secs=10)  # default ping 60 s: a live run looks lost at 10 s


def test_twenty_materials_through_a_killed_worker_a_restart_and_a_fixed_input(own_db, tmp_path, monkeypatch):
    """20 materials, a SIGKILLed worker, a database restart, a corrupt input fixed and resubmitted: 20 results."""
    from tdph_workflows.campaign.queries import full_results, query_rows

    monkeypatch.setenv("TDPH_WORKER_PING_SECS", "2")
    db = DatabaseSettings(own_db.uri, "twenty", "embedded")
    consts = {"Al": 4.05, "Cu": 3.61, "Ni": 3.52, "Ag": 4.09, "Au": 4.08, "Pd": 3.89, "Pt": 3.92}
    items = []
    for k in range(20):  # 7 metals at strained lattice constants: 20 distinct inputs
        el = list(consts)[k % 7]
        path = tmp_path / f"{el}-{k}.cif"
        Structure.from_spacegroup(225, Lattice.cubic(consts[el] * (1 + 0.01 * (k // 7))), [el], [[0, 0, 0]]).to(
            filename=str(path))
        items.append(Item(f"{el}-{k}", str(path)))
    broken = items[-1]  # run last: were it in flight on the killed worker, it would be a lost run, not FAILED
    corrupt = Path(broken.source)
    good_text = corrupt.read_text()
    corrupt.write_text("data_broken\n_cell_length_a oops\n")
    submit(items, db, calculator="emt", settings=FAST, campaign="twenty")
    coll = registry.collection(db)
    workers = start_workers(2, db, ["gpu", "cpu"], tmp_path / "w1", timeout=300)
    assert _wait(lambda: coll.count_documents({"state": "COMPLETED"}) >= 4, 180), _log(tmp_path / "w1")
    os.kill(workers[0].pid, signal.SIGKILL)  # mid-material or between two: either way nobody tells the database
    own_db.stop()
    time.sleep(2.0)
    own_db.start()
    try:
        workers[1].wait(timeout=300)
    except subprocess.TimeoutExpired:
        workers[1].kill()
        pytest.fail("surviving worker hung after the restart:\n" + _log(tmp_path / "w1"))
    workers[0].wait()
    assert coll.count_documents({"material_id": broken.material_id, "state": "FAILED"}) == 1
    corrupt.write_text(good_text)  # the user fixes the file in place and resubmits everything
    report = submit(items, db, calculator="emt", settings=FAST, campaign="twenty")
    assert report.new == 1 and report.skipped == 19
    time.sleep(7.0)  # the killed worker's run is now silent for more than 3 pings
    rerun_fireworks(db, "FIZZLED", lost=True, expiration_secs=6)
    for worker in start_workers(2, db, ["gpu", "cpu"], tmp_path / "w2", timeout=300):
        assert worker.wait(timeout=400) == 0, _log(tmp_path / "w2")
    states = {s: coll.count_documents({"campaign": "twenty", "state": s})
              for s in ("COMPLETED", "FAILED", "WAITING", "SUPERSEDED")}
    assert states == {"COMPLETED": 20, "FAILED": 0, "WAITING": 0, "SUPERSEDED": 1}, states
    rows = query_rows(db, campaign="twenty")
    assert sorted(r["material_id"] for r in rows) == sorted(i.material_id for i in items)  # one row each
    assert len(list(full_results(db, "twenty"))) == 20  # every record's full result is in the job store


def test_a_result_finished_while_the_database_is_down_is_written_when_it_returns(own_db):
    import threading

    db = DatabaseSettings(own_db.uri, "patience", "embedded")
    coll = registry.collection(db)
    registry.register(coll, "k1", "Cu", "/nowhere/Cu.cif", "patience")
    own_db.stop()
    restart = threading.Timer(12.0, own_db.start)  # longer than the client's 10 s server selection
    restart.start()
    registry.record_success(coll, "k1", {"material_id": "Cu"}, None, 1.0)
    restart.join()
    assert coll.find_one({"key": "k1"})["state"] == "COMPLETED"
