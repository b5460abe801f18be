"""Reading a campaign back: the registry's records, the job store's full results, and files made from them.

Every query on the materials registry is built here (on :func:`registry.match`), so ``tdph query``,
``tdph campaign status``, ``tdph validate --from-screening``, ``tdph analyze`` and ``tdph report`` select
the same records the same way. ``db`` arguments are anything with ``uri`` and ``database`` attributes,
e.g. :class:`~tdph_workflows.campaign.settings.DatabaseSettings`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..trust import GRADES
from . import registry

if TYPE_CHECKING:
    import pymongo

    from ..schemas import TDPHResult
    from .settings import DatabaseSettings

R_ONSITE_MAX = "summary.temperatures.0.r_onsite_max"  # max R_onsite at the first stored temperature
FAILURES_SHOWN = 50


def completed_filter(campaign: str | None = None, keys: Iterable[str] | None = None,
                     material_ids: Iterable[str] | None = None, element: str | None = None,
                     spacegroup: int | None = None, r_onsite_min: float | None = None,
                     stored: bool = False, grades: Iterable[str] | None = None) -> dict[str, Any]:
    """The registry filter of COMPLETED records.

    Parameters
    ----------
    campaign
        Campaign name; None for every campaign.
    keys
        Dedup keys: the results of these settings and this model only, not older runs of the same material.
    material_ids
        Material ids to restrict to.
    element
        Keep materials containing this element (``summary.elements``).
    spacegroup
        Keep materials of this space-group number.
    r_onsite_min
        Keep materials whose max R_onsite at the first temperature is at least this.
    stored
        Keep only records whose job output is in the job store (``job_uuid`` set).
    grades
        Keep materials with one of these trust grades (``tdph_workflows.trust``; ungraded records,
        computed before grading existed, have grade ``""``).

    Returns
    -------
    dict
        A MongoDB filter for :func:`registry.collection`.
    """
    selected = registry.match(registry.COMPLETED, campaign, keys, material_ids)
    if stored:
        selected["job_uuid"] = {"$ne": None}
    if element:
        selected["summary.elements"] = element
    if spacegroup:
        selected["summary.spacegroup_number"] = spacegroup
    if r_onsite_min is not None:
        selected[R_ONSITE_MAX] = {"$gte": r_onsite_min}
    if grades is not None:
        wanted = list(grades)
        selected["summary.grade"] = {"$in": wanted + ([None] if "" in wanted else [])}
    return selected


def registry_of(db: DatabaseSettings) -> pymongo.collection.Collection:
    """The materials registry collection of a campaign database."""
    return registry.collection(db)


def completed_summaries(coll: pymongo.collection.Collection, campaign: str | None = None) -> Iterator[dict]:
    """The MaterialSummary dicts of the COMPLETED records (records without a summary are left out).

    Parameters
    ----------
    coll
        The materials registry (:func:`registry.collection`).
    campaign
        Campaign name; None for every campaign.

    Yields
    ------
    dict
        One ``summary`` per completed material, in storage order.
    """
    for rec in coll.find(completed_filter(campaign), {"summary": 1}):
        if rec.get("summary"):
            yield rec["summary"]


def query_rows(db: DatabaseSettings, r_onsite_min: float | None = None, element: str | None = None,
               spacegroup: int | None = None, campaign: str | None = None,
               keys: Iterable[str] | None = None, grades: Iterable[str] | None = None) -> list[dict]:
    """Completed materials as flat rows, ranked by max R_onsite at the first temperature.

    Parameters
    ----------
    db
        The campaign database.
    r_onsite_min, element, spacegroup, campaign, keys, grades
        Filters, as in :func:`completed_filter`.

    Returns
    -------
    list of dict
        One row per material with ``material_id``, ``formula``, ``spacegroup``, ``T``, ``r_onsite_max``,
        ``l2_shift_pct``, ``l2_stderr_pct``, ``r_full_robust``, ``harmonic_min_thz``, ``min_thz`` and
        ``wall_s`` (rounded for display), ``grade`` and ``grade_reasons`` (joined by "; "); trusted grades
        first, then highest ``r_onsite_max``: a screening table is judged by its top rows.
    """
    selected = completed_filter(campaign, keys, element=element, spacegroup=spacegroup, r_onsite_min=r_onsite_min,
                                grades=grades)
    rows = []
    for rec in registry_of(db).find(selected):
        s = rec["summary"]
        t = s["temperatures"][0]
        rows.append({"material_id": s["material_id"], "formula": s["formula"], "spacegroup": s["spacegroup"],
                     "spacegroup_number": s["spacegroup_number"], "T": t["temperature"], "r_onsite_max": round(t["r_onsite_max"], 4),
                     "l2_shift_pct": round(100 * t["l2_shift"], 2), "l2_stderr_pct": round(100 * t["l2_stderr"], 2),
                     "r_full_robust": round(t["r_full_robust"], 4), "harmonic_min_thz": round(s["harmonic_min_frequency"], 2),
                     "min_thz": round(t["min_frequency"], 2), "wall_s": None if rec.get("wall_time") is None else round(rec["wall_time"], 1),
                     "grade": s.get("grade") or "", "grade_reasons": "; ".join(s.get("grade_reasons") or [])})
    return sorted(rows, key=lambda r: (grade_rank(r["grade"]), -r["r_onsite_max"]))


def grade_rank(grade: str) -> int:
    """Sort key of a trust grade: A first, ungraded ("") after F."""
    return GRADES.index(grade) if grade in GRADES else len(GRADES)


def screened_sources(db: DatabaseSettings, n: int, campaign: str | None, threshold: float
                     ) -> list[tuple[str, str, float]]:
    """The top-n screened candidates: completed materials with max R_onsite at or above a threshold.

    Parameters
    ----------
    db
        The campaign database.
    n
        At most this many candidates.
    campaign
        Campaign name; None for every campaign.
    threshold
        Lowest max R_onsite (first temperature) of a candidate.

    Returns
    -------
    list of tuple
        ``(material_id, source, max R_onsite)``, highest R_onsite first.
    """
    docs = registry_of(db).find(completed_filter(campaign, r_onsite_min=threshold),
                                {"material_id": 1, "source": 1, "summary.temperatures.r_onsite_max": 1})
    rows = [(d["material_id"], d["source"], float(d["summary"]["temperatures"][0]["r_onsite_max"])) for d in docs]
    rows.sort(key=lambda r: -r[2])
    return rows[:n]


def full_results(db: DatabaseSettings, campaign: str | None = None, material_ids: set[str] | None = None,
                 keys: Iterable[str] | None = None) -> Iterator[tuple[dict, TDPHResult]]:
    """Completed materials with their full results (arrays from the job store's GridFS).

    Parameters
    ----------
    db
        The campaign database.
    campaign
        Campaign name; None for every campaign.
    material_ids
        Only these materials; None for all.
    keys
        Only these dedup keys; None for all.

    Yields
    ------
    tuple
        ``(registry record, TDPHResult)`` of each completed material whose job output is stored.
    """
    from ..schemas import TDPHResult
    from .stores import campaign_job_store

    coll = registry_of(db)
    store = campaign_job_store(db)
    store.connect()
    try:
        for rec in coll.find(completed_filter(campaign, keys, material_ids, stored=True)):
            output = store.get_output(rec["job_uuid"], load=True)
            for entry in output["results"]:
                if entry["key"] == rec["key"]:
                    result = entry["result"]
                    yield rec, result if isinstance(result, TDPHResult) else TDPHResult.model_validate(result)
    finally:
        store.close()


@dataclass
class CampaignStatus:
    """Progress of a campaign, as ``tdph campaign status`` shows it."""

    counts: dict[str, int]  # records by state
    grades: dict[str, int] = field(default_factory=dict)  # completed records by trust grade ("" = ungraded)
    throughput: float | None = None  # completed materials per hour; None with fewer than two completed
    eta_hours: float | None = None  # hours until the WAITING ones are done at that rate; None when none wait
    failures: list[dict] = field(default_factory=list)  # material_id and error of (at most 50) failed records


def campaign_status(db: DatabaseSettings, campaign: str | None = None) -> CampaignStatus:
    """Counts by state, throughput, ETA and the failures of a campaign.

    Parameters
    ----------
    db
        The campaign database.
    campaign
        Campaign name; None for every campaign.

    Returns
    -------
    CampaignStatus
        The throughput is measured between the first and last completion times.
    """
    coll = registry_of(db)
    status = CampaignStatus(registry.counts(coll, campaign))
    done = list(coll.find(completed_filter(campaign), {"finished": 1, "wall_time": 1, "summary.grade": 1}))
    for d in done:
        grade = (d.get("summary") or {}).get("grade") or ""
        status.grades[grade] = status.grades.get(grade, 0) + 1
    if len(done) >= 2:
        times = sorted(d["finished"] for d in done)
        span = max((times[-1] - times[0]).total_seconds(), 1e-9)
        status.throughput = (len(done) - 1) / span * 3600
        left = status.counts.get(registry.WAITING, 0)
        if status.throughput > 0 and left:
            status.eta_hours = left / status.throughput
    failed = coll.find(registry.match(registry.FAILED, campaign), {"material_id": 1, "error": 1})
    status.failures = list(failed.limit(FAILURES_SHOWN))
    return status


def worker_progress(db: DatabaseSettings) -> dict[str, int]:
    """Materials done, running, failed and waiting in the whole database, for a live progress line.

    Returns
    -------
    dict
        ``done``, ``failed`` and ``waiting`` records, and ``running`` fireworks.
    """
    from .settings import launchpad

    counts = registry.counts(registry_of(db))
    running = launchpad(db).fireworks.count_documents({"state": "RUNNING"})
    return {"done": counts.get(registry.COMPLETED, 0), "running": running,
            "failed": counts.get(registry.FAILED, 0),
            "waiting": max(0, counts.get(registry.WAITING, 0) - running)}


def rerun_fireworks(db: DatabaseSettings, state: str = "FIZZLED", lost: bool = False,
                    expiration_secs: int = 600) -> tuple[int, int]:
    """Put failed or lost fireworks back to READY (``lpad detect_lostruns`` + ``rerun_fws``).

    Parameters
    ----------
    db
        The campaign database.
    state
        Rerun the fireworks in this FireWorks state.
    lost
        Also detect lost runs (RUNNING fireworks of dead workers) and rerun them; the workflow lock a dead
        worker left behind is released first (``lpad admin unlock``). Any other lock on a workflow to rerun
        that is held without a break for ``STALE_LOCK_SECS`` (a connection cut mid-update) is taken over,
        as the workers do, instead of waiting FireWorks' 5 minutes and failing.
    expiration_secs
        A RUNNING firework silent this long is lost; at least 3 worker pings (``TDPH_WORKER_PING_SECS``),
        so a live material is never taken for a lost one and computed twice.

    Returns
    -------
    tuple of int
        (fireworks rerun from ``state``, lost runs rerun).

    Raises
    ------
    ValueError
        When ``expiration_secs`` is shorter than 3 worker pings.
    """
    from ..settings import current_settings
    from .settings import launchpad

    ping = current_settings().worker_ping_secs
    if lost and expiration_secs < 3 * ping:
        raise ValueError(f"expiration of {expiration_secs} s is shorter than 3 worker pings ({3 * ping:.0f} s): "
                         "live materials would be taken for lost and computed twice")
    lp = launchpad(db)
    n_lost = 0
    if lost:
        _, lost_fws, _ = lp.detect_lostruns(expiration_secs=expiration_secs)
        lp.workflows.update_many({"nodes": {"$in": lost_fws}, "locked": {"$exists": True}},
                                 {"$unset": {"locked": ""}})
        _, lost_fws, _ = lp.detect_lostruns(expiration_secs=expiration_secs, rerun=True)
        n_lost = len(lost_fws)
    ids = lp.get_fw_ids({"state": state})
    _release_stale_locks(lp, ids)
    for fw_id in ids:
        lp.rerun_fw(fw_id)
    return len(ids), n_lost


def withdraw_waiting(db: DatabaseSettings, campaign: str) -> int:
    """Remove a campaign's materials that no worker has started, so it can be resubmitted with other settings.

    Deletes the workflows whose fireworks are all READY or WAITING (``LaunchPad.delete_wf``) and the
    WAITING records of their keys; nothing computed, running or failed is touched. Returns how many
    materials were withdrawn.

    Parameters
    ----------
    db
        The campaign database.
    campaign
        Campaign name (``spec.tdph_campaign`` of its fireworks).
    """
    from . import registry
    from .settings import launchpad

    lp = launchpad(db)
    coll = registry.collection(db)
    idle = {"READY", "WAITING"}
    withdrawn = 0
    for fw in lp.fireworks.find({"spec.tdph_campaign": campaign, "state": {"$in": sorted(idle)}},
                                {"fw_id": 1, "spec.tdph_keys": 1}):
        wf = lp.workflows.find_one({"nodes": fw["fw_id"]}, {"nodes": 1, "fw_states": 1})
        if wf is None or any(state not in idle for state in wf["fw_states"].values()):
            continue
        with contextlib.redirect_stdout(io.StringIO()):  # FireWorks prints three lines per workflow
            lp.delete_wf(fw["fw_id"], delete_launch_dirs=False)
        keys = fw["spec"].get("tdph_keys", [])
        withdrawn += coll.delete_many({"key": {"$in": keys}, "state": registry.WAITING}).deleted_count
    return withdrawn


def _release_stale_locks(lp, fw_ids: list[int], poll_secs: float = 0.5) -> int:
    """Unlock the workflows of ``fw_ids`` that stay locked at every poll for ``STALE_LOCK_SECS``.

    FireWorks' lock carries no owner or time, so staleness is observed: a live holder releases it
    within milliseconds. Returns the number of workflows unlocked.
    """
    from .worker import STALE_LOCK_SECS

    query = {"nodes": {"$in": list(fw_ids)}, "locked": {"$exists": True}}
    held = {d["_id"] for d in lp.workflows.find(query, {"_id": 1})}
    deadline = time.monotonic() + STALE_LOCK_SECS
    while held and time.monotonic() < deadline:
        time.sleep(poll_secs)
        held &= {d["_id"] for d in lp.workflows.find(query, {"_id": 1})}
    if held:
        lp.workflows.update_many({"_id": {"$in": list(held)}, "locked": {"$exists": True}},
                                 {"$unset": {"locked": ""}})
    return len(held)


# wall_time_note: why a record carries no wall time (a worker paused while it ran the material)
EXPORTED_FIELDS = ("key", "material_id", "source", "campaign", "state", "setup_key", "summary", "wall_time",
                   "wall_time_note", "error", "submitted", "finished", "superseded_by")


def export_records(db: DatabaseSettings, path: str | Path, campaign: str | None = None) -> int:
    """Write the settled records of a campaign (COMPLETED, FAILED, SUPERSEDED) as gzipped JSON lines.

    The file holds the per-material summaries (metrics, grades, per-site records; no arrays) and the
    dedup keys, so another machine can import them and resume the campaign without recomputing.

    Parameters
    ----------
    db
        The campaign database.
    path
        Output file (``.jsonl.gz``); replaced atomically.
    campaign
        Campaign name; None for every campaign.

    Returns
    -------
    int
        Records written.
    """
    import gzip
    import json
    import os

    from bson import json_util

    states = [registry.COMPLETED, registry.FAILED, registry.SUPERSEDED]
    selected = {**registry.match(campaign=campaign), "state": {"$in": states}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with gzip.open(tmp, "wt") as fh:
        for rec in registry_of(db).find(selected, {f: 1 for f in EXPORTED_FIELDS} | {"_id": 0, "job_uuid": 1}).sort(
                "key"):
            rec["exported_job_uuid"] = rec.pop("job_uuid", None)
            fh.write(json.dumps(json.loads(json_util.dumps(rec)), sort_keys=True) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def import_records(db: DatabaseSettings, path: str | Path) -> tuple[int, int]:
    """Load records written by :func:`export_records`; a key already present is never overwritten.

    Imported records keep their summaries but no job output (``job_uuid`` None): queries, analysis and
    resubmission (which skips their keys) use them; full arrays stay where they were computed.

    Returns
    -------
    tuple of int
        (records imported, records skipped because their key exists).
    """
    import gzip

    from bson import json_util

    coll = registry_of(db)
    added = skipped = 0
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if not line.strip():
                continue
            rec = json_util.loads(line)
            rec["job_uuid"] = None
            result = coll.update_one({"key": rec["key"]}, {"$setOnInsert": rec}, upsert=True)
            added += result.upserted_id is not None
            skipped += result.upserted_id is None
    return added, skipped


def write_rows_csv(rows: list[dict], fh: IO[str]) -> None:
    """Write rows (e.g. of :func:`query_rows`) as CSV with a header; nothing for no rows.

    Parameters
    ----------
    rows
        Dicts with the same keys; the first row's keys are the columns.
    fh
        An open text file or buffer.
    """
    if rows:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def rows_csv(rows: list[dict]) -> str:
    """The CSV text of :func:`write_rows_csv`."""
    buf = io.StringIO()
    write_rows_csv(rows, buf)
    return buf.getvalue()


def write_ranked_csv(rows: list[dict], path: str | Path) -> Path:
    """Write rows to a CSV file (an empty file for no rows) and return its path."""
    with open(path, "w") as fh:
        write_rows_csv(rows, fh)
    return Path(path)


def write_dispersion_plots(db: DatabaseSettings, campaign: str | None, out: str | Path,
                           keys: Iterable[str] | None = None) -> int:
    """Plot each completed material's dispersion (harmonic vs T) to ``out/<material_id>/dispersion.png``.

    Parameters
    ----------
    db
        The campaign database.
    campaign
        Campaign name; None for every campaign.
    out
        Folder; one subfolder per material is created.
    keys
        Only these dedup keys; None for all.

    Returns
    -------
    int
        Number of plots written.
    """
    from ..plotting import plot_dispersion

    n = 0
    for rec, result in full_results(db, campaign, keys=keys):
        folder = Path(out) / rec["material_id"]
        folder.mkdir(parents=True, exist_ok=True)
        plot_dispersion(result, folder / "dispersion.png")
        n += 1
    return n
