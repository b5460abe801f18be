"""MDR / phonondb readers and structure helpers on real data.

Every MDR entry form (raw ``.tar.lzma`` tarball, extracted folder with
``phonopy.conf``/``POSCAR-unitcell``/``FORCE_SETS``, ``phonopy_params.yaml.xz``)
must give the same phonopy setup and the same DFT force constants.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import require
from phonopy.structure.atoms import PhonopyAtoms
from pymatgen.core import Lattice, Structure

from tdph_workflows.io.mdr import MDREntry, is_mdr_entry, load_mdr_entry
from tdph_workflows.io.structures import InputError, default_supercell_matrix, to_phonopy_atoms

# (mp id, curated folder, raw tarball): cubic without PRIMITIVE_AXIS, fcc with
# fractional PRIMITIVE_AXIS, hexagonal wurtzite.
COMPOUNDS = [
    ("mp-5229", "mp-5229_SrTiO3", "materials-id-5229-srtio3-pm-3m-221.tar.lzma"),
    ("mp-22862", "mp-22862_NaCl", "materials-id-22862-nacl-fm-3m-225.tar.lzma"),
    ("mp-2133", "mp-2133_ZnO", "materials-id-2133-zno-p6-3mc-186.tar.lzma"),
]
LINBO3_TARBALL = "materials-id-3731-linbo3-r3c-161.tar.lzma"


def _need(path: Path) -> Path:
    """conftest.require for files below the shared data folder."""
    return require(path, path.name)


@pytest.fixture(scope="module")
def linbo3_sample(mdr_dir) -> Path:
    return _need(mdr_dir.parent / "mdr_format_sample" / "mp-3731_LiNbO3_phonopy_params.yaml.xz")


def _conf_only_copy(folder: Path, dest: Path) -> Path:
    """Copy of a curated folder without phonopy_params.yaml.xz, so the reader must
    use phonopy.conf + POSCAR-unitcell + FORCE_SETS (+ BORN)."""
    out = dest / folder.name
    out.mkdir()
    for f in folder.iterdir():
        if not f.name.startswith("phonopy_params"):
            shutil.copy(f, out / f.name)
    return out


def _assert_same_entry(a: MDREntry, b: MDREntry, fc_tol: float = 1e-8, same_id: bool = True) -> None:
    if same_id:
        assert a.material_id == b.material_id
    np.testing.assert_array_equal(a.supercell_matrix, b.supercell_matrix)
    np.testing.assert_allclose(a.primitive_matrix, b.primitive_matrix, atol=1e-10)
    assert list(a.unitcell.symbols) == list(b.unitcell.symbols)
    np.testing.assert_allclose(a.unitcell.cell, b.unitcell.cell, atol=1e-8)
    np.testing.assert_allclose(a.unitcell.scaled_positions, b.unitcell.scaled_positions, atol=1e-8)
    assert (a.phonon.nac_params is None) == (b.phonon.nac_params is None)
    if a.phonon.nac_params is not None:
        np.testing.assert_allclose(a.phonon.nac_params["born"], b.phonon.nac_params["born"], atol=1e-6)
        np.testing.assert_allclose(a.phonon.nac_params["dielectric"], b.phonon.nac_params["dielectric"], atol=1e-6)
    fa, fb = a.dft_force_constants(), b.dft_force_constants()
    assert fa.shape == fb.shape
    assert np.abs(fa).max() > 1.0  # real force constants, not zeros
    np.testing.assert_allclose(fa, fb, rtol=0, atol=fc_tol)


# --- each form loads ----------------------------------------------------------


@pytest.mark.data
@pytest.mark.parametrize(("mp_id", "folder", "tarball"), COMPOUNDS)
def test_every_form_loads_and_agrees(mdr_dir, tmp_path, mp_id, folder, tarball):
    curated = _need(mdr_dir / "curated" / folder)
    params = _need(curated / "phonopy_params.yaml.xz")
    raw = _need(mdr_dir / "raw_lt20atoms" / tarball)
    conf_only = _conf_only_copy(curated, tmp_path)

    forms = {
        "curated folder": curated,
        "folder with phonopy.conf only": conf_only,
        "phonopy_params.yaml.xz": params,
        "raw tarball": raw,
    }
    entries = {}
    for name, path in forms.items():
        assert is_mdr_entry(path), name
        entry = load_mdr_entry(path)
        assert isinstance(entry, MDREntry)
        assert entry.material_id == mp_id, name
        assert entry.source == str(path)
        entries[name] = entry
    ref = entries["phonopy_params.yaml.xz"]
    for entry in entries.values():
        if entry is not ref:
            _assert_same_entry(entry, ref)


@pytest.mark.data
def test_srtio3_folder_vs_yaml_force_constants(mdr_dir, tmp_path):
    """SrTiO3 mp-5229: FORCE_SETS route and phonopy_params.yaml.xz route give the
    same DFT force constants (to 1e-8 eV/A^2) and the phonondb 3x3x3 supercell."""
    curated = _need(mdr_dir / "curated" / "mp-5229_SrTiO3")
    by_folder = load_mdr_entry(_conf_only_copy(curated, tmp_path))
    by_yaml = load_mdr_entry(curated / "phonopy_params.yaml.xz")
    np.testing.assert_array_equal(by_folder.supercell_matrix, 3 * np.eye(3, dtype=int))
    np.testing.assert_array_equal(by_folder.supercell_matrix, by_yaml.supercell_matrix)
    np.testing.assert_allclose(by_folder.primitive_matrix, np.eye(3), atol=1e-12)
    assert sorted(by_folder.unitcell.symbols) == ["O", "O", "O", "Sr", "Ti"]
    assert by_folder.phonon.nac_params is not None  # BORN is read
    fc_folder = by_folder.dft_force_constants()
    assert fc_folder.shape == (135, 135, 3, 3)
    np.testing.assert_allclose(fc_folder, by_yaml.dft_force_constants(), rtol=0, atol=1e-8)
    # acoustic sum rule after symmetrization
    assert np.abs(fc_folder.sum(axis=1)).max() < 1e-6


@pytest.mark.data
def test_linbo3_mdr_sample_matches_raw_tarball(mdr_dir, linbo3_sample):
    """The real MDR download (current format) equals the 2018 tarball of mp-3731."""
    raw = _need(mdr_dir / "raw_lt20atoms" / LINBO3_TARBALL)
    assert is_mdr_entry(linbo3_sample)
    sample = load_mdr_entry(linbo3_sample)
    assert sample.material_id == "mp-3731"
    assert len(sample.unitcell) == 30
    np.testing.assert_array_equal(sample.supercell_matrix, np.diag([2, 2, 1]))
    # rhombohedral primitive axes of the hexagonal setting
    np.testing.assert_allclose(
        sample.primitive_matrix,
        [[2 / 3, -1 / 3, -1 / 3], [1 / 3, 1 / 3, -2 / 3], [1 / 3, 1 / 3, 1 / 3]],
        atol=1e-9,
    )
    assert sample.phonon.nac_params is not None
    _assert_same_entry(load_mdr_entry(raw), sample)


@pytest.mark.data
def test_extracted_tarball_folder(mdr_dir, tmp_path):
    """A tarball unpacked by hand (``tar xf``) gives mp-<id>-20180417/; both that
    folder and the folder holding it are entries."""
    import tarfile

    raw = _need(mdr_dir / "raw_lt20atoms" / COMPOUNDS[0][2])
    with tarfile.open(raw) as tar:
        tar.extractall(tmp_path, filter="data")
    inner = tmp_path / "mp-5229-20180417"
    assert (inner / "phonopy.conf").exists()
    assert is_mdr_entry(inner)
    assert is_mdr_entry(tmp_path)
    inner_entry = load_mdr_entry(inner)
    assert inner_entry.material_id == "mp-5229"
    _assert_same_entry(inner_entry, load_mdr_entry(raw))
    _assert_same_entry(load_mdr_entry(tmp_path), inner_entry, same_id=False)


# --- material id and form recognition -----------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("materials-id-5229-srtio3-pm-3m-221.tar.lzma", "mp-5229"),
        ("materials-id-10009-gate-p6-3-mmc-194.tar.lzma", "mp-10009"),
        ("mp-3731_LiNbO3_phonopy_params.yaml.xz", "mp-3731"),
        ("mp-22862_NaCl", "mp-22862"),
        ("mp-5229-20180417", "mp-5229"),
    ],
)
def test_material_id_is_parsed(tmp_path, name, expected):
    # a missing entry still reports its id (parsed from the name alone)
    with pytest.raises(InputError, match=f"^{expected}: .*not found"):
        load_mdr_entry(tmp_path / name)


@pytest.mark.data
def test_material_id_ignores_unrelated_folders(mdr_dir, tmp_path):
    """The entry's own name wins over folders above it; ``tmp-2024`` is no mp id."""
    raw = _need(mdr_dir / "raw_lt20atoms" / COMPOUNDS[0][2])
    for folder in ("tmp-2024", "mp-1_runs"):
        link = tmp_path / folder / raw.name
        link.parent.mkdir()
        link.symlink_to(raw)
        assert load_mdr_entry(link).material_id == "mp-5229"
    # phonopy_params.yaml.xz takes the id of its folder
    curated = _need(mdr_dir / "curated" / "mp-5229_SrTiO3")
    assert load_mdr_entry(curated / "phonopy_params.yaml.xz").material_id == "mp-5229"


def test_is_mdr_entry_rejects_plain_structures(tmp_path):
    cif = tmp_path / "NaCl.cif"
    Structure.from_spacegroup(225, Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(str(cif))
    assert not is_mdr_entry(cif)
    assert not is_mdr_entry(tmp_path / "POSCAR")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not is_mdr_entry(empty)
    assert is_mdr_entry(tmp_path / "phonopy_params.yaml")
    assert is_mdr_entry(tmp_path / "mp-1_X_phonopy_params.yaml.xz")


# --- default supercell ---------------------------------------------------------


def _srtio3(a: float = 3.905) -> PhonopyAtoms:
    s = Structure.from_spacegroup(221, Lattice.cubic(a), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
    return to_phonopy_atoms(s)


def test_default_supercell_cubic_srtio3():
    atoms = _srtio3()
    assert len(atoms) == 5
    smat = default_supercell_matrix(atoms)
    np.testing.assert_array_equal(smat, 2 * np.eye(3, dtype=int))  # the paper's 40-atom cell
    assert smat.dtype.kind == "i"
    # a wider minimum width asks for more
    np.testing.assert_array_equal(default_supercell_matrix(atoms, min_width=8.0), 3 * np.eye(3, dtype=int))


@pytest.mark.parametrize("max_atoms", [39, 20, 10, 5, 1])
def test_default_supercell_respects_max_atoms(max_atoms):
    atoms = _srtio3()
    smat = default_supercell_matrix(atoms, max_atoms=max_atoms)
    assert np.count_nonzero(smat - np.diag(np.diag(smat))) == 0  # diagonal
    mult = np.diag(smat)
    assert (mult >= 1).all()
    n_atoms = int(np.prod(mult)) * len(atoms)
    assert n_atoms <= max(max_atoms, len(atoms))
    assert n_atoms < 40


def test_default_supercell_anisotropic_cell():
    s = Structure(Lattice.tetragonal(3.0, 12.0), ["Na"], [[0, 0, 0]])
    np.testing.assert_array_equal(np.diag(default_supercell_matrix(to_phonopy_atoms(s))), [3, 3, 1])


@pytest.mark.data
@pytest.mark.slow
def test_all_curated_folders_agree_with_their_yaml(mdr_dir, tmp_path):
    """All curated entries: phonopy.conf (DIM, PRIMITIVE_AXIS) + POSCAR-unitcell +
    FORCE_SETS + BORN give the setup stored in phonopy_params.yaml.xz."""
    folders = sorted(p for p in (mdr_dir / "curated").iterdir() if p.is_dir())
    assert len(folders) > 50
    mismatched = []
    for folder in folders:
        a = load_mdr_entry(_conf_only_copy(folder, tmp_path))
        b = load_mdr_entry(folder / "phonopy_params.yaml.xz")
        same = (
            a.material_id == b.material_id == folder.name.split("_")[0]
            and np.array_equal(a.supercell_matrix, b.supercell_matrix)
            and np.allclose(a.primitive_matrix, b.primitive_matrix, atol=1e-10)
            and np.allclose(a.unitcell.cell, b.unitcell.cell, atol=1e-8)
            and (a.phonon.nac_params is None) == (b.phonon.nac_params is None)
            and len(a.phonon.dataset["first_atoms"]) == len(b.phonon.dataset["first_atoms"])
        )
        if not same:
            mismatched.append(folder.name)
    assert not mismatched
