"""A stand-in VASP executable: ``python -m tdph_workflows.testing.fake_vasp`` in a run directory.

Reads INCAR / POSCAR (and KPOINTS if any), evaluates energies, forces and
stresses with an ASE calculator instead of DFT, and writes the outputs VASP
would (vasprun.xml, OUTCAR, OSZICAR, CONTCAR, stdout) in a form that pymatgen's
``Vasprun`` / ``Outcar`` / ``Oszicar``, custodian's handlers and validators, and
emmet's ``TaskDoc.from_directory`` parse. It lets the atomate2 + custodian path
run for real, without VASP or POTCARs, in tests.

* ``NSW = 0`` or ``IBRION = -1``: single point.
* ``IBRION`` 1/2/3 with ``NSW > 0``: ASE BFGS, ions only (``ISIF`` < 3) or ions and
  cell (``ISIF = 3``, ``FrechetCellFilter``), to ``|EDIFFG|`` eV/Å when EDIFFG < 0
  (0.02 eV/Å otherwise), at most NSW ionic steps (more means unconverged, as in VASP).

Environment:

``TDPH_FAKE_VASP_CALCULATOR``
    ``emt`` for ASE's EMT (Al, Cu, Ag, Au, Ni, Pd, Pt, H, C, N, O); anything else
    goes to :func:`tdph_workflows.potentials.resolve_calculator` (empty: the
    project's default matgl model).
``TDPH_FAKE_VASP_FAIL``
    a key of custodian's ``VaspErrorHandler.error_msgs`` (e.g. ``zbrent``): the first
    run in a directory stops after one ionic step, prints that VASP error message to
    stdout and OUTCAR and exits 1; reruns (marker file ``.fake_vasp_failed``) run clean.

``TDPH_FAKE_VASP_ENERGY_SHIFT``
    eV per atom added to every energy (forces unchanged): EMT energies sit near zero and
    turn positive for displaced supercells, which custodian's PositiveEnergyErrorHandler
    rightly rejects; a VASP total energy is negative.

Energies: VASP's ``e_fr_energy``, ``e_wo_entrp`` and ``e_0_energy`` all equal the
calculator's potential energy. Stress is written as VASP does: kBar, with
VASP's sign (positive = compressive), i.e. ``-stress_ase / GPa * 10``.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from itertools import groupby
from pathlib import Path
from xml.sax.saxutils import escape

# one BLAS thread unless told otherwise (set before numpy loads): the tiny 3x3 algebra of the
# cell filter otherwise spends its time in thread spin-up when cores are shared
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

FAIL_ENV = "TDPH_FAKE_VASP_FAIL"
CALC_ENV = "TDPH_FAKE_VASP_CALCULATOR"
SHIFT_ENV = "TDPH_FAKE_VASP_ENERGY_SHIFT"
FAIL_MARKER = ".fake_vasp_failed"
VERSION = "6.4.2"
EV_A3_TO_KBAR = 1602.1766208  # 1 eV/Å^3 in kBar

# VASP defaults for the parameters written to vasprun.xml when the INCAR leaves them out
_DEFAULTS = {
    "PREC": "normal", "ENCUT": 400.0, "NELM": 60, "NELMIN": 2, "EDIFF": 1e-4, "ISPIN": 1,
    "ISMEAR": 1, "SIGMA": 0.2, "ALGO": "Normal", "LREAL": False, "ADDGRID": False,
    "NSW": 0, "IBRION": -1, "ISIF": 2, "EDIFFG": 1e-3, "POTIM": 0.5,
    "ISYM": 2, "LORBIT": 0, "LWAVE": True, "LCHARG": True, "GGA": "--", "LDAU": False,
    "LASPH": False, "LHFCALC": False, "LUSE_VDW": False, "KSPACING": 0.5, "KGAMMA": True,
}


# --------------------------------------------------------------------------- inputs

def _calculator():
    spec = os.environ.get(CALC_ENV, "").strip()
    if spec.lower() == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    from tdph_workflows.potentials import resolve_calculator

    return resolve_calculator(spec or None)


def _potcar_titles(folder: Path, elements: list[str]) -> list[str]:
    """TITEL of each POTCAR (``PAW_PBE Cu_pv 06Sep2000``), from POTCAR or POTCAR.spec."""
    if (folder / "POTCAR").is_file():
        titles = re.findall(r"TITEL\s*=\s*(.+)", (folder / "POTCAR").read_text(errors="replace"))
        if len(titles) == len(elements):
            return [t.strip() for t in titles]
    if (folder / "POTCAR.spec").is_file():
        symbols = [s.strip() for s in (folder / "POTCAR.spec").read_text().splitlines() if s.strip()]
        if len(symbols) == len(elements):
            return [f"PAW_PBE {s}" for s in symbols]
    return [f"PAW_PBE {e}" for e in elements]


def _kmesh(structure, incar, kpoints) -> tuple[str, list[int]]:
    """(style, divisions): from KPOINTS if present, else from KSPACING like VASP does."""
    if kpoints is not None and kpoints.style.name in ("Gamma", "Monkhorst") and kpoints.kpts:
        return ("Gamma" if kpoints.style.name == "Gamma" else "Monkhorst-Pack"), [int(k) for k in kpoints.kpts[0]]
    kspacing = float(incar.get("KSPACING", _DEFAULTS["KSPACING"]))
    recip = structure.lattice.reciprocal_lattice.abc  # includes 2π, as VASP's formula needs
    div = [max(1, math.ceil(b / kspacing)) for b in recip]
    return ("Gamma" if incar.get("KGAMMA", True) else "Monkhorst-Pack"), div


# --------------------------------------------------------------------------- calculation

class Step:
    """One ionic step: structure, energy (eV), forces (eV/Å), VASP stress (kBar)."""

    def __init__(self, atoms, structure):
        from ase.calculators.calculator import PropertyNotImplementedError

        self.structure = structure
        self.energy = float(atoms.get_potential_energy()) + len(atoms) * float(os.environ.get(SHIFT_ENV) or 0.0)
        self.forces = np.asarray(atoms.get_forces(), dtype=float)
        try:
            self.stress = -np.asarray(atoms.get_stress(voigt=False), dtype=float) * EV_A3_TO_KBAR
        except PropertyNotImplementedError:  # calculators without stress
            self.stress = np.zeros((3, 3))


def _run(structure, incar, max_steps_override: int | None = None) -> tuple[list[Step], bool]:
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = _calculator()
    nsw = int(incar.get("NSW", 0))
    ibrion = int(incar.get("IBRION", -1 if nsw <= 0 else 0))

    def snapshot():
        return Step(atoms, AseAtomsAdaptor.get_structure(atoms))

    if nsw <= 0 or ibrion == -1:
        return [snapshot()], True
    if ibrion not in (1, 2, 3):
        raise SystemExit(f"fake_vasp: IBRION = {ibrion} is not supported (only -1, 1, 2, 3)")

    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    ediffg = float(incar.get("EDIFFG", _DEFAULTS["EDIFFG"]))
    fmax = abs(ediffg) if ediffg < 0 else 0.02
    isif = int(incar.get("ISIF", 2))
    target = FrechetCellFilter(atoms) if isif >= 3 else atoms
    opt = BFGS(target, logfile=None, maxstep=float(incar.get("POTIM", 0.5)) * 0.4)
    max_steps = nsw if max_steps_override is None else min(nsw, max_steps_override)
    steps: list[Step] = []
    converged = False
    # irun yields once before the first move and once after each; steps=max_steps-1 gives <= max_steps points
    for converged in opt.irun(fmax=fmax, steps=max_steps - 1):
        steps.append(snapshot())
        if len(steps) >= max_steps:
            break
    return steps, bool(converged)


# --------------------------------------------------------------------------- writers

def _fmt_bool(v: bool) -> str:
    return " T  " if v else " F  "


def _xml_param(name: str, value) -> str:
    if isinstance(value, bool):
        return f'<i type="logical" name="{name}">{_fmt_bool(value)}</i>'
    if isinstance(value, (int, np.integer)):
        return f'<i type="int" name="{name}">{int(value):6d}</i>'
    if isinstance(value, (float, np.floating)):
        return f'<i name="{name}">{float(value):16.8f}</i>'
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(x, bool) for x in value):
            return f'<v type="logical" name="{name}">{" ".join("T" if x else "F" for x in value)}</v>'
        if value and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in value):
            return f'<v type="int" name="{name}">{" ".join(f"{int(x):6d}" for x in value)}</v>'
        try:
            return f'<v name="{name}">{" ".join(f"{float(x):16.8f}" for x in value)}</v>'
        except (TypeError, ValueError):
            return f'<i type="string" name="{name}">{escape(" ".join(map(str, value)))}</i>'
    return f'<i type="string" name="{name}">{escape(str(value))}</i>'


def _varray(name: str | None, rows, fmt: str = "{:16.8f}", indent: str = "   ") -> list[str]:
    head = f'{indent}<varray name="{name}" >' if name else f"{indent}<varray>"
    out = [head]
    for row in rows:
        out.append(f"{indent} <v>" + " ".join(fmt.format(float(x)) for x in np.atleast_1d(row)) + " </v>")
    out.append(f"{indent}</varray>")
    return out


def _structure_xml(structure, name: str | None, indent: str = " ") -> list[str]:
    lat = structure.lattice
    attr = f' name="{name}"' if name else ""
    out = [f"{indent}<structure{attr} >", f"{indent} <crystal>"]
    out += _varray("basis", lat.matrix, indent=indent + "  ")
    out.append(f'{indent}  <i name="volume">{lat.volume:16.8f} </i>')
    out += _varray("rec_basis", lat.reciprocal_lattice_crystallographic.matrix, indent=indent + "  ")
    out.append(f"{indent} </crystal>")
    out += _varray("positions", structure.frac_coords, indent=indent + " ")
    out.append(f"{indent}</structure>")
    return out


def _sc_energies(energy: float, n: int) -> list[float]:
    """A geometrically converging SCF sequence ending exactly at ``energy``."""
    return [energy + (0.0 if i == n - 1 else 10.0 ** (1 - 2 * i) * (1 if i % 2 == 0 else -1)) for i in range(n)]


def _n_scf(params) -> int:
    return max(2, min(max(int(params["NELMIN"]), 5), int(params["NELM"]) - 1))


def _nbands(n_atoms: int) -> int:
    return max(8, 4 * n_atoms)


def _ir_kpoints(structure, kstyle: str, kdiv: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Irreducible k-points and weights of the mesh (spglib, time reversal), as VASP lists them."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    shift = tuple(1 if (kstyle != "Gamma" and d % 2 == 0) else 0 for d in kdiv)  # spglib: 1 = half-step shift
    try:
        mesh = SpacegroupAnalyzer(structure, symprec=1e-5).get_ir_reciprocal_mesh(tuple(kdiv), shift)
        kpts = np.array([k for k, _ in mesh], dtype=float)
        weights = np.array([w for _, w in mesh], dtype=float)
    except Exception:  # noqa: BLE001 (spglib failure on an odd cell: list the full mesh instead)
        grid = np.array(np.meshgrid(*[np.arange(d) for d in kdiv], indexing="ij")).reshape(3, -1).T
        kpts = (grid + 0.5 * np.array(shift)) / np.array(kdiv)
        kpts -= np.round(kpts)
        weights = np.ones(len(kpts))
    return kpts, weights / weights.sum()


def _eigen_and_dos_xml(n_kpts: int, ispin: int, nbands: int) -> list[str]:
    """Placeholder electronic structure: half the bands filled below a 2 eV gap, E-fermi 0 eV.

    There is no electronic structure behind the stand-in; this block exists because
    pymatgen's input sets read the band gap of a previous run (``prev_dir``) and
    need eigenvalues and a Fermi level to do so.
    """
    n_occ = nbands // 2
    bands = np.concatenate([np.linspace(-10.0, -1.0, n_occ), np.linspace(1.0, 10.0, nbands - n_occ)])
    occ = np.concatenate([np.ones(n_occ), np.zeros(nbands - n_occ)])
    rows = [f"       <r>{e:10.4f}{o:10.4f} </r>" for e, o in zip(bands, occ, strict=True)]
    L = ["  <eigenvalues>", "   <array>", '    <dimension dim="1">band</dimension>',
         '    <dimension dim="2">kpoint</dimension>', '    <dimension dim="3">spin</dimension>',
         "    <field>eigene</field>", "    <field>occ</field>", "    <set>"]
    for spin in range(ispin):
        L.append(f'     <set comment="spin {spin + 1}">')
        for k in range(n_kpts):
            L += [f'      <set comment="kpoint {k + 1}">', *rows, "      </set>"]
        L.append("     </set>")
    L += ["    </set>", "   </array>", "  </eigenvalues>", "  <dos>", '   <i name="efermi">      0.00000000 </i>',
          "   <total>", "    <array>", '     <dimension dim="1">gridpoints</dimension>',
          '     <dimension dim="2">spin</dimension>', "     <field>energy</field>", "     <field>total</field>",
          "     <field>integrated</field>", "     <set>"]
    grid = np.linspace(-12.0, 12.0, 25)
    for spin in range(ispin):
        L.append(f'      <set comment="spin {spin + 1}">')
        L += [f"       <r>{e:10.4f}{0.0:10.4f}{(n_occ / ispin if e > 0 else 0.0):10.4f} </r>" for e in grid]
        L.append("      </set>")
    L += ["     </set>", "    </array>", "   </total>", "  </dos>"]
    return L


def write_vasprun(path: Path, incar, params, structure0, steps, titles, kstyle, kdiv, final_structure) -> None:
    """Write a vasprun.xml of the ionic ``steps`` that pymatgen's ``Vasprun`` parses (dummy eigenvalues and DOS)."""
    # species blocks in POSCAR order, as VASP lists its types
    blocks = [(sym, len(list(group))) for sym, group in groupby(site.specie.symbol for site in structure0)]
    types = [sym for sym, _ in blocks]
    counts = [n for _, n in blocks]
    n_atoms = len(structure0)
    now = time.localtime()
    L = ['<?xml version="1.0" encoding="ISO-8859-1"?>', "<modeling>", " <generator>",
         '  <i name="program" type="string">vasp </i>',
         f'  <i name="version" type="string">{VERSION}  </i>',
         '  <i name="subversion" type="string">tdph fake_vasp (ASE calculator stand-in) </i>',
         '  <i name="platform" type="string">LinuxGNU </i>',
         f'  <i name="date" type="string">{time.strftime("%Y %m %d", now)} </i>',
         f'  <i name="time" type="string">{time.strftime("%H:%M:%S", now)} </i>',
         " </generator>", " <incar>"]
    L += [f"  {_xml_param(k, v)}" for k, v in incar.items()]
    L += [" </incar>", " <kpoints>", f'  <generation param="{kstyle}">',
          '   <v type="int" name="divisions">' + " ".join(f"{d:8d}" for d in kdiv) + " </v>",
          '   <v name="usershift">      0.00000000       0.00000000       0.00000000 </v>']
    for i in range(3):
        gv = np.zeros(3)
        gv[i] = 1.0 / kdiv[i]
        L.append(f'   <v name="genvec{i + 1}">' + " ".join(f"{x:16.8f}" for x in gv) + " </v>")
    shift = 0.0 if kstyle == "Gamma" else 0.5
    L.append('   <v name="shift">' + " ".join(f"{shift:16.8f}" for _ in range(3)) + " </v>")
    L.append("  </generation>")
    kpts, weights = _ir_kpoints(structure0, kstyle, kdiv)
    L += _varray("kpointlist", kpts, indent="  ")
    L += _varray("weights", weights, indent="  ")
    L += [" </kpoints>", " <parameters>", '  <separator name="general" >']
    L += [f"   {_xml_param(k, v)}" for k, v in params.items()]
    L += ["  </separator>", " </parameters>", " <atominfo>", f"  <atoms>{n_atoms:8d} </atoms>",
          f"  <types>{len(types):8d} </types>", '  <array name="atoms" >', '   <dimension dim="1">ion</dimension>',
          '   <field type="string">element</field>', '   <field type="int">atomtype</field>', "   <set>"]
    t = 0
    for site in structure0:
        if site.specie.symbol != types[t]:
            t += 1
        L.append(f"    <rc><c>{site.specie.symbol:2s}</c><c>{t + 1:4d}</c></rc>")
    L += ["   </set>", "  </array>", '  <array name="atomtypes" >', '   <dimension dim="1">type</dimension>',
          '   <field type="int">atomspertype</field>', '   <field type="string">element</field>',
          "   <field>mass</field>", "   <field>valence</field>",
          '   <field type="string">pseudopotential</field>', "   <set>"]
    from pymatgen.core import Element

    for sym, n, title in zip(types, counts, titles, strict=True):
        mass = float(Element(sym).atomic_mass)
        L.append(f"    <rc><c>{n:4d}</c><c>{sym:2s}</c><c>{mass:16.8f}</c><c>{0.0:16.8f}</c><c>  {escape(title)}</c></rc>")
    L += ["   </set>", "  </array>", " </atominfo>"]
    L += _structure_xml(structure0, "initialpos")
    n_sc = _n_scf(params)
    for step in steps:
        L.append(" <calculation>")
        for e in _sc_energies(step.energy, n_sc):
            L += ["  <scstep>", '   <time name="dav">    0.00    0.00</time>',
                  '   <time name="total">    0.00    0.00</time>', "   <energy>",
                  f'    <i name="e_fr_energy">{e:18.8f} </i>', f'    <i name="e_wo_entrp">{e:18.8f} </i>',
                  f'    <i name="e_0_energy">{e:18.8f} </i>', "   </energy>", "  </scstep>"]
        L += _structure_xml(step.structure, None, indent="  ")
        L += _varray("forces", step.forces, indent="  ")
        L += _varray("stress", step.stress, indent="  ")
        L += ["  <energy>", f'   <i name="e_fr_energy">{step.energy:18.8f} </i>',
              f'   <i name="e_wo_entrp">{step.energy:18.8f} </i>', f'   <i name="e_0_energy">{step.energy:18.8f} </i>',
              "  </energy>", '  <time name="totalsc">    0.00    0.00</time>']
        if step is steps[-1]:  # VASP writes eigenvalues and DOS for the last ionic step only
            L += _eigen_and_dos_xml(len(kpts), int(params["ISPIN"]), _nbands(len(structure0)))
        L.append(" </calculation>")
    L += _structure_xml(final_structure, "finalpos")
    L.append("</modeling>")
    path.write_text("\n".join(L) + "\n")


def write_outcar(path: Path, params, structure0, steps, elapsed: float, error: str | None) -> None:
    """Write an OUTCAR with positions, forces and energies per ionic step; timing block, or ``error`` instead."""
    n_atoms = len(structure0)
    nbands = _nbands(n_atoms)
    L = [f" vasp.{VERSION} tdph fake_vasp (ASE calculator stand-in)", " executed on             LinuxGNU date "
         + time.strftime("%Y.%m.%d  %H:%M:%S"), " running on    1 total cores", " distrk:  each k-point on    1 cores",
         "", " POSCAR = " + structure0.formula, "",
         f"   ENCUT  = {float(params['ENCUT']):8.1f} eV", f"   ISPIN  =      {int(params['ISPIN'])}",
         f"   NSW    =    {int(params['NSW'])}", f"   IBRION =     {int(params['IBRION'])}",
         f"   ISIF   =      {int(params['ISIF'])}", f"   EDIFF  = {float(params['EDIFF']):.1E}",
         f"   EDIFFG = {float(params['EDIFFG']):.1E}", "",
         f"   number of dos      NEDOS =    301   number of ions     NIONS = {n_atoms:6d}",
         f"   number of bands    NBANDS= {nbands:6d}", f"   total plane-waves  NPLWV = {1000 * n_atoms:6d}", ""]
    for i, step in enumerate(steps, 1):
        L += [f"--------------------------------------- Iteration {i:6d}(   1)  ---------------------------------------",
              "", " POSITION                                       TOTAL-FORCE (eV/Angst)",
              " -----------------------------------------------------------------------------------"]
        for site, f in zip(step.structure, step.forces, strict=True):
            x, y, z = site.coords
            L.append(f"{x:13.5f}{y:13.5f}{z:13.5f}   {f[0]:14.6f}{f[1]:14.6f}{f[2]:14.6f}")
        drift = step.forces.sum(axis=0)
        L += [" -----------------------------------------------------------------------------------",
              f"    total drift:                         {drift[0]:14.6f}{drift[1]:14.6f}{drift[2]:14.6f}", "",
              "  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)", "  ---------------------------------------------------",
              f"  free  energy   TOTEN  = {step.energy:18.8f} eV", "",
              f"  energy  without entropy= {step.energy:18.8f}  energy(sigma->0) = {step.energy:18.8f}", ""]
    L += [" E-fermi :   0.0000     XC(G=0):  -1.0000     alpha+bet : -1.0000", ""]
    if error:
        L += ["", f" {error}", ""]
    else:
        L += [" General timing and accounting informations for this job:",
              " ========================================================", "",
              f"                  Total CPU time used (sec):{elapsed:16.3f}",
              f"                            User time (sec):{elapsed:16.3f}",
              f"                          System time (sec):{0.0:16.3f}",
              f"                         Elapsed time (sec):{elapsed:16.3f}", "",
              f"                   Maximum memory used (kb):{100000.0:16.0f}.",
              "                   Average memory used (kb):          N/A", ""]
    path.write_text("\n".join(L) + "\n")


def write_oszicar_and_stdout(folder: Path, params, steps, error: str | None, converged: bool) -> None:
    """Write OSZICAR to ``folder`` and print VASP-like stdout (with ``error`` or the relaxation verdict)."""
    n_sc = _n_scf(params)
    osz = []
    out = [" running on    1 total cores", f" vasp.{VERSION} tdph fake_vasp (ASE calculator stand-in)",
           " POSCAR found type information on POSCAR", " POSCAR, INCAR and KPOINTS ok, starting setup"]
    prev = 0.0
    for i, step in enumerate(steps, 1):
        lines = ["       N       E                     dE             d eps       ncg     rms          rms(c)"]
        last = 0.0
        for j, e in enumerate(_sc_energies(step.energy, n_sc), 1):
            lines.append(f"DAV: {j:3d}    {e: .12E}   {e - last: .5E}   {-abs(e - last) * 0.1: .5E}  {16:5d}   0.100E-01")
            last = e
        de = step.energy - prev
        ionic = f"{i:4d} F= {step.energy: .8E} E0= {step.energy: .8E}  d E ={de: .6E}"
        if int(params["ISPIN"]) == 2:
            ionic += "  mag=     0.0000"
        lines.append(ionic)
        osz += lines
        out += lines
        prev = step.energy
    (folder / "OSZICAR").write_text("\n".join(osz) + "\n")
    if error:
        out += ["", f" {error}", ""]
    elif int(params["NSW"]) > 0 and int(params["IBRION"]) in (1, 2, 3):
        out.append(" reached required accuracy - stopping structural energy minimisation" if converged else "")
    out.append(" writing wavefunctions")
    print("\n".join(out), flush=True)


# --------------------------------------------------------------------------- main

OUTPUT_FILES = ("OSZICAR", "OUTCAR", "vasprun.xml", "CONTCAR")


def main(folder: str | os.PathLike = ".") -> int:
    """Run the stand-in in ``folder``; exit status 0, 1 (injected error) or 2 (unknown error key)."""
    t0 = time.time()
    folder = Path(folder)
    # VASP truncates its outputs on start-up; stale ones would mislead custodian's monitors
    # (e.g. PositiveEnergyErrorHandler reading the previous run's OSZICAR) while we import.
    for name in OUTPUT_FILES:
        (folder / name).unlink(missing_ok=True)

    from pymatgen.io.vasp import Incar, Kpoints, Poscar

    incar = Incar.from_file(folder / "INCAR")
    poscar = Poscar.from_file(folder / "POSCAR", check_for_potcar=False)
    structure0 = poscar.structure
    kpoints = Kpoints.from_file(folder / "KPOINTS") if (folder / "KPOINTS").is_file() else None

    params = {**_DEFAULTS, **{k: v for k, v in incar.items()}}
    if int(params["NSW"]) > 0 and "IBRION" not in incar:
        params["IBRION"] = 0
    if "NSW" not in incar or int(params["NSW"]) <= 0:
        params["IBRION"] = int(incar.get("IBRION", -1))
    params["ENMAX"] = float(params.pop("ENCUT"))
    params_xml = {**params}
    params["ENCUT"] = params["ENMAX"]
    if isinstance(params_xml.get("MAGMOM"), list) and params_xml["MAGMOM"] and isinstance(params_xml["MAGMOM"][0], list):
        params_xml.pop("MAGMOM")  # non-collinear moments; not needed here

    fail = os.environ.get(FAIL_ENV, "").strip()
    error = None
    if fail and not (folder / FAIL_MARKER).exists():
        from custodian.vasp.handlers import VaspErrorHandler  # slow import: only when injecting

        msgs = VaspErrorHandler.error_msgs.get(fail)
        if not msgs:
            print(f"fake_vasp: unknown {FAIL_ENV}={fail!r}; known: {sorted(VaspErrorHandler.error_msgs)}", file=sys.stderr)
            return 2
        error = msgs[0]
        (folder / FAIL_MARKER).write_text(fail + "\n")

    steps, converged = _run(structure0, incar, max_steps_override=1 if error else None)
    final = steps[-1].structure
    if poscar.selective_dynamics is not None:  # keep flags in CONTCAR
        final.add_site_property("selective_dynamics", poscar.selective_dynamics)
    titles = _potcar_titles(folder, _types(structure0))
    kstyle, kdiv = _kmesh(structure0, incar, kpoints)

    Poscar(final).write_file(folder / "CONTCAR")
    write_oszicar_and_stdout(folder, params, steps, error, converged)
    write_outcar(folder / "OUTCAR", params, structure0, steps, time.time() - t0, error)
    write_vasprun(folder / "vasprun.xml", incar, params_xml, structure0, steps, titles, kstyle, kdiv, final)
    return 1 if error else 0


def _types(structure) -> list[str]:
    return [sym for sym, _ in groupby(site.specie.symbol for site in structure)]


if __name__ == "__main__":
    sys.exit(main())
