"""Each patient's latest reading of each kind (migration 0213, which the caseload reads)
stays what the readings say through every kind of write: batches in any order, late
back-filled readings, readings attributed to a patient later, deletions, truncation."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, tzinfo=UTC)
KINDS = ("blood_pressure", "spo2", "temperature")

#: The oracle: what the caseload computed before the table existed.
ORACLE = """
SELECT p.patient_id, k.kind, r.taken_at, r."values"
  FROM (SELECT DISTINCT patient_id FROM reading WHERE patient_id IS NOT NULL) p
 CROSS JOIN unnest(%s::text[]) AS k(kind)
 CROSS JOIN LATERAL (SELECT taken_at, "values" FROM reading
                      WHERE patient_id = p.patient_id AND kind = k.kind
                      ORDER BY taken_at DESC, "values"::text DESC LIMIT 1) r
 ORDER BY 1, 2"""


def _latest(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute('SELECT patient_id, kind, taken_at, "values" FROM reading_latest'
                        " ORDER BY 1, 2").fetchall()


def _insert(conn: psycopg.Connection[Any], rows: list[tuple[int | None, str, datetime, int]]
            ) -> None:
    """One multi-row INSERT, as an ingest batch is one statement."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, \"values\","
            " received_at) SELECT * FROM unnest(%s::uuid[], %s::timestamptz[], %s::text[],"
            " %s::text[], %s::bigint[], %s::text[], %s::jsonb[], %s::timestamptz[])",
            ([uuid.uuid4() for _ in rows], [at for _, _, at, _ in rows],
             [k for _, k, _, _ in rows], ["hub-1"] * len(rows), [p for p, _, _, _ in rows],
             ["dev"] * len(rows), [Jsonb({"v": v}) for *_, v in rows],
             [T0] * len(rows)))


@pytest.mark.hazard("H-012")
def test_the_latest_reading_per_kind_follows_every_write(db_url: str) -> None:
    rng = random.Random(13)
    # distinct times per patient and kind, so "the latest" has one answer
    rows = [(rng.choice((1, 2, 3, None)), rng.choice(KINDS),
             T0 + timedelta(minutes=i, seconds=rng.randrange(60)), i) for i in range(600)]
    rng.shuffle(rows)  # hubs forward stored readings late and out of order
    with psycopg.connect(db_url, autocommit=True) as conn:
        for start in range(0, len(rows), 50):
            _insert(conn, rows[start:start + 50])
        want = conn.execute(ORACLE, (list(KINDS),)).fetchall()
        assert _latest(conn) == want and len(want) == 9

        _insert(conn, [(1, "spo2", T0 - timedelta(days=1), -1)])  # older: changes nothing
        assert _latest(conn) == want
        _insert(conn, [(1, "spo2", T0 + timedelta(days=1), 9999)])  # newer: takes over
        assert conn.execute("SELECT \"values\" FROM reading_latest WHERE patient_id = 1"
                            " AND kind = 'spo2'").fetchone() == ({"v": 9999},)

        # the hub's unattributed readings given to patient 4 (an enrolment back-dated)
        conn.execute("UPDATE reading SET patient_id = 4 WHERE patient_id IS NULL")
        # patient 2's latest blood pressures erased, and all of patient 3's spo2
        conn.execute("DELETE FROM reading WHERE (patient_id = 2 AND kind = 'blood_pressure'"
                     " AND taken_at > %s) OR (patient_id = 3 AND kind = 'spo2')",
                     (T0 + timedelta(minutes=300),))
        want = conn.execute(ORACLE, (list(KINDS),)).fetchall()
        assert _latest(conn) == want
        assert {(p, k) for p, k, *_ in want} >= {(4, k) for k in KINDS}
        assert (3, "spo2") not in {(p, k) for p, k, *_ in want}

        conn.execute("DELETE FROM reading WHERE patient_id = 4")  # an erasure
        assert _latest(conn) == conn.execute(ORACLE, (list(KINDS),)).fetchall()
        assert 4 not in {p for p, *_ in _latest(conn)}
        conn.execute("TRUNCATE reading")
        assert _latest(conn) == []
