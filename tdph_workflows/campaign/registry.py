"""The per-material record collection: one document per campaign item.

The database of record for ``tdph campaign status`` and ``tdph query`` (full arrays stay in the
job store's GridFS).
"""

from __future__ import annotations

import datetime
import time
import traceback
from collections.abc import Iterable
from typing import Any

import pymongo
import pymongo.errors

COLLECTION = "materials"
WAITING, COMPLETED, FAILED = "WAITING", "COMPLETED", "FAILED"  # the states of a record
SUPERSEDED = "SUPERSEDED"  # a FAILED record whose input was corrected and resubmitted under a new key


def collection(db) -> pymongo.collection.Collection:
    """The ``materials`` collection of a campaign database, with its unique ``key`` and ``state`` indexes ensured.

    Parameters
    ----------
    db
        The campaign database (:class:`~tdph_workflows.campaign.settings.DatabaseSettings`).
    """
    coll = db.client()[db.database][COLLECTION]
    coll.create_index("key", unique=True)
    coll.create_index("state")
    return coll


def register(coll, key: str, material_id: str, source: str, campaign: str, setup_key: str | None = None) -> bool:
    """Insert a WAITING record; False when the key exists already (nothing new to compute).

    ``setup_key`` is the key without the input's content (id, settings, model): records that share it
    are the same computation of different versions of one input file.
    """
    now = datetime.datetime.now(datetime.UTC)
    result = coll.update_one({"key": key}, {"$setOnInsert": {
        "key": key, "material_id": material_id, "source": source, "campaign": campaign, "state": WAITING,
        "setup_key": setup_key, "submitted": now}}, upsert=True)
    return result.upserted_id is not None


def settled(coll, key: str) -> dict | None:
    """The record of ``key`` when it needs no computing (COMPLETED or SUPERSEDED), else None."""
    return coll.find_one({"key": key, "state": {"$in": [COMPLETED, SUPERSEDED]}},
                         {"state": 1, "job_uuid": 1, "_id": 0})


def _patiently(write, patience_s: float = 300.0, pause_s: float = 2.0):
    """Run a write, retrying while the database is unreachable (a restart): a computed result is not dropped."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return write()
        except (pymongo.errors.AutoReconnect, pymongo.errors.ServerSelectionTimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(pause_s)


def record_success(coll, key: str, summary: dict, job_uuid: str | None, wall_time: float) -> None:
    """Mark a record COMPLETED with its MaterialSummary dict, job uuid and wall time (s); clears the error.

    Waits up to 5 minutes for a database that went away mid-material, so the result is not lost.
    """
    _patiently(lambda: coll.update_one({"key": key}, {"$set": {
        "state": COMPLETED, "summary": summary, "job_uuid": job_uuid, "wall_time": wall_time, "error": None,
        "finished": datetime.datetime.now(datetime.UTC)}}, upsert=True))


def supersede(coll, key: str, by: str) -> None:
    """Mark a FAILED record SUPERSEDED by the record ``by`` (its corrected resubmission)."""
    coll.update_one({"key": key, "state": FAILED}, {"$set": {"state": SUPERSEDED, "superseded_by": by}})


def record_failure(coll, key: str, exc: BaseException) -> None:
    """Mark a record FAILED with the error message and the last 4000 characters of its traceback."""
    _patiently(lambda: coll.update_one({"key": key}, {"$set": {
        "state": FAILED, "error": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(exc))[-4000:],
        "finished": datetime.datetime.now(datetime.UTC)}}, upsert=True))


def match(state: str | None = None, campaign: str | None = None, keys: Iterable[str] | None = None,
          material_ids: Iterable[str] | None = None) -> dict[str, Any]:
    """The MongoDB filter on this collection that every query builds on.

    Parameters
    ----------
    state
        Record state (``WAITING``, ``COMPLETED`` or ``FAILED``); None for any.
    campaign
        Campaign name; None or empty for every campaign.
    keys
        Dedup keys to restrict to (results of given settings and model only); None for any.
    material_ids
        Material ids to restrict to; None for any.

    Returns
    -------
    dict
        The filter, e.g. ``{"state": "COMPLETED", "campaign": "demo"}``.
    """
    selected: dict[str, Any] = {}
    if state:
        selected["state"] = state
    if campaign:
        selected["campaign"] = campaign
    if material_ids is not None:
        selected["material_id"] = {"$in": sorted(material_ids)}
    if keys is not None:
        selected["key"] = {"$in": list(keys)}
    return selected


def counts(coll, campaign: str | None = None) -> dict[str, int]:
    """Number of records by state, in one campaign or in all."""
    pipeline = [{"$match": match(campaign=campaign)}, {"$group": {"_id": "$state", "n": {"$sum": 1}}}]
    return {d["_id"]: d["n"] for d in coll.aggregate(pipeline)}
