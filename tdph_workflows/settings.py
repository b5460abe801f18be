"""Every ``TDPH_*`` environment setting in one typed place.

Read at call time (``current_settings()``), never cached at import: a worker, a test or the CLI
may change the environment between calls. Secrets are ``SecretStr`` so they never print.

========================  =====================================================================
``TDPH_MODEL``            model folder or name (default: the shipped fine-tuned model)
``TDPH_MODEL_PATH``       folders (``os.pathsep``-separated) where model names are looked up
``TDPH_TORCH_THREADS``    torch threads per process (1 is fastest per campaign worker on CPU)
``TDPH_BLAS_THREADS``     numpy/scipy BLAS threads (default: ``TDPH_TORCH_THREADS``)
``TDPH_DB_URI``           campaign database URI (overrides launchpad.yaml)
``TDPH_DB_NAME``          campaign database name
``TDPH_DB_HOST/PORT``     override launchpad.yaml's host / port
``TDPH_DB_USER/PASSWORD`` override launchpad.yaml's credentials
``TDPH_DB_DIR``           data folder of the embedded database server
``TDPH_LAUNCHPAD``        launchpad.yaml to use when ``--launchpad`` is not given
``TDPH_WORKER_PING_SECS`` how often a worker tells the database a run is alive (default 60 s; a run
                          silent for 3 of these may be declared lost by ``tdph campaign rerun --lost``)
``TDPH_MAX_SUPERCELL_ATOMS`` largest supercell a run accepts (default 1500 atoms)
``TDPH_PROGRESS``         show lightning's progress bar in ``tdph finetune train``
========================  =====================================================================
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class TDPHSettings(BaseSettings):
    """The ``TDPH_*`` environment, typed; see the module docstring for each variable."""

    model_config = SettingsConfigDict(env_prefix="TDPH_", env_ignore_empty=True, str_strip_whitespace=True,
                                      protected_namespaces=(),
                                      extra="ignore")

    model: str | None = None
    model_path: str = ""
    torch_threads: int | None = None
    blas_threads: int | None = None
    db_uri: SecretStr | None = None
    db_name: str | None = None
    db_host: str | None = None
    db_port: int | None = None
    db_user: str | None = None
    db_password: SecretStr | None = None
    db_dir: Path | None = None
    launchpad: Path | None = None
    worker_ping_secs: float = 60.0
    max_supercell_atoms: int | None = None
    progress: bool = False

    def model_path_folders(self) -> list[Path]:
        """``TDPH_MODEL_PATH`` as a list of folders (empty entries dropped, ``~`` expanded)."""
        return [Path(p).expanduser() for p in self.model_path.split(os.pathsep) if p.strip()]


def current_settings() -> TDPHSettings:
    """The settings as the environment holds them now."""
    return TDPHSettings()
