"""`tdph analyze`, `tdph report`, `tdph predict`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .common import LaunchpadOption, console

OutOption = Annotated[Path, typer.Option(help="Output folder")]


def _tables(launchpad: Path | None, campaign: str | None, temperature: float | None):
    from ..analysis.results import from_database
    from ..campaign.settings import resolve

    db = resolve(launchpad)
    materials, sites = from_database(db, campaign, temperature)
    if materials.empty:
        console.print(f"[red]error:[/red] no completed materials in {db.source} database {db.database}"
                      + (f" (campaign {campaign})" if campaign else ""))
        raise typer.Exit(1)
    return db, materials, sites


def analyze_cmd(
    campaign: Annotated[str | None, typer.Option(help="Campaign name (default: all)")] = None,
    temperature: Annotated[float | None, typer.Option(help="Temperature (K; default: the first stored)")] = None,
    threshold: Annotated[float, typer.Option(help="Screening threshold on max R_onsite")] = 0.15,
    max_dft_deviation: Annotated[float, typer.Option(help="Outlier rule: model vs DFT harmonic deviation")] = 0.20,
    max_l2_shift: Annotated[float, typer.Option(help="Outlier rule: largest L2 shift kept for the models")] = 0.40,
    grades: Annotated[str, typer.Option(
        help="Trust grades analyzed (A trusted, B usable, C qualitative, F not a result); ungraded records "
        "are always kept")] = "ABC",
    grid_search: Annotated[bool, typer.Option("--grid-search", help="Grid search of the forests' depth/features")] = False,
    workers: Annotated[int, typer.Option(help="Processes for the matminer features, AFLOW prototypes and polyhedra")] = 1,
    feature_cache: Annotated[Path | None, typer.Option(help="Cache folder of the features and prototypes (default: OUT/feature_cache)")] = None,
    out: OutOption = Path("tdph_out/analysis"),
    launchpad: LaunchpadOption = None,
) -> None:
    """Trends, random forests, screening and prototypes from the stored results: PNG figures, CSV, summary.json."""
    from ..analysis.models import OutlierRules
    from ..analysis.report import analyze
    from ..campaign.queries import full_results

    db, materials, sites = _tables(launchpad, campaign, temperature)

    def fetch(material_id: str):
        return next((r for _, r in full_results(db, campaign, {material_id})), None)

    summary = analyze(materials, sites, out, threshold, OutlierRules(max_dft_deviation, max_l2_shift), grid_search,
                      fetch_result=fetch, workers=workers, feature_cache=feature_cache,
                      grades=[*grades.upper().replace(",", ""), ""])
    _print_summary(summary)
    console.print(f"written: {out}/ (figures, CSV, models/, summary.json)")


def _print_summary(s: dict) -> None:
    console.print(f"{s['n_materials']} materials, {s['n_sites']} sites at {s['temperature']:g} K; by trust grade: "
                  + ", ".join(f"{g} {n}" for g, n in sorted(s.get("n_by_grade", {}).items())))
    if s.get("left_out_by_grade"):
        console.print("left out as untrustworthy: " + ", ".join(f"{n} graded {g}" for g, n in
                                                                s["left_out_by_grade"].items())
                      + " (--grades ABCF keeps them)")
    console.print("strongest elements (mean R_onsite): " + ", ".join(
        f"{e['element']} {e['mean_r_onsite']:.2f} (n={e['n_sites']})" for e in s["top_elements"]))
    console.print("strongest space groups (mean L2 shift): " + ", ".join(
        f"{g['spacegroup_number']} {100 * g['mean_l2_shift']:.1f} % (n={g['n_materials']})" for g in s["top_spacegroups"]))
    console.print(f"{s['n_candidates']} candidates with max R_onsite >= {s['threshold']}; top prototypes: "
                  + ", ".join(f"{k} ({v})" for k, v in s["candidate_prototypes"].items()))
    m = s["models"]
    console.print(f"outliers dropped: {len(m['outliers']['dropped_dft_deviation'])} (DFT deviation), "
                  f"{len(m['outliers']['dropped_l2_shift'])} (L2 shift); kept {m['outliers']['kept']}")
    for kind in ("global", "local"):
        if kind in m:
            cv = m[kind]["cv_by_material"]
            console.print(f"{kind} random forest (split by material): test R2 {m[kind]['test_r2']:.3f}, "
                          f"MAE {m[kind]['test_mae']:.4f}, {m[kind]['n_train']} train / {m[kind]['n_test']} test; "
                          f"{cv['folds']}-fold CV R2 {cv['r2_mean']:.3f} +- {cv['r2_std']:.3f}")
    if "local" in m:
        console.print(f"local random forest, random split of sites (paper; optimistic): "
                      f"test R2 {m['local']['site_split']['test_r2']:.3f}")
    if "skipped" in m:
        console.print(f"models: {m['skipped']}")


def report_cmd(
    campaign: Annotated[str | None, typer.Option(help="Campaign name (default: all)")] = None,
    out: OutOption = Path("tdph_out/analysis"),
    title: Annotated[str, typer.Option()] = "tdph campaign report",
    launchpad: LaunchpadOption = None,
) -> None:
    """Self-contained HTML page (figures, sortable/searchable table, dispersion plot links); analyzes first if needed."""
    from ..analysis.report import write_report
    from ..campaign.queries import write_dispersion_plots

    if not (out / "summary.json").exists():
        analyze_cmd(campaign=campaign, out=out, launchpad=launchpad)
    from ..campaign.settings import resolve

    n = write_dispersion_plots(resolve(launchpad), campaign, out / "materials")
    path = write_report(out)
    console.print(f"wrote {path} ({n} dispersion plots under {out / 'materials'})")


def predict_cmd(
    structure: Annotated[Path, typer.Argument(help="Structure file (CIF, POSCAR, ...)")],
    models: Annotated[Path, typer.Option(help="Folder with global.joblib and local.joblib (tdph analyze)")] = Path(
        "tdph_out/analysis/models"),
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """R_full and per-site R_onsite from the fitted random forests: no lattice dynamics."""
    import pandas as pd
    from pymatgen.core import Structure

    from ..analysis.features import global_feature_labels, local_feature_labels, material_features
    from ..analysis.models import FittedModel

    missing = [f for f in ("global.joblib", "local.joblib") if not (models / f).exists()]
    if missing:
        console.print(f"[red]error:[/red] {models} lacks {', '.join(missing)} (run tdph analyze on a campaign first)")
        raise typer.Exit(2)
    s = Structure.from_file(structure)
    glob = FittedModel.load(models / "global.joblib")
    loc = FittedModel.load(models / "local.joblib")
    x_glob, local = material_features(s.as_dict())
    r_full = float(glob.predict(pd.DataFrame([x_glob], columns=global_feature_labels()))[0])
    x_local = pd.DataFrame([local[i] for i in range(len(s))], columns=local_feature_labels())
    r_onsite = loc.predict(x_local)
    result = {"structure": str(structure), "formula": s.composition.reduced_formula, "r_full": r_full,
              "sites": [{"index": i, "element": s[i].species_string, "r_onsite": float(v)}
                        for i, v in enumerate(r_onsite)]}
    if fmt == "json":
        print(json.dumps(result, indent=1))
        return
    console.print(f"{result['formula']}: predicted R_full {r_full:.3f}")
    table = Table("site", "element", "predicted R_onsite")
    for site in result["sites"]:
        table.add_row(str(site["index"]), site["element"], f"{site['r_onsite']:.3f}")
    console.print(table)
