"""A private PostgreSQL cluster: initdb, pg_ctl, a free port, its own folder."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from stack.services.common import (
    MissingBinaryError,
    chown_tree,
    free_port,
    install_hint,
    make_traversable,
    tail,
    unprivileged_user,
)


def find_pg_bindir() -> Path:
    """The folder holding initdb/pg_ctl/postgres, newest major version first."""
    explicit = os.environ.get("HOMEWARD_PG_BINDIR")
    candidates = [explicit] if explicit else []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
                         reverse=True)
    candidates += ["/usr/local/pgsql/bin", "/opt/homebrew/bin", "/usr/local/bin", "/usr/bin"]
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    raise MissingBinaryError(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install them with: "
        + install_hint("postgresql")
    )


def timescaledb_available(bindir: Path) -> bool:
    """True when the TimescaleDB extension is installed for this PostgreSQL."""
    pg_config = bindir / "pg_config"
    exe = str(pg_config) if pg_config.exists() else shutil.which("pg_config")
    if not exe:
        return False
    out = subprocess.run([exe, "--sharedir"], capture_output=True, text=True, check=False)
    return (Path(out.stdout.strip()) / "extension" / "timescaledb.control").exists()


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in ``data_dir``, listening on 127.0.0.1:``port``.

    ``durable=False`` turns fsync off: right for throwaway test clusters,
    wrong for anything whose data you want after a power cut.
    """

    data_dir: Path
    port: int = field(default_factory=free_port)
    user: str = "homeward"
    database: str = "homeward"
    durable: bool = True
    timescaledb: bool | None = None  # None: use it when installed
    bindir: Path = field(default_factory=find_pg_bindir)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).absolute()
        self.log_file = self.data_dir.parent / f"{self.data_dir.name}.log"
        if self.timescaledb is None:
            self.timescaledb = timescaledb_available(self.bindir)
        self._os_user = unprivileged_user()

    # -- lifecycle -------------------------------------------------------
    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._os_user is not None:
            kwargs = {"user": self._os_user.pw_uid, "group": self._os_user.pw_gid}
        result: subprocess.CompletedProcess[str] = subprocess.run(
            list(args), capture_output=True, text=True, check=False, cwd="/",
            **kwargs,  # type: ignore[call-overload]
        )
        return result

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if self._os_user is not None:
            chown_tree(self.data_dir, self._os_user)
            make_traversable(self.data_dir.parent)
        args = [str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                "--auth=trust", "-E", "UTF8", "--locale=C"]
        if not self.durable:
            args.append("--no-sync")
        result = self._run(*args)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        conf = [
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.data_dir}'",
            "max_connections = 200",
            "shared_buffers = 128MB",
            "timezone = 'UTC'",
            "log_min_messages = warning",
        ]
        if not self.durable:
            conf += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        if self.timescaledb:
            conf += ["shared_preload_libraries = 'timescaledb'",
                     "timescaledb.telemetry_level = off"]
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write("\n# homeward\n" + "\n".join(conf) + "\n")

    def start(self) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if not self.log_file.exists():
            self.log_file.touch()
        if self._os_user is not None:
            os.chown(self.log_file, self._os_user.pw_uid, self._os_user.pw_gid)
        result = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-l",
                           str(self.log_file), "-w", "-t", "60", "-o", f"-p {self.port}", "start")
        if result.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start (port {self.port}):\n"
                               f"{result.stdout}{result.stderr}\n{tail(self.log_file)}")
        self._ensure_database()

    def _ensure_database(self) -> None:
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self, mode: str = "fast") -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode,
                      "-w", "stop")

    def is_running(self) -> bool:
        result = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "status")
        return result.returncode == 0

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_file, lines)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create a fresh database (from ``template`` when given); returns its URL."""
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            clause = f' TEMPLATE "{template}"' if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{clause}')
        return self.admin_url(name)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
