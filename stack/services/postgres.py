"""A private PostgreSQL cluster: initdb, pg_ctl, a free port, its own folder."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

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


#: The authentication method of a cluster with passwords (PostgreSQL's strongest).
SCRAM = "scram-sha-256"
#: pg_hba.conf of a cluster with passwords: every connection logs in with one.
PASSWORD_HBA = f"""# homeward: every connection logs in with a password
local all all {SCRAM}
host all all 127.0.0.1/32 {SCRAM}
host all all ::1/128 {SCRAM}
"""


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in ``data_dir``, listening on 127.0.0.1:``port``.

    ``durable=False`` turns fsync off: right for throwaway test clusters,
    wrong for anything whose data you want after a power cut.

    With ``password`` every connection, over TCP or the Unix socket, must log
    in with a password (scram-sha-256 in pg_hba.conf), and ``user`` (the
    superuser that owns the database and runs the migrations) has that one; a
    cluster made before without passwords is switched over on its next start.
    Without it (the tests' throwaway clusters) local connections are trusted.
    :meth:`ensure_login_role` adds a role with no rights beyond logging in.
    """

    data_dir: Path
    port: int = field(default_factory=free_port)
    user: str = "homeward"
    database: str = "homeward"
    durable: bool = True
    password: str | None = None
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
        return self.url_for(self.user, self.password, self.database)

    def admin_url(self, database: str = "postgres") -> str:
        return self.url_for(self.user, self.password, database)

    def url_for(self, role: str, password: str | None, database: str | None = None) -> str:
        """A libpq URL that logs ``role`` in (with ``password``, when given)."""
        login = quote(role, safe="") + (f":{quote(password, safe='')}" if password else "")
        return f"postgresql://{login}@127.0.0.1:{self.port}/{database or self.database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._os_user is not None:
            kwargs = {"user": self._os_user.pw_uid, "group": self._os_user.pw_gid}
            # again each time: another pytest run as root resets /tmp/pytest-of-root to 0700
            make_traversable(self.data_dir.parent)
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
                "-E", "UTF8", "--locale=C"]
        pwfile = self.data_dir.parent / f".{self.data_dir.name}.pwfile"
        if self.password is not None:
            pwfile.write_text(self.password + "\n")
            pwfile.chmod(0o600)
            if self._os_user is not None:
                os.chown(pwfile, self._os_user.pw_uid, self._os_user.pw_gid)
            args += [f"--pwfile={pwfile}", f"--auth={SCRAM}"]
        else:
            args.append("--auth=trust")
        if not self.durable:
            args.append("--no-sync")
        try:
            result = self._run(*args)
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        if self.password is not None:
            self._write_hba()
        conf = [
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.data_dir}'",
            "max_connections = 200",
            # Lock table: 256 x 200 = 51,200 slots (16.7 MB); the ingest's
            # transactions take at most 32 chunks x 17 = 544 (docs/ingest.md).
            "max_locks_per_transaction = 256",
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
        if self.password is not None and self._hba_file.read_text() != PASSWORD_HBA:
            self._require_passwords()
        self._ensure_database()

    # -- authentication --------------------------------------------------
    @property
    def _hba_file(self) -> Path:
        return self.data_dir / "pg_hba.conf"

    def _write_hba(self) -> None:
        self._hba_file.write_text(PASSWORD_HBA)
        if self._os_user is not None:
            os.chown(self._hba_file, self._os_user.pw_uid, self._os_user.pw_gid)

    def _require_passwords(self) -> None:
        """A cluster made without passwords: give ``user`` its password (trust still
        lets it in), then require passwords from everyone and reload."""
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(self.user), sql.Literal(self.password)))
        self._write_hba()
        result = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "reload")
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl reload failed:\n{result.stdout}{result.stderr}")

    def ensure_login_role(self, role: str, password: str) -> str:
        """Create (or update the password of) ``role``: it may log in and nothing more
        (NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS); grant it
        what it needs afterwards.  Returns its URL for this cluster's database."""
        from server.migrate import ensure_login_role

        ensure_login_role(self.admin_url(), role, password)
        return self.url_for(role, password)

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
