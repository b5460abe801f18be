"""Every bad input fails early with one of the project's errors, whose message
names the material or file and the cause (never a bare traceback from a library)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from conftest import NaNCalculator  # tests/ is on sys.path (rootdir conftest, no __init__.py)
from pymatgen.core import Lattice, Structure

from tdph_workflows import potentials
from tdph_workflows.io.mdr import load_mdr_entry
from tdph_workflows.io.structures import MAX_UNITCELL_ATOMS, InputError, load_structure, to_phonopy_atoms
from tdph_workflows.potentials import (
    CalculatorError,
    ForceModel,
    ModelError,
    check_elements,
    load_potential,
    resolve_calculator,
)


def rocksalt(a: float = 5.64, cation: str = "Na", anion: str = "Cl") -> Structure:
    return Structure.from_spacegroup(225, Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture
def fresh_model_cache():
    """Failed loads must not poison (or be hidden by) the per-process model cache."""
    load_potential.cache_clear()
    yield
    load_potential.cache_clear()


# --- structure files ------------------------------------------------------------


def test_unreadable_file(tmp_path):
    bad = tmp_path / "garbage.cif"
    bad.write_bytes(b"this is not a CIF\n\x00\x17\xff data_??? _cell_length_a banana\n" + os.urandom(256))
    with pytest.raises(InputError, match=r"garbage\.cif: not a readable structure"):
        load_structure(bad)


def test_file_not_found(tmp_path):
    missing = tmp_path / "NaCl_missing.cif"
    with pytest.raises(InputError, match=r"NaCl_missing\.cif: file not found"):
        load_structure(missing)


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.cif"
    empty.write_text("")
    with pytest.raises(InputError, match=r"empty\.cif: not a readable structure"):
        load_structure(empty)


# --- structure contents -----------------------------------------------------------


def test_partial_occupancy():
    disordered = Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    assert not disordered.is_ordered
    with pytest.raises(InputError, match=r"^FeNi-alloy: partial occupancy"):
        to_phonopy_atoms(disordered, "FeNi-alloy")
    # without a name the formula names the material
    with pytest.raises(InputError, match=r"Fe0\.5Ni0\.5: partial occupancy"):
        to_phonopy_atoms(disordered)


def test_empty_structure():
    with pytest.raises(InputError, match=r"^empty-cell: the structure has no atoms"):
        to_phonopy_atoms(Structure(Lattice.cubic(4.0), [], []), "empty-cell")
    with pytest.raises(InputError, match="no atoms"):
        to_phonopy_atoms(Atoms(cell=np.eye(3) * 4, pbc=True))


def test_huge_cell():
    huge = rocksalt() * (4, 4, 4)  # 512 atoms
    assert len(huge) > MAX_UNITCELL_ATOMS
    with pytest.raises(InputError, match=rf"^NaCl: 512 atoms in the cell, more than the limit of {MAX_UNITCELL_ATOMS}"):
        to_phonopy_atoms(huge)


def test_overlapping_atoms():
    s = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.02, 0, 0]])
    with pytest.raises(InputError, match=r"^NaCl: atoms 0\.10 A apart; overlapping sites"):
        to_phonopy_atoms(s)


def test_ase_atoms_overlapping():
    atoms = Atoms("Si2", positions=[[0, 0, 0], [0.1, 0, 0]], cell=np.eye(3) * 5, pbc=True)
    with pytest.raises(InputError, match=r"^Si-test: .*overlapping"):
        to_phonopy_atoms(atoms, "Si-test")


def test_wrong_input_type():
    with pytest.raises(InputError, match=r"expected a pymatgen Structure or ASE Atoms, got dict"):
        to_phonopy_atoms({"Na": [0, 0, 0]})


def test_element_without_phonopy_mass():
    """Po, At, Rn, Fr, Ra, ... have no mass in phonopy: an InputError, not phonopy's RuntimeError."""
    with pytest.raises(InputError, match=r"^NaPo: element without a known atomic mass.*Po"):
        to_phonopy_atoms(rocksalt(6.0, "Na", "Po"))


# --- MDR entries -------------------------------------------------------------------


def test_corrupt_mdr_tarball(tmp_path):
    bad = tmp_path / "materials-id-1-x-pm-3m-221.tar.lzma"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InputError, match=r"^mp-1: corrupt or unreadable MDR entry"):
        load_mdr_entry(bad)


def test_corrupt_phonopy_params(tmp_path):
    bad = tmp_path / "mp-42_X_phonopy_params.yaml.xz"
    bad.write_bytes(b"\xfd7zXZ\x00" + os.urandom(512))
    with pytest.raises(InputError, match=r"^mp-42: corrupt or unreadable MDR entry"):
        load_mdr_entry(bad)


def test_missing_mdr_entry(tmp_path):
    with pytest.raises(InputError, match=r"^mp-7: .*materials-id-7-x-pm-3m-221\.tar\.lzma not found"):
        load_mdr_entry(tmp_path / "materials-id-7-x-pm-3m-221.tar.lzma")


def test_tarball_without_phonon_data(tmp_path):
    import tarfile

    (tmp_path / "README").write_text("nothing here")
    tarball = tmp_path / "materials-id-3-x-pm-3m-221.tar.xz"
    with tarfile.open(tarball, "w:xz") as tar:
        tar.add(tmp_path / "README", arcname="mp-3-20180417/README")
    with pytest.raises(InputError, match=r"^mp-3: no phonopy\.conf or phonopy_params\.yaml"):
        load_mdr_entry(tarball)


@pytest.mark.data
def test_mdr_folder_missing_force_sets(mdr_dir, tmp_path):
    src = mdr_dir / "curated" / "mp-5229_SrTiO3"
    folder = tmp_path / "mp-5229_SrTiO3"
    folder.mkdir()
    for name in ("phonopy.conf", "POSCAR-unitcell", "BORN"):  # no FORCE_SETS, no phonopy_params
        shutil.copy(src / name, folder / name)
    with pytest.raises(InputError, match=r"^mp-5229: FORCE_SETS missing in .*mp-5229_SrTiO3"):
        load_mdr_entry(folder)


@pytest.mark.data
def test_mdr_folder_without_dim(mdr_dir, tmp_path):
    src = mdr_dir / "curated" / "mp-5229_SrTiO3"
    folder = tmp_path / "mp-5229_SrTiO3"
    folder.mkdir()
    for name in ("POSCAR-unitcell", "FORCE_SETS"):
        shutil.copy(src / name, folder / name)
    (folder / "phonopy.conf").write_text("PRIMITIVE_AXIS = 1 0 0 0 1 0 0 0 1\n")
    with pytest.raises(InputError, match=r"^mp-5229: phonopy\.conf has no DIM"):
        load_mdr_entry(folder)


# --- model and calculator ------------------------------------------------------------


def _unknown_element(calc) -> str:
    known = set(calc.element_types)
    for symbol in ("Es", "Fm", "Md", "No", "Lr", "Cm", "Am", "Po", "At", "Rn", "Fr", "Ra", "Xe", "Kr", "Ne", "He"):
        if symbol not in known:
            return symbol
    pytest.skip("the model knows every candidate element")


@pytest.mark.model
def test_element_outside_model(m3gnet):
    el = _unknown_element(m3gnet)
    atoms = Atoms(f"Na{el}", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=np.eye(3) * 4.0, pbc=True)
    pattern = rf"^Na{el}-test: element\(s\) {el} outside the model's \d+ elements"
    with pytest.raises(ModelError, match=pattern):
        check_elements(m3gnet, atoms, f"Na{el}-test")
    with pytest.raises(ModelError, match=pattern):
        ForceModel(m3gnet, atoms, f"Na{el}-test")


@pytest.mark.model
def test_element_outside_model_through_engine(m3gnet):
    from tdph_workflows.engine import run_temperature_phonons

    el = _unknown_element(m3gnet)
    with pytest.raises((InputError, ModelError), match=rf"Na{el}.*\b{el}\b"):
        run_temperature_phonons(rocksalt(6.0, "Na", el), m3gnet, supercell_matrix=[1, 1, 1])


@pytest.mark.model
def test_model_folder_missing_files(model_dir, tmp_path, fresh_model_cache):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    shutil.copy(model_dir / "model.json", broken / "model.json")
    with pytest.raises(ModelError, match=rf"{re.escape(str(broken))} is not a matgl model: missing model\.pt, state\.pt"):
        load_potential(str(broken))
    with pytest.raises(ModelError, match="missing model.pt"):
        resolve_calculator(str(broken))


def test_model_folder_with_corrupt_files(tmp_path, fresh_model_cache):
    broken = tmp_path / "corrupt-model"
    broken.mkdir()
    (broken / "model.json").write_text("{not json")
    (broken / "model.pt").write_bytes(b"junk")
    (broken / "state.pt").write_bytes(b"junk")
    with pytest.raises(ModelError, match=rf"could not load matgl model '{re.escape(str(broken))}'"):
        load_potential(str(broken))


def test_nonexistent_model_path(tmp_path, fresh_model_cache):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelError, match=rf"model folder '{re.escape(str(missing))}' does not exist"):
        load_potential(str(missing))
    with pytest.raises(ModelError, match="does not exist"):
        resolve_calculator(str(missing))


@pytest.mark.model
def test_tdph_model_env_pointing_nowhere(m3gnet, tmp_path, monkeypatch):
    """TDPH_MODEL is honoured even after the default model was loaded in this process."""
    missing = tmp_path / "typo-model"
    monkeypatch.setenv("TDPH_MODEL", str(missing))
    with pytest.raises(ModelError, match=rf"'{re.escape(str(missing))}' does not exist"):
        resolve_calculator(None)


def test_bad_calculator_factory():
    with pytest.raises(ModelError, match=r"cannot import calculator factory 'no_such_module_xyz:make'"):
        resolve_calculator("no_such_module_xyz:make")
    with pytest.raises(ModelError, match=r"'builtins:dict' returned dict, not an ASE calculator"):
        resolve_calculator("builtins:dict")


def test_nan_forces_from_force_model():
    atoms = Atoms("NaCl", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=np.eye(3) * 4.0, pbc=True)
    model = ForceModel(NaNCalculator(), atoms, "NaCl-nan")
    with pytest.raises(CalculatorError, match=r"^NaCl-nan: calculator returned non-finite forces"):
        model.forces(atoms.positions)


def test_nan_calculator_in_engine():
    from tdph_workflows.engine import run_temperature_phonons

    with pytest.raises(CalculatorError, match=r"^NaCl: calculator returned non-finite forces"):
        run_temperature_phonons(rocksalt(), NaNCalculator(), supercell_matrix=[1, 1, 1])
    with pytest.raises(CalculatorError, match=r"^rocksalt-NaCl: calculator returned non-finite"):
        run_temperature_phonons(rocksalt(), NaNCalculator(), supercell_matrix=[1, 1, 1], material_id="rocksalt-NaCl")


# --- run parameters ----------------------------------------------------------------------


@pytest.mark.parametrize("temps", [[-10.0], [300.0, -1.0], [float("nan")], [float("inf")], []])
def test_bad_temperatures(temps):
    from tdph_workflows.engine import run_temperature_phonons

    with pytest.raises(InputError, match=r"temperatures must be finite and >= 0 K"):
        run_temperature_phonons(rocksalt(), NaNCalculator(), temperatures=temps, supercell_matrix=[1, 1, 1])


@pytest.mark.parametrize("smat", [[1, 0, 1], [[1, 0, 0], [1, 0, 0], [0, 0, 1]], [[1, 1, 0], [1, 1, 0], [0, 0, 2]]])
def test_singular_supercell_matrix(smat):
    from tdph_workflows.engine import run_temperature_phonons

    with pytest.raises(InputError, match=r"^NaCl: singular or malformed supercell matrix"):
        run_temperature_phonons(rocksalt(), NaNCalculator(), supercell_matrix=smat)


# --- command line -------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch):
    from typer.testing import CliRunner

    from tdph_workflows.cli import app

    monkeypatch.setenv("TDPH_TORCH_THREADS", "1")  # `run` sets it otherwise, for the whole process
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_cli_missing_file(cli):
    assert not Path("/nonexistent.cif").exists()
    result = cli("run", "/nonexistent.cif")
    assert result.exit_code == 2, result.output
    assert "error" in result.output
    assert "/nonexistent.cif: file not found" in result.output
    assert "Traceback" not in result.output


def test_cli_unreadable_file(cli, tmp_path):
    bad = tmp_path / "garbage.cif"
    bad.write_text("garbage\n")
    result = cli("run", str(bad))
    assert result.exit_code == 2, result.output
    assert "garbage.cif: not a readable structure" in result.output


def test_cli_corrupt_mdr_tarball(cli, tmp_path):
    bad = tmp_path / "materials-id-1-x-pm-3m-221.tar.lzma"
    bad.write_bytes(os.urandom(1024))
    result = cli("run", str(bad))
    assert result.exit_code == 2, result.output
    assert "mp-1: corrupt or unreadable MDR entry" in result.output


def test_calculators_module_exports_error_types():
    assert issubclass(potentials.ModelError, RuntimeError)
    assert issubclass(potentials.CalculatorError, RuntimeError)
    assert issubclass(InputError, ValueError)


def test_non_finite_coordinates_are_refused_before_any_c_library(tmp_path):
    from tdph_workflows.engine import run_temperature_phonons

    cu = Structure(Lattice.cubic(3.6), ["Cu", "Cu"], [[0, 0, 0], [0.5, 0.5, 0.0]])
    cu.replace(1, "Cu", [np.nan, 0.5, 0.0])
    with pytest.raises(InputError, match=r"Cu-nan: non-finite coordinates .* site\(s\) 1"):
        run_temperature_phonons(cu, "emt", [300.0], material_id="Cu-nan")
    ph = to_phonopy_atoms(Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]]))
    ph.cell = np.array([[3.6, 0, 0], [0, np.inf, 0], [0, 0, 3.6]])
    with pytest.raises(InputError, match="lattice has non-finite"):
        to_phonopy_atoms(ph, "box")


def test_db_stop_never_signals_a_process_that_is_not_the_server(tmp_path):
    import subprocess
    import sys

    from tdph_workflows.campaign.database import EmbeddedDatabase

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        db = EmbeddedDatabase(tmp_path, 29999)
        tmp_path.mkdir(exist_ok=True)
        db.pid_file.write_text(f"{bystander.pid} 29999\n")  # a stale pid file naming a reused pid
        assert db.status()["pid"] is None
        db.stop(timeout=2)
        assert bystander.poll() is None  # still alive
    finally:
        bystander.kill()


@pytest.mark.parametrize(("args", "message"), [
    (["run", "Al", "--calculator", "emt", "--max-samples", "0"], "--max-samples must be at least 4"),
    (["campaign", "submit", "x.cif", "--limit", "0"], "--limit must be at least 1"),
    (["campaign", "submit", "x.cif", "--limit", "-2"], "--limit must be at least 1"),
    (["campaign", "submit", "x.cif", "--chunk-size", "0"], "--chunk-size must be at least 1"),
])
def test_counts_below_one_are_refused_by_name(args, message):
    from typer.testing import CliRunner

    from tdph_workflows.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output


@pytest.mark.data
def test_mdr_entry_with_a_nan_dft_force_is_refused_by_name(mdr_dir, tmp_path):
    src = mdr_dir / "curated" / "mp-22862_NaCl"
    entry = tmp_path / "mp-22862_NaCl"
    entry.mkdir()
    for name in ("BORN", "POSCAR-unitcell", "phonopy.conf"):
        shutil.copy(src / name, entry / name)
    lines = (src / "FORCE_SETS").read_text().splitlines()
    lines[5] = "  nan    0.0000000000    0.0000000000"  # the first force of the first displacement
    (entry / "FORCE_SETS").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"^mp-22862: the entry's DFT forces contain NaN"):
        load_mdr_entry(entry)
