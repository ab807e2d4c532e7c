"""``homeward bench ingest``: readings/s and publish→commit latency, end to end.

Simulated hubs publish batches of readings (QoS 1, plain paho) through a real
Mosquitto into the real ingest (a ``homeward ingest`` subprocess by default)
and a real PostgreSQL; a private broker and database are started unless URLs
are given.  Each reading's ``taken_at`` is the moment its message was built
and published, so ``committed_at - taken_at`` in the reading table is its
publish→commit latency (``committed_at`` is the INSERT statement's start,
a few milliseconds before the COMMIT).  The raw COPY rate of the same rows into
an empty copy of the reading table is measured in the same run, for scale.

The publisher bounds its own in-flight queue (paho silently stops accepting
QoS 1 publishes at 65,535 in flight).
"""

from __future__ import annotations

import io
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from bench.proc import cpu_seconds
from homeward.wire import new_reading_id, readings_topic
from stack.services.common import free_port

#: Most QoS 1 messages the publisher leaves unacknowledged before it waits.
MAX_OUTSTANDING = 2000


@dataclass(frozen=True)
class BenchOptions:
    hubs: int = 200
    per_message: int = 100
    seconds: float = 20.0
    rate: int = 24000  # offered readings/s; 0 = as fast as possible
    database_url: str | None = None
    mqtt_port: int | None = None
    in_process: bool = False
    as_json: bool = False
    durable: bool = True
    #: Enrol each simulated hub to a patient first, so readings are attributed (and the
    #: per-patient work the ingest and its triggers do for them is measured too).
    enrolled: bool = False


def _enrol_hubs(conn: psycopg.Connection[Any], hubs: int) -> None:
    """A patient per simulated hub, enrolled from a day ago (once per database)."""
    from datetime import timedelta

    from server import admin

    since = datetime.now(UTC) - timedelta(days=1)
    for h in range(hubs):
        hub = f"bench-hub-{h:04d}"
        if conn.execute("SELECT 1 FROM hub WHERE id = %s", (hub,)).fetchone() is not None:
            continue
        admin.create_hub(conn, hub_id=hub)
        patient = admin.create_patient(conn, display_name=f"Bench patient {h}")
        admin.enrol(conn, hub_id=hub, patient_id=patient, valid_from=since)


class BoundedPublisher:
    """One paho client publishing for many hubs, never more than MAX_OUTSTANDING unacked."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"bench-pub-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(MAX_OUTSTANDING)
        self.outstanding = 0
        self.cond = threading.Condition()
        self.client.on_publish = self._on_publish
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not connected.wait(10):
            raise RuntimeError("bench publisher could not connect")

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: Any,
                    props: Any) -> None:
        with self.cond:
            self.outstanding -= 1
            self.cond.notify()

    def publish(self, topic: str, payload: bytes) -> None:
        with self.cond:
            while self.outstanding >= MAX_OUTSTANDING:
                self.cond.wait(1)
            self.outstanding += 1
        self.client.publish(topic, payload, qos=1)

    def drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.outstanding > 0 and time.monotonic() < deadline:
                self.cond.wait(0.2)
            return self.outstanding == 0

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _make_payload(start: int, count: int, devices: list[str]) -> bytes:
    """A batch as a hub sends it, with the edge's own (time-ordered) reading ids."""
    now = datetime.now(UTC).isoformat()
    return orjson.dumps([
        {"v": 1, "id": str(new_reading_id()), "kind": "spo2",
         "taken_at": now, "device": devices[i % len(devices)],
         "values": {"spo2": 90 + (start + i) % 9, "pulse_rate": 60 + (start + i) % 40}}
        for i in range(count)
    ])


def publish_load(port: int, opts: BenchOptions) -> tuple[int, float, float]:
    """Publish for ``opts.seconds``; returns (readings, first publish, last publish) times."""
    pub = BoundedPublisher(port)
    devices = [f"AA:BB:CC:00:{i // 256:02X}:{i % 256:02X}" for i in range(16)]
    topics = [readings_topic(f"bench-hub-{h:04d}") for h in range(opts.hubs)]
    sent = 0
    start = time.time()
    t0 = time.monotonic()
    end = t0 + opts.seconds
    n = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if opts.rate:
            due = int((now - t0) * opts.rate)
            if sent >= due:
                time.sleep(min(0.005, end - now))
                continue
        pub.publish(topics[n % len(topics)], _make_payload(sent, opts.per_message,
                                                           devices))
        sent += opts.per_message
        n += 1
    last = time.time()
    if not pub.drain(120):
        raise RuntimeError("the broker did not acknowledge every publish")
    pub.close()
    return sent, start, last


def stored_latencies(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    """Of the simulated hubs' stored readings: rows, distinct ids, (p50, p99) and max of
    publish->commit (``committed_at - taken_at``, s), and the last commit (epoch s)."""
    row = conn.execute(
        "SELECT count(*), count(DISTINCT id),"
        " percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP"
        "   (ORDER BY extract(epoch FROM committed_at - taken_at)),"
        " max(extract(epoch FROM committed_at - taken_at)),"
        " extract(epoch FROM max(committed_at)) FROM reading"
        " WHERE hub_id LIKE 'bench-hub-%%'").fetchone()
    assert row is not None
    return tuple(row)


def raw_copy_rate(url: str) -> tuple[int, float]:
    """COPY the stored readings into an empty twin of the reading table; (rows, rows/s)."""
    with psycopg.connect(url) as conn:
        buf = io.BytesIO()
        # A SELECT, not the table: on a hypertable the rows live in its chunks.
        with conn.cursor().copy("COPY (SELECT * FROM reading) TO STDOUT") as copy:
            for data in copy:
                buf.write(data)
        conn.execute("DROP TABLE IF EXISTS reading_copy_bench")
        conn.execute("CREATE TABLE reading_copy_bench (LIKE reading INCLUDING ALL)")
        conn.commit()
        rows = buf.getvalue().count(b"\n")
        t = time.perf_counter()
        with conn.cursor().copy("COPY reading_copy_bench FROM STDIN") as copy:
            copy.write(buf.getvalue())
        conn.commit()
        elapsed = time.perf_counter() - t
        conn.execute("DROP TABLE reading_copy_bench")
        conn.commit()
    return rows, rows / elapsed if elapsed else 0.0


def run(opts: BenchOptions) -> dict[str, Any]:
    from server.migrate import migrate
    from stack.services import MosquittoServer, PostgresServer

    tmp = Path(tempfile.mkdtemp(prefix="homeward-bench-"))
    pg: PostgresServer | None = None
    broker: MosquittoServer | None = None
    ingest_proc: subprocess.Popen[bytes] | None = None
    in_proc: Any = None
    try:
        if opts.database_url:
            url = opts.database_url
        else:
            pg = PostgresServer(tmp / "pg", durable=opts.durable)
            pg.start()
            url = pg.url
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE reading, evaluation_queue, quarantine")
            if opts.enrolled:
                _enrol_hubs(conn, opts.hubs)
        if opts.mqtt_port:
            port = opts.mqtt_port
        else:
            broker = MosquittoServer(tmp / "mqtt", persistence=False)
            broker.start()
            port = broker.port
        client_id = f"bench-ingest-{uuid.uuid4().hex[:6]}"
        if opts.in_process:
            from server.ingest import Ingest, IngestConfig

            in_proc = Ingest(IngestConfig(database_url=url, mqtt_port=port, client_id=client_id))
            in_proc.start()
            ingest_pid = os.getpid()
        else:
            metrics_port = free_port()
            ingest_proc = subprocess.Popen(
                [sys.executable, "-m", "stack", "ingest", "--database-url", url,
                 "--mqtt-port", str(port), "--client-id", client_id, "--log-level", "WARNING",
                 "--metrics-port", str(metrics_port)],
                env={**os.environ, "HOMEWARD_MQTT_HOST": "127.0.0.1"})
            ingest_pid = ingest_proc.pid
            _wait_subscribed(port, url)
        cpu_before = cpu_seconds(ingest_pid)
        published, first, last = publish_load(port, opts)
        stored = _wait_stored(url, published)
        cpu = cpu_seconds(ingest_pid) - cpu_before
        counters = (in_proc.counters.as_dict() if in_proc is not None
                    else _scrape(metrics_port))
        with psycopg.connect(url) as conn:
            total, distinct, (p50, p99), worst, last_commit = stored_latencies(conn)
            queued = conn.execute("SELECT count(*) FROM evaluation_queue").fetchone()
        assert queued is not None
        copy_rows, copy_rate = raw_copy_rate(url)
        duration = float(last_commit) - first
        return {
            "interpreter": f"{platform.python_implementation()} {platform.python_version()} "
                           f"({sys.executable})",
            "cpus": os.cpu_count(),
            "hubs": opts.hubs, "readings_per_message": opts.per_message,
            "offered_rate": opts.rate or "max", "seconds": opts.seconds,
            "durable_postgres": opts.durable if not opts.database_url else None,
            "published": published,
            "publish_rate": round(published / (last - first)),
            "stored": int(total), "distinct": int(distinct), "evaluation_queue": int(queued[0]),
            "lost": published - int(distinct), "duplicated": int(total) - int(distinct),
            "sustained_readings_per_s": round(int(distinct) / duration),
            "p50_publish_to_commit_ms": round(float(p50) * 1000, 1),
            "p99_publish_to_commit_ms": round(float(p99) * 1000, 1),
            "max_publish_to_commit_ms": round(float(worst) * 1000, 1),
            "ingest_cpu_us_per_reading": round(cpu / max(stored, 1) * 1e6, 1),
            "ingest_batches": counters.get("batches"),
            "mean_readings_per_batch": round(counters.get("readings_received", 0)
                                             / max(counters.get("batches", 1), 1)),
            "db_copy_us_per_reading": _per_reading(counters, "copy_ms"),
            "db_insert_us_per_reading": _per_reading(counters, "insert_ms"),
            "db_commit_us_per_reading": _per_reading(counters, "commit_ms"),
            "raw_copy_rows": copy_rows, "raw_copy_rows_per_s": round(copy_rate),
        }
    finally:
        if in_proc is not None:
            in_proc.stop()
        if ingest_proc is not None:
            ingest_proc.terminate()
            try:
                ingest_proc.wait(10)
            except subprocess.TimeoutExpired:
                ingest_proc.kill()
        if broker is not None:
            broker.stop()
        if pg is not None:
            pg.stop(mode="immediate")


def _scrape(port: int) -> dict[str, int]:
    """The ingest's counters by IngestCounters field, from its /metrics (server.metrics)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from server.metrics import COUNTERS, PHASES

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    fields = {f"{name}_total": field for field, (name, _, _) in COUNTERS.items()}
    phases = {phase: field for field, phase in PHASES.items()}
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in fields:
                out[fields[sample.name]] = int(sample.value)
            elif sample.name == "homeward_ingest_db_seconds_total":
                out[phases[sample.labels["phase"]]] = round(sample.value * 1000)
    return out


def _per_reading(counters: dict[str, int], key: str) -> float:
    readings = max(counters.get("readings_received", 0), 1)
    return round(counters.get(key, 0) * 1000 / readings, 1)


def _wait_subscribed(port: int, url: str, timeout: float = 30.0) -> None:
    """Publish a probe reading until it is stored: the ingest's session then exists."""
    probe = orjson.dumps({"v": 1, "id": str(uuid.uuid4()), "kind": "temperature",
                          "taken_at": datetime.now(UTC).isoformat(), "device": "probe",
                          "values": {"body_temperature": 37.0}})
    pub = BoundedPublisher(port)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            pub.publish(readings_topic("bench-probe"), probe)
            time.sleep(0.3)
            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT count(*) FROM reading WHERE hub_id = 'bench-probe'"
                                   ).fetchone()
            if row and row[0]:
                return
        raise RuntimeError("the ingest did not start storing readings")
    finally:
        pub.close()


def _wait_stored(url: str, expected: int, *, stall: float = 20.0, timeout: float = 900.0
                 ) -> int:
    """Wait until every reading is stored, or nothing new was stored for ``stall`` seconds."""
    deadline = time.monotonic() + timeout
    last_change, last = time.monotonic(), -1
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM reading WHERE hub_id LIKE 'bench-hub-%%'"
                               ).fetchone()
            stored = int(row[0]) if row else 0
            now = time.monotonic()
            if stored != last:
                last, last_change = stored, now
            if stored >= expected or now - last_change > stall or now > deadline:
                return stored
            time.sleep(0.2)


def render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="homeward bench ingest", show_header=True)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key.replace("_", " "), str(value))
    Console().print(table)


def main(opts: BenchOptions) -> int:
    result = run(opts)
    if opts.as_json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        render(result)
    return 0 if result["lost"] == 0 and result["duplicated"] == 0 else 1
