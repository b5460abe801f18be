"""Campaign throughput: N random MDR entries, 2 local workers, vs the sum of per-material engine times.

    python benchmarks/bench_campaign.py [--n 50] [--workers 2] [--chunk-size 1]

Uses a fresh embedded database in a temporary folder. Prints materials/hour and the
orchestration overhead: wall x workers / sum(engine time) - 1.
"""

from __future__ import annotations

import argparse
import csv
import random
import socket
import tempfile
import time
from pathlib import Path

from _common import MDR, setup_env, write_table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk-size", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    setup_env()
    from tdph_workflows.campaign import registry
    from tdph_workflows.campaign.database import EmbeddedDatabase
    from tdph_workflows.campaign.settings import DatabaseSettings
    from tdph_workflows.campaign.submit import Item, submit
    from tdph_workflows.campaign.worker import start_workers

    with open(MDR / "index.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["lt20_atoms_primitive"] == "True"
                and (MDR / "raw_lt20atoms" / r["raw_tarball"]).exists()]
    picked = random.Random(args.seed).sample(rows, args.n)
    items = [Item(r["mp_id"], str(MDR / "raw_lt20atoms" / r["raw_tarball"]), int(r["natoms_supercell"]))
             for r in picked]
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        server = EmbeddedDatabase(Path(tmp) / "db", port=port)
        server.start()
        try:
            db = DatabaseSettings(server.uri, "bench", "embedded")
            t0 = time.perf_counter()
            report = submit(items, db, chunk_size=args.chunk_size, campaign="bench")
            t_submit = time.perf_counter() - t0
            t0 = time.perf_counter()
            for p in start_workers(args.workers, db, ["gpu", "cpu"], Path(tmp) / "runs"):
                p.wait()
            wall = time.perf_counter() - t0
            coll = registry.collection(db)
            done = list(coll.find({"state": "COMPLETED"}, {"wall_time": 1}))
            failed = list(coll.find({"state": "FAILED"}, {"material_id": 1, "error": 1}))
            launches = list(coll.database["launches"].find({"state": "COMPLETED"},
                                                           {"fworker.name": 1, "time_start": 1, "time_end": 1}))
        finally:
            server.stop()
    engine = sum(d["wall_time"] for d in done)
    overhead = wall * args.workers / engine - 1 if engine else float("nan")
    # busy time per worker (first rocket start to last rocket end) vs engine time: orchestration alone,
    # without the idle tail when one worker finishes the last material while the other waits
    from datetime import datetime

    spans: dict[str, list] = {}
    for launch in launches:
        t_start, t_end = (datetime.fromisoformat(launch[k]) for k in ("time_start", "time_end"))
        spans.setdefault(launch["fworker"]["name"], []).append((t_start, t_end))
    busy = sum((max(e for _, e in v) - min(s for s, _ in v)).total_seconds() for v in spans.values())
    print(f"busy worker time {busy:.0f} s; orchestration overhead {100 * (busy / engine - 1):.1f} %; "
          f"idle tail {wall * args.workers - busy:.0f} worker-s")
    rows_out = [[args.n, args.workers, args.chunk_size, report.fireworks, len(done), len(failed), f"{t_submit:.1f}",
                 f"{wall:.0f}", f"{len(done) / wall * 3600:.0f}", f"{engine:.0f}", f"{100 * overhead:.1f}"]]
    write_table(f"campaign_{args.n}", ["entries", "workers", "chunk", "fireworks", "completed", "failed", "submit (s)",
                                       "wall (s)", "materials/h", "sum engine (s)", "overhead (%)"], rows_out)
    for f in failed:
        print("FAILED", f["material_id"], f["error"][:120])


if __name__ == "__main__":
    main()
