"""`homeward deploy init`, the compose file's one-shot init step, run directly: on an
empty database and empty volumes it makes the broker's certificates and logins, the
schema and the first admin; run again it keeps all of them; and the broker starts
from what it wrote, serving TLS under the name the servers use."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from psycopg.conninfo import make_conninfo
from typer.testing import CliRunner

from stack.cli import app
from stack.services import PostgresServer
from tests.broker_support import CONFIG, ENVIRONMENT, PASSWORDS, Probe, deployed_broker

pytestmark = pytest.mark.integration

BOOTSTRAP = {"HOMEWARD_BOOTSTRAP_ORGANISATION": "Riverside Community Health",
             "HOMEWARD_BOOTSTRAP_USERNAME": "ops.admin",
             "HOMEWARD_BOOTSTRAP_NAME": "Operations Admin",
             "HOMEWARD_BOOTSTRAP_PASSWORD": "a long first password",
             "HOMEWARD_DB_APP_PASSWORD": "app-role-pw"}


def _init(tmp_path: Path, url: str, **extra: str) -> str:
    result = CliRunner().invoke(app, [
        "deploy", "init", "--certs", str(tmp_path / "certs"),
        "--broker-state", str(tmp_path / "data" / "dynamic-security.json"),
        "--broker-name", "mqtt", "--broker-name", "localhost", "--broker-name", "127.0.0.1",
        "--database-url", url, "--app-role", "deploy_app"],
        env={**ENVIRONMENT, **BOOTSTRAP, **extra})
    assert result.exit_code == 0, result.output
    return result.output


def test_init_makes_everything_once_and_the_broker_starts_from_it(
        tmp_path: Path, postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("deploy_init")  # empty: not even the schema
    first = _init(tmp_path, url)
    assert "certificates: made in" in first
    assert "migration(s) applied" in first
    assert "admin 'ops.admin' created; sign in with HOMEWARD_BOOTSTRAP_PASSWORD" in first

    certs = tmp_path / "certs"
    ca = x509.load_pem_x509_certificate((certs / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((certs / "server.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["mqtt", "localhost"]
    assert oct((certs / "server.key").stat().st_mode & 0o777) == "0o600"
    before = {f: (certs / f).read_bytes() for f in ("ca.crt", "server.crt", "server.key")}

    again = _init(tmp_path, url, HOMEWARD_BOOTSTRAP_USERNAME="someone.else")
    assert "certificates: kept in" in again
    assert "schema: up to date" in again
    assert "an organisation exists already; nothing done" in again
    assert {f: (certs / f).read_bytes() for f in before} == before
    with psycopg.connect(url) as conn:
        admins = conn.execute("SELECT username FROM clinician WHERE role = 'admin'").fetchall()
        audited = conn.execute("SELECT count(*) FROM access_audit"
                               " WHERE action = 'homeward admin bootstrap'").fetchone()
    assert admins == [("ops.admin",)]
    assert audited == (1,)
    assert "application role: deploy_app may read and write rows" in again
    app_url = make_conninfo(url, user="deploy_app", password="app-role-pw")
    with psycopg.connect(app_url, autocommit=True) as app_conn:
        assert app_conn.execute("SELECT count(*) FROM clinician").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app_conn.execute("DROP TABLE access_audit")

    with deployed_broker(tmp_path, certs, tmp_path / "data") as port:
        api = Probe(port, CONFIG, PASSWORDS[CONFIG], tls=True, ca_file=certs / "ca.crt")
        api.close()
        assert api.connack == "Success"
        context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_init_refuses_half_a_certificate_folder(tmp_path: Path,
                                                postgres_server: PostgresServer) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "server.key").write_text("an adopter's key")
    result = CliRunner().invoke(app, [
        "deploy", "init", "--certs", str(tmp_path / "certs"),
        "--broker-state", str(tmp_path / "state.json"),
        "--database-url", postgres_server.create_database("deploy_half")], env=ENVIRONMENT)
    assert result.exit_code != 0
    assert "holds server.key but not all of ca.crt, server.crt, server.key" in result.output
    assert (tmp_path / "certs" / "server.key").read_text() == "an adopter's key"
    assert not (tmp_path / "state.json").exists()
