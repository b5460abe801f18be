"""Bad input and faults through the `tdph` console script: one line naming the input and the cause.

Each case runs the installed command in a subprocess (so the entry point's handler is what the user
sees), asserts the exit code and the message, that no traceback is printed, and that a refused run
left no files behind (it was refused before anything was computed). docs/faults.md lists every case.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

TDPH = str(Path(sys.executable).parent / "tdph")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("fault_inputs")
    Structure.from_spacegroup(225, Lattice.cubic(4.05), ["Al"], [[0, 0, 0]]).to(filename=str(d / "Al.cif"))
    Structure.from_spacegroup(221, Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
        filename=str(d / "CsCl.cif"))
    Structure(Lattice.cubic(10.0), ["Al"], [[0, 0, 0]]).to(filename=str(d / "atom_in_box.cif"))
    (d / "a_folder").mkdir()
    (d / "factories.py").write_text("def boom():\n    raise RuntimeError('factory exploded')\n")
    (d / "earlier").mkdir()
    (d / "earlier" / "result.json").write_text("{}")
    return d


CASES = {  # id: (arguments, exit code, fragments the message must hold)
    "element outside EMT": (["run", "CsCl.cif", "--calculator", "emt"], 1, ["CsCl.cif", "No EMT-potential for Cl"]),
    "one atom in a box": (["run", "atom_in_box.cif", "--calculator", "emt"], 2,
                          ["atom_in_box", "no force on displaced atoms"]),
    "temperature nan": (["run", "Al.cif", "--calculator", "emt", "-T", "nan"], 2, ["Al.cif", "got [nan]"]),
    "supercell letters": (["run", "Al.cif", "--calculator", "emt", "--supercell", "a b c"], 2,
                          ["--supercell 'a b c'", "3 or 9 integers"]),
    "supercell fractions": (["run", "Al.cif", "--calculator", "emt", "--supercell", "1.5 1 1"], 2,
                            ["--supercell '1.5 1 1'", "3 or 9 integers"]),
    "supercell left-handed": (["run", "Al.cif", "--calculator", "emt", "--supercell", "-2 0 0 0 2 0 0 0 2"], 2,
                              ["determinant must be positive, got -8"]),
    "supercell too large": (["run", "SrTiO3", "--calculator", "emt", "--supercell", "12 12 12"], 2,
                            ["8640 atoms", "TDPH_MAX_SUPERCELL_ATOMS"]),
    "factory raising": (["run", "Al.cif", "--calculator", "factories:boom"], 1, ["Al.cif", "factory exploded"]),
    "folder as structure": (["run", "a_folder", "--calculator", "emt"], 2, ["a_folder", "not a readable structure"]),
    "negative threads": (["run", "Al.cif", "--calculator", "emt", "--threads", "-1"], 2, ["--threads", "-1"]),
    "sc step without self-consistent": (["run", "Al.cif", "--calculator", "emt", "--sc-predict"], 2,
                                        ["--sc-predict/--sc-mix", "--self-consistent"]),
    "max samples zero": (["run", "Al.cif", "--calculator", "emt", "--max-samples", "0"], 2, ["--max-samples"]),
    "out is a file": (["run", "Al.cif", "--calculator", "emt", "--out", "Al.cif"], 2, ["--out Al.cif is a file"]),
    "out under a file": (["run", "Al.cif", "--calculator", "emt", "--out", "Al.cif/x"], 2, ["cannot be written"]),
    "out holds an earlier run": (["run", "Al.cif", "--calculator", "emt", "--out", "earlier"], 2,
                                 ["holds an earlier run", "--overwrite"]),
    "db port out of range": (["db", "start", "--port", "99999"], 2, ["--port must be 1-65535, got 99999"]),
    "worker count negative": (["worker", "--n", "-1"], 2, ["--n must be at least 1"]),
    "status on a closed port": (["campaign", "status"], 1, ["database is not reachable"]),
    "query on a closed port": (["query"], 1, ["database is not reachable"]),
    "submit negative temperature": (["campaign", "submit", "Al.cif", "-T", "-5"], 2, ["got [-5.0]"]),
    "submit missing model": (["campaign", "submit", "Al.cif", "--model", "/no/such/model"], 2,
                             ["/no/such/model", "does not exist"]),
    "submit unknown factory": (["campaign", "submit", "Al.cif", "--model", "nomodule:f"], 2,
                               ["nomodule", "cannot be imported"]),
    "submit unknown category": (["campaign", "submit", "Al.cif", "--category", "gpus"], 2, ["--category", "'gpus'"]),
    "submit chunk size zero": (["campaign", "submit", "Al.cif", "--chunk-size", "0"], 2, ["--chunk-size"]),
    "submit limit zero": (["campaign", "submit", "Al.cif", "--limit", "0"], 2, ["--limit"]),
    "rerun expiration below pings": (["campaign", "rerun", "--lost", "--expiration-secs", "10"], 2,
                                     ["shorter than 3 worker pings"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cli_fault(case, inputs):
    args, code, fragments = CASES[case]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TDPH_DB", "TDPH_LAUNCHPAD"))}
    # commands that need a database get a closed port: they must say so, not hang or start a server
    env.update(TDPH_DB_URI=f"mongodb://127.0.0.1:{_closed_port()}/?serverSelectionTimeoutMS=1500",
               PYTHONPATH=str(inputs), COLUMNS="400")
    before = {p for p in inputs.rglob("*")}
    res = subprocess.run([TDPH, *args], cwd=inputs, env=env, capture_output=True, text=True, timeout=300)
    out = " ".join((res.stdout + res.stderr).split())
    assert res.returncode == code, out
    assert "Traceback" not in out and "│" not in out, out  # one line, not a rich traceback
    for fragment in fragments:
        assert fragment in out, out
    assert {p for p in inputs.rglob("*")} == before  # refused before anything was computed or written
