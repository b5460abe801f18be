"""The campaign job: K materials with one model load, each recorded on its own."""

from __future__ import annotations

import time
from typing import Any

from jobflow import CURRENT_JOB, job

from ..makers.documents import MaterialSummary
from ..makers.jobs import DATA_KEYS, compute_material
from ..settings import current_settings
from . import registry


@job(data=DATA_KEYS)
def campaign_chunk_job(items: list[dict[str, str]], calculator: str | None, temperatures: list[float],
                       settings: dict[str, Any], registry_uri: str, registry_db: str) -> dict:
    """Run every item; a failing material is recorded (FAILED, with its reason) and the others go on.

    A chunk of one that fails raises, so its firework FIZZLEs with the reason.
    """
    env_uri = current_settings().db_uri
    coll = registry.collection(env_uri.get_secret_value() if env_uri else registry_uri, registry_db)
    results, failed = [], []
    for item in items:
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
        job_uuid = CURRENT_JOB.job.uuid if CURRENT_JOB.job is not None else None
        registry.record_success(coll, item["key"], summary, job_uuid, time.perf_counter() - t0)
        results.append({"key": item["key"], "result": result})
    return {"results": results, "failed": failed}
