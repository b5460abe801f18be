"""Faults on real parts: a worker SIGKILLed mid-material, the database restarted mid-campaign."""

from __future__ import annotations

import os
import signal
import time

import pytest
from conftest import _free_port
from pymatgen.core import Lattice, Structure

from tdph_workflows.campaign import registry
from tdph_workflows.campaign.database import EmbeddedDatabase
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


def test_database_restart_mid_campaign_then_rerun_finishes(own_db, tmp_path):
    db = DatabaseSettings(own_db.uri, "restart", "embedded")
    names = ["Al", "Cu", "Ni", "Ag", "Au"]
    submit(_items(tmp_path, names), db, calculator="emt", settings=FAST, campaign="restart")
    coll = registry.collection(db)
    (worker,) = start_workers(1, db, ["gpu", "cpu"], tmp_path / "w1", timeout=120)
    assert _wait(lambda: coll.count_documents({"state": "COMPLETED"}) >= 1, 120)
    own_db.stop()  # clean shutdown while the worker is busy
    time.sleep(3.0)
    own_db.start()
    worker.wait(timeout=300)  # recovered or failed cleanly; either way it ends
    lp = launchpad(db)
    lp.detect_lostruns(expiration_secs=1, rerun=True)
    for fw_id in lp.get_fw_ids({"state": "FIZZLED"}):
        lp.rerun_fw(fw_id)
    (worker,) = start_workers(1, db, ["gpu", "cpu"], tmp_path / "w2", timeout=300)
    assert worker.wait(timeout=400) == 0
    assert lp.fireworks.count_documents({"state": "COMPLETED"}) == len(names)
    assert coll.count_documents({"campaign": "restart"}) == len(names)
    assert coll.count_documents({"campaign": "restart", "state": "COMPLETED"}) == len(names)
