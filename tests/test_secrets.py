"""A campaign against a password-protected database leaves the password nowhere.

The server enforces SCRAM authentication (SecantusDB ``--auth``); the password is configured only in
the environment (``TDPH_DB_PASSWORD``) beside a launchpad file without one. Every stored document and
GridFS chunk, every file of the launch folders (FW.json, logs), every CLI output and every process
command line seen while the worker runs is searched for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pymongo
import pytest
import yaml
from bson import json_util
from conftest import _free_port
from pymatgen.core import Lattice, Structure

BIN = Path(sys.executable).parent
PASSWORD = "Zq8-tdph-secret/41:x@y"  # URI-special characters too: nothing may quote it into a string either
USER = "tdph_secret_user"


def _wait_ping(client: pymongo.MongoClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.admin.command("ping")
            return
        except pymongo.errors.PyMongoError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.fixture
def auth_server(database, tmp_path):  # `database` only to require SecantusDB
    port = _free_port()
    cmd = [str(BIN / "secantusd-py"), "--host", "127.0.0.1", "--port", str(port), "--storage-path",
           str(tmp_path / "wt"), "--log-level", "WARNING"]
    log = open(tmp_path / "server.log", "ab")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    with pymongo.MongoClient(f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=2000) as c:
        _wait_ping(c)
        c.admin.command("createUser", USER, pwd=PASSWORD, roles=["root"])
    proc.terminate()
    proc.wait(30)
    proc = subprocess.Popen([*cmd, "--auth"], stdout=log, stderr=subprocess.STDOUT)
    admin = pymongo.MongoClient(f"mongodb://127.0.0.1:{port}", username=USER, password=PASSWORD,
                                authSource="admin", serverSelectionTimeoutMS=2000)
    _wait_ping(admin)
    yield port, admin
    admin.close()
    proc.terminate()
    proc.wait(30)
    log.close()


def test_no_password_in_documents_files_outputs_or_command_lines(auth_server, tmp_path):
    port, admin = auth_server
    with pymongo.MongoClient(f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=2000) as anonymous:
        with pytest.raises(pymongo.errors.OperationFailure):  # the server really enforces the password
            anonymous["secrets"]["probe"].insert_one({"a": 1})
    lp_file = tmp_path / "launchpad.yaml"
    lp_file.write_text(yaml.safe_dump({"host": "127.0.0.1", "port": port, "name": "secrets", "username": USER,
                                       "authsource": "admin"}))
    structure = tmp_path / "Al.cif"
    Structure.from_spacegroup(225, Lattice.cubic(4.05), ["Al"], [[0, 0, 0]]).to(filename=str(structure))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TDPH_DB_", "JOBFLOW_", "FW_CONFIG"))}
    env.update(TDPH_LAUNCHPAD=str(lp_file), TDPH_DB_PASSWORD=PASSWORD, TDPH_TORCH_THREADS="1")
    tdph = str(BIN / "tdph")

    def cli(*args: str, check: bool = True) -> str:
        res = subprocess.run([tdph, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0 or not check, res.stdout + res.stderr
        return res.stdout + res.stderr

    outputs = [cli("campaign", "submit", str(structure), "--model", "emt", "--campaign", "secrets",
                   "--category", "cpu")]
    worker = subprocess.Popen([tdph, "worker", "--n", "1", "--work-dir", str(tmp_path / "runs")], env=env,
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    command_lines: set[str] = set()
    while worker.poll() is None:  # every process command line on the machine while the worker runs
        command_lines.update(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines())
        time.sleep(0.2)
    outputs.append(worker.stdout.read())
    assert worker.returncode == 0, outputs[-1]
    assert "1 done, 0 running, 0 failed, 0 waiting" in outputs[-1], outputs[-1]  # progress, not silence
    outputs += [cli("campaign", "status", "--campaign", "secrets"), cli("query", "--campaign", "secrets"),
                cli("config", "check", "--root", str(tmp_path), check=False)]  # fw_config/ is missing there
    assert "database reachable at" in outputs[-1], outputs[-1]
    assert any("tdph_workflows.campaign.worker" in line for line in command_lines)  # the worker was seen
    wrong = subprocess.run([tdph, "campaign", "status"], env={**env, "TDPH_DB_PASSWORD": "wrong"}, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    message = " ".join((wrong.stdout + wrong.stderr).split())
    assert wrong.returncode == 1 and "refused the credentials" in message and "Traceback" not in message, message

    db = admin["secrets"]
    assert db["materials"].count_documents({"state": "COMPLETED"}) == 1  # the campaign really ran
    assert db["fireworks"].count_documents({"state": "COMPLETED"}) == 1
    dumps = []
    for name in admin.list_database_names():
        for coll in admin[name].list_collection_names():
            for doc in admin[name][coll].find():
                dumps.append(json_util.dumps(doc) if not coll.endswith(".chunks") else bytes(doc["data"]).decode("latin-1"))
    files = [p.read_bytes().decode("latin-1") for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert any("FW.json" in str(p) for p in (tmp_path / "runs").rglob("FW.json"))
    for where, texts in (("database", dumps), ("launch folders", files), ("CLI output", outputs),
                         ("command lines", command_lines)):
        leaks = [t[:200] for t in texts if PASSWORD in t or PASSWORD.split("/")[0] in t]
        assert not leaks, f"password found in {where}: {leaks[:3]}"
