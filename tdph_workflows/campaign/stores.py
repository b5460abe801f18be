"""The jobflow JobStore: documents in a MongoDB collection, large arrays in GridFS."""

from __future__ import annotations

from jobflow import JobStore
from maggma.stores import GridFSStore, MongoStore


def job_store(uri: str, database: str = "tdph", collection: str = "outputs") -> JobStore:
    """MongoStore documents + GridFS ``data`` store, the layout of atomate2's ``jobflow.yaml``."""
    docs = MongoStore.from_uri(uri, collection, database=database)
    data = GridFSStore.from_uri(uri, f"{collection}_blobs", database=database)
    return JobStore(docs, additional_stores={"data": data})
