"""Per-material cache keys and the spawned worker pool shared by the features and the screening annotations."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any


def content_key(*parts: Any) -> str:
    """Short hex digest of JSON-serializable `parts` (a structure dict, a version constant, site lists...).

    Parameters
    ----------
    *parts
        Anything ``json.dumps`` can write (unknown types by ``str``); dict key order does not matter.

    Returns
    -------
    str
        The first 24 hex digits of the SHA-256 of the JSON text: a cache file name.
    """
    payload = json.dumps(list(parts), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def map_tasks(fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int = 1) -> list:
    """``[fn(t) for t in tasks]``, in `workers` spawned processes when more than one (order kept).

    Parameters
    ----------
    fn
        A module-level function (it is pickled by name into the workers).
    tasks
        One picklable argument per call.
    workers
        Processes; 1 runs in this process. Spawn, not fork: the parent may hold torch/OpenMP threads.

    Returns
    -------
    list
        The results, in the order of `tasks`.
    """
    if workers > 1 and len(tasks) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=mp.get_context("spawn")) as pool:
            # a few tasks per message: thousands of small materials would otherwise be IPC-bound
            return list(pool.map(fn, tasks, chunksize=max(1, min(8, len(tasks) // (4 * workers)))))
    return [fn(t) for t in tasks]
