"""``homeward bench alerts``: how fast the alert engine evaluates, and how soon an alert follows
its reading's commit, measured through a real ``homeward alerts`` process and PostgreSQL.

1. Throughput: ``readings`` ordinary readings (blood pressure, SpO2, temperature, weight,
   spread over ``patients`` and a week of history) are stored first; the engine process
   starts and goes idle; then all of them are queued in one transaction (with
   ``NOTIFY evaluation_queue``) and the engine drains the queue.  Readings evaluated per
   second is the queue drained divided by the time from that commit to an empty queue;
   CPU a reading is the engine process's CPU time (user + system, all threads, from
   /proc) over the same span divided by the readings, so the engine's first look at
   each patient (loading its windows) is counted; PostgreSQL's backends alike.
2. Latency: with the engine running and idle, readings are offered at ``rate`` per second
   for ``seconds`` in transactions of 10 (as ingest commits them, with
   ``NOTIFY evaluation_queue``); one in ``alert_every`` raises a new alert.  The time
   from the reading's commit (client clock, right after COMMIT returns) to the
   ``alert_event`` notification arriving at a listener (same clock) is commit -> alert
   visible.
"""

from __future__ import annotations

import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg

from bench.proc import children_cpu_seconds, cpu_seconds, postmaster_pid

KINDS = ("blood_pressure", "spo2", "temperature", "weight")


def _values(kind: str, rng: random.Random) -> dict[str, float]:
    if kind == "blood_pressure":
        return {"systolic": rng.randint(112, 150), "diastolic": rng.randint(65, 84),
                "pulse_rate": rng.randint(55, 88)}
    if kind == "spo2":
        return {"spo2": rng.randint(96, 99), "pulse_rate": rng.randint(55, 88)}
    if kind == "temperature":
        return {"body_temperature": round(rng.uniform(36.2, 37.6), 1)}
    return {"body_weight": round(rng.uniform(70.0, 70.8), 1)}


def _seed(conn: psycopg.Connection[Any], patients: int, now: datetime) -> list[int]:
    conn.execute("INSERT INTO organisation (name) VALUES ('Bench Trust')")
    kinds = ("district_nursing", "copd", "heart_failure", "out_of_hours")
    for n, kind in enumerate(kinds):
        conn.execute("INSERT INTO team (id, organisation_id, name, kind) SELECT %s, id, %s, %s"
                     " FROM organisation", (kind.replace("_", "-"), kind, kind))
        conn.execute("INSERT INTO clinician (username, display_name) VALUES (%s, %s)",
                     (f"nurse{n}", f"Nurse {n}"))
        conn.execute("INSERT INTO rota_shift (team_id, clinician_id, starts_at, ends_at)"
                     " SELECT %s, id, %s, %s FROM clinician WHERE username = %s",
                     (kind.replace("_", "-"), now - timedelta(days=30), now + timedelta(days=30),
                      f"nurse{n}"))
    rows = conn.execute(
        "INSERT INTO patient (display_name) SELECT 'Patient ' || g FROM generate_series(1, %s) g"
        " RETURNING id", (patients,)).fetchall()
    pids = [int(r[0]) for r in rows]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO patient_team (patient_id, team_id) VALUES (%s, %s)",
                        [(p, ("district-nursing", "copd", "heart-failure")[p % 3]) for p in pids])
        cur.executemany("INSERT INTO hub (id) VALUES (%s)", [(f"hub-{p}",) for p in pids])
        cur.executemany("INSERT INTO enrolment (hub_id, patient_id, valid_from) VALUES"
                        " (%s, %s, %s)", [(f"hub-{p}", p, now - timedelta(days=60))
                                          for p in pids])
    return pids


def _load_readings(conn: psycopg.Connection[Any], pids: list[int], n: int, now: datetime,
                   rng: random.Random) -> None:
    start = now - timedelta(days=7)
    step = timedelta(days=7) / max(n // max(len(pids), 1), 1)
    with conn.transaction(), conn.cursor() as cur, cur.copy(
            'COPY reading (id, taken_at, kind, hub_id, patient_id, device, "values",'
            " received_at) FROM STDIN") as copy:
        for i in range(n):
            pid = pids[i % len(pids)]
            kind = KINDS[(i // len(pids)) % len(KINDS)]
            taken = start + step * (i // len(pids)) + timedelta(seconds=rng.random())
            copy.write_row((uuid.uuid4(), taken, kind, f"hub-{pid}", pid, "AA:BB",
                            orjson.dumps(_values(kind, rng)).decode(), now))


def _start_engine(url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "stack", "alerts", "--database-url",
                                 url, "--poll", "0.5", "--tick", "3600"],
                                stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "HOMEWARD_SMTP_PORT": "1"})


def _wait_listening(conn: psycopg.Connection[Any], engine: subprocess.Popen[bytes],
                    log: Path) -> None:
    """Until the engine LISTENs (it has imported, connected and found the queue empty)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity"
                           " WHERE query = 'LISTEN evaluation_queue'").fetchone()
        if row and row[0]:
            break
        if engine.poll() is not None:
            raise RuntimeError("the alert engine exited: " + log.read_text()[-2000:])
        time.sleep(0.05)
    else:
        raise RuntimeError("the alert engine did not start listening within 60 s")
    # then until it is idle (its first, empty, batch and the scheduler tick are done)
    last = cpu_seconds(engine.pid)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = cpu_seconds(engine.pid)
        if now == last:
            return
        last = now
        if engine.poll() is not None:
            raise RuntimeError("the alert engine exited: " + log.read_text()[-2000:])
    raise RuntimeError("the alert engine did not go idle within 60 s")


def _queue(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM evaluation_queue").fetchone()
    assert row is not None
    return int(row[0])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_bench(*, readings: int, patients: int, rate: float, seconds: float, alert_every: int,
              database_url: str | None, echo: Callable[[str], None]) -> dict[str, Any]:
    from server.migrate import migrate
    from stack.services import PostgresServer

    rng = random.Random(4)  # noqa: S311 -- test data, not secrets
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        pg = None
        if database_url is None:
            pg = PostgresServer(Path(tmp) / "pg", durable=True)
            pg.start()
            url = pg.create_database("bench")
        else:
            url = database_url
        engine: subprocess.Popen[bytes] | None = None
        try:
            migrate(url)
            with psycopg.connect(url, autocommit=True) as conn:
                offered = max(int(rate * seconds), 10)
                alerts = max(offered // alert_every, 1)
                pids = _seed(conn, patients + alerts, now)
                _load_readings(conn, pids[:patients], readings, now, rng)
                engine_log = Path(tmp) / "engine.log"
                engine = _start_engine(url, engine_log)
                _wait_listening(conn, engine, engine_log)
                postmaster = postmaster_pid(pg)
                # the engine is up and idle: from here on its CPU is the evaluation's
                cpu0 = cpu_seconds(engine.pid)
                db0 = children_cpu_seconds(postmaster) if postmaster else 0.0
                with conn.transaction():
                    conn.execute("INSERT INTO evaluation_queue (reading_id, taken_at, patient_id,"
                                 " kind) SELECT id, taken_at, patient_id, kind FROM reading"
                                 " ORDER BY taken_at")
                    conn.execute("NOTIFY evaluation_queue")
                started = time.monotonic()
                initial = _queue(conn)
                deadline = started + 600
                while time.monotonic() < deadline:
                    left = _queue(conn)
                    t = time.monotonic()
                    if left == 0:
                        break
                    if engine.poll() is not None:
                        raise RuntimeError("the alert engine exited: "
                                           + engine_log.read_text()[-2000:])
                    time.sleep(0.02)
                drained_s = t - started
                engine_cpu = cpu_seconds(engine.pid) - cpu0
                db_cpu = (children_cpu_seconds(postmaster) - db0) if postmaster else None
                throughput = initial / drained_s if drained_s > 0 else float("inf")
                opened_bulk = conn.execute("SELECT count(*) FROM alert").fetchone()

                try:
                    latencies = _latency_run(url, conn, pids[patients:], rate, offered, rng)
                except RuntimeError as err:
                    engine.send_signal(signal.SIGUSR1)
                    time.sleep(1)
                    raise RuntimeError(f"{err}; engine log tail:\n"
                                       + engine_log.read_text()[-3000:]) from None
            result = {
                "readings": readings, "patients": patients,
                "evaluated_per_s": round(throughput, 1),
                "engine_cpu_us_per_reading": round(engine_cpu / initial * 1e6, 1),
                "db_cpu_us_per_reading": (round(db_cpu / initial * 1e6, 1)
                                          if db_cpu is not None else None),
                "loadavg": os.getloadavg()[0],
                "alerts_from_bulk": int(opened_bulk[0]) if opened_bulk else 0,
                "latency_alerts": len(latencies),
                "commit_to_alert_p50_ms": round(_percentile(latencies, 0.5) * 1000, 1),
                "commit_to_alert_p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
                "commit_to_alert_max_ms": round(max(latencies) * 1000, 1),
                "python": f"{platform.python_implementation()} {platform.python_version()} "
                          f"({sys.executable})",
                "timescaledb": bool(pg.timescaledb) if pg is not None else None,
            }
            echo(f"homeward bench alerts --readings {readings} --patients {patients} "
                 f"--rate {rate:g} --seconds {seconds:g} --alert-every {alert_every}")
            echo(f"  evaluated: {result['evaluated_per_s']:,} readings/s "
                 f"({initial:,} readings drained in {drained_s:.2f} s, 9 rules, "
                 f"{result['alerts_from_bulk']} alerts raised)")
            echo(f"  CPU a reading: engine {result['engine_cpu_us_per_reading']} µs, "
                 f"PostgreSQL backends {result['db_cpu_us_per_reading']} µs; "
                 f"load average {result['loadavg']:.2f}")
            echo(f"  commit -> alert visible ({len(latencies)} alerts among {offered:,} readings "
                 f"offered at {rate:g}/s in transactions of 10): "
                 f"p50 {result['commit_to_alert_p50_ms']} ms, "
                 f"p99 {result['commit_to_alert_p99_ms']} ms, "
                 f"max {result['commit_to_alert_max_ms']} ms")
            echo(f"  {result['python']}; PostgreSQL "
                 + ("private, durable (fsync on)" if pg is not None else "given")
                 + (", TimescaleDB" if result["timescaledb"] else ""))
            if os.environ.get("HOMEWARD_ALERTS_DEBUG"):
                Path("bench-alerts-engine.log").write_text(engine_log.read_text())
            return result
        finally:
            if engine is not None:
                engine.send_signal(signal.SIGTERM)
                try:
                    engine.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    engine.kill()
                    engine.wait()
            if pg is not None:
                pg.stop()


def _latency_run(url: str, conn: psycopg.Connection[Any], alert_pids: list[int], rate: float,
                 total: int, rng: random.Random) -> list[float]:
    committed: dict[int, float] = {}
    seen: dict[int, float] = {}
    ready = threading.Event()
    done = threading.Event()

    def listen() -> None:
        with psycopg.connect(url, autocommit=True) as lconn:
            lconn.execute("LISTEN alert_event")
            ready.set()
            while not done.is_set():
                for n in lconn.notifies(timeout=0.2):
                    at = time.time()
                    payload = orjson.loads(n.payload)
                    if os.environ.get("HOMEWARD_BENCH_TRACE"):
                        print("NOTIFY", n.payload, file=sys.stderr)
                    if payload.get("event") == "opened" and payload.get("patient_id"):
                        seen.setdefault(int(payload["patient_id"]), at)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    ready.wait(10)
    normal_pids = [int(r[0]) for r in conn.execute(
        "SELECT id FROM patient WHERE id <> ALL(%s) ORDER BY id LIMIT 200",
        (alert_pids,)).fetchall()]
    per_tx = 10
    alert_every = total // max(len(alert_pids), 1)
    started = time.monotonic()
    queue = list(alert_pids)
    for i in range(0, total, per_tx):
        target = started + i / rate
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        tx_alerts: list[int] = []
        rows = []
        for j in range(i, i + per_tx):
            taken = datetime.now(UTC)
            if j % alert_every == 0 and queue:
                pid = queue.pop()
                kind = "blood_pressure"
                values: dict[str, float] = {"systolic": 200, "diastolic": 100}
                tx_alerts.append(pid)
            else:
                pid = normal_pids[j % len(normal_pids)]
                kind = KINDS[j % len(KINDS)]
                values = _values(kind, rng)
            rows.append((uuid.uuid4(), taken, kind, f"hub-{pid}", pid, "AA:BB",
                         orjson.dumps(values).decode()))
        # what ingest does per batch: readings, their queue rows and NOTIFY, one commit
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(
                'INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, "values",'
                " received_at) SELECT u.*, now() FROM unnest(%s::uuid[], %s::timestamptz[],"
                " %s::text[], %s::text[], %s::bigint[], %s::text[], %s::jsonb[]) AS u",
                [list(c) for c in zip(*rows, strict=True)])
            cur.execute("INSERT INTO evaluation_queue (reading_id, taken_at, patient_id, kind)"
                        " SELECT * FROM unnest(%s::uuid[], %s::timestamptz[], %s::bigint[],"
                        " %s::text[])", ([r[0] for r in rows], [r[1] for r in rows],
                                         [r[4] for r in rows], [r[2] for r in rows]))
            cur.execute("NOTIFY evaluation_queue")
        t = time.time()
        for pid in tx_alerts:
            committed[pid] = t
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not committed.keys() <= seen.keys():
        time.sleep(0.05)
    done.set()
    listener.join(5)
    missing = set(committed) - set(seen)
    if missing:
        raise RuntimeError(f"{len(missing)} alerts never became visible: patients "
                           f"{sorted(missing)[:20]}")
    return [max(seen[p] - committed[p], 0.0) for p in committed]
