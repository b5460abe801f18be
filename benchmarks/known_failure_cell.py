"""Which widened campaign materials ``known_failure_keeps_cell`` would keep at their input cell, and what it saves.

For every material of a campaign's records whose supercell was widened, the harmonic stage is run again on
the input (MDR) cell alone, and ``trust.failures_before_sampling`` read there: a material with any F reason
would not be widened. The table sets those reasons beside the grade the widened run got, so a reader sees
that keeping the cell changes no grade. Writes ``benchmarks/results/known_failure_cell.md``.

    python benchmarks/known_failure_cell.py benchmarks/results/campaign_full/records.jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

from tdph_workflows.engine import harmonic_stage
from tdph_workflows.trust import failures_before_sampling

OUT = Path(__file__).parent / "results" / "known_failure_cell.md"
MODEL = "TDPH-M3GNet-MDR-PBEsol-2026.11"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", type=Path)
    ap.add_argument("--model", default=MODEL)
    args = ap.parse_args()
    with gzip.open(args.records, "rt") as f:
        records = [json.loads(line) for line in f]
    widened = [r for r in records if r.get("summary") and r["summary"].get("supercell_extended_by")]
    widened.sort(key=lambda r: r["wall_time"])
    total = sum(r["wall_time"] or 0 for r in records)
    rows, kept_time = [], 0.0
    for r in widened:
        s = r["summary"]
        t0 = time.perf_counter()
        stage = harmonic_stage(r["source"], args.model, sampling_temperature=None)
        seconds = time.perf_counter() - t0
        codes = [code for _, code, _ in failures_before_sampling(stage.spectrum, stage.dft_reference, False)]
        widened_codes = sorted({g.split(":")[0].split()[1] for g in s["grade_reasons"] if g.startswith("F")})
        kept_time += r["wall_time"] if codes else 0.0
        rows.append(f"| {r['material_id']} | {s['formula']} | {len(stage.phonon.supercell)} -> {s['n_atoms_supercell']} "
                    f"| {stage.spectrum.min_frequency:.2f} | {s['harmonic_min_frequency']:.2f} "
                    f"| {', '.join(sorted(codes)) or '-'} | {s['grade']} {', '.join(widened_codes)} "
                    f"| {'kept' if codes else 'widened'} | {r['wall_time']:.0f} | {seconds:.0f} |")
        print(rows[-1], flush=True)
    n_kept = sum("| kept |" in row for row in rows)
    OUT.write_text(
        f"# known_failure_keeps_cell on the widened materials of {args.records.name}\n\n"
        f"{len(widened)} of {len(records)} settled materials were widened for thermal sampling. Each input cell's "
        "harmonic stage was run again (model " + args.model + ") and graded before sampling.\n\n"
        "| material | formula | atoms input -> widened | min freq input cell (THz) | min freq widened (THz) "
        "| F before sampling on the input cell | grade of the widened run | with the setting "
        "| campaign wall time (s) | input-cell harmonic stage (s) |\n|---|---|---|---|---|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n\n"
        f"{n_kept} would keep their input cell; they took {kept_time:.0f} s, {100 * kept_time / total:.1f} % of the "
        f"campaign's {total:.0f} s of material wall time.\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
