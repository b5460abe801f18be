"""The VASP branch of the DFT-validation flow: atomate2 makers set up as in the paper.

PBEsol (``GGA = PS``), ENCUT 520 eV, Γ-centred ``KSPACING`` 0.2 Å⁻¹ (no KPOINTS
file: pymatgen's input sets return no KPOINTS when KSPACING is set), EDIFF 1e-8,
EDIFFG -1e-3; POTCARs from atomate2's MP-derived PBE_54 choice. Runs go through
custodian with atomate2's usual VASP handlers plus a ``WalltimeHandler``
(atomate2's ``run_vasp(wall_time=...)`` appends it).

Everything here is thin wiring around atomate2 (``RelaxMaker``, ``DoubleRelaxMaker``,
``StaticMaker``, ``run_vasp``); :mod:`tdph_workflows.testing.fake_vasp` is a
stand-in executable for testing it all without VASP.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from atomate2.vasp.flows.core import DoubleRelaxMaker
from atomate2.vasp.jobs.core import RelaxMaker, StaticMaker
from atomate2.vasp.sets.core import RelaxSetGenerator, StaticSetGenerator
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
from jobflow import Flow, Maker, job
from pymatgen.core import Structure

__all__ = [
    "PAPER_INCAR",
    "PAPER_RELAX_INCAR",
    "PAPER_STATIC_INCAR",
    "collect_vasp_forces",
    "forces_from_vasp_dir",
    "paper_handlers",
    "paper_input_generator",
    "paper_relax_maker",
    "paper_run_vasp_kwargs",
    "paper_static_maker",
    "vasp_force_flow",
    "write_paper_inputs",
]

#: INCAR settings shared by every paper calculation (applied as ``user_incar_settings``).
PAPER_INCAR: dict[str, Any] = {
    "GGA": "PS",  # PBEsol
    "ISPIN": 1,  # non-magnetic, as the MDR force runs (atomate2's base set would double the cost with ISPIN 2)
    "ENCUT": 520,
    "EDIFF": 1e-8,
    "KSPACING": 0.2,  # Å^-1; with KGAMMA a Γ-centred mesh, and no KPOINTS file
    "KGAMMA": True,
    "ISMEAR": 0,
    "SIGMA": 0.01,
    "PREC": "Accurate",
    "LREAL": False,
    "ADDGRID": True,
    "LWAVE": False,
    "LCHARG": False,
    # atomate2's base set (from MPScanRelaxSet) also asks for LORBIT 11, LVTOT, LAECHG:
    # DOS, potential and AECCAR outputs the force runs never use (None removes a tag)
    "LORBIT": None,
    "LVTOT": None,
    "LAECHG": None,
}
#: Relaxation (cell + ions, ISIF 3) to |F| < 1e-3 eV/Å.
PAPER_RELAX_INCAR: dict[str, Any] = {**PAPER_INCAR, "EDIFFG": -1e-3, "IBRION": 2, "ISIF": 3, "NSW": 99}
#: Single points on displaced supercells (forces for phonopy / hiphive).
PAPER_STATIC_INCAR: dict[str, Any] = {**PAPER_INCAR, "NSW": 0, "IBRION": -1}

Kind = Literal["relax", "static"]


def paper_handlers() -> tuple:
    """atomate2's usual custodian handlers (fresh instances; ``WalltimeHandler`` comes via ``wall_time``).

    atomate2's ``DEFAULT_HANDLERS`` also holds ``LargeSigmaHandler``,
    ``IncorrectSmearingHandler`` and ``KspacingMetalHandler``: they exist to
    correct MP-style smearing/KSPACING choices, which would silently change the
    paper's fixed ISMEAR 0 / SIGMA 0.01 / KSPACING 0.2, so they are left out.
    """
    return (
        VaspErrorHandler(),
        MeshSymmetryErrorHandler(),
        UnconvergedErrorHandler(),
        NonConvergingErrorHandler(),
        PotimErrorHandler(),
        PositiveEnergyErrorHandler(),
        FrozenJobErrorHandler(),
        StdErrHandler(),
    )


def paper_run_vasp_kwargs(
    wall_time_s: int | None = None,
    *,
    vasp_cmd: str | None = None,
    custodian_kwargs: dict | None = None,
    max_errors: int | None = None,
) -> dict[str, Any]:
    """``run_vasp_kwargs`` for atomate2 makers (see ``atomate2.vasp.run.run_vasp``).

    ``wall_time_s`` makes ``run_vasp`` append ``custodian.vasp.handlers.WalltimeHandler(wall_time=...)``;
    ``vasp_cmd`` overrides ``ATOMATE2_VASP_CMD`` (read once, when atomate2 is imported);
    ``custodian_kwargs`` go to ``custodian.Custodian`` (e.g. ``polling_time_step``).
    """
    kwargs: dict[str, Any] = {"handlers": paper_handlers()}
    if wall_time_s is not None:
        kwargs["wall_time"] = int(wall_time_s)
    if vasp_cmd is not None:
        kwargs["vasp_cmd"] = vasp_cmd
        kwargs["vasp_gamma_cmd"] = vasp_cmd
    if custodian_kwargs:
        kwargs["custodian_kwargs"] = dict(custodian_kwargs)
    if max_errors is not None:
        kwargs["max_errors"] = int(max_errors)
    return kwargs


def paper_input_generator(kind: Kind = "relax"):
    """atomate2 input-set generator with the paper's INCAR (``RelaxSetGenerator`` / ``StaticSetGenerator``)."""
    if kind == "relax":
        return RelaxSetGenerator(user_incar_settings=copy.deepcopy(PAPER_RELAX_INCAR))
    if kind == "static":
        return StaticSetGenerator(user_incar_settings=copy.deepcopy(PAPER_STATIC_INCAR))
    raise ValueError(f"kind must be 'relax' or 'static', not {kind!r}")


def _write_kwargs(potcar_spec: bool) -> dict:
    # atomate2's write_vasp_input_set(potcar_spec=True) writes POTCAR.spec instead of POTCAR
    return {"potcar_spec": True} if potcar_spec else {}


def paper_relax_maker(
    wall_time_s: int | None = None,
    *,
    double: bool = False,
    vasp_cmd: str | None = None,
    potcar_spec: bool = False,
    custodian_kwargs: dict | None = None,
) -> Maker:
    """atomate2 ``RelaxMaker`` (``double=True``: ``DoubleRelaxMaker``, two consecutive ISIF 3 relaxations).

    ``potcar_spec=True`` writes POTCAR.spec instead of POTCAR (for tests and dry runs: no
    POTCAR library needed; real VASP needs a POTCAR, i.e. ``PMG_VASP_PSP_DIR``).
    """
    relax = RelaxMaker(
        name="paper relax",
        input_set_generator=paper_input_generator("relax"),
        write_input_set_kwargs=_write_kwargs(potcar_spec),
        run_vasp_kwargs=paper_run_vasp_kwargs(wall_time_s, vasp_cmd=vasp_cmd, custodian_kwargs=custodian_kwargs),
    )
    if not double:
        return relax
    # DoubleRelaxMaker appends " 1" / " 2" to the job names and passes prev_dir on
    return DoubleRelaxMaker(name="paper double relax", relax_maker1=relax, relax_maker2=copy.deepcopy(relax))


def paper_static_maker(
    wall_time_s: int | None = None,
    *,
    vasp_cmd: str | None = None,
    potcar_spec: bool = False,
    custodian_kwargs: dict | None = None,
) -> StaticMaker:
    """atomate2 ``StaticMaker`` for single points on (displaced) supercells."""
    return StaticMaker(
        name="paper static",
        input_set_generator=paper_input_generator("static"),
        write_input_set_kwargs=_write_kwargs(potcar_spec),
        run_vasp_kwargs=paper_run_vasp_kwargs(wall_time_s, vasp_cmd=vasp_cmd, custodian_kwargs=custodian_kwargs),
    )


def write_paper_inputs(
    structure: Structure, folder: str | Path, kind: Kind = "relax", potcar_spec: bool = True
) -> Path:
    """Write INCAR, POSCAR and POTCAR.spec (POTCAR when ``potcar_spec=False``) into ``folder``.

    KPOINTS is not written: KSPACING is in the INCAR and pymatgen's input set then returns no KPOINTS.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vis = paper_input_generator(kind).get_input_set(structure, potcar_spec=potcar_spec)
    vis.write_input(folder)  # a potcar_spec input set writes POTCAR.spec in place of POTCAR
    return folder


def _find(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no {name} in {folder}")


def forces_from_vasp_dir(folder: str | Path) -> tuple[float, np.ndarray, np.ndarray]:
    """(energy eV, forces (N, 3) eV/Å, stress (3, 3) kBar as VASP writes it) of the last ionic step.

    Parsed with pymatgen's ``Vasprun`` (gzipped output, as atomate2 leaves it, is fine).
    Energy is VASP's ``e_0_energy`` (σ→0), pymatgen's ``final_energy``.
    """
    from pymatgen.io.vasp import Vasprun

    vr = Vasprun(str(_find(Path(folder), "vasprun.xml")), parse_dos=False, parse_eigen=False, parse_potcar_file=False)
    last = vr.ionic_steps[-1]
    return float(vr.final_energy), np.asarray(last["forces"], dtype=float), np.asarray(last["stress"], dtype=float)


@job
def collect_vasp_forces(energies: Sequence[float], forces: Sequence, stresses: Sequence, dir_names: Sequence[str]):
    """Plain lists (no TaskDocs) from the static runs, in input order: the force set for phonopy / hiphive.

    ``forces`` are (n_structures, N, 3) eV/Å; ``stresses`` (n_structures, 3, 3) kBar (VASP sign convention).
    """
    return {
        "energies": [float(e) for e in energies],
        "forces": np.asarray(forces, dtype=float).tolist(),
        "stresses": np.asarray(stresses, dtype=float).tolist(),
        "dir_names": [str(d) for d in dir_names],
    }


def vasp_force_flow(
    structures: Sequence[Structure], static_maker: Maker | None = None, name: str = "vasp forces"
) -> Flow:
    """One static job per displaced supercell plus :func:`collect_vasp_forces`.

    The flow's output is the collector's output (lists); each static job's output is an
    atomate2/emmet ``TaskDoc`` (``output.energy``, ``output.forces``, ``output.stress``).
    """
    maker = static_maker or paper_static_maker()
    statics = []
    for i, structure in enumerate(structures):
        static = maker.make(structure)
        static.name = f"{maker.name} {i + 1}/{len(structures)}"
        statics.append(static)
    collect = collect_vasp_forces(
        [s.output.output.energy for s in statics],
        [s.output.output.forces for s in statics],
        [s.output.output.stress for s in statics],
        [s.output.dir_name for s in statics],
    )
    collect.name = f"{name} collect"
    return Flow([*statics, collect], output=collect.output, name=name)
