"""Shared fixtures: where the shared model and MDR data live, and test calculators.

Tests that need ../shared skip with a reason on a user's clone without it;
under CI (CI=true) a missing file fails instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TDPH_SHARED", ROOT.parent / "shared"))
MODEL_DIR = Path(os.environ.get("TDPH_TEST_MODEL", SHARED / "models" / "M3GNet-PES-MatPES-PBE-2025.2"))
DATA_DIR = Path(os.environ.get("TDPH_DATA", SHARED / "data"))
MDR = DATA_DIR / "phonondb_pbesol_20180417"


def require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} missing at {path}: CI needs ../shared beside the clone")
    pytest.skip(f"{what} not found at {path} (set TDPH_SHARED or put ../shared beside the repo)")


@pytest.fixture(scope="session")
def model_dir() -> Path:
    path = require(MODEL_DIR, "M3GNet model")
    os.environ["TDPH_MODEL"] = str(path)  # the engine tests' numbers are the foundation model's
    os.environ["HF_HUB_OFFLINE"] = "1"
    if str(path.parent) not in os.environ.get("TDPH_MODEL_PATH", "").split(os.pathsep):  # found by name too
        os.environ["TDPH_MODEL_PATH"] = os.pathsep.join(filter(None, [str(path.parent),
                                                                      os.environ.get("TDPH_MODEL_PATH")]))
    return path


@pytest.fixture(scope="session")
def m3gnet(model_dir):
    from tdph_workflows.potentials import resolve_calculator

    return resolve_calculator(None)


@pytest.fixture(scope="session")
def mdr_dir() -> Path:
    return require(MDR, "MDR phonondb data")


class EinsteinQuartic(Calculator):
    """V = sum_i sum_a k_i u_ia^2 / 2 + lam_i u_ia^4 / 4 around fixed reference sites.

    Each atom is an independent anharmonic oscillator, so the one-shot answer is
    exact: Phi_ii = k + 3 lam <u^2> with <u^2> of the harmonic oscillator (k, m).
    """

    implemented_properties = ["energy", "forces"]  # noqa: RUF012

    def __init__(self, reference, k: dict, lam: dict, **kwargs):
        super().__init__(**kwargs)
        self.reference = np.array(reference.positions)
        symbols = reference.get_chemical_symbols()
        self.k = np.array([k[s] for s in symbols])[:, None]
        self.lam = np.array([lam[s] for s in symbols])[:, None]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        u = self.atoms.positions - self.reference
        self.results["energy"] = float((self.k * u**2 / 2 + self.lam * u**4 / 4).sum())
        self.results["forces"] = -(self.k * u + self.lam * u**3)


class NaNCalculator(Calculator):
    implemented_properties = ["energy", "forces"]  # noqa: RUF012

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results["energy"] = float("nan")
        self.results["forces"] = np.full((len(self.atoms), 3), np.nan)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def database(tmp_path_factory):
    """A real SecantusDB server (MongoDB wire protocol) for the session, on a free loopback port."""
    import shutil
    import sys

    if not (Path(sys.executable).parent / "secantusd-py").exists() and not shutil.which("secantusd-py"):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("secantusd-py missing: the campaign extra must be installed in CI")
        pytest.skip("SecantusDB not installed (pip install 'tdph-workflows[campaign]')")
    from tdph_workflows.campaign.database import EmbeddedDatabase

    db = EmbeddedDatabase(tmp_path_factory.mktemp("secantus"), port=_free_port())
    db.start()
    yield db
    db.stop()


@pytest.fixture(scope="session")
def slurm_cluster():
    """The one-node SLURM cluster started by scripts/slurm-local.sh (test.sh starts it when root)."""
    import shutil
    import subprocess

    ok = shutil.which("sinfo") and subprocess.run(["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True,
                                                   timeout=20).stdout.strip()
    if not ok:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("no SLURM cluster: scripts/slurm-local.sh start must run before the tests in CI")
        pytest.skip("no SLURM cluster (run scripts/slurm-local.sh start as root)")
    return ok
