"""`tdph analyze` (figures, CSV, models, summary.json) and `tdph report` (one self-contained HTML page)."""

from __future__ import annotations

import base64
import html
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from ..trust import GRADES
from . import models as rf
from . import screening, trends

log = logging.getLogger(__name__)

FIGURES = {
    "element_heatmap.png": "Mean R_onsite by element (log colour scale), paper Fig. 3A",
    "spacegroup_bars.png": "Mean L2 frequency shift per space group, coloured by crystal system, Fig. 3B",
    "feature_importances.png": "Top-10 feature importances of the random forests, Fig. 3D",
    "case_study.png": "Dispersions, harmonic vs T, of a weak and a strong material, Fig. 3E-F",
    "prototype_violins.png": "R_onsite of the sites of the most frequent AFLOW prototypes, Fig. 4B-C",
}
MATERIAL_COLUMNS = ["material_id", "formula", "grade", "spacegroup", "crystal_system", "prototype", "temperature",
                    "l2_shift", "l2_stderr", "r_full", "r_onsite_max", "harmonic_min_frequency", "dft_deviation",
                    "n_samples", "grade_reasons"]
COLUMN_HEADERS = {"l2_shift": "L2 shift (fraction)", "l2_stderr": "L2 stderr (fraction)", "temperature": "T (K)",
                  "harmonic_min_frequency": "harmonic min freq (THz)", "dft_deviation": "DFT deviation (fraction)",
                  "r_full": "R_full", "r_onsite_max": "max R_onsite", "n_samples": "samples",
                  "grade_reasons": "grade reasons"}
DEFAULT_GRADES = ("A", "B", "C", "")  # F ("not a result") is left out unless asked for; "" = computed before grading


def analyze(materials: pd.DataFrame, sites: pd.DataFrame, out: Path, threshold: float = 0.15,
            rules: rf.OutlierRules | None = None, grid_search: bool = False,
            fetch_result: Callable[[str], object] | None = None, min_rows_for_models: int = 20,
            workers: int = 1, feature_cache: Path | None = None, grades: Iterable[str] = DEFAULT_GRADES,
            min_group_size: int = 1) -> dict:
    """All figures, CSV tables, fitted models and summary.json into ``out``.

    Space groups with fewer than ``min_group_size`` materials are left out of the bars and of
    ``summary["top_spacegroups_min"]`` (a mean over two crystals is no trend; the paper's Fig. 3B
    shows well-populated groups).

    Only materials whose trust grade is in ``grades`` enter the trends, screening and models (default:
    all but F, "not a result"); ``summary["left_out_by_grade"]`` counts the others. Features, AFLOW
    prototypes and strong-site polyhedra are computed in `workers` processes and cached per material in
    `feature_cache` (default: ``out/feature_cache``), so rerunning after a campaign grows computes only
    the new materials.
    """
    from ..plotting import plot_side_by_side

    rules = rules or rf.OutlierRules()
    out.mkdir(parents=True, exist_ok=True)
    everything = materials
    materials, sites, left_out = keep_grades(materials, sites, grades)
    everything[~everything["material_id"].isin(materials["material_id"])].drop(
        columns=["unitcell"], errors="ignore").to_csv(out / "left_out_materials.csv", index=False)
    if materials.empty:
        raise ValueError("no completed materials to analyze" + (f" ({sum(left_out.values())} left out by grade)"
                                                                if left_out else ""))
    feature_cache = feature_cache or out / "feature_cache"
    started = time.perf_counter()
    materials, strong_sites = screening.annotate(materials, sites, threshold, workers, feature_cache)
    annotate_seconds = round(time.perf_counter() - started, 1)
    materials.drop(columns=["unitcell"]).to_csv(out / "materials.csv", index=False)
    sites.to_csv(out / "sites.csv", index=False)
    elements = trends.element_means(sites)
    elements.to_csv(out / "element_trends.csv")
    groups = trends.spacegroup_means(materials)
    groups.to_csv(out / "spacegroup_trends.csv")
    trends.plot_element_heatmap(sites, out / "element_heatmap.png")
    trends.plot_spacegroup_bars(materials, out / "spacegroup_bars.png", min_count=min_group_size)

    found = screening.candidates(materials, threshold)
    found.drop(columns=["unitcell"]).to_csv(out / "candidates.csv", index=False)
    strong_sites.to_csv(out / "strong_sites.csv", index=False)
    prototypes = screening.plot_prototype_violins(materials, sites, out / "prototype_violins.png")
    prototypes.to_csv(out / "prototype_counts.csv")

    summary: dict = {
        "grades_kept": sorted(g or "ungraded" for g in grades), "left_out_by_grade": left_out,
        "n_by_grade": {g or "ungraded": int(n) for g, n in materials["grade"].value_counts().items()},
        "n_materials": len(materials), "n_sites": len(sites), "temperature": float(materials["temperature"].iloc[0]),
        "top_elements": elements.head(5).reset_index().to_dict("records"),
        "top_elements_min": elements[elements["n_materials"] >= min_group_size].head(5).reset_index().to_dict("records"),
        "top_spacegroups": groups.head(5).reset_index().to_dict("records"),
        "top_spacegroups_min3": groups[groups["n_materials"] >= 3].head(5).reset_index().to_dict("records"),
        "min_group_size": min_group_size,
        "top_spacegroups_min": groups[groups["n_materials"] >= min_group_size].head(5).reset_index().to_dict("records"),
        "threshold": threshold, "n_candidates": len(found),
        "candidate_prototypes": found["prototype"].value_counts().head(5).to_dict(),
        "top_prototypes": prototypes["n_materials"].head(5).to_dict(),
        "strong_site_polyhedra": strong_sites["polyhedron"].value_counts().to_dict() if len(strong_sites) else {},
        "annotate_seconds": annotate_seconds,
    }
    summary["models"] = _fit_models(materials, sites, out, rules, grid_search, min_rows_for_models, workers,
                                    feature_cache)
    if fetch_result is not None:
        summary["case_study"] = _case_study(materials, fetch_result, out / "case_study.png", plot_side_by_side)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def _fit_models(materials, sites, out, rules, grid_search, min_rows, workers, feature_cache) -> dict:
    from .features import featurize

    kept, report = rf.filter_outliers(materials, rules)
    result: dict = {"outliers": asdict(report), "rules": asdict(rules)}
    if len(kept) < min_rows:
        result["skipped"] = f"{len(kept)} materials after filtering (< {min_rows}): no models fitted"
        return result
    kept_sites = sites[sites["material_id"].isin(kept["material_id"])]
    started = time.perf_counter()
    x_global, x_local = featurize(kept, kept_sites, workers, str(feature_cache) if feature_cache else None)
    result["featurize_seconds"] = round(time.perf_counter() - started, 1)
    x_global.to_csv(out / "features_global.csv")
    x_local.to_csv(out / "features_local.csv")
    y_global = kept.set_index("material_id")["r_full"].reindex(x_global.index)
    y_local = kept_sites.set_index(["material_id", "site"])["r_onsite"].reindex(x_local.index)
    global_settings = rf.ForestSettings(**{**asdict(rf.GLOBAL_SETTINGS), "grid_search": grid_search})
    local_settings = rf.ForestSettings(**{**asdict(rf.LOCAL_SETTINGS), "grid_search": grid_search})
    fitted = [rf.fit_forest(x_global, y_global, "global", global_settings),
              rf.fit_forest(x_local, y_local, "local", local_settings, boxcox_lambda=rf.BOXCOX_LAMBDA)]
    # The paper's random split of sites, reported beside the material split for comparison only.
    by_site = rf.fit_forest(x_local, y_local, "local", local_settings, boxcox_lambda=rf.BOXCOX_LAMBDA, split="site")
    cv = {"global": rf.cross_validate(x_global, y_global, "global", global_settings),
          "local": rf.cross_validate(x_local, y_local, "local", local_settings, boxcox_lambda=rf.BOXCOX_LAMBDA)}
    for m in fitted:
        m.save(out / "models" / f"{m.kind}.joblib")
        result[m.kind] = {**m.metrics, "n_features": len(m.features), "cv_by_material": cv[m.kind],
                          "top_features": m.importances(10).round(4).to_dict()}
    result["local"]["site_split"] = {k: by_site.metrics[k] for k in ("n_train", "n_test", "test_r2", "test_mae")}
    rf.plot_importances(fitted, out / "feature_importances.png")
    return result


def keep_grades(materials: pd.DataFrame, sites: pd.DataFrame, grades: Iterable[str]
                ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Materials (and their sites) whose trust grade is in ``grades``, and counts of the others by grade."""
    if "grade" not in materials.columns:
        materials = materials.assign(grade="")
    keep = materials["grade"].fillna("").isin(list(grades))
    left_out = {g or "ungraded": int(n) for g, n in materials.loc[~keep, "grade"].fillna("").value_counts().items()}
    kept = materials[keep]
    return kept, sites[sites["material_id"].isin(kept["material_id"])], left_out


def _case_study(materials, fetch_result, path, plot) -> dict:
    # a headline figure must not show an artefact: pick from the best grade present only
    graded = materials["grade"].fillna("")
    best = min(graded, key=lambda g: GRADES.index(g) if g in GRADES else len(GRADES))
    ranked = materials[graded == best].sort_values("l2_shift")
    if len(ranked) < 2:
        return {"skipped": f"fewer than two materials of the best grade ({best or 'ungraded'})"}
    picks = {"weak": ranked.iloc[len(ranked) // 4]["material_id"], "strong": ranked.iloc[-1]["material_id"]}
    results = [fetch_result(m) for m in picks.values()]
    if any(r is None for r in results):
        return {"skipped": "full results not available"}
    plot(results, list(picks), path)
    return {**picks, "grade": best or "ungraded"}


def write_report(out: Path, title: str = "tdph campaign report", page_size: int = 200) -> Path:
    """One HTML page: figures inline, a sortable and searchable table of materials with plot links.

    Parameters
    ----------
    out
        The folder of ``tdph analyze`` (summary.json, materials.csv, figures); report.html is written there.
    title
        Page title.
    page_size
        Rows put in the table at a time ("show more" adds as many): every row's data is embedded, but
        only a page of them is in the DOM, so filtering 4,000 materials stays smooth.

    Returns
    -------
    Path
        The page.
    """
    summary = json.loads((out / "summary.json").read_text())
    table = pd.read_csv(out / "materials.csv")
    left_out = out / "left_out_materials.csv"  # graded out of the analysis; shown only when the filter asks
    if left_out.exists():
        table = pd.concat([table, pd.read_csv(left_out)], ignore_index=True)
    table["grade"] = table.get("grade", pd.Series("", index=table.index)).fillna("")
    columns = [c for c in MATERIAL_COLUMNS if c in table.columns]
    rows = table[columns].to_dict("records")
    for r in rows:
        plot = Path("materials") / r["material_id"] / "dispersion.png"
        r["plot"] = str(plot) if (out / plot).exists() else ""
    figures = []
    for name, caption in FIGURES.items():
        if (out / name).exists():
            data = base64.b64encode((out / name).read_bytes()).decode()
            figures.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                           f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    facts = _facts(summary) + _provenance(table)
    page = _TEMPLATE.format(title=html.escape(title), facts=facts, figures="\n".join(figures),
                            header="".join(f'<th data-col="{c}">{html.escape(COLUMN_HEADERS.get(c, c))}</th>'
                                           for c in columns) + "<th>dispersion</th>",
                            rows=json.dumps(rows, default=str).replace("</", "<\\/"),
                            columns=json.dumps(columns), page=int(page_size))
    path = out / "report.html"
    path.write_text(page)
    return path


def _provenance(table: pd.DataFrame) -> str:
    """Where the numbers come from: models, code version, report date."""
    import datetime

    from .. import __version__

    models = sorted({str(m) for m in table.get("calculator", pd.Series(dtype=str)).dropna() if str(m)})
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<li>provenance: model {html.escape(', '.join(models) or 'not recorded')}; tdph {__version__}; "
            f"report written {when}; default order: trust grade (A first), then max R_onsite</li>")


def _facts(summary: dict) -> str:
    left_out = summary.get("left_out_by_grade") or {}
    by_grade = ", ".join(f"{g} {n}" for g, n in sorted((summary.get("n_by_grade") or {}).items()))
    items = [f"{summary['n_materials']} materials, {summary['n_sites']} sites at {summary['temperature']:g} K"
             + (f" (by trust grade: {by_grade})" if by_grade else ""),
             *(["left out as untrustworthy: " + ", ".join(f"{n} graded {g}" for g, n in left_out.items())]
               if left_out else []),
             f"{summary['n_candidates']} candidates with max R_onsite &ge; {summary['threshold']}",
             "strongest elements: " + ", ".join(f"{e['element']} ({e['mean_r_onsite']:.2f})"
                                                for e in summary["top_elements"]),
             "strongest space groups: " + ", ".join(f"{g['spacegroup_number']} ({100 * g['mean_l2_shift']:.1f} %)"
                                                    for g in summary["top_spacegroups"])]
    models = summary.get("models", {})
    for kind in ("global", "local"):
        if kind in models:
            m = models[kind]
            cv = m.get("cv_by_material", {})
            items.append(f"{kind} random forest (split by material): test R&sup2; {m['test_r2']:.2f}, "
                         f"MAE {m['test_mae']:.3f} ({m['n_test']} test rows); {cv.get('folds', 0)}-fold CV "
                         f"R&sup2; {cv.get('r2_mean', float('nan')):.2f} &plusmn; {cv.get('r2_std', float('nan')):.2f}")
    if "site_split" in models.get("local", {}):
        items.append(f"local random forest, paper's random split of sites: test R&sup2; "
                     f"{models['local']['site_split']['test_r2']:.2f} (optimistic: equivalent sites on both sides)")
    return "".join(f"<li>{i}</li>" for i in items)


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
figure {{ display: inline-block; margin: 0.5em; max-width: 48%; vertical-align: top; }}
figure img {{ max-width: 100%; }} figcaption {{ font-size: 0.85em; color: #555; }}
table {{ border-collapse: collapse; font-size: 0.85em; }} th, td {{ border: 1px solid #ccc; padding: 2px 6px; }}
th {{ cursor: pointer; background: #f0f0f0; }} input {{ margin: 0.5em 0; padding: 4px; width: 20em; }}
</style></head><body>
<h1>{title}</h1>
<ul id="facts">{facts}</ul>
<div id="figures">{figures}</div>
<h2>Materials</h2>
<input id="search" type="search" placeholder="search formula, id, space group, prototype">
<label>trust grade <select id="grade">
<option value="ABC-">A-C and ungraded (analyzed)</option><option value="A">A: trusted</option>
<option value="AB">A-B</option><option value="ABCF-">all, with F (not a result)</option></select></label>
<span id="count"></span>
<table id="materials"><thead><tr>{header}</tr></thead><tbody></tbody></table>
<p><button id="more" type="button" hidden>show more</button></p>
<script>
const rows = {rows};
const columns = {columns};
const PAGE = {page};  // rows put in the DOM at a time: thousands of rows make every keystroke slow
let sortCol = "", sortDesc = true;  // "": trust grade first (A, B, C, ungraded, F), then max R_onsite
let shown = [], limit = PAGE;
const gradeRank = g => ({{A: 0, B: 1, C: 2, "": 3, F: 4}})[g || ""] ?? 3;
const haystack = rows.map(r => columns.map(c => String(r[c] ?? "").toLowerCase()).join("\u0000"));
rows.forEach((r, i) => {{ r._i = i; }});
function fmt(v) {{ return typeof v === "number" ? (Number.isInteger(v) ? v : v.toPrecision(4)) : (v ?? ""); }}
function rowElement(r) {{
  const tr = document.createElement("tr");
  tr.dataset.material = r.material_id;
  for (const c of columns) {{ const td = document.createElement("td"); td.textContent = fmt(r[c]); tr.appendChild(td); }}
  const td = document.createElement("td");
  if (r.plot) {{ const a = document.createElement("a"); a.href = r.plot; a.textContent = "plot"; td.appendChild(a); }}
  tr.appendChild(td);
  return tr;
}}
function showRows(from) {{  // append shown[from, limit) to the table body
  const body = document.querySelector("#materials tbody");
  const part = document.createDocumentFragment();
  for (const r of shown.slice(from, limit)) part.appendChild(rowElement(r));
  if (from === 0) body.replaceChildren(part); else body.appendChild(part);
  const n = Math.min(limit, shown.length);
  document.getElementById("count").textContent = shown.length + " of " + rows.length + " materials"
    + (n < shown.length ? " (first " + n + " shown)" : "");
  const more = document.getElementById("more");
  more.hidden = n >= shown.length;
  more.textContent = "show " + Math.min(PAGE, shown.length - n) + " more";
}}
function render() {{
  const q = document.getElementById("search").value.toLowerCase();
  const g = document.getElementById("grade").value;
  shown = rows.filter(r => g.includes(r.grade || "-") && (!q || haystack[r._i].includes(q)));
  shown.sort((a, b) => {{
    if (!sortCol) return (gradeRank(a.grade) - gradeRank(b.grade)) || ((b.r_onsite_max ?? 0) - (a.r_onsite_max ?? 0));
    const x = a[sortCol], y = b[sortCol];
    const d = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
    return sortDesc ? -d : d;
  }});
  limit = PAGE;
  showRows(0);
  const h = new URLSearchParams();
  if (q) h.set("q", document.getElementById("search").value);
  if (g !== "ABC-") h.set("grade", g);
  history.replaceState(null, "", h.toString() ? "#" + h : location.pathname + location.search);
}}
document.querySelectorAll("#materials th[data-col]").forEach(th => th.addEventListener("click", () => {{
  sortDesc = sortCol === th.dataset.col ? !sortDesc : true; sortCol = th.dataset.col; render();
}}));
let typing;  // filter once the typing pauses, not on every keystroke
document.getElementById("search").addEventListener("input", () => {{ clearTimeout(typing); typing = setTimeout(render, 150); }});
document.getElementById("grade").addEventListener("change", render);
document.getElementById("more").addEventListener("click", () => {{ const from = limit; limit += PAGE; showRows(from); }});
function fromHash() {{
  const hash = new URLSearchParams(location.hash.slice(1));  // e.g. #q=Cs&grade=ABCF-
  document.getElementById("search").value = hash.get("q") || "";
  if (hash.get("grade")) document.getElementById("grade").value = hash.get("grade");
  render();
}}
window.addEventListener("hashchange", fromHash);
fromHash();
</script></body></html>
"""
