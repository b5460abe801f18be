"""The campaign commands as a user types them (CliRunner), on the test database."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from tdph_workflows.campaign.queries import query_rows
from tdph_workflows.campaign.settings import DatabaseSettings, launchpad, resolve
from tdph_workflows.campaign.submit import structure_items, submit
from tdph_workflows.cli import app
from tdph_workflows.core.sscha import SSCHASettings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(database, monkeypatch, request):
    name = f"cli_{request.node.name[:30]}"
    monkeypatch.setenv("TDPH_DB_URI", database.uri)
    monkeypatch.setenv("TDPH_DB_NAME", name)
    launchpad(DatabaseSettings(database.uri, name, "env")).reset("", require_password=False)
    return name


def _cif(tmp_path, el, a):
    path = tmp_path / f"{el}.cif"
    Structure.from_spacegroup(225, Lattice.cubic(a), [el], [[0, 0, 0]]).to(filename=str(path))
    return str(path)


def test_submit_worker_status_query_rerun(env, tmp_path):
    runner = CliRunner()
    files = [_cif(tmp_path, "Al", 4.05), _cif(tmp_path, "Cu", 3.61)]
    bad = tmp_path / "bad.cif"
    bad.write_text("garbage")
    res = runner.invoke(app, ["campaign", "submit", *files, str(bad), "--model", "emt", "--campaign", "c",
                              "--category", "cpu"])
    assert res.exit_code == 0, res.output
    assert "3 new materials in 3 fireworks" in res.output
    res = runner.invoke(app, ["worker", "--n", "2", "--work-dir", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["campaign", "status", "--campaign", "c"])
    assert "COMPLETED" in res.output and "FAILED" in res.output and "bad.cif" in res.output
    res = runner.invoke(app, ["query", "--format", "json"])
    rows = json.loads(res.output)
    assert {r["material_id"] for r in rows} == {"Al", "Cu"}
    assert rows[0]["r_onsite_max"] >= rows[1]["r_onsite_max"] > 0
    res = runner.invoke(app, ["query", "--element", "Cu", "--format", "csv"])
    assert res.output.splitlines()[0].startswith("material_id,") and len(res.output.splitlines()) == 2
    res = runner.invoke(app, ["query", "--spacegroup", "221", "--format", "json"])
    assert json.loads(res.output) == []
    res = runner.invoke(app, ["campaign", "submit", *files, "--model", "emt", "--campaign", "c"])
    assert "0 new materials" in res.output
    # other physics settings are other results: the self-consistent runs are new materials to the registry
    res = runner.invoke(app, ["campaign", "submit", *files, "--model", "emt", "--campaign", "c", "--self-consistent"])
    assert "2 new materials" in res.output, res.output
    other_step = "--sc-mix" if SSCHASettings(self_consistent=True).sc_predict else "--sc-predict"
    res = runner.invoke(app, ["campaign", "submit", *files, "--model", "emt", "--campaign", "c", "--self-consistent",
                              other_step])
    assert "2 new materials" in res.output, res.output  # another self-consistent step is another result
    res = runner.invoke(app, ["campaign", "submit", *files, "--model", "emt", "--campaign", "c", "--sc-predict"])
    assert res.exit_code == 2 and "give --self-consistent too" in " ".join(res.output.split())  # rich wraps
    # the demo's table: only the results of the keys just submitted, not other settings' runs of the same files
    db = resolve(None)
    known = submit(structure_items(files), db, "emt", [300.0], campaign="c")
    assert known.new == 0 and len(known.keys) == 2
    assert {r["material_id"] for r in query_rows(db, campaign="c", keys=known.keys)} == {"Al", "Cu"}
    pending = submit(structure_items(files), db, "emt", [300.0], {"self_consistent": True}, campaign="c")
    assert pending.new == 0 and set(pending.keys).isdisjoint(known.keys)
    assert query_rows(db, campaign="c", keys=pending.keys) == []
    assert len(query_rows(db, campaign="c")) == 2
    res = runner.invoke(app, ["campaign", "rerun", "--state", "FIZZLED"])
    assert "rerun 1 FIZZLED" in res.output


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:  # bound then released: nothing listens there afterwards
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_config_init_writes_files_that_pass_the_check_and_the_check_names_problems(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["config", "init", "--dir", str(tmp_path), "--threads", "4"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "launchpad.yaml").stat().st_mode & 0o077 == 0  # the password goes there: owner only
    res = runner.invoke(app, ["config", "init", "--dir", str(tmp_path)])
    assert res.exit_code == 1 and "--overwrite" in res.output  # never replaces a user's files silently
    res = runner.invoke(app, ["config", "check", "--root", str(tmp_path), "--no-ping"])
    assert res.exit_code == 0, res.output
    qadapter = yaml.safe_load((tmp_path / "fw_config" / "my_qadapter_cpu.yaml").read_text())
    assert "TDPH_TORCH_THREADS=4" in qadapter["pre_rocket"] and qadapter["cpus_per_task"] == 4
    fworker = tmp_path / "fw_config" / "my_fworker_gpu.yaml"
    spec = yaml.safe_load(fworker.read_text())
    del spec["category"]
    fworker.write_text(yaml.safe_dump(spec))
    qadapter["rocket_launch"] = "rlaunch -w fw_config/my_fworker_cpu.yaml -l launchpad.yaml singleshot"
    (tmp_path / "fw_config" / "my_qadapter_cpu.yaml").write_text(yaml.safe_dump(qadapter))
    (tmp_path / "fw_logs").rmdir()
    res = CliRunner().invoke(app, ["config", "check", "--root", str(tmp_path), "--no-ping"], terminal_width=250)
    assert res.exit_code == 1
    out = " ".join(res.output.split())
    assert "missing keys: category" in out and "does not exist" in out
    assert "relative paths" in out and "launcher folders" in out  # the shape of the old shipped adapters


def test_config_check_reports_a_closed_port_as_unreachable(tmp_path):
    CliRunner().invoke(app, ["config", "init", "--dir", str(tmp_path), "--db-port", str(_closed_port())])
    res = CliRunner().invoke(app, ["config", "check", "--root", str(tmp_path)], terminal_width=250)
    assert res.exit_code == 1 and "not reachable" in res.output, res.output



def test_fireworks_own_launchpad_is_used_by_workers_only(tmp_path, monkeypatch):
    from fireworks import fw_config

    from tdph_workflows.campaign.settings import resolve, resolve_on_worker

    for name in ("TDPH_DB_URI", "TDPH_LAUNCHPAD", "TDPH_DB_HOST", "TDPH_DB_PORT", "TDPH_DB_NAME"):
        monkeypatch.delenv(name, raising=False)
    lp = tmp_path / "my_launchpad.yaml"
    lp.write_text(yaml.safe_dump({"host": "mongodb+srv://cluster0.example.net", "uri_mode": True, "name": "prod"}))
    monkeypatch.setattr(fw_config, "LAUNCHPAD_LOC", str(lp))
    assert resolve(start_embedded=False).source == "embedded"  # a demo never lands in the user's production DB
    on_worker = resolve_on_worker()
    assert on_worker.source == "launchpad.yaml" and on_worker.database == "prod"
    assert on_worker.uri == "mongodb+srv://cluster0.example.net"  # a uri_mode host stays a URI
    monkeypatch.setattr(fw_config, "LAUNCHPAD_LOC", None)
    with pytest.raises(RuntimeError, match="no campaign database configured on this node"):
        resolve_on_worker()
