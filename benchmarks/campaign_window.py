"""Throughput and where the engine time went for the materials a campaign finished in a time window.

    python benchmarks/campaign_window.py RECORDS.jsonl.gz --since 2026-12-07T14:16:24 \
        [--until ISO] --workers "2026-12-07T14:16:24=1" "2026-12-07T14:42:00=2"

Reads an exported records file (``tdph campaign export``): materials per hour, engine time (each record's
wall time) over worker-seconds, and the share of the engine time spent on materials graded F before
sampling and on those among them whose supercell was widened.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json

KNOWN_FAILURES = {"dft_stability", "dft_deviation", "oneshot_on_unstable"}


def when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=None)  # UTC, as the records store it


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records")
    ap.add_argument("--since", required=True, type=when)
    ap.add_argument("--until", type=when, help="default: the last finish in the window")
    ap.add_argument("--workers", nargs="+", required=True, help="ISO=N: N workers from that time on")
    args = ap.parse_args()
    with gzip.open(args.records, "rt") as fh:
        records = [json.loads(line) for line in fh]
    done = [r for r in records if r.get("state") == "COMPLETED" and r.get("finished")
            and when(r["finished"]["$date"]) > args.since]
    until = args.until or max(when(r["finished"]["$date"]) for r in done)
    done = [r for r in done if when(r["finished"]["$date"]) <= until]
    steps = sorted((when(t), int(n)) for t, n in (w.split("=") for w in args.workers))
    worker_s = sum(n * max(0.0, (min(nxt, until) - max(t, args.since)).total_seconds())
                   for (t, n), nxt in zip(steps, [s[0] for s in steps[1:]] + [until], strict=True))
    engine = sum(r["wall_time"] or 0.0 for r in done)
    hours = (until - args.since).total_seconds() / 3600
    failed = [r for r in done if {x.split(":")[0].split()[1] for x in r["summary"]["grade_reasons"]} & KNOWN_FAILURES]
    widened = [r for r in failed if r["summary"].get("supercell_extended_by")]
    print(f"{len(done)} materials in {hours:.2f} h = {len(done) / hours:.1f} per hour; engine time {engine:.0f} s "
          f"over {worker_s:.0f} worker-s = {engine / worker_s:.3f} (materials in flight not counted)")
    widened_s = sum(r["wall_time"] or 0.0 for r in widened)
    print(f"graded F before sampling: {len(failed)} materials, {sum(r['wall_time'] or 0.0 for r in failed):.0f} s; "
          f"of them widened: {len(widened)}, {widened_s:.0f} s ({widened_s / engine:.0%} of the engine time)")


if __name__ == "__main__":
    main()
