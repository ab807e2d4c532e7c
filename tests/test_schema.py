"""The schema answers the same on plain PostgreSQL and on TimescaleDB."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from server.migrate import has_timescaledb, migrate
from stack.services import PostgresServer
from stack.services.postgres import find_pg_bindir, timescaledb_available

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
READINGS = [
    (T0 + timedelta(minutes=10), {"systolic": 150.0, "diastolic": 90.0}),
    (T0 + timedelta(minutes=40), {"systolic": 170.0, "diastolic": 100.0}),
    (T0 + timedelta(hours=1, minutes=5), {"systolic": 182.0, "diastolic": 104.0}),
]
HOURLY = "SELECT bucket, readings, systolic_avg, systolic_max FROM reading_hourly " \
         "WHERE patient_id = 1 AND kind = 'blood_pressure' ORDER BY bucket"
EXPECTED = [(T0, 2, 160.0, 170.0), (T0 + timedelta(hours=1), 1, 182.0, 182.0)]


def _insert(url: str) -> None:
    with psycopg.connect(url) as conn:
        for taken_at, values in READINGS:
            conn.execute(
                "INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, \"values\","
                " received_at) VALUES (%s, %s, 'blood_pressure', 'hub-1', 1, 'cuff', %s, now())",
                (uuid.uuid4(), taken_at, Jsonb(values)))


def _hourly(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        conn.execute("SET timezone = 'UTC'")
        return [tuple(r) for r in conn.execute(HOURLY).fetchall()]


def test_hourly_summary_on_the_suite_database(db_url: str) -> None:
    _insert(db_url)
    assert _hourly(db_url) == EXPECTED


def test_hourly_summary_on_plain_postgresql(tmp_path: Path) -> None:
    with PostgresServer(tmp_path / "plain", durable=False, timescaledb=False) as pg:
        migrate(pg.url)
        with psycopg.connect(pg.url) as conn:
            assert not has_timescaledb(conn)
        _insert(pg.url)
        assert _hourly(pg.url) == EXPECTED


TIMESCALE = timescaledb_available(find_pg_bindir())


@pytest.mark.skipif(not TIMESCALE, reason="the TimescaleDB extension is not installed here")
def test_reading_is_a_compressed_hypertable_with_policies(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        assert has_timescaledb(conn)
        (compressed,) = conn.execute(
            "SELECT compression_enabled FROM timescaledb_information.hypertables"
            " WHERE hypertable_name = 'reading'").fetchone() or (None,)
        assert compressed is True
        jobs = {r[0] for r in conn.execute(
            "SELECT proc_name FROM timescaledb_information.jobs"
            " WHERE hypertable_name IN ('reading', 'reading_hourly', 'reading_daily')"
            " OR proc_name = 'policy_refresh_continuous_aggregate'")}
        assert {"policy_compression", "policy_retention",
                "policy_refresh_continuous_aggregate"} <= jobs
