"""`tdph run`: harmonic and temperature-renormalized phonons of one material."""

from __future__ import annotations

import importlib
import os
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from .common import ScStepOption, console, fail, sc_step_settings

BUILTINS = {"srtio3": ("cubic_srtio3", "cubic SrTiO3, a = 3.905 A")}


def _structure_arg(name: str):
    path = Path(name)
    if not path.exists() and name.lower() in BUILTINS:
        engine = importlib.import_module("tdph_workflows.engine")
        console.print(f"[dim]building {BUILTINS[name.lower()][1]}[/dim]")
        return getattr(engine, BUILTINS[name.lower()][0])(), name
    return path, None


def default_folder_name(structure: str) -> str:
    """Output folder name of a structure argument: its file name without extensions (``SrTiO3``, ``POSCAR``)."""
    name = Path(structure.rstrip("/")).name
    for suffix in (".lzma", ".xz", ".gz", ".bz2", ".tar", ".cif", ".vasp", ".yaml", ".json"):
        name = name.removesuffix(suffix)
    return name or "structure"


def parse_supercell(text: str | None) -> list[int] | None:
    """``--supercell`` as 3 or 9 integers with a positive determinant (None when not given)."""
    if not text:
        return None
    try:
        matrix = [int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"--supercell {text!r}: needs 3 or 9 integers") from None
    if len(matrix) not in (3, 9):
        raise ValueError(f"--supercell {text!r}: needs 3 or 9 integers, got {len(matrix)}")
    det = round(np.prod(matrix) if len(matrix) == 3 else np.linalg.det(np.reshape(matrix, (3, 3))))
    if det <= 0:
        raise ValueError(f"--supercell {text!r}: the determinant must be positive, got {det}")
    return matrix


def site_orbits(sites) -> str:
    """Per-site R_onsite once per orbit (same element, Wyckoff letter and value), with its multiplicity."""
    orbits: dict[tuple, int] = {}
    for s in sites:
        key = (s.element, s.wyckoff, round(s.r_onsite, 3))
        orbits[key] = orbits.get(key, 0) + 1
    return ", ".join(f"{el}({wy}{f' x{n}' if n > 1 else ''}) {r:.3f}" for (el, wy, r), n in orbits.items())


def _summary(result) -> None:
    h = result.harmonic
    console.print(
        f"[bold]{result.formula}[/bold] {result.material_id}  {result.spacegroup}  "
        f"supercell {result.n_atoms_supercell} atoms ({result.supercell_rule}); calculator {result.provenance.calculator}"
    )
    table = Table(title="Renormalization (errors: jackknife standard errors)")
    for col in ("T (K)", "L2 shift (%)", "R_full", "R_full robust", "max R_onsite", "samples", "min freq (THz)"):
        table.add_column(col, justify="right")
    table.add_row("harmonic", "", "", "", "", str(result.n_harmonic_displacements) + " disp.", f"{h.min_frequency:.2f}")
    for t in result.temperatures:
        table.add_row(
            f"{t.temperature:g}",
            f"{100 * t.l2_shift:.2f} ± {100 * t.l2_stderr:.2f}",
            f"{t.r_full:.3f} ± {t.r_full_stderr:.3f}",
            f"{t.r_full_robust:.3f} ± {t.r_full_robust_stderr:.3f}",
            f"{t.r_onsite_max:.3f}",
            f"{t.n_samples}{'' if t.converged else ' (cap)'}",
            f"{t.spectrum.min_frequency:.2f}",
        )
    console.print(table)
    pts = Table(title="Lowest frequencies at high-symmetry points (THz; negative = imaginary; Γ without acoustic)")
    pts.add_column("point")
    pts.add_column("harmonic")
    for t in result.temperatures:
        pts.add_column(f"{t.temperature:g} K")
    def lowest(label: str, freqs: list[float]) -> str:
        if label == "Γ":  # leave out the three acoustic modes (closest to zero)
            drop = set(np.argsort(np.abs(freqs))[:3].tolist())
            freqs = [f for k, f in enumerate(freqs) if k not in drop]
        return " ".join(f"{f:6.2f}" for f in freqs[:3])

    for label, freqs in h.special_points.items():
        row = [label, lowest(label, freqs)]
        row += [lowest(label, t.spectrum.special_points[label]) for t in result.temperatures]
        pts.add_row(*row)
    console.print(pts)
    for t in result.temperatures:
        console.print(f"{t.temperature:g} K  R_onsite per site: {site_orbits(t.sites)}")
        for note in t.sampling_notes:
            console.print(f"  [yellow]sampling: {escape(note)}[/yellow]")
        if t.trust is not None:
            color = {"A": "green", "B": "green", "C": "yellow"}.get(t.trust.grade, "red")
            console.print(f"  trust grade [{color}]{t.trust.grade}[/{color}]" +
                          "".join(f"\n    {escape(r)}" for r in t.trust.reasons))
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items() if v >= 0.05)
    console.print(f"timings: {timing}")


def run_cmd(
    structure: Annotated[str, typer.Argument(help="Structure file (CIF, POSCAR, ...), MDR entry, or 'SrTiO3' (built in)")],
    temperature: Annotated[list[float], typer.Option("--temperature", "-T", help="Temperature(s) in K")] = [300.0],  # noqa: B006
    supercell: Annotated[str | None, typer.Option(help="Supercell: '2 2 2' or 9 integers")] = None,
    calculator: Annotated[str | None, typer.Option(help="Model folder/name, 'emt', or module:factory")] = None,
    estimator: Annotated[str, typer.Option(help="force_fit (default) or hessian")] = "force_fit",
    self_consistent: Annotated[bool, typer.Option("--self-consistent", help="Iterate sampling until converged")] = False,
    sc_predict: ScStepOption = None,
    classical: Annotated[bool, typer.Option("--classical", help="Classical instead of quantum covariance")] = False,
    relax: Annotated[bool, typer.Option("--relax", help="Relax positions and cell with the potential first")] = False,
    max_samples: Annotated[int | None, typer.Option(
        help="Cap on samples per temperature (default: 512 force fit, 64 Hessian)")] = None,
    soft_mode_floor: Annotated[float, typer.Option(help="Lowest sampling frequency (THz) of any mode")] = 0.5,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: tdph_out/<structure name>)")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the files of an earlier run in --out")] = False,
    figure_format: Annotated[str, typer.Option(help="Dispersion figure format: png, pdf or svg")] = "png",
    dpi: Annotated[int | None, typer.Option(help="Resolution of a png figure")] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads (default: TDPH_TORCH_THREADS or 1)")] = None,
) -> None:
    """Harmonic and temperature-renormalized phonons of one material."""
    if threads is not None and threads < 1:
        fail(f"--threads must be at least 1, got {threads}")
    try:
        sc_step = sc_step_settings(sc_predict, self_consistent)
    except ValueError as exc:
        fail(str(exc))
    os.environ["TDPH_TORCH_THREADS"] = str(threads or os.environ.get("TDPH_TORCH_THREADS") or 1)
    from ..core.sscha import SSCHASettings
    from ..engine import run_temperature_phonons
    from ..io.outputs import OutputFolderError, prepare_output_folder, write_outputs
    from ..io.structures import InputError
    from ..potentials import CalculatorError, ModelError

    label = structure
    out = out or Path("tdph_out") / default_folder_name(structure)
    if figure_format not in ("png", "pdf", "svg"):
        fail(f"--figure-format must be png, pdf or svg, got {figure_format!r}")
    if dpi is not None and dpi < 10:
        fail(f"--dpi must be at least 10, got {dpi}")
    try:
        smat = parse_supercell(supercell)
        prepare_output_folder(out, overwrite)  # before the computation, so nothing computed is then lost
        obj, name = _structure_arg(structure)
        if max_samples is not None and max_samples < 4:
            raise ValueError(f"--max-samples must be at least 4 (two antithetic pairs), got {max_samples}")
        settings = SSCHASettings(estimator=estimator, quantum=not classical, self_consistent=self_consistent,
                                 max_pairs=None if max_samples is None else max(2, max_samples // 2),
                                 soft_mode_floor_thz=soft_mode_floor, seed=seed, **sc_step)
        t0 = time.perf_counter()
        with console.status("starting") as status:
            result = run_temperature_phonons(obj, calculator, temperature, smat, settings, relax=relax,
                                             material_id=name, progress=lambda msg: (status.update(msg), console.log(msg)))
    except (InputError, ModelError, CalculatorError, OutputFolderError, ValueError) as exc:
        fail(f"{label}: {exc}")
    except Exception as exc:  # the potential or a library failed on this input: one line, not a traceback
        if os.environ.get("TDPH_DEBUG"):
            raise
        fail(f"{label}: {type(exc).__name__}: {exc}", code=1)
    files = write_outputs(result, out, figure_format, dpi)
    _summary(result)
    console.print(f"wall time {time.perf_counter() - t0:.1f} s; wrote " + ", ".join(str(p) for p in files.values()))
