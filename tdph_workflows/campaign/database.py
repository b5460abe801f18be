"""The embedded MongoDB-protocol database for one machine: a SecantusDB server process.

SecantusDB (GPL-2.0) is run as a separate server process (``secantusd-py``) and
never imported; everything else talks to it through pymongo, exactly as it
would to a real MongoDB on a cluster.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..settings import current_settings

DEFAULT_PORT = 27117
SERVER_EXECUTABLE = "secantusd-py"


class DatabaseError(RuntimeError):
    """The embedded database could not be started, reached or stopped."""


def default_data_dir() -> Path:
    """``TDPH_DB_DIR``, else ``~/.tdph/db``."""
    return current_settings().db_dir or Path.home() / ".tdph" / "db"


def _server_executable() -> str:
    beside_python = Path(sys.executable).parent / SERVER_EXECUTABLE
    found = str(beside_python) if beside_python.exists() else shutil.which(SERVER_EXECUTABLE)
    if not found:
        raise DatabaseError(
            f"{SERVER_EXECUTABLE} not found: install the embedded database with "
            "pip install 'tdph-workflows[campaign]' (SecantusDB), or configure a MongoDB server"
        )
    return found


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def _is_server(pid: int) -> bool:
    """True when ``pid`` runs the SecantusDB server (its command line names the executable)."""
    proc = Path(f"/proc/{pid}/cmdline")
    try:
        if proc.parent.parent.is_dir() and Path("/proc/self").exists():
            cmdline = proc.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        else:  # no procfs (macOS): ask ps
            cmdline = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True,
                                     check=False).stdout
    except OSError:
        return False
    return "secantus" in cmdline


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class EmbeddedDatabase:
    """A SecantusDB server bound to 127.0.0.1 with its data, pid file and log in ``data_dir``."""

    data_dir: Path
    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"  # loopback only, never all interfaces

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser()
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            raise DatabaseError(f"the embedded database binds to loopback only, not {self.host}")

    @classmethod
    def from_env(cls) -> EmbeddedDatabase:
        """The server of ``TDPH_DB_DIR`` / ``TDPH_DB_PORT`` (defaults: ``~/.tdph/db``, 27117)."""
        return cls(default_data_dir(), current_settings().db_port or DEFAULT_PORT)

    @property
    def uri(self) -> str:
        """``mongodb://host:port`` for pymongo."""
        return f"mongodb://{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        """File holding the server's pid and port."""
        return self.data_dir / "secantusd.pid"

    @property
    def log_file(self) -> Path:
        """The server's log (appended to on every start)."""
        return self.data_dir / "secantusd.log"

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        # a stale pid file may name a pid the system has since given to another process: never signal that
        return pid if _pid_alive(pid) and _is_server(pid) else None

    def ping(self, timeout_ms: int = 1000) -> bool:
        """True when a server answers a ping at ``uri`` within ``timeout_ms``."""
        import pymongo

        try:
            with pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=timeout_ms) as client:
                client.admin.command("ping")
            return True
        except pymongo.errors.PyMongoError:
            return False

    def status(self) -> dict:
        """Running (live pid from the pid file and a ping), pid, uri, data folder and log path."""
        pid = self._pid()
        return {"running": pid is not None and self.ping(), "pid": pid, "uri": self.uri,
                "data_dir": str(self.data_dir), "log": str(self.log_file)}

    def start(self, timeout: float = 60.0) -> dict:
        """Start the server unless ours is already running; wait until it answers a ping."""
        if self._pid() is not None and self.ping():
            return self.status()
        if _port_open(self.host, self.port):
            raise DatabaseError(f"port {self.port} on {self.host} is taken by another process; choose --port")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        storage = self.data_dir / "wiredtiger"
        cmd = [_server_executable(), "--host", self.host, "--port", str(self.port), "--storage-path", str(storage),
               "--log-level", "WARNING"]
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)  # survives the CLI that started it
        self.pid_file.write_text(f"{proc.pid} {self.port}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DatabaseError(f"database server exited with code {proc.returncode}; see {self.log_file}")
            if self.ping(timeout_ms=300):
                return self.status()
            time.sleep(0.2)
        proc.kill()
        raise DatabaseError(f"database server did not answer within {timeout:.0f} s; see {self.log_file}")

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM (clean WiredTiger shutdown), SIGKILL after ``timeout``. False if it was not running."""
        pid = self._pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            try:  # reap it when we are its parent (tests), harmless otherwise
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True
