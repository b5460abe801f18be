"""`tdph config check`: validate launchpad.yaml, fw_config/ and jobflow.yaml, and reach the database."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass
class Check:
    """One verdict of `tdph config check`: the file, whether it passed, and why."""

    file: str
    ok: bool
    message: str


def _load(path: Path, checks: list[Check]) -> dict | None:
    if not path.exists():
        checks.append(Check(str(path), False, "missing"))
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        checks.append(Check(str(path), False, f"not valid YAML: {exc}"))
        return None
    if not isinstance(data, dict):
        checks.append(Check(str(path), False, "expected a mapping"))
        return None
    return data


def check_launchpad(path: Path, checks: list[Check], ping: bool = True) -> None:
    """Append the verdict on launchpad.yaml (host, port, name; no committed password; database ping if ``ping``)."""
    data = _load(path, checks)
    if data is None:
        return
    missing = [k for k in ("host", "port", "name") if not data.get(k)]
    if missing:
        checks.append(Check(str(path), False, f"missing keys: {', '.join(missing)}"))
        return
    if data.get("password"):
        checks.append(Check(str(path), False, "a password is committed here: use TDPH_DB_PASSWORD instead"))
    if ping:
        import pymongo

        from .settings import from_launchpad_file

        db = from_launchpad_file(path)  # this file's database, not one the environment names instead
        try:
            with db.client(timeout_ms=3000) as client:
                client.admin.command("ping")
            checks.append(Check(str(path), True, f"database reachable at {db.display}"))
        except pymongo.errors.PyMongoError as exc:
            checks.append(Check(str(path), False, f"database not reachable ({type(exc).__name__}); "
                                                  "start it with `tdph db start` or fix host/port"))
    else:
        checks.append(Check(str(path), True, "keys present"))


def check_fworker(path: Path, checks: list[Check]) -> None:
    """Append the verdict on an FWorker file: name, category and a JSON query present."""
    data = _load(path, checks)
    if data is None:
        return
    missing = [k for k in ("name", "category", "query") if k not in data]
    if missing:  # qlaunch fails with KeyError without category and query
        checks.append(Check(str(path), False, f"missing keys: {', '.join(missing)}"))
        return
    try:
        json.loads(data["query"]) if isinstance(data["query"], str) else data["query"]
    except json.JSONDecodeError:
        checks.append(Check(str(path), False, "query is not valid JSON"))
        return
    checks.append(Check(str(path), True, f"category {data['category']!r}"))


def check_qadapter(path: Path, checks: list[Check], root: Path, gpu: bool) -> None:
    """Append the verdict on a SLURM queue adapter (rlaunch, partition, GPU gres, existing logdir under ``root``)."""
    data = _load(path, checks)
    if data is None:
        return
    problems = []
    if data.get("_fw_q_type") != "SLURM":
        problems.append("_fw_q_type must be SLURM")
    if "rlaunch" not in str(data.get("rocket_launch", "")):
        problems.append("rocket_launch must call rlaunch")
    if not data.get("queue"):
        problems.append("no queue (partition)")
    if gpu and "gpu" not in str(data.get("gres", "")):
        problems.append("GPU adapter without gres: gpu")
    logdir = data.get("logdir")
    if not logdir:
        problems.append("no logdir")
    elif not (root / logdir).is_dir():
        problems.append(f"logdir {logdir} does not exist (qlaunch would retry forever): mkdir it")
    relative = [p for p in _path_arguments(data) if not Path(p).is_absolute()]
    if relative:  # qlaunch rapidfire runs the job in block_*/launcher_*, where these do not resolve
        problems.append(f"relative paths {', '.join(relative)} do not resolve from qlaunch's launcher folders: "
                        "write absolute ones with `tdph config init`")
    checks.append(Check(str(path), not problems, "; ".join(problems) or f"partition {data['queue']!r}"))


def _path_arguments(adapter: dict) -> list[str]:
    """Paths a queue adapter hands to the job: rlaunch's -w/-l/-c arguments, sourced files, the log folder."""
    words = str(adapter.get("rocket_launch", "")).split()
    paths = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-w", "-l", "-c")]
    pre = str(adapter.get("pre_rocket") or "").replace(";", " ").split()
    paths += [pre[i + 1] for i, w in enumerate(pre[:-1]) if w in ("source", ".")]
    return paths + ([str(adapter["logdir"])] if adapter.get("logdir") else [])


def check_jobflow(path: Path, checks: list[Check]) -> None:
    """Append the verdict on jobflow.yaml: a docs store and a ``data`` store that jobflow can build."""
    data = _load(path, checks)
    if data is None:
        return
    store = data.get("JOB_STORE") or {}
    problems = []
    if "docs_store" not in store:
        problems.append("JOB_STORE.docs_store missing")
    if "data" not in (store.get("additional_stores") or {}):
        problems.append("JOB_STORE.additional_stores.data missing (large arrays would go inline)")
    if not problems:
        try:
            from jobflow import JobStore

            JobStore.from_dict_spec(store)
        except Exception as exc:  # noqa: BLE001 (jobflow raises several types for bad specs)
            problems.append(f"jobflow cannot build the store: {exc}")
    checks.append(Check(str(path), not problems, "; ".join(problems) or "MongoStore docs + GridFS data"))


def check_all(root: Path, ping: bool = True) -> list[Check]:
    """Every check of the set-up under ``root`` (launchpad.yaml and fw_config/), in order."""
    root = Path(root)
    checks: list[Check] = []
    check_launchpad(root / "launchpad.yaml", checks, ping)
    fw = root / "fw_config"
    fw_config = _load(fw / "FW_config.yaml", checks)
    if fw_config is not None:
        base = root  # locations are relative to the repository root, where commands run
        bad = [k for k in ("LAUNCHPAD_LOC", "FWORKER_LOC", "QUEUEADAPTER_LOC")
               if k in fw_config and not (base / fw_config[k]).exists()]
        checks.append(Check(str(fw / "FW_config.yaml"), not bad,
                            f"missing files for {', '.join(bad)}" if bad else "file locations resolve"))
    check_fworker(fw / "my_fworker_gpu.yaml", checks)
    check_fworker(fw / "my_fworker_cpu.yaml", checks)
    check_qadapter(fw / "my_qadapter_gpu.yaml", checks, root, gpu=True)
    check_qadapter(fw / "my_qadapter_cpu.yaml", checks, root, gpu=False)
    check_jobflow(fw / "jobflow.yaml", checks)
    return checks
