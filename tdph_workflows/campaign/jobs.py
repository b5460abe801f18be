"""The campaign job: K materials with one model load, each recorded on its own."""

from __future__ import annotations

import time
from typing import Any

from jobflow import CURRENT_JOB, JobConfig, job
from maggma.stores import MemoryStore

from ..makers.documents import MaterialSummary
from ..makers.jobs import DATA_KEYS, compute_material
from . import registry
from .settings import resolve_on_worker


@job(data=DATA_KEYS, config=JobConfig(expose_store=True))
def campaign_chunk_job(items: list[dict[str, str]], calculator: str | None, temperatures: list[float],
                       settings: dict[str, Any]) -> dict:
    """Run every item; a failing material is recorded (FAILED, with its reason) and the others go on.

    The registry is reached through this node's own configuration (:func:`resolve_on_worker`), so the
    job and its firework carry no connection string. A material already COMPLETED (by a rerun that
    overlapped, or before a resubmission) or superseded by a corrected input is not computed again.
    A chunk of one that fails raises, so its firework FIZZLEs with the reason.
    """
    store = CURRENT_JOB.store
    if store is not None and isinstance(store.docs_store, MemoryStore):
        raise RuntimeError("no JobStore configured on this node: set JOBFLOW_CONFIG_FILE to a jobflow.yaml "
                           "(`tdph config init` writes one); results would be lost in memory")
    coll = registry.collection(resolve_on_worker())
    job_uuid = CURRENT_JOB.job.uuid if CURRENT_JOB.job is not None else None
    results, failed, skipped = [], [], []
    for item in items:
        record = registry.settled(coll, item["key"])
        kept = record is not None and _earlier_result(store, record, item["key"], job_uuid)
        if record is not None and (record["state"] == registry.SUPERSEDED or kept or record["job_uuid"] != job_uuid):
            if kept:  # this job's output is about to be replaced: carry the earlier result over
                results.append({"key": item["key"], "result": kept})
            skipped.append({"key": item["key"], "material_id": item["material_id"], "state": record["state"]})
            continue
        t0 = time.perf_counter()
        try:
            result = compute_material(item["source"], calculator, temperatures, settings,
                                      material_id=item["material_id"])
        except Exception as exc:  # record and go on: one bad material never takes the chunk down
            registry.record_failure(coll, item["key"], exc)
            failed.append({"key": item["key"], "material_id": item["material_id"], "error": f"{type(exc).__name__}: {exc}"})
            if len(items) == 1:
                raise
            continue
        summary = MaterialSummary.from_result(result).model_dump(mode="json")
        registry.record_success(coll, item["key"], summary, job_uuid, time.perf_counter() - t0)
        results.append({"key": item["key"], "result": result})
    return {"results": results, "failed": failed, "skipped": skipped}


def _earlier_result(store, record: dict, key: str, job_uuid: str | None):
    """The stored result of ``key`` when this same job computed it before (a rerun), else None."""
    if store is None or record.get("state") != registry.COMPLETED or record.get("job_uuid") != job_uuid:
        return None
    try:
        output = store.get_output(job_uuid, load=True)
    except (ValueError, KeyError):  # not stored, or half stored (a blob missing: the database went away mid-write)
        return None
    return next((e["result"] for e in output.get("results", []) if e.get("key") == key), None)
