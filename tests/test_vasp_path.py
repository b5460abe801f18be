"""The VASP branch of DFT validation, run for real without VASP.

Inputs are checked against the paper's settings; the atomate2 makers run through
custodian with ``tdph_workflows.testing.fake_vasp`` (EMT) as the VASP
executable, and what atomate2/emmet parse back must equal EMT evaluated directly.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("atomate2")
pytest.importorskip("custodian")

from ase.calculators.emt import EMT
from jobflow import Flow, run_locally
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.vasp import Incar, Oszicar, Outcar, Poscar, Vasprun

from tdph_workflows.testing import fake_vasp
from tdph_workflows.validation.vasp import (
    forces_from_vasp_dir,
    paper_relax_maker,
    paper_static_maker,
    vasp_force_flow,
    write_paper_inputs,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:No POTCAR file with matching TITEL:UserWarning",  # no POTCAR library here, by design
    "ignore:cd is deprecated:FutureWarning",  # jobflow's run_locally
)

FAKE_CMD = f"{sys.executable} -m tdph_workflows.testing.fake_vasp"
# poll fast so a test run is not dominated by custodian's 10 s default polling interval
FAST_CUSTODIAN = {"polling_time_step": 0.1, "monitor_freq": 20}
EV_A3_TO_KBAR = 1602.1766208


def nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def srtio3() -> Structure:
    return Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def cu(a: float = 3.6) -> Structure:
    return Structure(Lattice.cubic(a), ["Cu"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def emt(structure: Structure) -> tuple[float, np.ndarray, np.ndarray]:
    """Energy, forces and VASP-convention stress (kBar, + = compressive) straight from EMT."""
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = EMT()
    stress = -atoms.get_stress(voigt=False) * EV_A3_TO_KBAR
    return atoms.get_potential_energy(), atoms.get_forces(), stress


def local_dir(dir_name: str) -> Path:
    return Path(dir_name.split(":", 1)[-1])  # emmet stores "host:/path"


@pytest.fixture
def emt_vasp(monkeypatch):
    monkeypatch.setenv("TDPH_FAKE_VASP_CALCULATOR", "emt")
    monkeypatch.delenv("TDPH_FAKE_VASP_FAIL", raising=False)


# ------------------------------------------------------------------------ inputs

@pytest.mark.parametrize(("structure", "symbols"), [(nacl(), ["Na_pv", "Cl"]), (srtio3(), ["Sr_sv", "Ti_sv", "O"])],
                         ids=["NaCl", "SrTiO3"])
@pytest.mark.parametrize("kind", ["relax", "static"])
def test_paper_inputs(tmp_path, structure, symbols, kind):
    folder = write_paper_inputs(structure, tmp_path / kind, kind=kind)
    assert sorted(p.name for p in folder.iterdir()) == ["INCAR", "POSCAR", "POTCAR.spec"]  # no KPOINTS, no POTCAR

    incar = Incar.from_file(folder / "INCAR")
    assert incar["GGA"].upper() == "PS"
    assert incar["ENCUT"] == 520
    assert incar["EDIFF"] == pytest.approx(1e-8)
    assert incar["KSPACING"] == pytest.approx(0.2)
    assert incar["KGAMMA"] is True
    assert incar["ISMEAR"] == 0 and incar["SIGMA"] == pytest.approx(0.01)
    assert incar["PREC"].lower() == "accurate"
    assert incar["LREAL"] is False and incar["ADDGRID"] is True
    assert incar["LWAVE"] is False and incar["LCHARG"] is False
    for tag in ("LORBIT", "LVTOT", "LAECHG"):
        assert tag not in incar
    if kind == "relax":
        assert incar["EDIFFG"] == pytest.approx(-1e-3)
        assert (incar["IBRION"], incar["ISIF"]) == (2, 3) and incar["NSW"] > 0
    else:
        assert incar["NSW"] == 0 and incar["IBRION"] == -1

    poscar = Poscar.from_file(folder / "POSCAR", check_for_potcar=False).structure
    assert poscar.matches(structure, ltol=1e-6, stol=1e-6, angle_tol=1e-4, primitive_cell=False, scale=False)
    assert np.allclose(poscar.lattice.matrix, structure.lattice.matrix)
    assert np.allclose(poscar.frac_coords, structure.frac_coords)

    assert (folder / "POTCAR.spec").read_text().split() == symbols
    assert [s.symbol for s in poscar.elements] == [s.split("_")[0] for s in symbols]


def test_makers_wire_handlers_and_walltime():
    from custodian.vasp.handlers import (
        FrozenJobErrorHandler,
        MeshSymmetryErrorHandler,
        NonConvergingErrorHandler,
        PositiveEnergyErrorHandler,
        PotimErrorHandler,
        StdErrHandler,
        UnconvergedErrorHandler,
        VaspErrorHandler,
    )

    static = paper_static_maker(wall_time_s=7200)
    kwargs = static.run_vasp_kwargs
    assert kwargs["wall_time"] == 7200  # atomate2's run_vasp appends WalltimeHandler(wall_time=7200)
    assert [type(h) for h in kwargs["handlers"]] == [
        VaspErrorHandler, MeshSymmetryErrorHandler, UnconvergedErrorHandler, NonConvergingErrorHandler,
        PotimErrorHandler, PositiveEnergyErrorHandler, FrozenJobErrorHandler, StdErrHandler,
    ]
    assert "wall_time" not in paper_relax_maker().run_vasp_kwargs
    double = paper_relax_maker(3600, double=True)
    assert double.relax_maker1.run_vasp_kwargs["wall_time"] == 3600
    assert double.relax_maker2.input_set_generator.user_incar_settings["EDIFFG"] == -1e-3
    assert static.input_set_generator.user_incar_settings["KSPACING"] == 0.2


# ------------------------------------------------------------------------ stand-in executable

@pytest.mark.parametrize("calculator", ["emt", "ase.calculators.emt:EMT"])  # 2nd: resolve_calculator's module:factory
def test_fake_vasp_outputs_parse(tmp_path, monkeypatch, calculator):
    monkeypatch.setenv("TDPH_FAKE_VASP_CALCULATOR", calculator)
    monkeypatch.delenv("TDPH_FAKE_VASP_FAIL", raising=False)
    structure = cu(3.59)
    structure.translate_sites([0], [0.01, 0, 0], frac_coords=False)
    folder = write_paper_inputs(structure, tmp_path, kind="static")
    assert fake_vasp.main(folder) == 0

    energy, forces, stress = emt(structure)
    vr = Vasprun(folder / "vasprun.xml", parse_potcar_file=False)
    assert vr.converged and len(vr.ionic_steps) == 1
    assert vr.final_energy == pytest.approx(energy, abs=1e-7)
    assert np.allclose(vr.ionic_steps[-1]["forces"], forces, atol=1e-7)
    assert np.allclose(vr.ionic_steps[-1]["stress"], stress, atol=1e-6)
    assert vr.parameters["GGA"].upper() == "PS" and vr.parameters["ENMAX"] == 520
    assert vr.kpoints.style.name == "Gamma"
    assert tuple(vr.kpoints.kpts[0]) == tuple(int(np.ceil(b / 0.2)) for b in structure.lattice.reciprocal_lattice.abc)
    outcar = Outcar(folder / "OUTCAR")
    assert outcar.final_energy == pytest.approx(energy, abs=1e-7)
    assert outcar.run_stats["Elapsed time (sec)"] is not None and outcar.drift
    assert Oszicar(folder / "OSZICAR").final_energy == pytest.approx(energy, abs=1e-7)
    assert Poscar.from_file(folder / "CONTCAR").structure == vr.final_structure or np.allclose(
        Poscar.from_file(folder / "CONTCAR").structure.frac_coords, structure.frac_coords)
    e, f, s = forces_from_vasp_dir(folder)
    assert e == pytest.approx(energy, abs=1e-7) and np.allclose(f, forces, atol=1e-7) and np.allclose(s, stress, atol=1e-6)


# ------------------------------------------------------------------------ atomate2 + custodian, for real

def test_relax_then_static_through_custodian(tmp_path, emt_vasp):
    start = cu(3.62)
    start.translate_sites([0], [0.03, 0.0, 0.0], frac_coords=False)
    # DoubleRelaxMaker: the second relaxation starts from the first's directory (prev_dir),
    # which makes pymatgen's input set read the previous vasprun.xml (band gap, structure)
    relax = paper_relax_maker(wall_time_s=3600, double=True, vasp_cmd=FAKE_CMD, potcar_spec=True,
                              custodian_kwargs=FAST_CUSTODIAN).make(start)
    static = paper_static_maker(wall_time_s=3600, vasp_cmd=FAKE_CMD, potcar_spec=True,
                                custodian_kwargs=FAST_CUSTODIAN).make(relax.output.structure)
    responses = run_locally(Flow([relax, static]), root_dir=tmp_path, create_folders=True, ensure_success=True,
                            log=False)

    first, relaxed = (responses[j.uuid][1].output for j in relax.jobs)
    for td in (first, relaxed):
        assert td.state == "successful" and td.calc_type == "PBEsol Structure Optimization"
        assert td.custodian[0].corrections == []
        assert td.input.incar["EDIFFG"] == -1e-3 and td.input.incar["ISIF"] == 3
    assert len(first.calcs_reversed[0].output.ionic_steps) > 1  # it did relax
    e_relax, f_relax, s_relax = emt(relaxed.output.structure)
    assert np.abs(f_relax).max() < 1e-3  # EDIFFG = -1e-3 honoured
    assert np.abs(s_relax).max() < 1.0  # ISIF 3: the cell relaxed too (kBar)
    assert relaxed.output.energy == pytest.approx(e_relax, abs=1e-6)
    assert relaxed.output.structure.lattice.a < 3.62  # EMT Cu shrinks from 3.62 Å

    td = responses[static.uuid][1].output
    assert td.state == "successful" and td.calc_type == "PBEsol Static"
    energy, forces, stress = emt(td.input.structure)
    assert td.output.energy == pytest.approx(energy, abs=1e-6)
    assert np.allclose(td.output.forces, forces, atol=1e-6)
    assert np.allclose(td.output.stress, stress, atol=1e-4)
    assert td.input.incar["KSPACING"] == 0.2 and td.input.incar["NSW"] == 0
    assert td.input.kpoints.style.name == "Gamma"  # as VASP reports a KSPACING + KGAMMA mesh
    assert not list(local_dir(td.dir_name).glob("KPOINTS*"))  # atomate2 wrote no KPOINTS file
    e, f, _ = forces_from_vasp_dir(local_dir(td.dir_name))  # atomate2 left vasprun.xml.gz
    assert e == pytest.approx(td.output.energy, abs=1e-8) and np.allclose(f, td.output.forces, atol=1e-8)


def test_zbrent_is_corrected_and_rerun(tmp_path, emt_vasp, monkeypatch):
    monkeypatch.setenv("TDPH_FAKE_VASP_FAIL", "zbrent")
    start = cu(3.6)
    start.translate_sites([1], [0.0, 0.02, 0.0], frac_coords=False)
    relax = paper_relax_maker(vasp_cmd=FAKE_CMD, potcar_spec=True, custodian_kwargs=FAST_CUSTODIAN).make(start)
    responses = run_locally(relax, root_dir=tmp_path, create_folders=True, ensure_success=True, log=False)
    td = responses[relax.uuid][1].output

    corrections = td.custodian[0].corrections
    assert len(corrections) == 1, corrections
    assert corrections[0]["errors"] == ["zbrent"]
    handler = corrections[0]["handler"]
    assert (handler["@class"] if isinstance(handler, dict) else type(handler).__name__) == "VaspErrorHandler"
    actions = corrections[0]["actions"]
    assert {"dict": "INCAR", "action": {"_set": {"NELMIN": 8}}} in actions  # EDIFF is already 1e-8
    assert {"file": "CONTCAR", "action": {"_file_copy": {"dest": "POSCAR"}}} in actions

    folder = local_dir(td.dir_name)
    with gzip.open(folder / "custodian.json.gz", "rt") as fh:
        log = json.load(fh)
    assert [c["errors"] for c in log[0]["corrections"]] == [["zbrent"]]
    assert (folder / "error.1.tar.gz").exists()  # custodian kept the failed run
    assert Incar.from_file(folder / "INCAR.gz")["NELMIN"] == 8  # the rerun used the corrected INCAR
    assert td.state == "successful"
    energy, forces, _ = emt(td.output.structure)
    assert td.output.energy == pytest.approx(energy, abs=1e-6)
    assert np.abs(forces).max() < 1e-3


def test_force_flow_collects_arrays(tmp_path, emt_vasp):
    supercell = cu(3.59) * (2, 1, 1)
    displaced = []
    for index, direction in ((0, [0.01, 0, 0]), (3, [0, 0, -0.01])):
        s = supercell.copy()
        s.translate_sites([index], direction, frac_coords=False)
        displaced.append(s)
    maker = paper_static_maker(vasp_cmd=FAKE_CMD, potcar_spec=True, custodian_kwargs=FAST_CUSTODIAN)
    flow = vasp_force_flow(displaced, static_maker=maker)
    responses = run_locally(flow, root_dir=tmp_path, create_folders=True, ensure_success=True, log=False)

    collected = responses[flow.jobs[-1].uuid][1].output
    assert set(collected) == {"energies", "forces", "stresses", "dir_names"}
    assert all(isinstance(collected[k], list) for k in collected)
    forces = np.array(collected["forces"])
    assert forces.shape == (2, len(supercell), 3)
    for i, structure in enumerate(displaced):
        energy, f, stress = emt(structure)
        assert collected["energies"][i] == pytest.approx(energy, abs=1e-6)
        assert np.allclose(forces[i], f, atol=1e-6)
        assert np.allclose(collected["stresses"][i], stress, atol=1e-4)
        assert local_dir(collected["dir_names"][i]).is_dir()


@pytest.mark.model
def test_fake_vasp_with_m3gnet(tmp_path, monkeypatch, m3gnet):
    """Default calculator (empty TDPH_FAKE_VASP_CALCULATOR): the project's matgl model via resolve_calculator."""
    monkeypatch.setenv("TDPH_FAKE_VASP_CALCULATOR", "")
    monkeypatch.delenv("TDPH_FAKE_VASP_FAIL", raising=False)
    structure = nacl()
    structure.translate_sites([0], [0.02, 0.0, 0.0], frac_coords=False)
    folder = write_paper_inputs(structure, tmp_path, kind="static")
    assert fake_vasp.main(folder) == 0
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = m3gnet
    energy, forces, stress = forces_from_vasp_dir(folder)
    assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-5)
    assert np.allclose(forces, atoms.get_forces(), atol=1e-5)
    assert np.allclose(stress, -atoms.get_stress(voigt=False) * EV_A3_TO_KBAR, atol=1e-2)
