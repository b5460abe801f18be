"""`qlaunch rapidfire` through the files `tdph config init` writes, unchanged, on a real one-node SLURM cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from tdph_workflows.campaign import registry
from tdph_workflows.campaign.settings import DatabaseSettings, launchpad
from tdph_workflows.campaign.submit import Item, submit
from tdph_workflows.cli import app

BIN = Path(sys.executable).parent


def test_qlaunch_rapidfire_through_the_written_gpu_and_cpu_adapters(database, slurm_cluster, tmp_path):
    name = "slurm_test"
    cluster = tmp_path / "cluster"
    res = CliRunner().invoke(app, ["config", "init", "--dir", str(cluster), "--db-port", str(database.port),
                                   "--db-name", name, "--threads", "2", "--walltime", "00:10:00"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["config", "check", "--root", str(cluster)], terminal_width=200)
    assert res.exit_code == 0, res.output  # the written files pass their own check, database reached
    db = DatabaseSettings(database.uri, name, "embedded")
    launchpad(db).reset("", require_password=False)
    for el, a, cat in (("Al", 4.05, "gpu"), ("Cu", 3.61, "cpu"), ("Ni", 3.52, "cpu")):
        path = tmp_path / f"{el}.cif"
        Structure.from_spacegroup(225, Lattice.cubic(a), [el], [[0, 0, 0]]).to(filename=str(path))
        submit([Item(el, str(path))], db, calculator="emt", settings={"min_pairs": 8, "max_pairs": 8, "n_groups": 4},
               category=cat, campaign="slurm")
    fw = cluster / "fw_config"
    # what the docs tell a user: the exports init printed, then qlaunch rapidfire from any folder
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TDPH_DB", "JOBFLOW_", "FW_CONFIG"))}
    env.update(FW_CONFIG_FILE=str(fw / "FW_config.yaml"), JOBFLOW_CONFIG_FILE=str(fw / "jobflow.yaml"),
               TDPH_LAUNCHPAD=str(cluster / "launchpad.yaml"))
    launch_dir = tmp_path / "launches"
    launch_dir.mkdir()
    for kind, n in (("gpu", 1), ("cpu", 2)):
        res = subprocess.run([str(BIN / "qlaunch"), "-w", str(fw / f"my_fworker_{kind}.yaml"),
                              "-q", str(fw / f"my_qadapter_{kind}.yaml"), "rapidfire", "-m", "2", "--nlaunches", str(n),
                              "--timeout", "120"], cwd=launch_dir, env=env, capture_output=True, text=True, timeout=240)
        assert res.returncode == 0, res.stdout + res.stderr
    lp = launchpad(db)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and lp.fireworks.count_documents({"state": "COMPLETED"}) < 3:
        time.sleep(1)
    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in launch_dir.rglob("*") if p.is_file())
    states = sorted((fw["spec"]["_category"], fw["state"]) for fw in lp.fireworks.find({}, {"spec._category": 1,
                                                                                          "state": 1}))
    assert states == [("cpu", "COMPLETED"), ("cpu", "COMPLETED"), ("gpu", "COMPLETED")], logs
    coll = registry.collection(db)
    assert coll.count_documents({"campaign": "slurm", "state": "COMPLETED"}) == 3
    assert list(launch_dir.glob("block_*/launcher_*")), "rapidfire ran from its block/launcher folders"
    # each queue job saw the adapter's exports: threads, ping, the jobflow store (results were stored)
    scripts = "".join(p.read_text() for p in launch_dir.rglob("FW_submit.script"))
    assert "TDPH_TORCH_THREADS=2" in scripts and "--cpus-per-task=2" in scripts
    assert "--gres=gpu:1" in scripts
    outputs = lp.db["outputs"].count_documents({"name": {"$regex": "^tdph "}})
    assert outputs == 3  # the JobStore came from the node's JOBFLOW_CONFIG_FILE
