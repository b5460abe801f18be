"""Local workers: N processes pulling fireworks of the given categories (no scheduler).

A worker process finds the database the way a cluster worker does, from its own environment
(:func:`~tdph_workflows.campaign.settings.resolve_on_worker`): no connection string, and so no
password, ever appears on its command line or in its fireworks.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml

from ..settings import current_settings
from .settings import DatabaseSettings, resolve_on_worker


def run_worker(categories: list[str], work_dir: str, timeout: float | None = None) -> None:
    """One rocket launcher on this node's campaign database; the model is loaded once and reused by every rocket.

    Parameters
    ----------
    categories
        FireWorks categories to pull (``gpu``, ``cpu``).
    work_dir
        Folder of the launch directories.
    timeout
        Stop pulling new fireworks after this many seconds; None to run until none is left.
    """
    os.environ.setdefault("TDPH_TORCH_THREADS", "1")
    from fireworks import FWorker, LaunchPad
    from fireworks.core.rocket_launcher import rapidfire
    from jobflow import SETTINGS

    from .stores import campaign_job_store

    db = resolve_on_worker()
    SETTINGS.JOB_STORE = campaign_job_store(db)
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    rapidfire(LaunchPad(**db.launchpad_kwargs()), FWorker(name=f"tdph-local-{os.getpid()}", category=categories), m_dir=work_dir,
              nlaunches=0, sleep_time=1, strm_lvl="ERROR", timeout=timeout)


# campaign workflows are single fireworks whose lock is held for milliseconds: one older than this is stale
STALE_LOCK_SECS = 30


def fireworks_config(ping_secs: float) -> dict:
    """FireWorks settings of a campaign worker (``FW_config.yaml`` keys).

    FireWorks pings a live run once an hour by default, so lost-run detection could not tell a live
    material from a dead one for hours; and a workflow lock left by a connection cut mid-update (a database
    restart) would stall the next rocket for 5 minutes. Campaign workflows are single fireworks whose lock
    is held for milliseconds, so a lock older than ``STALE_LOCK_SECS`` is stale and is taken over.
    """
    return {"PING_TIME_SECS": int(ping_secs), "RUN_EXPIRATION_SECS": int(3 * ping_secs),
            "WFLOCK_EXPIRATION_SECS": STALE_LOCK_SECS, "WFLOCK_EXPIRATION_KILL": True}


def _absolute_paths(env: dict[str, str]) -> dict[str, str]:
    """Relative paths in ``TDPH_*`` settings made absolute: the workers run in their work folder."""
    out = dict(env)
    for name in ("TDPH_MODEL", "TDPH_DB_DIR", "TDPH_LAUNCHPAD", "TDPH_SHARED", "TDPH_DATA"):
        value = out.get(name)
        if value and not os.path.isabs(value) and os.path.exists(value):
            out[name] = os.path.abspath(value)
    if out.get("TDPH_MODEL_PATH"):
        out["TDPH_MODEL_PATH"] = os.pathsep.join(os.path.abspath(p) if os.path.exists(p) else p
                                                 for p in out["TDPH_MODEL_PATH"].split(os.pathsep))
    return out


def start_workers(n: int, db: DatabaseSettings, categories: list[str], work_dir: str | Path,
                  timeout: float | None = None) -> list[subprocess.Popen]:
    """Start ``n`` worker processes (this module's ``main``), each logging to ``work_dir/worker-<k>.log``.

    Parameters
    ----------
    n
        Number of processes.
    db
        The campaign database; the children get it through their environment (a launchpad file by path,
        an env URI inherited), never through their command line.
    categories
        FireWorks categories to pull.
    work_dir
        Folder of the launch directories and the worker logs.
    timeout
        Seconds after which a worker stops pulling new fireworks.

    Returns
    -------
    list of subprocess.Popen
        The running processes.
    """
    work_dir = Path(work_dir).resolve()
    cmd = [sys.executable, "-m", "tdph_workflows.campaign.worker", "--work-dir", str(work_dir),
           "--categories", *categories]
    if timeout:
        cmd += ["--timeout", str(timeout)]
    work_dir.mkdir(parents=True, exist_ok=True)
    # FireWorks reads ./FW_config.yaml first: the workers run in work_dir, next to their own settings
    (work_dir / "FW_config.yaml").write_text(yaml.safe_dump(fireworks_config(current_settings().worker_ping_secs)))
    env = _absolute_paths({**os.environ, **db.worker_environment(),
                           "TDPH_TORCH_THREADS": os.environ.get("TDPH_TORCH_THREADS", "1")})
    env.pop("FW_CONFIG_FILE", None)
    procs = []
    for k in range(n):  # rocket logs go to a file per worker, not the terminal
        log = open(work_dir / f"worker-{k}.log", "ab")  # noqa: SIM115 (owned by the child)
        procs.append(subprocess.Popen(cmd, env=env, cwd=work_dir, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL))
    return procs


def main() -> None:
    """Command line of one worker process (``python -m tdph_workflows.campaign.worker``)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--categories", nargs="+", default=["gpu", "cpu"])
    ap.add_argument("--timeout", type=float)
    a = ap.parse_args()
    run_worker(a.categories, a.work_dir, a.timeout)


if __name__ == "__main__":
    main()
