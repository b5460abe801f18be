"""Cluster configuration files for FireWorks on SLURM, written for this installation's absolute paths.

``qlaunch rapidfire`` submits from ``block_*/launcher_*`` folders, so every path a queue job uses
(rlaunch, the FWorker and launchpad files, the venv, the log folder) must be absolute; thread settings
and the locations of the FireWorks and jobflow settings reach the job through ``pre_rocket`` exports,
because FWorker ``env:`` keys are FireWorks' ``_fw_env`` and never become process variables.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from .worker import fireworks_config


@dataclass
class ClusterSetup:
    """What ``tdph config init`` writes: database address, partitions, venv and threads.

    Parameters
    ----------
    directory
        Folder that receives ``launchpad.yaml``, ``fw_config/`` and ``fw_logs/``.
    db_host, db_port, db_name
        The MongoDB server the workers and the submitting machine reach.
    db_user
        User name, if the server requires authentication; its password is added to ``launchpad.yaml``
        (and the ``jobflow.yaml`` stores) by the user, in a file only they can read.
    venv
        Python environment of the workers (default: the one running this command).
    gpu_partition, cpu_partition
        SLURM partitions of the ``gpu`` and ``cpu`` categories.
    threads
        Torch and BLAS threads per worker process.
    walltime
        SLURM time limit per queue job.
    ping_secs
        How often a running material tells the database it is alive.
    """

    directory: Path
    db_host: str = "127.0.0.1"
    db_port: int = 27017
    db_name: str = "tdph"
    db_user: str | None = None
    venv: Path = Path(sys.prefix)
    gpu_partition: str = "gpu"
    cpu_partition: str = "cpu"
    threads: int = 1
    walltime: str = "04:00:00"
    ping_secs: int = 60


def cluster_files(setup: ClusterSetup) -> dict[str, dict]:
    """Contents of every file of a cluster set-up, by path relative to ``setup.directory``."""
    root = Path(setup.directory).resolve()
    fw = root / "fw_config"
    venv = Path(setup.venv).resolve()
    auth = {"username": setup.db_user, "authsource": "admin"} if setup.db_user else {}
    files: dict[str, dict] = {
        "launchpad.yaml": {"host": setup.db_host, "port": setup.db_port, "name": setup.db_name, **auth},
        "fw_config/FW_config.yaml": {"LAUNCHPAD_LOC": str(root / "launchpad.yaml"),
                                     "FWORKER_LOC": str(fw / "my_fworker_cpu.yaml"),
                                     "QUEUEADAPTER_LOC": str(fw / "my_qadapter_cpu.yaml"),
                                     **fireworks_config(setup.ping_secs)},
    }
    store = {"database": setup.db_name, "host": setup.db_host, "port": setup.db_port,
             **({"username": setup.db_user, "auth_source": "admin"} if setup.db_user else {})}
    files["fw_config/jobflow.yaml"] = {"JOB_STORE": {
        "docs_store": {"type": "MongoStore", "collection_name": "outputs", **store},
        "additional_stores": {"data": {"type": "GridFSStore", "collection_name": "outputs_blobs", **store}}}}
    exports = (f"export FW_CONFIG_FILE={fw / 'FW_config.yaml'} JOBFLOW_CONFIG_FILE={fw / 'jobflow.yaml'} "
               f"TDPH_LAUNCHPAD={root / 'launchpad.yaml'} TDPH_WORKER_PING_SECS={setup.ping_secs} "
               f"TDPH_TORCH_THREADS={setup.threads} TDPH_BLAS_THREADS={setup.threads} "
               f"OMP_NUM_THREADS={setup.threads}")
    for kind, partition in (("gpu", setup.gpu_partition), ("cpu", setup.cpu_partition)):
        files[f"fw_config/my_fworker_{kind}.yaml"] = {"name": f"tdph_{kind}_worker", "category": kind,
                                                     "query": "{}"}
        adapter = {"_fw_name": "CommonAdapter", "_fw_q_type": "SLURM",
                   "rocket_launch": f"{venv / 'bin' / 'rlaunch'} -w {fw / f'my_fworker_{kind}.yaml'} "
                                    f"-l {root / 'launchpad.yaml'} singleshot",
                   "queue": partition, "nodes": 1, "ntasks": 1, "cpus_per_task": setup.threads,
                   "walltime": setup.walltime, "job_name": f"tdph_{kind}", "logdir": str(root / "fw_logs"),
                   "pre_rocket": f"source {venv / 'bin' / 'activate'}; {exports}"}
        if kind == "gpu":
            adapter["gres"] = "gpu:1"
        files[f"fw_config/my_qadapter_{kind}.yaml"] = adapter
    return files


def write_cluster_files(setup: ClusterSetup, overwrite: bool = False) -> list[Path]:
    """Write the files of :func:`cluster_files` and create the log folder; never replaces a file unless asked.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    FileExistsError
        When a file exists already and ``overwrite`` is False (nothing is written then).
    """
    root = Path(setup.directory).resolve()
    files = cluster_files(setup)
    existing = [name for name in files if (root / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{root} already holds {', '.join(existing)}: pass --overwrite to replace them")
    written = []
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(content, sort_keys=False))
        if name == "launchpad.yaml":
            path.chmod(0o600)  # the user adds the password here
        written.append(path)
    (root / "fw_logs").mkdir(exist_ok=True)  # qlaunch retries forever without its logdir
    return written
