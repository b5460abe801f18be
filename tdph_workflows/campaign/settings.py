"""Where the campaign database is: env vars, ``launchpad.yaml``, or the embedded server.

Order: ``TDPH_DB_URI`` (+ ``TDPH_DB_NAME``) > ``launchpad.yaml`` (``--launchpad``, ``TDPH_LAUNCHPAD``, or, on a
FireWorks worker only, the ``LAUNCHPAD_LOC`` of its ``FW_config.yaml``; read with ``LaunchPad.from_file``, its
host/port/name/username/password overridable by ``TDPH_DB_HOST``, ``TDPH_DB_PORT``, ``TDPH_DB_NAME``,
``TDPH_DB_USER``, ``TDPH_DB_PASSWORD``) > the embedded SecantusDB server, started on demand.

Credentials never travel: workflows carry no connection, worker processes get theirs from the configuration
of the node they run on (environment, launchpad file, ``JOBFLOW_CONFIG_FILE``), and everything printed goes
through :attr:`DatabaseSettings.display`, which has no password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..settings import current_settings
from .database import EmbeddedDatabase

_CREDENTIALS = re.compile(r"(mongodb(?:\+srv)?://)[^@/]*@")


def redact(uri: str) -> str:
    """``uri`` without its user and password (``mongodb://***@host``), for printing and logs."""
    return _CREDENTIALS.sub(r"\1***@", uri)


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the campaign database is.

    Parameters
    ----------
    uri
        MongoDB connection string; it holds credentials only when the user gave them in ``TDPH_DB_URI``.
    database
        Database name.
    source
        ``"env"``, ``"launchpad.yaml"`` or ``"embedded"``.
    client_kwargs
        Further ``MongoClient`` keywords: credentials and ``authSource`` from a launchpad file, and its
        ``mongoclient_kwargs``.
    launchpad_file
        The launchpad file it was read from, if any (workers started here read the same file).
    """

    uri: str = field(repr=False)
    database: str
    source: str
    client_kwargs: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    launchpad_file: str | None = None

    @property
    def display(self) -> str:
        """Host and database as safe to print: no user name, no password."""
        return f"{redact(self.uri)} ({self.database})"

    def client(self, timeout_ms: int = 10_000):
        """A ``pymongo.MongoClient`` on this database's server."""
        import pymongo

        return pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=timeout_ms, **self.client_kwargs)

    def launchpad_kwargs(self) -> dict[str, Any]:
        """Keywords of a FireWorks ``LaunchPad`` on this database (URI mode, credentials as client keywords)."""
        return {"host": self.uri, "name": self.database, "uri_mode": True, "strm_lvl": "ERROR",
                "mongoclient_kwargs": dict(self.client_kwargs)}

    def worker_environment(self) -> dict[str, str]:
        """Environment that lets a worker process on this node resolve the same database by itself.

        A launchpad file is passed by path and an env URI is inherited, so no credential is added to a
        child's environment or command line; the embedded server has none.
        """
        env = {"TDPH_DB_NAME": self.database}
        if self.source == "launchpad.yaml" and self.launchpad_file:
            env["TDPH_LAUNCHPAD"] = self.launchpad_file
        elif self.source == "embedded":
            env["TDPH_DB_URI"] = self.uri
        return env


def _fireworks_launchpad_file() -> str | None:
    """The ``LAUNCHPAD_LOC`` of FireWorks' own configuration (``FW_CONFIG_FILE``) on this node, if set."""
    from fireworks import fw_config

    loc = getattr(fw_config, "LAUNCHPAD_LOC", None)
    return str(loc) if loc and Path(loc).is_file() else None


def from_launchpad_file(path: str | Path) -> DatabaseSettings:
    """The database a FireWorks launchpad file names, with ``TDPH_DB_*`` overrides.

    The file (YAML or JSON) is read with FireWorks' keys and defaults (``LaunchPad.from_dict``'s), but no
    ``LaunchPad`` is built here: that would connect (a ``mongodb+srv://`` host is resolved at once).
    ``uri_mode`` files (``mongodb+srv://`` hosts too) keep their URI; host/port files become a plain
    ``mongodb://host:port`` with credentials, ``authsource`` and ``mongoclient_kwargs`` as client keywords.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"launchpad file {path} not found")
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec, dict):
        raise ValueError(f"launchpad file {path} holds no mapping of settings")  # noqa: TRY004 (bad file content)
    env = current_settings()
    overrides = {"host": env.db_host, "port": env.db_port, "name": env.db_name, "username": env.db_user,
                 "password": env.db_password.get_secret_value() if env.db_password else None}
    lp = {"host": "localhost", "port": 27017, "name": "fireworks", **spec,
          **{k: v for k, v in overrides.items() if v is not None}}
    if lp.get("uri_mode") and not lp.get("name"):
        raise ValueError(f"launchpad file {path}: uri_mode needs a database name")
    name = lp.get("name") or "tdph"
    kwargs: dict[str, Any] = dict(lp.get("mongoclient_kwargs") or {})
    host = str(lp["host"])
    if lp.get("uri_mode") or host.startswith(("mongodb://", "mongodb+srv://")):
        uri = host
    else:
        uri = f"mongodb://{host}:{int(lp.get('port') or 27017)}"
    if lp.get("username"):
        kwargs.update(username=lp["username"], password=lp.get("password") or "",
                      authSource=lp.get("authsource") or name)
    return DatabaseSettings(uri, name, "launchpad.yaml", kwargs, str(path.resolve()))


def resolve(launchpad_file: str | Path | None = None, start_embedded: bool = True,
            fireworks_config: bool = False) -> DatabaseSettings:
    """The campaign database, in the order of the module docstring; starts the embedded server if asked.

    FireWorks' own ``LAUNCHPAD_LOC`` is consulted only with ``fireworks_config`` (on workers): a
    ``~/.fireworks`` launchpad of the user's must never receive a demo or a test campaign.
    """
    env = current_settings()
    name = env.db_name or "tdph"
    if env.db_uri:
        return DatabaseSettings(env.db_uri.get_secret_value(), name, "env")
    lp_file = launchpad_file or env.launchpad or (_fireworks_launchpad_file() if fireworks_config else None)
    if lp_file:
        return from_launchpad_file(lp_file)
    db = EmbeddedDatabase.from_env()
    if start_embedded:
        db.start()
    return DatabaseSettings(db.uri, name, "embedded")


def resolve_on_worker() -> DatabaseSettings:
    """The campaign database as the node running a job configures it; never starts a server.

    Raises
    ------
    RuntimeError
        When this node has no campaign database configured (no ``TDPH_DB_URI``, ``TDPH_LAUNCHPAD``
        or FireWorks ``LAUNCHPAD_LOC``).
    """
    env = current_settings()
    if not (env.db_uri or env.launchpad or _fireworks_launchpad_file()):
        raise RuntimeError("no campaign database configured on this node: set TDPH_LAUNCHPAD (or FireWorks' "
                           "LAUNCHPAD_LOC, or TDPH_DB_URI) in the worker's environment")
    return resolve(start_embedded=False, fireworks_config=True)


def launchpad(settings: DatabaseSettings):
    """A FireWorks ``LaunchPad`` on the database; a fresh database gets FireWorks' collections initialized."""
    from fireworks import LaunchPad

    lp = LaunchPad(**settings.launchpad_kwargs())
    if lp.fw_id_assigner.count_documents({}) == 0:  # a fresh database: initialize FireWorks' collections
        lp.reset("", require_password=False)
    return lp
