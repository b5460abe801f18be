"""The jobflow JobStore of a campaign: documents in a MongoDB collection, large arrays in GridFS."""

from __future__ import annotations

import gridfs
from jobflow import JobStore
from maggma.stores import GridFSStore, MemoryStore, MongoStore


class _GridFSWithoutIndexProbe(gridfs.GridFS):
    # pymongo's GridIn probes the chunks collection (an unfiltered find_one) before every file it
    # writes, to create GridFS's indexes on a new bucket; the store below makes them once instead
    def put(self, data, **kwargs):
        grid_file = gridfs.GridIn(self._collection, **kwargs)
        object.__setattr__(grid_file, "_ensured_index", True)
        with grid_file:
            grid_file.write(data)
            return grid_file._id


class IndexedGridFSStore(GridFSStore):
    """maggma's ``GridFSStore`` that creates GridFS's indexes once, on connect, not probed before each file.

    The embedded database answers pymongo's probe (``find_one`` on the chunks collection) by reading
    chunks: 8.7 s at 600 materials of the full MDR campaign, 24 times per stored chunk of 4 materials,
    which was 45 s of every chunk's store. Blobs written here are plain GridFS files.
    """

    def connect(self, force_reset: bool = False) -> None:
        """Connect as ``GridFSStore`` does, then index the bucket and skip pymongo's per-file probe."""
        super().connect(force_reset=force_reset)
        if not isinstance(self._coll, _GridFSWithoutIndexProbe):
            self._files_collection.create_index([("filename", 1), ("uploadDate", 1)])
            self._chunks_collection.create_index([("files_id", 1), ("n", 1)], unique=True)
            self._coll = _GridFSWithoutIndexProbe(self._files_collection.database, self.collection_name)


def job_store(db, collection: str = "outputs") -> JobStore:
    """MongoStore documents + GridFS ``data`` store (:class:`IndexedGridFSStore`) on the campaign database, the layout of atomate2's ``jobflow.yaml``.

    Parameters
    ----------
    db
        The campaign database (:class:`~tdph_workflows.campaign.settings.DatabaseSettings`).
    collection
        Name of the documents collection; blobs go to ``<collection>_blobs``.
    """
    kwargs = {"database": db.database, "mongoclient_kwargs": dict(db.client_kwargs)}
    docs = MongoStore.from_uri(db.uri, collection, **kwargs)
    data = IndexedGridFSStore.from_uri(db.uri, f"{collection}_blobs", **kwargs)
    return JobStore(docs, additional_stores={"data": data})


def configured_job_store() -> JobStore | None:
    """The JobStore that jobflow's own configuration (``JOBFLOW_CONFIG_FILE``, ``~/.jobflow.yaml``) names, if any.

    Returns None when jobflow would fall back to its in-memory default, where results would be lost.
    """
    from jobflow import SETTINGS

    store = SETTINGS.JOB_STORE
    return None if isinstance(store.docs_store, MemoryStore) else store


def campaign_job_store(db) -> JobStore:
    """Where a campaign's job outputs are: jobflow's configured store on a cluster, the campaign database otherwise.

    The embedded database always keeps its own outputs, so a demo never reads from or writes to a cluster's
    store that happens to be configured on the same machine.
    """
    configured = None if db.source == "embedded" else configured_job_store()
    return configured or job_store(db)


def ensure_indexes(store: JobStore) -> None:
    """Index the fields jobflow looks up on every job: output ``uuid`` and the blobs' ``job_uuid``/``blob_uuid``.

    Without them each stored output scans every earlier one (maggma's GridFS update looks for older
    copies of each blob): on the embedded database a chunk's store grew to 40-70 s by 500 materials.
    Idempotent; stores without indexes (memory) are left as they are.
    """
    store.connect()
    store.docs_store.ensure_index("uuid")
    for blobs in store.additional_stores.values():
        if hasattr(blobs, "ensure_index"):
            blobs.ensure_index("job_uuid")
            blobs.ensure_index("blob_uuid")
