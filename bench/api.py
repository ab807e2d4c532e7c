"""``homeward bench api``: how fast the care-team workspace answers a nurse, on a
realistic database, through the real ``homeward serve``.

The database: 2,000 patients on 8 teams of 2 organisations (every patient on one
lead team, one in 20 shared with a second team, so a nurse's caseload is about
260), a nurse on each team and an admin whose scope spans both organisations;
90 days of spot checks (blood pressure, SpO2, temperature, weight, four times a
day: 2.88 M readings); one patient with 90 days of 1 Hz oximetry (7.78 M
readings); a few hundred open alerts on about one patient in seven and a history
of closed ones.  Readings are generated inside PostgreSQL (``INSERT ... SELECT``
over ``generate_series``, one statement per day, a commit every few days): no
row crosses the wire, so seeding costs what the server's own insert path costs.
With TimescaleDB the database is then brought to the state 90 days of running
leaves it in: chunks older than the compression policy's 30 days compressed and
the continuous aggregates refreshed.  ``--keep DIR`` (or ``--database-url``)
keeps the database, and a second run finds it seeded and skips straight to the
measurements.

The measurements: ``homeward serve`` runs as a subprocess; httpx sends
sequential requests (after a warm-up) and each figure is p50/p95/max over
``--requests`` requests.  The audit's cost is measured twice: N inserts through
``server.audit.record`` on one connection (what each request adds), and the same
series read timed directly through ``server.record_queries.series`` and through
the API (what the whole request path adds: HTTP, authentication, the scope check,
the audit row, JSON).  Every API request is checked to have left exactly one
audit row.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

PATIENTS = 2000
TEAMS = 8
DAYS = 90
SPOT_KINDS = ("blood_pressure", "spo2", "temperature", "weight")
#: Spot checks at these hours (UTC), each within a few minutes.
SPOT_HOURS = (8, 12, 16, 20)
#: One patient in this many has open alerts (some two).
ALERT_EVERY = 7
#: Commit the 1 Hz oximetry every this many days (a few big transactions).
DAYS_PER_COMMIT = 10
TARGET_P95_MS = 300.0
TARGET_AUDIT_P50_MS = 2.0
SEED_MARK = "homeward-bench-api-v1"


@dataclass(frozen=True)
class ApiBenchOptions:
    requests: int = 50
    warmup: int = 3
    database_url: str | None = None
    keep: Path | None = None
    plain: bool = False
    as_json: bool = False


def _token(name: str) -> str:
    return f"bench-api-{name}-token"


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _say(echo: Callable[[str], None] | None, text: str) -> None:
    if echo is not None:
        echo(text)


# -- seeding ------------------------------------------------------------------------------

def is_seeded(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT 1 FROM organisation WHERE name = %s", (SEED_MARK,)).fetchone()
    return row is not None


def seed(conn: psycopg.Connection[Any], now: datetime,
         echo: Callable[[str], None] | None) -> None:
    """The whole database (see the module docstring); ``conn`` is in autocommit."""
    t0 = time.perf_counter()
    start = now - timedelta(days=DAYS)
    with conn.transaction():
        _seed_people(conn, now)
    _say(echo, f"  people, hubs, devices, schedules: {time.perf_counter() - t0:.1f} s")
    t = time.perf_counter()
    for day in range(0, DAYS, DAYS_PER_COMMIT):
        with conn.transaction():
            conn.execute(_SPOT_READINGS, {"start": start + timedelta(days=day),
                                          "days": min(DAYS_PER_COMMIT, DAYS - day),
                                          "patients": PATIENTS, "hours": list(SPOT_HOURS)})
        done = min(day + DAYS_PER_COMMIT, DAYS)
        _say(echo, f"  spot checks: day {done}/{DAYS} "
                   f"({done * PATIENTS * len(SPOT_HOURS) * len(SPOT_KINDS):,} readings, "
                   f"{time.perf_counter() - t:.0f} s)")
    t = time.perf_counter()
    one_hz = _one_hz_patient(conn)
    for day in range(0, DAYS, DAYS_PER_COMMIT):
        with conn.transaction():
            for d in range(day, min(day + DAYS_PER_COMMIT, DAYS)):
                conn.execute(_ONE_HZ_DAY, {"start": start + timedelta(days=d),
                                           "patient": one_hz})
        done = min(day + DAYS_PER_COMMIT, DAYS)
        _say(echo, f"  1 Hz oximetry (patient {one_hz}): day {done}/{DAYS} "
                   f"({done * 86400:,} readings, {time.perf_counter() - t:.0f} s)")
    with conn.transaction():
        _seed_alerts(conn, now)
    conn.execute("ANALYZE")
    _say(echo, f"  alerts and ANALYZE done; seeding took {time.perf_counter() - t0:.0f} s")


def settle_timescaledb(conn: psycopg.Connection[Any], now: datetime,
                       echo: Callable[[str], None] | None) -> None:
    """What 90 days of running leaves behind: the compression policy's chunks
    compressed, the continuous aggregates materialised."""
    t = time.perf_counter()
    chunks = [r[0] for r in conn.execute(
        "SELECT c FROM show_chunks('reading', older_than => interval '30 days') c")]
    for n, chunk in enumerate(chunks, 1):
        conn.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)",
                     (chunk,))
        if n % 10 == 0 or n == len(chunks):
            _say(echo, f"  compressed {n}/{len(chunks)} chunks older than 30 days "
                       f"({time.perf_counter() - t:.0f} s)")
    views = [r[0] for r in conn.execute(
        "SELECT view_name FROM timescaledb_information.continuous_aggregates"
        " WHERE hypertable_name = 'reading' ORDER BY view_name")]
    for view in views:
        t = time.perf_counter()
        conn.execute("CALL refresh_continuous_aggregate(%s, NULL, %s)",
                     (view, now - timedelta(hours=1)))
        _say(echo, f"  refreshed {view} ({time.perf_counter() - t:.0f} s)")
    conn.execute("ANALYZE")


def _one_hz_patient(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT id FROM patient WHERE display_name = 'Bench Oximetry'"
                       ).fetchone()
    assert row is not None
    return int(row[0])


def _seed_people(conn: psycopg.Connection[Any], now: datetime) -> None:
    enrolled = now - timedelta(days=DAYS + 1)
    orgs = [int(r[0]) for r in conn.execute(
        "INSERT INTO organisation (name) VALUES (%s), ('Bench South Trust') RETURNING id",
        (SEED_MARK,)).fetchall()]
    kinds = ("district_nursing", "heart_failure", "copd", "out_of_hours")
    for t in range(TEAMS):
        conn.execute("INSERT INTO team (id, organisation_id, name, kind) VALUES (%s, %s, %s,"
                     " %s)", (f"bench-t{t}", orgs[t // (TEAMS // 2)],
                              f"Bench team {t}", kinds[t % len(kinds)]))
        nurse = conn.execute(
            "INSERT INTO clinician (username, display_name, role, organisation_id,"
            " api_token_hash) VALUES (%s, %s, 'nurse', %s, %s) RETURNING id",
            (f"bench-nurse{t}", f"Bench Nurse {t}", orgs[t // (TEAMS // 2)],
             _sha(_token(f"nurse{t}")))).fetchone()
        assert nurse is not None
        conn.execute("INSERT INTO team_member (team_id, clinician_id) VALUES (%s, %s)",
                     (f"bench-t{t}", nurse[0]))
    admin = conn.execute(
        "INSERT INTO clinician (username, display_name, role, organisation_id,"
        " api_token_hash) VALUES ('bench-admin', 'Bench Admin', 'admin', %s, %s)"
        " RETURNING id", (orgs[0], _sha(_token("admin")))).fetchone()
    assert admin is not None
    # her own organisation's teams, and one of the other's: her scope spans both
    conn.execute("INSERT INTO team_member (team_id, clinician_id) VALUES ('bench-t0', %s),"
                 " (%s, %s)", (admin[0], f"bench-t{TEAMS - 1}", admin[0]))
    conn.execute(
        "INSERT INTO patient (nhs_number, display_name, date_of_birth)"
        " SELECT lpad((900000000 + g)::text, 10, '9'),"
        "  CASE WHEN g = 1 THEN 'Bench Oximetry' ELSE 'Bench Patient ' || g END,"
        "  date '1940-01-01' + (g * 7) %% 14000 FROM generate_series(1, %s) g", (PATIENTS,))
    conn.execute(
        "CREATE TEMP TABLE bench_p ON COMMIT DROP AS SELECT id, row_number() OVER"
        " (ORDER BY id) - 1 AS n FROM patient WHERE display_name LIKE 'Bench %%'")
    conn.execute(
        "INSERT INTO patient_team (patient_id, team_id, lead)"
        " SELECT id, 'bench-t' || (n %% %(teams)s), true FROM bench_p"
        " UNION ALL SELECT id, 'bench-t' || ((n + 1) %% %(teams)s), false FROM bench_p"
        "  WHERE n %% 20 = 0", {"teams": TEAMS})
    conn.execute(
        "INSERT INTO hub (id, state, last_status, last_status_at, last_seen_at)"
        " SELECT 'bench-hub-' || id, 'online', jsonb_build_object('state', 'online',"
        "  'outbox_depth', n %% 5, 'devices', jsonb_build_array("
        "   jsonb_build_object('address', 'AA:00:' || id, 'battery', 40 + n %% 60),"
        "   jsonb_build_object('address', 'BB:00:' || id, 'battery', 20 + n %% 80))),"
        "  %(now)s, %(now)s FROM bench_p", {"now": now})
    conn.execute("INSERT INTO enrolment (hub_id, patient_id, valid_from)"
                 " SELECT 'bench-hub-' || id, id, %s FROM bench_p", (enrolled,))
    conn.execute(
        "INSERT INTO device (hub_id, address, kind, name, paired_at)"
        " SELECT 'bench-hub-' || p.id, d.prefix || ':00:' || p.id, d.kind, d.kind, %s"
        " FROM bench_p p CROSS JOIN (VALUES ('AA', 'blood_pressure'), ('BB', 'spo2'),"
        "  ('CC', 'temperature'), ('DD', 'weight')) d(prefix, kind)", (enrolled,))
    # a missed-reading schedule for every patient, so the caseload's adherence has work
    conn.execute(
        "INSERT INTO patient_rule_setting (patient_id, rule_id, enabled, params, valid_from,"
        " note) SELECT id, 'missed_spo2', true, %s, %s, 'bench' FROM bench_p",
        ('{"at": ["08:00", "12:00", "16:00", "20:00"]}', enrolled))


#: 10 days of spot checks for every bench patient but the 1 Hz one: per patient, day,
#: slot and kind one reading a few minutes after the slot, plausible values.
_SPOT_READINGS = """
INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, "values", received_at,
                     committed_at)
SELECT gen_random_uuid(), s.at, k.kind, 'bench-hub-' || p.id, p.id, k.prefix || ':00:' || p.id,
       CASE k.kind
         WHEN 'blood_pressure' THEN jsonb_build_object(
              'systolic', 110 + (p.id * 7 + s.i) %% 45, 'diastolic', 65 + (p.id + s.i) %% 20,
              'mean_arterial', 85 + (p.id + s.i) %% 20, 'pulse_rate', 55 + (p.id * 3 + s.i) %% 35)
         WHEN 'spo2' THEN jsonb_build_object('spo2', 93 + (p.id + s.i) %% 6,
              'pulse_rate', 55 + (p.id * 5 + s.i) %% 35)
         WHEN 'temperature' THEN jsonb_build_object(
              'body_temperature', 36.2 + ((p.id + s.i) %% 14) / 10.0)
         ELSE jsonb_build_object('body_weight', 60 + p.id %% 40 + ((s.i %% 10) / 10.0))
       END,
       s.at + interval '2 seconds', s.at + interval '3 seconds'
  FROM patient p
  CROSS JOIN (VALUES ('blood_pressure', 'AA'), ('spo2', 'BB'), ('temperature', 'CC'),
                     ('weight', 'DD')) k(kind, prefix)
  CROSS JOIN LATERAL (
        SELECT i, date_trunc('day', %(start)s::timestamptz) + (i / 4) * interval '1 day'
                  + make_interval(hours => (%(hours)s::int[])[i %% 4 + 1],
                                  mins => ((p.id + i) %% 7)::int) AS at
          FROM generate_series(0, %(days)s * 4 - 1) i) s
 WHERE p.display_name LIKE 'Bench Patient %%' AND s.at <= now()
"""

#: One day of 1 Hz oximetry (86,400 readings) for the 1 Hz patient.
_ONE_HZ_DAY = """
INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, "values", received_at,
                     committed_at)
SELECT gen_random_uuid(), t, 'spo2', 'bench-hub-' || %(patient)s, %(patient)s,
       'BB:00:' || %(patient)s,
       jsonb_build_object('spo2', 92 + (i * 7919) %% 7,
                          'pulse_rate', 60 + (i::bigint * 104729) %% 30),
       t + interval '1 second', t + interval '2 seconds'
  FROM generate_series(0, 86399) i,
       LATERAL (SELECT %(start)s::timestamptz + i * interval '1 second' AS t) x
"""


def _seed_alerts(conn: psycopg.Connection[Any], now: datetime) -> None:
    """Open alerts on one patient in ALERT_EVERY (a third of them with a second one),
    acknowledged now and then, and ten closed alerts per open one as history."""
    rules = [("spo2_low", "red"), ("bp_severe", "red"), ("news2", "amber"),
             ("hf_weight_change", "amber"), ("missed_spo2", "amber"), ("battery_low", "info")]
    conn.execute(
        "CREATE TEMP TABLE bench_r (rule_id text, severity text, n int) ON COMMIT DROP")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO bench_r VALUES (%s, %s, %s)",
                        [(r, s, n) for n, (r, s) in enumerate(rules)])
    common = (
        "INSERT INTO alert (patient_id, rule_id, rule, severity, state, summary, team_id,"
        " opened_at, updated_at, last_triggered_at, latest_reading, acknowledged_at,"
        " resolved_at, outcome)"
        " SELECT p.id, r.rule_id, jsonb_build_object('id', r.rule_id, 'severity', r.severity),"
        " r.severity, {state}, r.rule_id || ' for bench patient ' || p.id, pt.team_id,"
        " {opened}, {opened}, {opened}, jsonb_build_object('kind', 'spo2', 'values',"
        " jsonb_build_object('spo2', 89)), {acked}, {resolved}, {outcome}"
        " FROM patient p JOIN patient_team pt ON pt.patient_id = p.id AND pt.lead"
        " JOIN bench_r r ON {which} WHERE p.display_name LIKE 'Bench %%'")
    conn.execute(common.format(
        state="CASE WHEN p.id %% 3 = 0 THEN 'acknowledged' ELSE 'open' END",
        opened="%(now)s - (p.id %% 600) * interval '1 minute'",
        acked="CASE WHEN p.id %% 3 = 0 THEN %(now)s END", resolved="NULL", outcome="NULL",
        which=f"p.id %% {ALERT_EVERY} = 0 AND (r.n = p.id %% 6 OR (p.id %% 3 = 1"
              " AND r.n = (p.id + 1) %% 6))"), {"now": now})
    conn.execute(common.format(
        state="'resolved'", opened="%(now)s - (2 + p.id %% 80 + r.n) * interval '1 day'",
        acked="NULL", resolved="%(now)s - (1 + p.id %% 80 + r.n) * interval '1 day'",
        outcome="'advice_given'", which="p.id %% 2 = r.n %% 2"), {"now": now})


# -- the server ---------------------------------------------------------------------------

@contextmanager
def running_server(url: str, log: Path) -> Iterator[tuple[str, int]]:
    """``homeward serve`` as a subprocess on a free port; yields its base URL and pid."""
    from stack.services.common import free_port

    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stack", "serve", "--host", "127.0.0.1", "--port",
             str(port), "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "HOMEWARD_DATABASE_URL": url, "HOMEWARD_ENV": "development"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError("homeward serve exited: " + log.read_text()[-2000:])
            try:
                httpx.get(base + "/openapi.json", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- measuring ----------------------------------------------------------------------------

def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p * (len(ordered) - 1))))]

    return {"p50_ms": round(q(0.5) * 1000, 2), "p95_ms": round(q(0.95) * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2), "n": len(ordered)}


def _time(call: Callable[[], Any], n: int, warmup: int) -> tuple[list[float], Any]:
    last = None
    for _ in range(warmup):
        last = call()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        last = call()
        samples.append(time.perf_counter() - t)
    return samples, last


def _audit_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM access_audit").fetchone()
    assert row is not None
    return int(row[0])


def measure_api(base: str, url: str, *, one_hz: int, now: datetime, requests: int,
                warmup: int) -> dict[str, Any]:
    """p50/p95/max of each page's request, and the audit rows they left."""
    day = {"kind": "spo2", "metric": "spo2", "from": (now - timedelta(days=1)).isoformat(),
           "to": now.isoformat()}
    quarter = {**day, "from": (now - timedelta(days=DAYS)).isoformat()}
    cases: list[tuple[str, str, str, dict[str, str]]] = [
        ("caseload_nurse", "nurse0", "/api/patients", {}),
        ("caseload_admin_page", "admin", "/api/patients", {}),
        ("caseload_admin", "admin", "/api/patients", {"limit": "5000"}),
        ("triage_queue_nurse", "nurse0", "/api/alerts", {}),
        ("series_24h_1hz", "nurse0", f"/api/patients/{one_hz}/series", day),
        ("series_90d_1hz", "nurse0", f"/api/patients/{one_hz}/series", quarter),
    ]
    out: dict[str, Any] = {}
    for name, who, path, params in cases:
        with httpx.Client(base_url=base, timeout=120,
                          headers={"Authorization": f"Bearer {_token(who)}"}) as client:
            def get(client: httpx.Client = client, path: str = path,
                    params: dict[str, str] = params) -> httpx.Response:
                return client.get(path, params=params)

            before = _audit_rows(url)
            try:
                samples, last = _time(get, requests, warmup)
            except httpx.HTTPError as err:  # e.g. a read timeout: say so, measure the rest
                out[name] = {"error": f"{type(err).__name__}: {err}"}
                continue
            time.sleep(0.5)  # the audit row is written as the request ends, maybe after
            audited = _audit_rows(url) - before
            if last.status_code != 200:
                out[name] = {"error": f"HTTP {last.status_code}: {last.text[:200]}",
                             **_stats(samples)}
                continue
            body = last.json()
            size = len(body["points"]) if isinstance(body, dict) else len(body)
            out[name] = {**_stats(samples), "rows": size, "bytes": len(last.content),
                         "audit_rows_per_request": round(audited / (requests + warmup), 3)}
            if isinstance(body, dict) and "resolution" in body:
                out[name]["resolution"] = body["resolution"]
    return out


def measure_audit(url: str, *, one_hz: int, now: datetime, requests: int,
                  warmup: int) -> dict[str, Any]:
    """The audit INSERT alone (autocommit, one connection: one commit each, as the API
    writes it), and the 24 h series read without the API around it."""
    from server import audit, record_queries

    entry = audit.AuditEntry(clinician_id=None, role="nurse", action="bench",
                             resource="/bench", patient_id=one_hz, request_id="bench",
                             client_addr="127.0.0.1", outcome="ok")
    with psycopg.connect(url, autocommit=True) as conn:
        inserts, _ = _time(lambda: audit.record(conn, entry), max(requests, 200), warmup)
        day, _ = _time(lambda: record_queries.series(
            conn, one_hz, kind="spo2", metric="spo2", start=now - timedelta(days=1),
            end=now), requests, warmup)
        quarter, _ = _time(lambda: record_queries.series(
            conn, one_hz, kind="spo2", metric="spo2", start=now - timedelta(days=DAYS),
            end=now), requests, warmup)
    return {"audit_insert": _stats(inserts), "series_24h_direct": _stats(day),
            "series_90d_direct": _stats(quarter)}


def _describe_database(url: str) -> str:
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        ts = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
                          ).fetchone()
        fsync = conn.execute("SHOW fsync").fetchone()
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    assert version and fsync and sync
    text = f"PostgreSQL {version[0]}"
    text += f" + TimescaleDB {ts[0]}" if ts else " (plain, no TimescaleDB)"
    return text + f", fsync={fsync[0]}, synchronous_commit={sync[0]}"


# -- the command --------------------------------------------------------------------------

def run(opts: ApiBenchOptions, echo: Callable[[str], None] | None) -> dict[str, Any]:
    from server.migrate import has_timescaledb, migrate
    from stack.services import PostgresServer

    tmp = Path(tempfile.mkdtemp(prefix="homeward-bench-api-"))
    folder = opts.keep or tmp
    pg: PostgresServer | None = None
    try:
        if opts.database_url:
            url = opts.database_url
        else:
            pg = PostgresServer(folder / "pg", durable=True,
                                timescaledb=False if opts.plain else None)
            pg.start()
            url = pg.url
        migrate(url)
        now = datetime.now(UTC)
        with psycopg.connect(url, autocommit=True) as conn:
            seeded = is_seeded(conn)
            if not seeded:
                _say(echo, f"seeding {PATIENTS:,} patients x {DAYS} days (+ 1 Hz oximetry)"
                           f" into {url} ...")
                seed(conn, now, echo)
            else:
                _say(echo, f"reusing the seeded database at {url}")
            if has_timescaledb(conn):  # cheap when already settled
                settle_timescaledb(conn, now, echo)
            row = conn.execute("SELECT max(taken_at) FROM reading WHERE patient_id = %s",
                               (_one_hz_patient(conn),)).fetchone()
            one_hz = _one_hz_patient(conn)
        # measure against the data's own clock, so a reused database reads the same
        seeded_now = row[0] if row and row[0] else now
        load_before = os.getloadavg()
        with running_server(url, folder / "serve.log") as (base, _pid):
            api = measure_api(base, url, one_hz=one_hz, now=seeded_now,
                              requests=opts.requests, warmup=opts.warmup)
        direct = measure_audit(url, one_hz=one_hz, now=seeded_now, requests=opts.requests,
                               warmup=opts.warmup)
        overhead = (round(api["series_24h_1hz"]["p50_ms"]
                          - direct["series_24h_direct"]["p50_ms"], 2)
                    if "p50_ms" in api["series_24h_1hz"] else None)
        result: dict[str, Any] = {
            "command": _command(opts),
            "interpreter": f"{platform.python_implementation()} {platform.python_version()} "
                           f"({sys.executable})",
            "database": _describe_database(url),
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "patients": PATIENTS, "days": DAYS, "reused_database": seeded,
            **api, **direct,
            "request_path_overhead_p50_ms": overhead,
            "targets": {
                "caseload_p95_ms": TARGET_P95_MS, "series_90d_p95_ms": TARGET_P95_MS,
                "audit_p50_ms": TARGET_AUDIT_P50_MS},
        }
        def within(figure: dict[str, Any]) -> bool:
            return "error" not in figure and figure["p95_ms"] <= TARGET_P95_MS

        result["met"] = {
            "caseload_nurse": within(api["caseload_nurse"]),
            "caseload_admin": within(api["caseload_admin"]),
            "series_90d": within(api["series_90d_1hz"]),
            "audit": direct["audit_insert"]["p50_ms"] <= TARGET_AUDIT_P50_MS,
        }
        return result
    finally:
        if pg is not None:
            pg.stop()
        if opts.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


def _command(opts: ApiBenchOptions) -> str:
    parts = ["homeward bench api", f"--requests {opts.requests}"]
    if opts.keep:
        parts.append(f"--keep {opts.keep}")
    if opts.database_url:
        parts.append("--database-url ...")
    if opts.plain:
        parts.append("--plain")
    return " ".join(parts)


def render(result: dict[str, Any]) -> list[str]:
    lines = [result["command"],
             f"  {result['interpreter']}; {result['cpus']} CPUs; load average "
             f"{' '.join(map(str, result['load_average_before']))} before, "
             f"{' '.join(map(str, result['load_average_after']))} after",
             f"  {result['database']}; {result['patients']:,} patients x {result['days']} days"
             + (" (reused)" if result["reused_database"] else "")]

    def row(label: str, key: str, target: float | None = None) -> str:
        s = result[key]
        if "error" in s:
            return f"  {label:<34} FAILED: {s['error']}"
        extra = f"  {s['rows']} rows, {s['bytes']:,} B" if "rows" in s else ""
        if "resolution" in s:
            extra += f", {s['resolution']}"
        if "audit_rows_per_request" in s:
            extra += f", {s['audit_rows_per_request']} audit rows/request"
        goal = f"  (target p95 <= {target:g} ms: {'met' if s['p95_ms'] <= target else 'MISSED'})" \
            if target is not None else ""
        return (f"  {label:<34} p50 {s['p50_ms']:>8.2f}  p95 {s['p95_ms']:>8.2f}  "
                f"max {s['max_ms']:>8.2f} ms{extra}{goal}")

    lines += [row("caseload, nurse (GET /api/patients)", "caseload_nurse", TARGET_P95_MS),
              row("caseload, admin (first page, 500)", "caseload_admin_page", TARGET_P95_MS),
              row("caseload, admin (all patients)", "caseload_admin", TARGET_P95_MS),
              row("triage queue, nurse (/api/alerts)", "triage_queue_nurse"),
              row("series 24 h, 1 Hz patient", "series_24h_1hz"),
              row("series 90 d, 1 Hz patient", "series_90d_1hz", TARGET_P95_MS),
              row("  same 24 h, record_queries direct", "series_24h_direct"),
              row("  same 90 d, record_queries direct", "series_90d_direct")]
    audit = result["audit_insert"]
    lines.append(f"  audit: one INSERT (autocommit) p50 {audit['p50_ms']:.3f} ms, p95 "
                 f"{audit['p95_ms']:.3f} ms over {audit['n']} (target p50 <= "
                 f"{TARGET_AUDIT_P50_MS:g} ms: {'met' if result['met']['audit'] else 'MISSED'});"
                 f" whole request path around the 24 h series (HTTP, auth, scope, audit, JSON):"
                 f" {result['request_path_overhead_p50_ms']} ms p50")
    return lines
