"""Engines own buckets of patients (advisory locks) and keep their windows in memory: each
patient is evaluated by one engine, a standby takes over when the holder's session ends,
and a window in memory gives the same findings as one read from the database."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from alerts import store
from alerts.partitions import BUCKETS, Partitions, parse_partition
from alerts.ruleset import load_ruleset
from alerts.sample_data import add_patient, add_team, insert_reading
from alerts.worker import AlertEngine

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


@pytest.fixture
def conn(db_url: str) -> Any:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


def engine(partition: str = "0/1") -> AlertEngine:
    k, n = parse_partition(partition)
    return AlertEngine(load_ruleset(), clock=lambda: T0, partitions=Partitions(k, n, retry=0))


def severe(conn: psycopg.Connection[Any], pid: int, at: datetime = T0) -> str:
    return insert_reading(conn, patient_id=pid, kind="blood_pressure",
                          values={"systolic": 200, "diastolic": 100, "pulse_rate": 70},
                          taken_at=at)


def weight(conn: psycopg.Connection[Any], pid: int, kg: float, at: datetime) -> str:
    return insert_reading(conn, patient_id=pid, kind="weight", values={"body_weight": kg},
                          taken_at=at)


def drain(conn: psycopg.Connection[Any], e: AlertEngine) -> int:
    n = 0
    while batch := e.process_batch(conn).readings:
        n += batch
    return n


def alerted(conn: psycopg.Connection[Any]) -> set[tuple[int, str]]:
    return {(a["patient_id"], a["rule_id"]) for a in store.list_alerts(conn)}


def queued(conn: psycopg.Connection[Any]) -> int:
    return int(conn.execute("SELECT count(*) FROM evaluation_queue").fetchone()[0])


@pytest.mark.parametrize(("text", "parsed"), [("0/1", (0, 1)), ("1/2", (1, 2)),
                                              (f"63/{BUCKETS}", (63, BUCKETS))])
def test_partition_text(text: str, parsed: tuple[int, int]) -> None:
    assert parse_partition(text) == parsed


@pytest.mark.parametrize("bad", ["2/2", "0/0", "-1/2", "1", "a/b", f"0/{BUCKETS + 1}"])
def test_bad_partition_text(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_partition(bad)


def test_two_partitions_evaluate_disjoint_patients_and_every_reading(conn, db_url):
    add_team(conn, "dn-north")
    pids = [add_patient(conn, f"P{n}", teams=["dn-north"], hub_id=f"hub-{n}") for n in range(2)]
    assert pids[0] % 2 != pids[1] % 2  # consecutive ids: one even bucket, one odd
    even, odd = sorted(pids, key=lambda p: p % 2)
    severe(conn, even)
    severe(conn, odd)
    with psycopg.connect(db_url, autocommit=True) as other:
        assert drain(conn, engine("0/2")) == 1
        assert alerted(conn) == {(even, "bp_severe")}
        assert queued(conn) == 1  # the odd patient's reading waits for its engine
        assert drain(other, engine("1/2")) == 1
    assert alerted(conn) == {(even, "bp_severe"), (odd, "bp_severe")}
    assert queued(conn) == 0


def test_a_standby_takes_over_when_the_holders_session_ends(conn, db_url):
    add_team(conn, "dn-north")
    pid = add_patient(conn, "Pat", teams=["dn-north"], hub_id="hub-1")
    holder_conn = psycopg.connect(db_url, autocommit=True)
    holder, standby = engine(), engine()
    severe(conn, pid)
    assert drain(holder_conn, holder) == 1
    severe(conn, pid, T0 + timedelta(minutes=5))
    assert drain(conn, standby) == 0  # every bucket is held: nothing for the standby
    assert queued(conn) == 1
    holder_conn.close()  # the holder dies: its session, and its locks, end
    deadline = time.monotonic() + 10
    while not (done := drain(conn, standby)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert done == 1
    (alert,) = store.list_alerts(conn)
    assert alert["count"] == 2  # opened by the holder, re-triggered by the standby


def test_a_window_kept_in_memory_sees_the_readings_of_earlier_batches(conn):
    """ESC HFA: a rise of more than 2 kg in 3 days; the first weight was evaluated in an
    earlier batch, so only memory holds it for the second (no window is read again)."""
    add_team(conn, "hf")
    pid = add_patient(conn, "Pat", teams=["hf"], hub_id="hub-1")
    e = engine()
    weight(conn, pid, 70.0, T0 - timedelta(days=2))
    assert drain(conn, e) == 1
    assert alerted(conn) == set()
    weight(conn, pid, 72.5, T0)
    assert drain(conn, e) == 1
    assert alerted(conn) == {(pid, "hf_weight_change")}


def test_a_reading_older_than_the_window_in_memory_reloads_it(conn):
    """A hub's backlog: a weight from 9 days ago arrives after today's.  Its window reaches
    back before what memory holds, so the engine reads it again from the database, where
    a weight from 10 days ago (evaluated long since, not queued) makes it a 3 kg rise."""
    add_team(conn, "hf")
    pid = add_patient(conn, "Pat", teams=["hf"], hub_id="hub-1")
    e = engine()
    long_ago = weight(conn, pid, 70.0, T0 - timedelta(days=10))
    conn.execute("DELETE FROM evaluation_queue WHERE reading_id = %s", (long_ago,))
    weight(conn, pid, 70.2, T0)
    assert drain(conn, e) == 1
    assert alerted(conn) == set()
    weight(conn, pid, 73.0, T0 - timedelta(days=9))
    assert drain(conn, e) == 1
    assert alerted(conn) == {(pid, "hf_weight_change")}


def test_a_reading_attributed_late_goes_to_the_engine_of_its_patients_bucket(conn, db_url):
    """Any engine claims a queued reading without a patient; attributed to a patient of a
    bucket it does not hold, the reading is queued again for the engine that holds it."""
    add_team(conn, "dn-north")
    pids = [add_patient(conn, f"P{n}", teams=["dn-north"], hub_id=f"hub-{n}") for n in range(2)]
    odd = next(p for p in pids if p % 2 == 1)
    hub = f"hub-{pids.index(odd)}"
    rid = insert_reading(conn, patient_id=odd, kind="blood_pressure", hub_id=hub,
                         values={"systolic": 200, "diastolic": 100}, taken_at=T0)
    # as stored by an ingest that did not yet see the hub's enrolment
    conn.execute("UPDATE reading SET patient_id = NULL WHERE id = %s", (rid,))
    conn.execute("UPDATE evaluation_queue SET patient_id = NULL WHERE reading_id = %s", (rid,))
    with psycopg.connect(db_url, autocommit=True) as other:
        assert drain(conn, engine("0/2")) == 1  # claimed, attributed, queued again
        assert alerted(conn) == set()
        assert conn.execute("SELECT patient_id FROM evaluation_queue").fetchall() == [(odd,)]
        assert drain(other, engine("1/2")) == 1
    assert alerted(conn) == {(odd, "bp_severe")}
    assert queued(conn) == 0


def test_memory_bounds_forget_patients_and_reload_them_when_needed(conn):
    """Past ``max_readings`` the patients loaded longest ago are forgotten; their next
    reading loads their window again, with the same finding."""
    add_team(conn, "hf")
    pids = [add_patient(conn, f"P{n}", teams=["hf"], hub_id=f"hub-{n}") for n in range(2)]
    e = engine()
    e.windows().max_readings = 1
    for pid in pids:
        weight(conn, pid, 70.0, T0 - timedelta(days=2))
        assert drain(conn, e) == 1
    assert list(e.windows().patients) == [pids[1]]  # the first was forgotten
    weight(conn, pids[0], 72.5, T0)
    assert drain(conn, e) == 1
    assert list(e.windows().patients) == [pids[0]]
    assert alerted(conn) == {(pids[0], "hf_weight_change")}
