"""`tdph analyze` / `tdph report` at campaign scale: cold and warm cache, where the time goes, HTML size.

Inputs are real MDR unit cells (``raw_lt20atoms`` tarballs, read with the project's own loader) with
synthetic but plausible metrics: per-site R_onsite lognormal around 0.05 (heavy alkali / Tl / Pb sites
stronger), L2 shift and R_full tied to the largest R_onsite, DFT deviations lognormal, grades mostly
B with some A, C and F. The parsed cells are cached in /tmp (``--structures``), so a rerun spends
its time in the analysis, not in lzma.

    python benchmarks/bench_analysis_scale.py --n 500 --workers 2
    python benchmarks/bench_analysis_scale.py --n 4000 --workers 2 --skip-cold   # needs a warm cache

Writes ``benchmarks/results/analysis_scale.md`` (+ .csv); one row per (N, phase).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MDR, RESULTS, write_table

STRONG = {"Cs": 4.0, "Rb": 3.0, "K": 2.0, "Tl": 3.5, "Pb": 2.0, "Ag": 2.5, "Cu": 1.8, "I": 1.5, "Bi": 1.8}


def load_cells(n: int, cache: Path, seed: int = 0) -> list[dict]:
    """(material_id, formula, spacegroup, unitcell dict) of `n` MDR entries, cached one JSON per entry."""
    import csv

    from pymatgen.io.phonopy import get_pmg_structure

    from tdph_workflows.io.mdr import load_mdr_entry

    index = {r["raw_tarball"]: r for r in csv.DictReader((MDR / "index.csv").open()) if r.get("raw_tarball")}
    tarballs = sorted((MDR / "raw_lt20atoms").glob("*.tar.lzma"))
    order = np.random.default_rng(seed).permutation(len(tarballs))
    cache.mkdir(parents=True, exist_ok=True)
    cells, started = [], time.perf_counter()
    for k in order:
        if len(cells) == n:
            break
        path = tarballs[k]
        target = cache / f"{path.name}.json"
        if target.exists():
            cells.append(json.loads(target.read_text()))
            continue
        try:
            entry = load_mdr_entry(path)
        except Exception as exc:  # noqa: BLE001 (a corrupt entry is skipped, as the campaign does)
            print(f"skip {path.name}: {exc}", file=sys.stderr)
            continue
        row = index.get(path.name, {})
        cell = {"material_id": entry.material_id, "unitcell": get_pmg_structure(entry.unitcell).as_dict(),
                "spacegroup_number": int(row.get("spacegroup_number") or 1),
                "spacegroup": f"{row.get('spacegroup_symbol', '?')} ({row.get('spacegroup_number', 1)})"}
        target.write_text(json.dumps(cell))
        cells.append(cell)
        if len(cells) % 200 == 0:
            print(f"{len(cells)} cells ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return cells


def summaries(cells: list[dict], seed: int = 0) -> list[dict]:
    """MaterialSummary dicts (the layout `analysis.results.tables` reads) with seeded synthetic metrics."""
    from pymatgen.core import Structure

    rng = np.random.default_rng(seed)
    out = []
    for c in cells:
        s = Structure.from_dict(c["unitcell"])
        sites = [{"index": i, "element": site.specie.symbol, "wyckoff": "a",
                  "r_onsite": float(0.05 * STRONG.get(site.specie.symbol, 1.0) * rng.lognormal(0, 0.8)),
                  "r_onsite_stderr": 0.01} for i, site in enumerate(s)]
        r_max = max(x["r_onsite"] for x in sites)
        grade = rng.choice(["A", "B", "C", "F"], p=[0.2, 0.6, 0.15, 0.05])
        out.append({
            "material_id": c["material_id"], "formula": s.composition.reduced_formula,
            "elements": sorted({e.symbol for e in s.composition.elements}), "spacegroup": c["spacegroup"],
            "spacegroup_number": c["spacegroup_number"], "harmonic_min_frequency": float(rng.uniform(-0.5, 2.0)),
            "calculator": "synthetic", "wall_time": float(rng.uniform(10, 200)), "unitcell": c["unitcell"],
            "dft_reference": {"mae_thz": 0.3, "relative_deviation": float(rng.lognormal(np.log(0.07), 0.6))},
            "temperatures": [{"temperature": 300.0, "l2_shift": float(0.03 + 0.1 * r_max + rng.normal(0, 0.01)),
                              "l2_stderr": 0.004, "r_full": float(0.5 * r_max + 0.05), "r_full_robust": 0.4 * r_max,
                              "r_onsite_max": r_max, "sites": sites, "min_frequency": 1.0, "n_samples": 64,
                              "converged": True, "max_rms_displacement": 0.1, "grade": str(grade),
                              "grade_reasons": [] if grade == "A" else [f"{grade} synthetic: benchmark"]}],
        })
    return out


class PhaseTimer:
    """Wall seconds per phase, by wrapping module attributes for the duration of one analyze call."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def wrap(self, targets: dict[str, tuple[object, str]]):
        saved = []
        for phase, (module, name) in targets.items():
            original = getattr(module, name)
            saved.append((module, name, original))

            def timed(*a, _f=original, _p=phase, **k):
                t = time.perf_counter()
                try:
                    return _f(*a, **k)
                finally:
                    self.seconds[_p] += time.perf_counter() - t

            setattr(module, name, timed)
        try:
            yield self
        finally:
            for module, name, original in saved:
                setattr(module, name, original)


def run_analyze(materials, sites, out: Path, cache: Path, workers: int) -> dict[str, float]:
    from tdph_workflows.analysis import features, models, report, screening, trends

    timer = PhaseTimer()
    targets = {"annotate (prototypes + polyhedra)": (screening, "annotate"), "features": (features, "featurize"),
               "forest fits": (models, "fit_forest"), "forest CV": (models, "cross_validate"),
               "trend plots": (trends, "plot_element_heatmap"), "violins": (screening, "plot_prototype_violins")}
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    with timer.wrap(targets):
        report.analyze(materials, sites, out, workers=workers, feature_cache=cache)
    total = time.perf_counter() - t
    return {"total": total, **timer.seconds, "other": total - sum(timer.seconds.values())}


def annotate_split(materials, sites, sample: int = 40) -> tuple[float, float, int, int]:
    """Serial seconds of prototypes and of polyhedra on a sample of materials (no cache): the split of annotate."""
    from pymatgen.core import Structure

    from tdph_workflows.analysis import screening

    sub = materials.head(sample)
    strong = sites[sites["material_id"].isin(sub["material_id"]) & (sites["r_onsite"] >= 0.15)]
    cells = {m.material_id: Structure.from_dict(m.unitcell) for m in sub.itertuples()}
    t = time.perf_counter()
    for s in cells.values():
        with contextlib.suppress(Exception):
            screening.aflow_prototype(s)
    t_proto = time.perf_counter() - t
    t = time.perf_counter()
    for r in strong.itertuples():
        with contextlib.suppress(Exception):
            screening.coordination_polyhedron(cells[r.material_id], int(r.site))
    return t_proto, time.perf_counter() - t, len(sub), len(strong)


def report_at(rows: int, analysis: Path, work: Path) -> tuple[float, float, Path]:
    """write_report seconds, HTML MB and the page, with `rows` materials.

    The analyzed materials are repeated under new ids up to `rows`: the page's cost is in its rows
    and figures, not in which materials they are.
    """
    import pandas as pd

    from tdph_workflows.analysis import report

    out = work / f"report_{rows}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(analysis, out, ignore=shutil.ignore_patterns("feature_cache", "features_*.csv", "models"))
    (out / "left_out_materials.csv").unlink(missing_ok=True)
    table = pd.read_csv(out / "materials.csv")
    big = pd.concat([table] * (rows // len(table) + 1), ignore_index=True).head(rows)
    big["material_id"] = [f"{m}-{k}" for k, m in enumerate(big["material_id"])]
    big.to_csv(out / "materials.csv", index=False)
    t = time.perf_counter()
    page = report.write_report(out)
    t_write = time.perf_counter() - t
    return t_write, page.stat().st_size / 1e6, page


# runs in the page after its own script: re-filters as a user typing would, and reports the mean ms
_HARNESS = """<script>
const box = document.getElementById("search"), times = [];
for (const q of ["", "c", "cs", "o", "", "mp-1", "", "zz"]) {
  box.value = q; const t = performance.now(); render(); void document.body.offsetHeight;  // + layout
  times.push(performance.now() - t);
}
document.body.insertAdjacentHTML("beforeend", '<pre id="timing">' + JSON.stringify(times) + "</pre>");
</script></body>"""


def browser_render_ms(page: Path) -> float | None:
    """Mean milliseconds of one table re-render (filter + sort + DOM) in headless chromium; None without it."""
    import re
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("google-chrome")
    if not chromium:
        return None
    harness = page.with_name("render_timing.html")
    harness.write_text(page.read_text().replace("</body>", _HARNESS))
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                          "--virtual-time-budget=10000", "--dump-dom", harness.as_uri()],
                         capture_output=True, text=True, timeout=300, check=False).stdout
    found = re.search(r'<pre id="timing">(\[.*?\])</pre>', dom)
    return float(np.mean(json.loads(found.group(1)))) if found else None


def with_script_of(page: Path, rev: str) -> Path:
    """A copy of `page` whose table script is the one of report.py at git revision `rev` (same rows)."""
    import ast
    import re
    import subprocess

    from _common import ROOT

    source = subprocess.run(["git", "show", f"{rev}:tdph_workflows/analysis/report.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    template = next(ast.literal_eval(node.value) for node in ast.parse(source).body
                    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_TEMPLATE")
    text = page.read_text()
    data = {k: re.search(rf"const {k} = (.*?);\n", text).group(1) for k in ("rows", "columns")}
    script = template[template.index("<script>"):].format(**data)
    old = page.with_name(f"report_{rev}.html")
    old.write_text(text[:text.index("<script>")] + script)
    return old


def local_forest_seconds(analysis: Path, n_rows: int, seed: int = 0) -> float:
    """Seconds of one local-forest fit (of the 7 analyze makes) on `n_rows` site rows.

    The analyzed local features are repeated (with a 0.1 % jitter and new lognormal targets, one
    material per original row block) up to `n_rows`: the fit cost of a campaign too large to featurize
    here.
    """
    import pandas as pd

    from tdph_workflows.analysis import models

    x = pd.read_csv(analysis / "features_local.csv", index_col=[0, 1])
    rng = np.random.default_rng(seed)
    k = n_rows // len(x) + 1
    big = np.concatenate([x.to_numpy() * rng.normal(1, 1e-3, x.shape) for _ in range(k)])[:n_rows]
    index = pd.MultiIndex.from_tuples([(f"{m}-{j}", i) for j in range(k) for m, i in x.index][:n_rows])
    y = pd.Series(0.05 * rng.lognormal(0, 0.8, n_rows), index=index)
    t = time.perf_counter()
    models.fit_forest(pd.DataFrame(big, index=index, columns=x.columns), y, "local", models.LOCAL_SETTINGS,
                      boxcox_lambda=models.BOXCOX_LAMBDA)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=500, help="materials")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--structures", type=Path, default=Path("/tmp/tdph_bench_mdr_cells"))
    p.add_argument("--work", type=Path, default=Path("/tmp/tdph_bench_analysis"))
    p.add_argument("--skip-cold", action="store_true", help="reuse the cache of an earlier run (warm only)")
    p.add_argument("--cells-only", action="store_true", help="only parse and cache the MDR cells")
    p.add_argument("--name", default="analysis_scale")
    p.add_argument("--forest-rows", type=int, nargs="*", default=[],
                   help="also time one local forest fit on this many site rows (e.g. 40000 80000)")
    p.add_argument("--baseline-rev", default="7ac847a", help="git revision whose page script is compared")
    p.add_argument("--report-rows", type=int, default=4000, help="also time a report of this many rows (0: no)")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    t = time.perf_counter()
    cells = load_cells(args.n, args.structures)
    t_cells = time.perf_counter() - t
    if args.cells_only:
        print(f"{len(cells)} cells in {t_cells:.0f} s")
        return

    from tdph_workflows.analysis import report
    from tdph_workflows.analysis.results import tables

    materials, sites = tables(summaries(cells))
    n, n_sites = len(materials), len(sites)
    print(f"{n} materials, {n_sites} sites (cells {t_cells:.0f} s)", file=sys.stderr)
    cache, rows = args.work / f"cache_{n}", []
    header = ["N materials", "N sites", "workers", "run", "phase", "seconds"]
    if not args.skip_cold:
        shutil.rmtree(cache, ignore_errors=True)
        cold = run_analyze(materials, sites, args.work / "out_cold", cache, args.workers)
        rows += [[n, n_sites, args.workers, "cold", k, f"{v:.1f}"] for k, v in cold.items()]
        print("cold", cold, file=sys.stderr)
    warm = run_analyze(materials, sites, args.work / "out_warm", cache, args.workers)
    rows += [[n, n_sites, args.workers, "warm", k, f"{v:.1f}"] for k, v in warm.items()]
    print("warm", warm, file=sys.stderr)

    t = time.perf_counter()
    page = report.write_report(args.work / "out_warm")
    rows.append([n, n_sites, 1, "report", "write_report", f"{time.perf_counter() - t:.2f}"])
    rows.append([n, n_sites, 1, "report", "report.html MB", f"{page.stat().st_size / 1e6:.2f}"])

    if args.report_rows:
        t_write, mb, big_page = report_at(args.report_rows, args.work / "out_warm", args.work)
        rows.append([args.report_rows, "", 1, "report", "write_report", f"{t_write:.2f}"])
        rows.append([args.report_rows, "", 1, "report", "report.html MB", f"{mb:.2f}"])
        for label, html_page in (("paged", big_page), (f"all rows ({args.baseline_rev})",
                                                       with_script_of(big_page, args.baseline_rev))):
            ms = browser_render_ms(html_page)
            if ms is not None:
                rows.append([args.report_rows, "", 1, "report", f"chromium ms per re-filter + layout: {label}",
                             f"{ms:.1f}"])
    for n_rows in args.forest_rows:
        rows.append(["", n_rows, "all", "forest at scale", "one local forest fit (of 7)",
                     f"{local_forest_seconds(args.work / 'out_warm', n_rows):.0f}"])
    t_proto, t_poly, n_sub, n_strong = annotate_split(materials, sites)
    rows.append([n_sub, n_strong, 1, "serial sample", "prototypes (uncached)", f"{t_proto:.1f}"])
    rows.append([n_sub, n_strong, 1, "serial sample", "polyhedra of strong sites (uncached)", f"{t_poly:.1f}"])
    out = RESULTS / f"{args.name}.csv"
    if out.exists():  # keep the rows of other N and runs (a --skip-cold rerun keeps the cold rows)
        new = {(str(r[0]), r[3], r[4]) for r in rows}
        rows = [r for r in (line.split(",") for line in out.read_text().splitlines()[1:])
                if (r[0], r[3], r[4]) not in new] + rows
    write_table(args.name, header, rows)


if __name__ == "__main__":
    main()
