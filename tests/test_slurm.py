"""qlaunch through the shipped GPU and CPU qadapters on a real one-node SLURM cluster."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml
from pymatgen.core import Lattice, Structure

from tdph_workflows.campaign import registry
from tdph_workflows.campaign.settings import DatabaseSettings, launchpad
from tdph_workflows.campaign.submit import Item, submit

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _configs(tmp_path: Path, uri_port: int, name: str) -> dict[str, Path]:
    """The shipped files, pointed at the test database and this checkout's venv."""
    lp = tmp_path / "launchpad.yaml"
    spec = yaml.safe_load((ROOT / "launchpad.yaml").read_text())
    spec.update(port=uri_port, name=name)
    lp.write_text(yaml.safe_dump(spec))
    out = {"launchpad": lp}
    (tmp_path / "fw_logs").mkdir()
    for kind in ("gpu", "cpu"):
        fworker = tmp_path / f"my_fworker_{kind}.yaml"
        fworker.write_text((ROOT / "fw_config" / f"my_fworker_{kind}.yaml").read_text())
        q = yaml.safe_load((ROOT / "fw_config" / f"my_qadapter_{kind}.yaml").read_text())
        q["rocket_launch"] = f"{BIN / 'rlaunch'} -w {fworker} -l {lp} singleshot"
        q["pre_rocket"] = f"source {BIN / 'activate'}; cd {tmp_path}; echo {kind}-job-sees-gpu=$CUDA_VISIBLE_DEVICES"
        q["logdir"] = str(tmp_path / "fw_logs")
        q["walltime"] = "00:10:00"
        qfile = tmp_path / f"my_qadapter_{kind}.yaml"
        qfile.write_text(yaml.safe_dump(q))
        out[f"fworker_{kind}"], out[f"qadapter_{kind}"] = fworker, qfile
    return out


def test_qlaunch_through_gpu_and_cpu_qadapters(database, slurm_cluster, tmp_path):
    name = "slurm_test"
    db = DatabaseSettings(database.uri, name, "embedded")
    launchpad(db).reset("", require_password=False)
    files = _configs(tmp_path, database.port, name)
    for el, a, cat in (("Al", 4.05, "gpu"), ("Cu", 3.61, "cpu")):
        path = tmp_path / f"{el}.cif"
        Structure.from_spacegroup(225, Lattice.cubic(a), [el], [[0, 0, 0]]).to(filename=str(path))
        submit([Item(el, str(path))], db, calculator="emt", settings={"min_pairs": 8, "max_pairs": 8, "n_groups": 4},
               category=cat, campaign="slurm")
    for kind in ("gpu", "cpu"):
        res = subprocess.run([str(BIN / "qlaunch"), "-l", str(files["launchpad"]), "-w", str(files[f"fworker_{kind}"]),
                              "-q", str(files[f"qadapter_{kind}"]), "singleshot"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
    lp = launchpad(db)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and lp.fireworks.count_documents({"state": "COMPLETED"}) < 2:
        time.sleep(1)
    states = {fw["spec"]["_category"]: fw["state"] for fw in lp.fireworks.find({}, {"spec._category": 1, "state": 1})}
    logs = "\n".join(p.read_text()[-2000:] for p in (tmp_path / "fw_logs").rglob("*") if p.is_file())
    assert states == {"gpu": "COMPLETED", "cpu": "COMPLETED"}, logs
    coll = registry.collection(db)
    assert coll.count_documents({"campaign": "slurm", "state": "COMPLETED"}) == 2
    job_output = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*.out"))
    assert "gpu-job-sees-gpu=0" in job_output  # the GPU adapter's gres reached SLURM
    assert "cpu-job-sees-gpu=\n" in job_output  # the CPU job got no GPU
