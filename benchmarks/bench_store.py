"""Cost of storing a campaign chunk's output: full (N, N, 3, 3) force constants against phonopy's compact layout.

Takes the latest chunk outputs of a campaign database (stored in the full layout before 0.1.1), and stores
each twice through a real jobflow job into a scratch JobStore on the same server: as it was, and with every
force-constant set in the compact layout. Writes ``benchmarks/results/store_cost.md``.

    TDPH_DB_PORT=27300 TDPH_DB_DIR=../campaign_full/db python benchmarks/bench_store.py --chunks 4
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from jobflow import Flow, job, run_locally

import tdph_workflows.makers.jobs  # registers the packed-array encoding, as the workers do
from tdph_workflows.campaign.settings import resolve
from tdph_workflows.campaign.stores import campaign_job_store, job_store
from tdph_workflows.core.phonons import compact_force_constants
from tdph_workflows.schemas import TDPHResult

OUT = Path(__file__).parent / "results" / "store_cost.md"


@job(data=tdph_workflows.makers.jobs.DATA_KEYS)
def _returns(output: dict) -> dict:
    return output


def compact(result: TDPHResult) -> TDPHResult:
    """The same result with every force-constant set in phonopy's compact layout."""
    phonon = result.phonopy_cell()
    r = result.model_copy(deep=True)
    r.harmonic_force_constants = compact_force_constants(phonon, r.harmonic_force_constants).tolist()
    for t in r.temperatures:
        t.force_constants = compact_force_constants(phonon, t.force_constants).tolist()
    return r


def store_seconds(output: dict, store) -> tuple[float, int]:
    """Wall seconds of one job storing ``output``, and the bytes it put in GridFS."""
    flow = Flow([_returns(output)])
    uuid = flow.jobs[0].uuid
    t0 = time.perf_counter()
    run_locally(flow, store=store, log=False, ensure_success=True)
    seconds = time.perf_counter() - t0
    blobs = store.additional_stores["data"]
    size = sum(f["length"] for f in blobs._files_collection.find({"metadata.job_uuid": uuid}, {"length": 1}))
    return seconds, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=4, help="latest chunk outputs to store")
    args = ap.parse_args()
    db = resolve(None)
    source = campaign_job_store(db)
    source.connect()
    scratch_db = dataclasses.replace(db, database="tdph_store_bench")
    scratch = job_store(scratch_db)
    scratch.connect()
    rows = []
    for doc in source.docs_store.query({"output.results": {"$exists": True}}, sort={"completed_at": -1},
                                       limit=args.chunks):
        output = source.get_output(doc["uuid"], load=True)
        results = [TDPHResult.from_dict(e["result"]) if isinstance(e["result"], dict) else e["result"]
                   for e in output["results"]]
        if not results or any(r.harmonic_force_constants is None for r in results):
            continue
        atoms = [r.n_atoms_supercell for r in results]
        full = {"results": [{"key": str(k), "result": r} for k, r in enumerate(results)]}
        small = {"results": [{"key": str(k), "result": compact(r)} for k, r in enumerate(results)]}
        t_full, b_full = store_seconds(full, scratch)
        t_small, b_small = store_seconds(small, scratch)
        rows.append((atoms, t_full, b_full, t_small, b_small))
        print(rows[-1], flush=True)
    scratch.docs_store._collection.database.client.drop_database(scratch_db.database)
    header = ("| supercell atoms of the chunk | full layout (s) | full (MB in GridFS) | compact (s) | compact (MB) "
              "| time ratio |")
    lines = [header, "|---|---|---|---|---|---|"]
    for atoms, t_full, b_full, t_small, b_small in rows:
        lines.append(f"| {', '.join(map(str, atoms))} | {t_full:.1f} | {b_full / 1e6:.1f} | {t_small:.1f} | "
                     f"{b_small / 1e6:.2f} | {t_full / t_small:.1f}x |")
    tf, ts = sum(r[1] for r in rows), sum(r[3] for r in rows)
    lines.append(f"| all {len(rows)} chunks | {tf:.1f} | {sum(r[2] for r in rows) / 1e6:.1f} | {ts:.1f} | "
                 f"{sum(r[4] for r in rows) / 1e6:.2f} | {tf / ts:.1f}x |")
    OUT.write_text("# Storing a campaign chunk's output (jobflow JobStore, GridFS blobs, packed arrays)\n\n"
                   "Embedded SecantusDB, the same server as the running campaign; both layouts stored one after "
                   "the other for each chunk.\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
