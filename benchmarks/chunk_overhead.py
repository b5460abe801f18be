"""Time a campaign's workers spend on a chunk after its last material: storing the job output.

Reads the workers' logs (``Starting job`` / ``Finished job`` lines of jobflow, with the materials in the
job name) and an exported records file (each material's ``finished`` time and engine wall time), and
prints, per time window, the median and mean seconds from the last material's record to the job's end,
and their share of the chunks' run time.

    python benchmarks/chunk_overhead.py ../campaign_full/runs/worker-*.log \\
        --records benchmarks/results/campaign_full/records.jsonl.gz --split 2026-12-07T17:50:00
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import re
import statistics
from pathlib import Path

LINE = re.compile(r"^(\S+ \S+),\d+ INFO (Starting|Finished) job - tdph (\S+) \(")


def chunks(logs: list[Path]) -> list[tuple[dt.datetime, dt.datetime, list[str]]]:
    """(start, end, material ids) of every finished job in the logs."""
    out = []
    for log in logs:
        started: dict[str, dt.datetime] = {}
        for line in log.read_text(errors="replace").splitlines():
            m = LINE.match(line)
            if not m:
                continue
            when = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
            if m.group(2) == "Starting":
                started[m.group(3)] = when
            elif m.group(3) in started:
                out.append((started.pop(m.group(3)), when, m.group(3).split(",")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="+", type=Path)
    ap.add_argument("--records", type=Path, required=True)
    ap.add_argument("--split", nargs="*", default=[], help="ISO times (UTC, as the logs) that start a new window")
    args = ap.parse_args()
    with gzip.open(args.records, "rt") as f:
        finished = {}
        for line in f:
            r = json.loads(line)
            if r.get("finished"):
                when = r["finished"]["$date"] if isinstance(r["finished"], dict) else r["finished"]
                finished[r["material_id"]] = dt.datetime.fromisoformat(when.replace("Z", "+00:00")).replace(tzinfo=None)
    splits = sorted(dt.datetime.fromisoformat(s) for s in args.split)
    windows: dict[int, list[tuple[float, float]]] = {}
    for start, end, ids in chunks(args.logs):
        done = [finished[i] for i in ids if i in finished and start <= finished[i] <= end + dt.timedelta(seconds=5)]
        if not done:
            continue
        after = max(0.0, (end - max(done)).total_seconds())
        windows.setdefault(sum(start >= s for s in splits), []).append((after, (end - start).total_seconds()))
    bounds = [None, *splits]
    print("| window from | chunks | after last material: median (s) | mean (s) | share of chunk time |")
    print("|---|---|---|---|---|")
    for k in sorted(windows):
        after = [a for a, _ in windows[k]]
        share = sum(after) / sum(t for _, t in windows[k])
        print(f"| {bounds[k] or 'start'} | {len(after)} | {statistics.median(after):.1f} | "
              f"{statistics.mean(after):.1f} | {100 * share:.0f} % |")


if __name__ == "__main__":
    main()
