"""Local workers: N processes pulling fireworks of the given categories (no scheduler)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path


def run_worker(uri: str, database: str, categories: list[str], work_dir: str, timeout: float | None = None) -> None:
    """One rocket launcher; the model is loaded once and reused by every rocket in this process."""
    os.environ.setdefault("TDPH_TORCH_THREADS", "1")
    from fireworks import FWorker, LaunchPad
    from fireworks.core.rocket_launcher import rapidfire

    lp = LaunchPad(host=uri, name=database, uri_mode=True, strm_lvl="ERROR")
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    rapidfire(lp, FWorker(name=f"tdph-local-{os.getpid()}", category=categories), m_dir=work_dir, nlaunches=0,
              sleep_time=1, strm_lvl="ERROR", timeout=timeout)


def start_workers(n: int, uri: str, database: str, categories: list[str], work_dir: str | Path,
                  timeout: float | None = None) -> list[subprocess.Popen]:
    """Start ``n`` worker processes (this module's ``main``), each logging to ``work_dir/worker-<k>.log``."""
    cmd = [sys.executable, "-m", "tdph_workflows.campaign.worker", "--uri", uri, "--database", database,
           "--work-dir", str(work_dir), "--categories", *categories]
    if timeout:
        cmd += ["--timeout", str(timeout)]
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TDPH_TORCH_THREADS": os.environ.get("TDPH_TORCH_THREADS", "1")}
    procs = []
    for k in range(n):  # rocket logs go to a file per worker, not the terminal
        log = open(Path(work_dir) / f"worker-{k}.log", "ab")  # noqa: SIM115 (owned by the child)
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    return procs


def main() -> None:
    """Command line of one worker process (``python -m tdph_workflows.campaign.worker``)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True)
    ap.add_argument("--database", required=True)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--categories", nargs="+", default=["gpu", "cpu"])
    ap.add_argument("--timeout", type=float)
    a = ap.parse_args()
    run_worker(a.uri, a.database, a.categories, a.work_dir, a.timeout)


if __name__ == "__main__":
    main()
