"""A campaign published as a dataset: one row per material, per-site JSON, data card, report, paper comparison.

``publish`` reads the per-material records of a campaign database (or of an exported records file,
``tdph campaign export``) and writes, into one folder meant to be committed or archived:

- ``materials.csv``: one row per material: identity, model, settings key, L2 shift with its error,
  R_full, max R_onsite, per-site R_onsite, harmonic and T minimum frequency, DFT deviation, trust grade
  with reasons, wall time; failed materials with the recorded reason.
- ``materials.json.gz``: the same rows with the per-site records, grade reasons as a list and the cell.
- ``analysis_trusted/`` and ``analysis_all/``: the light outputs of :func:`~.report.analyze` (figures,
  trend tables, candidates, summary.json) on the trusted grades and on every grade, side by side.
- ``report.html``: the campaign report (trusted figures; every material in the table, grade filter).
- ``comparison.md``: our trends beside the paper's (Lee et al., arXiv 2601.09123).
- ``DATACARD.md``: source and licence, model, code version, settings, counts, how to reproduce.

Heavy intermediates (features, fitted forests, feature cache) stay in ``work_dir``.
"""

from __future__ import annotations

import datetime
import gzip
import json
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..campaign.queries import grade_rank

# what the paper reports for its 4,669-compound campaign at 300 K (Lee, Li, He & Xia, arXiv 2601.09123)
PAPER = {
    "n_materials": 4669,
    "n_candidates": 1200,  # "about 1,200" with R_onsite >= 0.15
    "top_elements": ["Rb", "Cs", "Tl"],
    "noted_elements": ["H"],
    "top_spacegroups": [128, 107, 221, 87, 225],
    "top_prototype": "perovskite-derived",
}
TRUSTED_GRADES = ("A", "B")
ALL_GRADES = ("A", "B", "C", "F")
LIGHT_OUTPUTS = ("summary.json", "element_trends.csv", "spacegroup_trends.csv", "candidates.csv",
                 "prototype_counts.csv",
                 "element_heatmap.png", "spacegroup_bars.png", "prototype_violins.png", "feature_importances.png",
                 "case_study.png")
COLUMNS = ["material_id", "formula", "spacegroup", "spacegroup_number", "n_atoms_supercell", "state", "model",
           "setup_key", "temperature", "l2_shift_pct", "l2_stderr_pct", "r_full", "r_full_robust", "r_onsite_max",
           "r_onsite_sites", "prototype", "harmonic_min_thz", "min_thz_T", "harmonic_n_imaginary", "n_imaginary_T",
           "dft_mae_thz", "dft_relative_deviation", "max_rms_displacement", "lindemann_ratio", "n_samples",
           "grade", "grade_reasons", "wall_s", "wall_time_note", "error", "source_file"]


@dataclass
class PublishReport:
    """What :func:`publish` wrote and counted."""

    out: Path
    n_records: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    by_grade: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def _round(value, digits: int):
    return None if value is None else round(float(value), digits)


def _first_temperature(summary: dict) -> dict:
    temps = summary.get("temperatures") or []
    return temps[0] if temps else {}


def _sites_text(sites: list[dict]) -> str:
    """Compact per-site R_onsite: 'Ar0(c) 1.066; ...' (index, element, Wyckoff letter)."""
    return "; ".join(f"{s['element']}{s['index']}({s.get('wyckoff') or '?'}) {s['r_onsite']:.4g}" for s in sites)


def _error_line(error) -> str:
    """The one-line reason of a failed record (its first line; tracebacks stay in the database)."""
    if not error:
        return ""
    text = error.get("message", "") if isinstance(error, dict) else str(error)
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def dataset_row(record: dict) -> dict:
    """One flat dataset row of a registry record (COMPLETED or FAILED).

    Parameters
    ----------
    record
        A ``materials`` registry document (or an exported one): ``material_id``, ``state``, ``summary``,
        ``wall_time``, ``error``, ``setup_key``, ``source``.

    Returns
    -------
    dict
        The :data:`COLUMNS` of the row; metrics are None for a material without a result.
    """
    s = record.get("summary") or {}
    t = _first_temperature(s)
    dft = s.get("dft_reference") or {}
    sites = t.get("sites") or []
    return {
        "material_id": record.get("material_id") or s.get("material_id"),
        "formula": s.get("formula"), "spacegroup": s.get("spacegroup"),
        "spacegroup_number": s.get("spacegroup_number"), "n_atoms_supercell": s.get("n_atoms_supercell"),
        "state": record.get("state"), "model": s.get("calculator"), "setup_key": record.get("setup_key"),
        "temperature": t.get("temperature"),
        "l2_shift_pct": _round(100 * t["l2_shift"], 3) if "l2_shift" in t else None,
        "l2_stderr_pct": _round(100 * t["l2_stderr"], 3) if "l2_stderr" in t else None,
        "r_full": _round(t.get("r_full"), 5), "r_full_robust": _round(t.get("r_full_robust"), 5),
        "r_onsite_max": _round(t.get("r_onsite_max"), 5), "r_onsite_sites": _sites_text(sites),
        "harmonic_min_thz": _round(s.get("harmonic_min_frequency"), 4), "min_thz_T": _round(t.get("min_frequency"), 4),
        "harmonic_n_imaginary": s.get("harmonic_n_imaginary"), "n_imaginary_T": t.get("n_imaginary"),
        "dft_mae_thz": _round(dft.get("mae_thz"), 4), "dft_relative_deviation": _round(dft.get("relative_deviation"), 4),
        "max_rms_displacement": _round(t.get("max_rms_displacement"), 4),
        "lindemann_ratio": _round(t.get("lindemann_ratio"), 4), "n_samples": t.get("n_samples"),
        "grade": t.get("grade") or s.get("grade") or "",
        "grade_reasons": "; ".join(t.get("grade_reasons") or s.get("grade_reasons") or []),
        "wall_s": _round(record.get("wall_time"), 2), "wall_time_note": record.get("wall_time_note") or "",
        "error": _error_line(record.get("error")),
        "source_file": Path(record["source"]).name if record.get("source") else "",
    }


def dataset_record(record: dict) -> dict:
    """:func:`dataset_row` plus per-site records, grade reasons as a list and the unit cell (the JSON form)."""
    s = record.get("summary") or {}
    t = _first_temperature(s)
    row = dataset_row(record)
    row["grade_reasons"] = list(t.get("grade_reasons") or s.get("grade_reasons") or [])
    row["sites"] = [{k: site.get(k) for k in ("index", "element", "wyckoff", "r_onsite", "r_onsite_stderr")}
                    for site in t.get("sites") or []]
    row["temperatures"] = [{k: v for k, v in x.items() if k != "sites"} for x in s.get("temperatures") or []]
    row["unitcell"] = s.get("unitcell")
    return row


def read_records(source) -> list[dict]:
    """Registry records of a campaign database or of an exported ``.jsonl.gz`` file, SUPERSEDED ones left out.

    Parameters
    ----------
    source
        A path to an exported records file, or a ``(DatabaseSettings, campaign or None)`` pair.
    """
    if isinstance(source, (str, Path)):
        from bson import json_util

        with gzip.open(source, "rt") as fh:
            records = [json_util.loads(line) for line in fh if line.strip()]
    else:
        from ..campaign import registry

        db, campaign = source
        query = {"campaign": campaign} if campaign else {}
        records = list(registry.collection(db).find(query, {"_id": 0}))
    return [r for r in records if r.get("state") != "SUPERSEDED"]


def _write_rows(records: list[dict], out: Path, prototypes: dict[str, str]) -> list[dict]:
    records = [r for r in records if r.get("state") != "WAITING"]  # not computed yet: counted in the card only
    rows = sorted(({**dataset_row(r), "prototype": prototypes.get(r.get("material_id"), "")} for r in records),
                  key=lambda r: (grade_rank(r["grade"]),
                                 -(r["r_onsite_max"] or 0.0), r["material_id"] or ""))
    pd.DataFrame(rows, columns=COLUMNS).to_csv(out / "materials.csv", index=False)
    full = [{**dataset_record(r), "prototype": prototypes.get(r.get("material_id"), "")} for r in records]
    with gzip.open(out / "materials.json.gz", "wt") as fh:
        json.dump(full, fh, default=str)
    return rows


def _analysis(records: list[dict], grades: Iterable[str], work: Path, out: Path, workers: int,
              feature_cache: Path, min_group_size: int, threshold: float) -> dict:
    from .report import analyze
    from .results import tables

    materials, sites = tables(r["summary"] for r in records if r.get("state") == "COMPLETED" and r.get("summary"))
    summary = analyze(materials, sites, work, threshold, workers=workers, feature_cache=feature_cache,
                      grades=[*grades, ""], min_group_size=min_group_size)
    out.mkdir(parents=True, exist_ok=True)
    for name in LIGHT_OUTPUTS:
        if (work / name).exists():
            shutil.copy2(work / name, out / name)
    return summary


def reason_counts(rows: list[dict]) -> dict[str, int]:
    """How many completed materials carry each grade reason code ('F dft_stability', ...), most frequent first."""
    counts: Counter = Counter()
    for r in rows:
        if r.get("state") == "COMPLETED":
            counts.update({reason.split(":")[0].strip() for reason in (r.get("grade_reasons") or "").split("; ")
                           if reason.strip()})
    return dict(counts.most_common())


def comparison_page(trusted: dict, every: dict, n_records: int, reasons: dict[str, int] | None = None) -> str:
    """Markdown: our strongest elements, space groups, candidate share and prototypes beside the paper's."""
    def share(s: dict) -> str:
        return f"{s['n_candidates']} of {s['n_materials']} ({100 * s['n_candidates'] / max(s['n_materials'], 1):.1f} %)"

    def elements(s: dict) -> str:
        return ", ".join(f"{e['element']} {e['mean_r_onsite']:.2f} ({e['n_materials']} materials)"
                         for e in s.get("top_elements_min", s["top_elements"])) or f"none in ≥ {min_n} materials"

    def groups(s: dict) -> str:
        return ", ".join(f"{g['spacegroup_number']} {100 * g['mean_l2_shift']:.1f} % (n={g['n_materials']})"
                         for g in s.get("top_spacegroups_min", s["top_spacegroups"])) or f"none with ≥ {s.get('min_group_size', 1)} materials"

    def prototypes(s: dict) -> str:
        return ", ".join(f"{k} ({v})" for k, v in list(s.get("candidate_prototypes", {}).items())[:5])

    paper_share = f"≈{PAPER['n_candidates']:,} of {PAPER['n_materials']:,} " \
                  f"({100 * PAPER['n_candidates'] / PAPER['n_materials']:.0f} %)"
    min_n = trusted.get("min_group_size", 1)
    lines = [
        "# This campaign beside the paper",
        "",
        (f"Lee, Li, He & Xia (arXiv 2601.09123) ran {PAPER['n_materials']:,} MDR compounds at 300 K with a "
        f"fine-tuned M3GNet. This campaign: {n_records:,} shared MDR entries (< 20 atoms), "
        f"{trusted['n_materials'] + sum(trusted.get('left_out_by_grade', {}).values())} with a result. "
        f"'Trusted' keeps grades {'/'.join(TRUSTED_GRADES)} (a one-shot result is at best B); 'every grade' "
        "includes C (qualitative) and F (not a result)."),
        "",
        "| | paper | trusted grades | every grade |",
        "|---|---|---|---|",
        f"| materials analyzed | {PAPER['n_materials']:,} | {trusted['n_materials']} | {every['n_materials']} |",
        (f"| strongest elements (mean R_onsite, in ≥ {min_n} materials) | {', '.join(PAPER['top_elements'])} (H noted) | "
        f"{elements(trusted)} | {elements(every)} |"),
        (f"| strongest space groups (mean L2 shift, ≥ {min_n} materials) | "
        f"{', '.join(map(str, PAPER['top_spacegroups']))} | {groups(trusted)} | {groups(every)} |"),
        f"| candidates, max R_onsite ≥ {trusted['threshold']} | {paper_share} | {share(trusted)} | {share(every)} |",
        f"| top candidate prototypes | {PAPER['top_prototype']} first | {prototypes(trusted)} | {prototypes(every)} |",
        "",
    ]
    for label, s in (("trusted grades", trusted), ("every grade", every)):
        m = s.get("models", {})
        parts = [f"{kind}: test R² {m[kind]['test_r2']:.2f}, {m[kind]['cv_by_material']['folds']}-fold CV by "
                 f"material R² {m[kind]['cv_by_material']['r2_mean']:.2f} ± {m[kind]['cv_by_material']['r2_std']:.2f}"
                 for kind in ("global", "local") if kind in m]
        lines.append(f"- Random forests ({label}): " + ("; ".join(parts) if parts else m.get("skipped", "not fitted")))
    lines += ["", "## Where we agree, where not, and why", "", _agreement(trusted, every), ""]
    if reasons:
        n_done = every["n_materials"]
        lines += ["What grading removes (a material can carry several reasons; docs/trust.md):", "",
                  "| reason | materials | share of completed |", "|---|---|---|",
                  *(f"| {code} | {n} | {100 * n / max(n_done, 1):.1f} % |" for code, n in reasons.items()), ""]
    return "\n".join(lines)


def _agreement(trusted: dict, every: dict) -> str:
    """Measured overlaps with the paper's lists, stated per grade selection."""
    out = []
    for label, s in (("trusted", trusted), ("every grade", every)):
        top_el = [e["element"] for e in s.get("top_elements_min", s["top_elements"])[:5]]
        top_sg = [g["spacegroup_number"] for g in s.get("top_spacegroups_min", s["top_spacegroups"])[:5]]
        el_hits = sorted(set(top_el) & set(PAPER["top_elements"] + PAPER["noted_elements"]))
        sg_hits = sorted(set(top_sg) & set(PAPER["top_spacegroups"]))
        perov = sum(v for k, v in s.get("candidate_prototypes", {}).items() if "erovskite" in k)
        abc3 = sum(v for k, v in s.get("candidate_prototypes", {}).items() if k.startswith("ABC3"))
        out.append(f"- {label}: {len(el_hits)} of the paper's strongest elements among our top 5 "
                   f"({', '.join(el_hits) or 'none'}); {len(sg_hits)} of its top 5 space groups among ours "
                   f"({', '.join(map(str, sg_hits)) or 'none'}); perovskite prototypes among the top candidate "
                   f"prototypes: {perov} materials (AFLOW match), {abc3} more of ABC3 stoichiometry unmatched by AFLOW; candidate share {100 * s['n_candidates'] / max(s['n_materials'], 1):.1f} % "
                   f"(paper {100 * PAPER['n_candidates'] / PAPER['n_materials']:.0f} %).")
    return "\n".join(out)


def data_card(report: PublishReport, settings: list[dict], versions: dict[str, str], reproduce: list[str]) -> str:
    """Markdown data card: what the dataset holds, where it comes from, how to rebuild it."""
    from .. import __version__

    models = sorted({m for s in settings for m in [s.get("model")] if m})
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    lines = [
        "# Data card: temperature-renormalized phonons of the shared MDR compounds",
        "",
        f"Written {when} by tdph {__version__} (`tdph campaign publish`).",
        "",
        "## Source",
        ("Structures and DFT harmonic references: the Materials Data Repository phonon database "
        "(phonondb, PBEsol, 2018-04-17; Togo), entries with fewer than 20 atoms in the primitive cell, licence "
        "CC BY 4.0 — cite the MDR phonon database and Togo & Tanaka, Scr. Mater. 108, 1 (2015) when you use it. "
        "This dataset is released under the same licence."),
        "",
        "## Method",
        ("Harmonic phonons with the machine-learned potential (phonopy), then one-shot SSCHA at the listed "
        "temperature: thermal samples from the quantum covariance, force-constant fit, space-group "
        "symmetrization (Lee, Li, He & Xia, arXiv 2601.09123). Each material carries a trust grade "
        "(A trusted, B usable, C qualitative, F not a result) with its reasons (docs/trust.md)."),
        "",
        f"- Model(s): {', '.join(models) or 'not recorded'}",
        f"- Package versions: {', '.join(f'{k} {v}' for k, v in sorted(versions.items())) or 'not recorded'}",
    ]
    for s in settings:
        lines.append(f"- Settings (setup of {s.get('n_fireworks', '?')} fireworks): T = {s.get('temperatures')} K, "
                     + ", ".join(f"{k}={v}" for k, v in sorted((s.get("settings") or {}).items())))
    lines += ["", "## Contents", "",
              f"- {report.n_records} materials: " + ", ".join(f"{n} {k}" for k, n in sorted(report.by_state.items())),
              "- by trust grade: " + ", ".join(f"{g or 'ungraded'} {n}" for g, n in sorted(report.by_grade.items())),
              ("- `materials.csv`: one row per material (failed ones with the reason in `error`); L2 shift and its "
              "standard error in %, frequencies in THz (negative = imaginary), `r_onsite_sites` as "
              "'element index (Wyckoff) value'."),
              ("- `materials.json.gz`: the same rows with per-site records, grade reasons as a list, all "
              "temperatures and the unit cell (pymatgen dict)."),
              ("- `analysis_trusted/`, `analysis_all/`: trends, screening, prototypes and random forests on the "
              "trusted grades and on every grade; `comparison.md` puts them beside the paper; `report.html` is "
              "the browsable page."),
              "", "## Reproduce", "", "```bash", *reproduce, "```", ""]
    return "\n".join(lines)


def campaign_settings(db, campaign: str | None) -> list[dict]:
    """The distinct (model, temperatures, settings) of a campaign's fireworks, with how many used each."""
    from ..campaign.settings import launchpad

    query = {"spec.tdph_campaign": campaign} if campaign else {"spec.tdph_campaign": {"$exists": True}}
    seen: dict[str, dict] = {}
    for fw in launchpad(db).fireworks.find(query, {"spec._tasks.job.function_args": 1}):
        try:
            _, model, temps, settings = fw["spec"]["_tasks"][0]["job"]["function_args"][:4]
        except (KeyError, IndexError, ValueError):
            continue
        key = json.dumps([model, temps, settings], sort_keys=True)
        entry = seen.setdefault(key, {"model": model, "temperatures": temps, "settings": settings, "n_fireworks": 0})
        entry["n_fireworks"] += 1
    return list(seen.values())


def reproduce_commands(settings: list[dict], campaign: str | None, out: str | Path,
                       mdr_dir: str = "../shared/data/phonondb_pbesol_20180417/raw_lt20atoms") -> list[str]:
    """The commands that rebuild a campaign's dataset: one submission per distinct setting, workers, publish.

    Parameters
    ----------
    settings
        :func:`campaign_settings` of the campaign (model, temperatures, engine settings per firework set).
    campaign
        Campaign name, or None for every campaign of the database.
    out
        The dataset folder.
    mdr_dir
        MDR folder as it should appear in the commands.
    """
    named = f" --campaign {campaign}" if campaign else ""
    commands = ["tdph db start"]
    for s in settings or [{}]:
        engine = s.get("settings") or {}
        temps = " ".join(f"-T {t:g}" for t in s.get("temperatures", [300.0]))
        model = f" --model {s['model']}" if s.get("model") else ""
        sc = " --self-consistent" if engine.get("self_consistent") else ""
        cap = engine.get("known_failure_pairs")
        capped = f" --known-failure-pairs {cap}" if cap is not None else ""
        capped += " --known-failure-keeps-cell" if engine.get("known_failure_keeps_cell") else ""
        commands.append(f"tdph campaign submit --mdr-dir {mdr_dir} {temps}{model}{sc}{capped} --chunk-size 4{named}")
    commands += ["tdph worker --n 2   # or qlaunch on SLURM (docs/workflows.md); resumable: rerun after a kill",
                 f"tdph campaign publish --out {out}{named}"]
    return commands


def publish(records: list[dict], out: str | Path, work_dir: str | Path, settings: list[dict] | None = None,
            reproduce: list[str] | None = None, workers: int = 1, feature_cache: str | Path | None = None,
            min_group_size: int = 10, threshold: float = 0.15, title: str = "tdph campaign") -> PublishReport:
    """Write the dataset, its data card, both analyses, the report and the paper comparison into ``out``.

    Parameters
    ----------
    records
        Registry records (:func:`read_records`).
    out
        Dataset folder (light files only).
    work_dir
        Folder for the heavy intermediates (features, forests).
    settings
        :func:`campaign_settings` of the campaign, for the data card.
    reproduce
        Commands that rebuild the dataset, for the data card.
    workers, feature_cache
        Passed to :func:`~.report.analyze`.
    min_group_size
        Space groups with fewer materials are left out of the space-group trends.
    threshold
        Screening threshold on max R_onsite.
    title
        Title of the report page.

    Returns
    -------
    PublishReport
    """
    from .. import __version__
    from ..schemas import package_versions
    from .report import write_report

    out, work = Path(out), Path(work_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not records:
        raise ValueError("no records to publish")
    report = PublishReport(out=out, n_records=len(records), by_state=dict(Counter(r.get("state") for r in records)))
    cache = Path(feature_cache) if feature_cache else work / "feature_cache"
    trusted = _analysis(records, TRUSTED_GRADES, work / "analysis_trusted", out / "analysis_trusted", workers, cache,
                        min_group_size, threshold)
    every = _analysis(records, ALL_GRADES, work / "analysis_all", out / "analysis_all", workers, cache,
                      min_group_size, threshold)
    labelled = pd.read_csv(work / "analysis_all" / "materials.csv", usecols=["material_id", "prototype"])
    rows = _write_rows(records, out, dict(zip(labelled["material_id"], labelled["prototype"], strict=True)))
    report.by_grade = dict(Counter(r["grade"] for r in rows if r["state"] == "COMPLETED"))
    page = write_report(work / "analysis_trusted", title=f"{title}: {len(rows)} materials, trusted-grade trends")
    shutil.copy2(page, out / "report.html")
    (out / "comparison.md").write_text(comparison_page(trusted, every, len(records), reason_counts(rows)))
    versions = {"tdph-workflows": __version__, **package_versions()}
    (out / "DATACARD.md").write_text(data_card(report, settings or [], versions, reproduce or []))
    report.files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return report
