"""Where the campaign database is: env vars, ``launchpad.yaml``, or the embedded server.

Order: ``TDPH_DB_URI`` (+ ``TDPH_DB_NAME``) > ``launchpad.yaml`` (``--launchpad`` or
``TDPH_LAUNCHPAD``; host/port/name/username/password overridable by ``TDPH_DB_HOST``,
``TDPH_DB_PORT``, ``TDPH_DB_NAME``, ``TDPH_DB_USER``, ``TDPH_DB_PASSWORD``) > the embedded
SecantusDB server, started on demand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

import yaml

from ..settings import current_settings
from .database import EmbeddedDatabase


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the campaign database is: a MongoDB URI (may hold credentials), the database name, and its origin."""

    uri: str
    database: str
    source: str  # "env", "launchpad.yaml" or "embedded"


def resolve(launchpad_file: str | Path | None = None, start_embedded: bool = True) -> DatabaseSettings:
    """The campaign database, in the order of the module docstring; starts the embedded server if asked."""
    env = current_settings()
    name = env.db_name or "tdph"
    if env.db_uri:
        return DatabaseSettings(env.db_uri.get_secret_value(), name, "env")
    lp_file = launchpad_file or env.launchpad
    if lp_file:
        spec = yaml.safe_load(Path(lp_file).read_text()) or {}
        host = env.db_host or spec.get("host") or "127.0.0.1"
        port = env.db_port or int(spec.get("port") or 27017)
        user = env.db_user or spec.get("username")
        password = env.db_password.get_secret_value() if env.db_password else spec.get("password")
        cred = f"{quote_plus(user)}:{quote_plus(password or '')}@" if user else ""
        auth = f"/?authSource={spec.get('authsource') or name}" if user else ""
        return DatabaseSettings(f"mongodb://{cred}{host}:{port}{auth}", env.db_name or spec.get("name") or name,
                                "launchpad.yaml")
    db = EmbeddedDatabase.from_env()
    if start_embedded:
        db.start()
    return DatabaseSettings(db.uri, name, "embedded")


def launchpad(settings: DatabaseSettings):
    """A FireWorks ``LaunchPad`` on the database; a fresh database gets FireWorks' collections initialized."""
    from fireworks import LaunchPad

    lp = LaunchPad(host=settings.uri, name=settings.database, uri_mode=True, strm_lvl="ERROR")
    if lp.fw_id_assigner.count_documents({}) == 0:  # a fresh database: initialize FireWorks' collections
        lp.reset("", require_password=False)
    return lp
