"""The 150-entry MDR campaign (results/campaign_mdr150) re-graded from its stored per-material rows.

    python benchmarks/regrade_campaign150.py

The campaign predates the trust grade; its rows hold what most checks need (harmonic and 300 K minimum
frequencies, convergence, rms displacement, DFT deviation). Not stored, so not checked here: DFT
stability (the DFT minimum frequency) and the supercell's thermal-sampling ratio; all runs were one-shot.
Writes results/campaign_mdr150_grades.md: counts per grade and reason, and the top 10 by max R_onsite
(the report's default ranking) before and after grading.
"""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pandas as pd
from _common import RESULTS


def graded(row) -> tuple[str, list[str]]:
    from tdph_workflows.trust import grade_temperature

    harmonic_min = float(row.harmonic_min_frequency)
    dft = None if pd.isna(row.dft_deviation) else SimpleNamespace(
        relative_deviation=float(row.dft_deviation), min_frequency_dft=harmonic_min)  # DFT minimum not stored
    result = SimpleNamespace(harmonic=SimpleNamespace(min_frequency=harmonic_min), dft_reference=dft,
                             supercell_extended_by=None, thermal_sampling_ratio=None)
    t_min = float(row.min_frequency_T)
    t = SimpleNamespace(temperature=float(row.temperature), spectrum=SimpleNamespace(
        min_frequency=t_min, n_imaginary=int(t_min < -0.1)), self_consistent_converged=None, sampling_notes=[],
        self_consistent_changes_thz=[], max_rms_displacement=float(row.max_rms_displacement), lindemann_ratio=None,
        converged=bool(row.converged), l2_shift=float(row.l2_shift), l2_stderr=float(row.l2_stderr),
        n_samples=int(row.n_samples))
    grade = grade_temperature(result, t)
    return grade.grade, grade.codes


def main() -> None:
    rows = pd.read_csv(RESULTS / "campaign_mdr150" / "materials.csv")
    grades = [graded(r) for r in rows.itertuples()]
    rows["grade"] = [g for g, _ in grades]
    rows["reasons"] = [", ".join(c for c in codes if c != "one_shot") for _, codes in grades]
    counts = Counter(rows["grade"])
    reasons = Counter(c for _, codes in grades for c in codes)
    cols = ["material_id", "formula", "spacegroup_number", "r_onsite_max", "l2_shift", "harmonic_min_frequency",
            "min_frequency_T", "max_rms_displacement", "grade", "reasons"]

    def table(df: pd.DataFrame) -> list[str]:
        out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in df[cols].itertuples(index=False):
            out.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r) + " |")
        return out

    before = rows.sort_values("r_onsite_max", ascending=False).head(10)
    after = rows[rows["grade"].isin(["A", "B"])].sort_values("r_onsite_max", ascending=False).head(10)
    lines = ["# The 150-entry MDR campaign re-graded (300 K, one-shot, foundation model)", "",
             "From the stored rows of `campaign_mdr150/materials.csv` (`benchmarks/regrade_campaign150.py`). Not in "
             "those rows, so not checked: DFT stability, the supercell sampling ratio and the Lindemann ratio (the "
             "absolute-rms fallback, > 0.25 A, is used instead and flags stable soft crystals too: alkali halides "
             "reach 0.36 A at 300 K). Read C with that in mind; F does not depend on it.",
             "", "| grade | materials |", "|---|---|"]
    lines += [f"| {g} | {counts.get(g, 0)} |" for g in "ABCF"]
    lines += ["", "Reasons (a material can have several): " + ", ".join(f"{c} {n}" for c, n in reasons.most_common()),
              "", "## Top 10 by max R_onsite, as the report ranked them (no grading)", ""]
    lines += table(before)
    lines += ["", f"{sum(before['grade'] == 'F')} of these 10 are graded F.", "",
              "## Top 10 by max R_onsite among grades A and B", ""]
    lines += table(after)
    (RESULTS / "campaign_mdr150_grades.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
