"""Hourly and daily chart series from the hourly rollup (migration 0210) answer what the
raw readings answer: the same buckets, counts, minima and maxima, the same means to
rounding, whatever the range's edges (partial hours come from raw readings)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from server.migrate import migrate
from server.record_queries import series
from stack.services import PostgresServer
from stack.services.postgres import find_pg_bindir, timescaledb_available

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, tzinfo=UTC)
PATIENT = 1

#: The oracle: the raw aggregate series() made before the rollup existed.
RAW = ("SELECT date_bin(%(w)s::interval, taken_at, timestamptz '2000-01-01') AS t,"
       " min((\"values\"->>%(m)s)::float8), avg((\"values\"->>%(m)s)::float8),"
       " max((\"values\"->>%(m)s)::float8), count(*) FROM reading WHERE patient_id = %(p)s"
       " AND kind = %(k)s AND taken_at >= %(start)s AND taken_at < %(end)s"
       " AND \"values\" ? %(m)s GROUP BY 1 ORDER BY 1")


def _readings() -> list[tuple[datetime, str, dict[str, Any]]]:
    rows: list[tuple[datetime, str, dict[str, Any]]] = []
    for i in range(0, 12 * 24 * 6):  # six days, every 5 minutes
        at = T0 + timedelta(minutes=5 * i, seconds=i % 60)
        spo2: dict[str, Any] = {"spo2": 88 + i % 11, "pulse_rate": 60 + i % 37}
        if i % 4 == 0:
            spo2["perfusion_index"] = round(0.5 + (i % 90) / 10, 1)
        rows.append((at, "spo2", spo2))
        if i % 36 == 0:
            bp: dict[str, Any] = {"systolic": 110 + i % 60, "diastolic": 70 + i % 25}
            if i % 72 == 0:
                bp["mean_arterial"] = 90 + i % 9
            rows.append((at, "blood_pressure", bp))
            rows.append((at, "temperature", {"body_temperature": 36.1 + (i % 17) / 10}))
    return rows


def _load(url: str, rows: list[tuple[datetime, str, dict[str, Any]]]) -> None:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, \"values\","
            " received_at) VALUES (%s, %s, %s, 'hub-1', %s, 'dev', %s, now())",
            [(uuid.uuid4(), at, kind, PATIENT, Jsonb(values)) for at, kind, values in rows])
    with psycopg.connect(url, autocommit=True) as conn:
        has_rollup = conn.execute("SELECT 1 FROM timescaledb_information.continuous_aggregates"
                                  " WHERE view_name = 'reading_metric_hourly'"
                                  ) if _timescale(conn) else None
        if has_rollup is not None and has_rollup.fetchone():
            conn.execute("CALL refresh_continuous_aggregate('reading_metric_hourly', NULL,"
                         " NULL)")


def _timescale(conn: psycopg.Connection[Any]) -> bool:
    return conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"
                        ).fetchone() is not None


#: (kind, metric, start, end, resolution): whole hours, ragged edges, a range inside
#: one hour, one with no readings of the metric, days.
CASES = [
    ("spo2", "spo2", T0, T0 + timedelta(days=6), "hour"),
    ("spo2", "spo2", T0 + timedelta(minutes=17, seconds=3), T0 + timedelta(days=5, hours=3,
                                                                          minutes=41), "hour"),
    ("spo2", "pulse_rate", T0 + timedelta(hours=30, minutes=59), T0 + timedelta(days=4), "day"),
    ("spo2", "perfusion_index", T0 - timedelta(days=3), T0 + timedelta(days=90), "day"),
    ("spo2", "spo2", T0 + timedelta(minutes=5), T0 + timedelta(minutes=55), "hour"),
    ("blood_pressure", "mean_arterial", T0 + timedelta(minutes=1), T0 + timedelta(days=6),
     "hour"),
    ("blood_pressure", "systolic", T0 + timedelta(hours=5, minutes=30),
     T0 + timedelta(days=3, hours=2, minutes=30), "day"),
    ("temperature", "body_temperature", T0, T0 + timedelta(days=6, minutes=1), "hour"),
    ("temperature", "spo2", T0, T0 + timedelta(days=6), "day"),
]


def _check_against_raw(url: str, patient: int = PATIENT) -> None:
    with psycopg.connect(url) as conn:
        for kind, metric, start, end, resolution in CASES:
            got = series(conn, patient, kind=kind, metric=metric, start=start, end=end,
                         resolution=resolution)  # type: ignore[arg-type]
            width = "1 hour" if resolution == "hour" else "1 day"
            want = conn.execute(RAW, {"w": width, "m": metric, "p": patient, "k": kind,
                                      "start": start, "end": end}).fetchall()
            case = (patient, kind, metric, start, end, resolution)
            assert [(p["t"], p["min"], p["max"], p["n"]) for p in got["points"]] == [
                (t.isoformat(), lo, hi, n) for t, lo, _, hi, n in want], case
            assert [p["mean"] for p in got["points"]] == pytest.approx(
                [mean for *_, mean, _, _ in want], rel=1e-12), case


def test_rollup_series_equal_the_raw_aggregate(db_url: str) -> None:
    _load(db_url, _readings())
    _check_against_raw(db_url)


@pytest.mark.skipif(not timescaledb_available(find_pg_bindir()),
                    reason="the TimescaleDB extension is not installed here")
def test_long_charts_read_the_rollup_and_a_late_reading_counts_from_the_next_refresh(
        db_url: str) -> None:
    _load(db_url, _readings())
    hour = T0 + timedelta(days=2, hours=7)
    args: dict[str, Any] = {"kind": "spo2", "metric": "spo2", "start": T0,
                            "end": T0 + timedelta(days=6), "resolution": "hour"}

    def bucket() -> dict[str, Any]:
        with psycopg.connect(db_url) as conn:
            points = series(conn, PATIENT, **args)["points"]
        return next(p for p in points if p["t"] == hour.isoformat())

    assert bucket()["n"] == 12
    with psycopg.connect(db_url) as conn:  # a hub forwards a stored reading days late
        conn.execute("INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device,"
                     " \"values\", received_at) VALUES (%s, %s, 'spo2', 'hub-1', %s, 'dev',"
                     " %s, now())", (uuid.uuid4(), hour + timedelta(minutes=1), PATIENT,
                                     Jsonb({"spo2": 70})))
    assert bucket()["n"] == 12  # the materialised hour, until the policy's next refresh
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CALL refresh_continuous_aggregate('reading_metric_hourly', NULL, NULL)")
    assert (bucket()["n"], bucket()["min"]) == (13, 70.0)
    _check_against_raw(db_url)


def test_plain_postgresql_keeps_the_rollup_through_inserts_updates_and_deletes(
        tmp_path: Path) -> None:
    with PostgresServer(tmp_path / "plain", durable=False, timescaledb=False) as pg:
        migrate(pg.url)
        _load(pg.url, _readings()[: len(_readings()) // 2])  # before the backfill...
        with psycopg.connect(pg.url, autocommit=True) as conn:
            (before,) = conn.execute("SELECT count(*) FROM reading_metric_hourly"
                                     ).fetchone() or (0,)
        _load(pg.url, _readings()[len(_readings()) // 2:])  # ...and after, by trigger
        _check_against_raw(pg.url)
        with psycopg.connect(pg.url) as conn:
            (rolled,) = conn.execute("SELECT sum(spo2_n) FROM reading_metric_hourly"
                                     ).fetchone() or (0,)
            # a hub's readings attributed to another patient, some erased, one late
            conn.execute("INSERT INTO patient (id, display_name) VALUES (1, 'A'), (2, 'B')")
            conn.execute("UPDATE reading SET patient_id = 2 WHERE kind = 'spo2'"
                         " AND taken_at < %s", (T0 + timedelta(days=2, minutes=30),))
            conn.execute("DELETE FROM reading WHERE kind = 'blood_pressure'"
                         " AND taken_at BETWEEN %s AND %s",
                         (T0 + timedelta(days=1), T0 + timedelta(days=3)))
            conn.execute("INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device,"
                         " \"values\", received_at) VALUES (%s, %s, 'spo2', 'hub-1', 1, 'dev',"
                         " %s, now())", (uuid.uuid4(), T0 + timedelta(days=3, minutes=1),
                                         Jsonb({"spo2": 70})))
        assert before > 0 and rolled == len([r for r in _readings() if r[1] == "spo2"])
        _check_against_raw(pg.url, PATIENT)
        _check_against_raw(pg.url, 2)
        with psycopg.connect(pg.url) as conn:
            conn.execute("TRUNCATE reading")
            (left,) = conn.execute("SELECT count(*) FROM reading_metric_hourly"
                                   ).fetchone() or (1,)
        assert left == 0
