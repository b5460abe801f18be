"""`tdph config init | check`: write and validate the cluster configuration files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .common import console

config_app = typer.Typer(help="Configuration files.", no_args_is_help=True)


@config_app.command("check")
def config_check(root: Annotated[Path, typer.Option(help="Folder with launchpad.yaml and fw_config/ (what `tdph config init --dir` wrote)")] = Path("."),
                 ping: Annotated[bool, typer.Option(help="Also reach the database")] = True) -> None:
    """Validate launchpad.yaml, fw_config/*.yaml and jobflow.yaml; say what is wrong."""
    from ..campaign.checks import check_all

    checks = check_all(root, ping)
    table = Table(title="configuration")
    for col in ("file", "ok", "message"):
        table.add_column(col)
    for c in checks:
        table.add_row(os.path.relpath(c.file, root), "[green]ok[/green]" if c.ok else "[red]error[/red]", c.message)
    console.print(table)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@config_app.command("init")
def config_init(
    directory: Annotated[Path, typer.Option("--dir", help="Folder for launchpad.yaml, fw_config/ and fw_logs/")] = Path("tdph_cluster"),
    db_host: Annotated[str, typer.Option(help="MongoDB host the workers reach")] = "127.0.0.1",
    db_port: Annotated[int, typer.Option(help="MongoDB port")] = 27017,
    db_name: Annotated[str, typer.Option(help="Database name")] = "tdph",
    db_user: Annotated[str | None, typer.Option(help="User, if the server requires authentication")] = None,
    venv: Annotated[Path | None, typer.Option(help="Python environment of the workers (default: this one)")] = None,
    gpu_partition: Annotated[str, typer.Option(help="SLURM partition of the gpu category")] = "gpu",
    cpu_partition: Annotated[str, typer.Option(help="SLURM partition of the cpu category")] = "cpu",
    threads: Annotated[int, typer.Option(help="Torch/BLAS threads per worker")] = 1,
    walltime: Annotated[str, typer.Option(help="SLURM time limit per queue job")] = "04:00:00",
    overwrite: Annotated[bool, typer.Option(help="Replace existing files")] = False,
) -> None:
    """Write launchpad, FWorker, SLURM queue adapter and jobflow files with this installation's absolute paths."""
    import sys

    from ..campaign.cluster import ClusterSetup, write_cluster_files

    if not 1 <= db_port <= 65535 or threads < 1:
        console.print(f"[red]error:[/red] --db-port must be 1-65535 and --threads at least 1 "
                      f"(got {db_port}, {threads})")
        raise typer.Exit(2)
    setup = ClusterSetup(directory, db_host, db_port, db_name, db_user, venv or Path(sys.prefix), gpu_partition,
                         cpu_partition, threads, walltime)
    try:
        written = write_cluster_files(setup, overwrite)
    except FileExistsError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    root = directory.resolve()
    for path in written:
        console.print(f"wrote {path}")
    if db_user:
        console.print(f"add `password: ...` to {root / 'launchpad.yaml'} (mode 600) and to both stores of "
                      f"{root / 'fw_config' / 'jobflow.yaml'}; never commit them")
    console.print("then, on the login node:\n"
                  f"  export FW_CONFIG_FILE={root / 'fw_config' / 'FW_config.yaml'} "
                  f"JOBFLOW_CONFIG_FILE={root / 'fw_config' / 'jobflow.yaml'} TDPH_LAUNCHPAD={root / 'launchpad.yaml'}\n"
                  f"  tdph config check --root {root}\n"
                  f"  qlaunch -w {root / 'fw_config' / 'my_fworker_gpu.yaml'} -q {root / 'fw_config' / 'my_qadapter_gpu.yaml'} "
                  "rapidfire -m 4 --nlaunches 0")
