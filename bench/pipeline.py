"""``homeward bench pipeline``: the whole pipeline under load, as a nurse would see it.

Private PostgreSQL and Mosquitto; ``--ingests`` ``homeward ingest`` processes (on one
``$share`` group when more than one, each with its own client id), ``--engines``
``homeward alerts`` processes (partitions k/n) and ``homeward serve``; simulated hubs
publish pulse oximetry (the continuous stream: a reading a second from each hub's
oximeter in real life) at ``--rate`` readings/s, ``--per-message`` a message, for
``--seconds``.  Each reading is an SpO2 of 85 % (on which the shipped ``spo2_low`` rule
raises a red alert: CO@home, 92 % or below) with probability ``--alert-share``, from a
seeded generator; the others are 95-99 %, quiet under every shipped rule.

What is timed, on one clock (this process's):

- publish -> stored: ``committed_at - taken_at`` of every stored row, ``taken_at`` being
  the moment its message was built (as ``bench ingest``);
- publish -> alert visible: from the publish of a hub's first severe reading to the
  ``opened`` event of its patient's alert arriving on the API's live stream
  (``/api/alerts/stream``, what the dashboard's queue listens to), as a nurse of the team;
- the evaluation backlog (rows in ``evaluation_queue``) sampled every 0.5 s; evaluated/s
  is the readings stored divided by the time from the first publish to an empty queue.

Lost = published - stored (distinct ids); duplicated = stored rows - distinct ids.
Missing alerts = hubs sent a severe reading whose patient has no ``spo2_low`` alert;
duplicated alerts = an alert of a patient opened while another of hers was still active
(the rule clears after two normal readings, so a later severe reading is a new episode).
CPU µs a reading is each process's user + system time (from /proc) over the run divided
by the readings stored.
"""

from __future__ import annotations

import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

from bench.alerts import _percentile
from bench.ingest import BoundedPublisher, _wait_stored, raw_copy_rate, stored_latencies
from bench.proc import children_cpu_seconds, cpu_seconds, postmaster_pid
from homeward.wire import new_reading_id, readings_topic
from stack.services.common import free_port

TEAM = "district-nursing"
RULE = "spo2_low"
SEVERE = {"spo2": 85, "pulse_rate": 88}


@dataclass(frozen=True)
class PipelineOptions:
    hubs: int = 2000
    rate: int = 24000
    seconds: float = 60.0
    per_message: int = 100
    alert_share: float = 0.0005
    ingests: int = 1
    engines: int = 1
    seed: int = 7
    durable: bool = True
    as_json: bool = False


@dataclass
class Published:
    readings: int = 0
    first: float = 0.0
    last: float = 0.0
    #: hub -> the publish time of its first severe reading
    first_severe: dict[str, float] = field(default_factory=dict)


def hub_name(h: int) -> str:
    return f"bench-hub-{h:05d}"


def seed(url: str, hubs: int) -> str:
    """A team, a nurse on it (and on its rota for the day), and a patient on its care team
    per hub; the nurse's token."""
    from datetime import timedelta

    from alerts.notify import add_shift
    from server import admin

    since = datetime.now(UTC) - timedelta(hours=1)
    with psycopg.connect(url, autocommit=True) as conn:
        org = admin.create_organisation(conn, name="Bench Trust")
        admin.create_team(conn, team_id=TEAM, organisation_id=org, name="District Nursing",
                          kind="district_nursing")
        nurse = admin.create_clinician(conn, username="bench-nurse", display_name="Bench Nurse",
                                       teams=[TEAM], email="bench-nurse@example.nhs.uk")
        add_shift(conn, team_id=TEAM, clinician_id=nurse.id, starts_at=since,
                  ends_at=since + timedelta(days=1))
        for h in range(hubs):
            admin.create_hub(conn, hub_id=hub_name(h), organisation_id=org)
            patient = admin.create_patient(conn, display_name=f"Bench patient {h}",
                                           teams=[TEAM])
            admin.enrol(conn, hub_id=hub_name(h), patient_id=patient, valid_from=since)
    return nurse.api_token


def publish(port: int, opts: PipelineOptions) -> Published:
    rng = random.Random(opts.seed)  # noqa: S311 -- a reproducible script, not a secret
    pub = BoundedPublisher(port)
    out = Published(first=time.time())
    t0 = time.monotonic()
    end = t0 + opts.seconds
    n = 0
    while (now := time.monotonic()) < end:
        if opts.rate and out.readings >= int((now - t0) * opts.rate):
            time.sleep(min(0.002, end - now))
            continue
        hub = hub_name(n % opts.hubs)
        taken = datetime.now(UTC).isoformat()
        items, severe = [], False
        for i in range(opts.per_message):
            alert = rng.random() < opts.alert_share
            severe = severe or alert
            values = SEVERE if alert else {"spo2": 95 + (out.readings + i) % 5,
                                           "pulse_rate": 60 + (out.readings + i) % 30}
            items.append({"v": 1, "id": str(new_reading_id()), "kind": "spo2",
                          "taken_at": taken, "device": "AA:BB:CC:00:00:01",
                          "values": values})
        pub.publish(readings_topic(hub), orjson.dumps(items))
        if severe:
            out.first_severe.setdefault(hub, time.time())
        out.readings += opts.per_message
        n += 1
    out.last = time.time()
    if not pub.drain(300):
        raise RuntimeError("the broker did not acknowledge every publish")
    pub.close()
    return out


class StreamWatcher:
    """A nurse's live stream: the arrival time of each patient's first ``opened`` event."""

    def __init__(self, api: str, token: str) -> None:
        self.opened: dict[int, float] = {}
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, args=(api, token), daemon=True)
        self._thread.start()

    def _listen(self, api: str, token: str) -> None:
        while not self._stop.is_set():
            try:
                with httpx.stream("GET", f"{api}/api/alerts/stream",
                                  timeout=httpx.Timeout(10, read=None),
                                  headers={"Authorization": f"Bearer {token}"}) as r:
                    for line in r.iter_lines():
                        if line.startswith(": connected"):
                            self.connected.set()
                        elif line.startswith("data: "):
                            at = time.time()
                            event = orjson.loads(line[6:])
                            if event.get("event") == "opened" and event.get("patient_id"):
                                self.opened.setdefault(int(event["patient_id"]), at)
                        if self._stop.is_set():
                            return
            except httpx.HTTPError:
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()


class BacklogSampler:
    """``evaluation_queue`` depth every ``every`` seconds, and when it was last empty."""

    def __init__(self, url: str, every: float = 0.5) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, every), daemon=True)
        self._thread.start()

    def _run(self, url: str, every: float) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not self._stop.is_set():
                row = conn.execute("SELECT count(*) FROM evaluation_queue").fetchone()
                self.samples.append((time.time(), int(row[0]) if row else 0))
                self._stop.wait(every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "stack", *args], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, **env})


def _wait_healthy(api: str, procs: list[subprocess.Popen[bytes]], logs: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                tails = "".join(f.read_text()[-1500:] for f in sorted(logs.glob("*.log")))
                raise RuntimeError(f"a process exited ({p.args!r}): {tails}")
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the API did not become healthy within 60 s")


def _wait_drained(sampler: BacklogSampler, stall: float = 30.0) -> float:
    """Until the queue is empty (or stalls for ``stall`` s); when it was sampled so.
    Called once every reading is stored."""
    last_change, last = time.monotonic(), -1
    while True:
        time.sleep(0.5)
        at, depth = sampler.samples[-1]
        if depth == 0:
            return at
        if depth != last:
            last, last_change = depth, time.monotonic()
        if time.monotonic() - last_change > stall:
            return at


def run(opts: PipelineOptions, echo: Any = None) -> dict[str, Any]:
    from server.migrate import migrate
    from stack.services import MosquittoServer, PostgresServer

    say = echo or (lambda _line: None)
    tmp = Path(tempfile.mkdtemp(prefix="homeward-bench-pipeline-"))
    pg = PostgresServer(tmp / "pg", durable=opts.durable)
    broker = MosquittoServer(tmp / "mqtt", persistence=False)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    watcher: StreamWatcher | None = None
    sampler: BacklogSampler | None = None
    try:
        pg.start()
        url = pg.url
        migrate(url)
        say(f"seeding {opts.hubs} hubs and patients ...")
        token = seed(url, opts.hubs)
        broker.start()
        api_port = free_port()
        api = f"http://127.0.0.1:{api_port}"
        env = {"HOMEWARD_DATABASE_URL": url, "HOMEWARD_MQTT_HOST": "127.0.0.1",
               "HOMEWARD_MQTT_PORT": str(broker.port), "HOMEWARD_LOG_LEVEL": "WARNING",
               "HOMEWARD_SMTP_PORT": "1", "HOMEWARD_API_PORT": str(api_port),
               "HOMEWARD_INGEST_METRICS_PORT": "0", "HOMEWARD_ALERTS_METRICS_PORT": "0",
               "HOMEWARD_API_METRICS_PORT": "0"}
        share = {"HOMEWARD_INGEST_SHARE_GROUP": "bench"} if opts.ingests > 1 else {}
        for k in range(opts.ingests):
            procs[f"ingest-{k}"] = _start(
                ["ingest", "--client-id", f"bench-ingest-{k}"], {**env, **share},
                tmp / f"ingest-{k}.log")
        for k in range(opts.engines):
            procs[f"engine-{k}"] = _start(
                ["alerts", "--poll", "0.5", "--tick", "3600",
                 "--partition", f"{k}/{opts.engines}"], env, tmp / f"engine-{k}.log")
        procs["api"] = _start(["serve"], env, tmp / "api.log")
        _wait_healthy(api, list(procs.values()), tmp)
        watcher = StreamWatcher(api, token)
        if not watcher.connected.wait(30):
            raise RuntimeError("the API's alert stream did not connect")
        time.sleep(3)  # every ingest subscribed, every engine listening and idle
        pids = {name: p.pid for name, p in procs.items()}
        postmaster = postmaster_pid(pg)
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        db0 = children_cpu_seconds(postmaster) if postmaster else 0.0
        broker_pid = broker._proc.pid if broker._proc else None
        broker0 = cpu_seconds(broker_pid) if broker_pid else 0.0
        self0 = time.process_time()
        sampler = BacklogSampler(url)

        say(f"publishing {opts.rate or 'as many as possible'} readings/s for {opts.seconds:g} s"
            f" from {opts.hubs} hubs, {opts.per_message} a message ...")
        sent = publish(broker.port, opts)
        _wait_stored(url, sent.readings, stall=30)
        drained_at = _wait_drained(sampler)
        with psycopg.connect(url) as conn:
            patients: dict[str, int] = dict(conn.execute(
                "SELECT h.id, e.patient_id FROM hub h JOIN enrolment e ON e.hub_id = h.id"
                " WHERE h.id LIKE 'bench-hub-%%'").fetchall())
        expected = {patients[h]: t for h, t in sent.first_severe.items()}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not expected.keys() <= watcher.opened.keys():
            time.sleep(0.2)
        cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
        db_cpu = (children_cpu_seconds(postmaster) - db0) if postmaster else None
        broker_cpu = (cpu_seconds(broker_pid) - broker0) if broker_pid else None
        load_cpu = time.process_time() - self0
        sampler.stop()
        watcher.stop()

        with psycopg.connect(url) as conn:
            total, distinct, (p50, p99), worst, last_commit = stored_latencies(conn)
            overlapping = conn.execute(
                "SELECT count(*) FROM alert a JOIN alert b ON b.patient_id = a.patient_id"
                " AND b.rule_id = a.rule_id AND b.id > a.id"
                " AND b.opened_at < COALESCE(a.resolved_at, 'infinity') WHERE a.rule_id = %s",
                (RULE,)).fetchone()
            alerts: dict[int, int] = dict(conn.execute(
                "SELECT patient_id, count(*) FROM alert WHERE rule_id = %s GROUP BY 1",
                (RULE,)).fetchall())
            final_backlog = conn.execute("SELECT count(*) FROM evaluation_queue").fetchone()
        assert final_backlog is not None
        total, distinct = int(total), int(distinct)
        latencies = [watcher.opened[p] - t for p, t in expected.items() if p in watcher.opened]
        say("raw COPY of the same rows ...")
        _copy_rows, copy_rate = raw_copy_rate(url)
        depths = [d for _, d in sampler.samples]
        store_span = max(float(last_commit) - sent.first, 1e-9)
        eval_span = max(drained_at - sent.first, store_span)

        def per_reading(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds / max(distinct, 1) * 1e6, 1)

        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds * 1000, 1)

        return {
            "interpreter": f"{platform.python_implementation()} {platform.python_version()}",
            "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
            "hubs": opts.hubs, "offered_rate": opts.rate or "max", "seconds": opts.seconds,
            "readings_per_message": opts.per_message, "alert_share": opts.alert_share,
            "ingests": opts.ingests, "engines": opts.engines,
            "published": sent.readings,
            "publish_rate": round(sent.readings / max(sent.last - sent.first, 1e-9)),
            "stored": distinct, "lost": sent.readings - distinct, "duplicated": total - distinct,
            "stored_per_s": round(distinct / store_span),
            "evaluated_per_s": round((distinct - int(final_backlog[0])) / eval_span),
            "p50_publish_to_stored_ms": ms(float(p50)), "p99_publish_to_stored_ms": ms(float(p99)),
            "max_publish_to_stored_ms": ms(float(worst)),
            "alerts_expected": len(expected),
            "alerts_raised": sum(1 for p in expected if p in alerts),
            "alerts_missing": sum(1 for p in expected if p not in alerts),
            # a second alert of a patient opened while her first was still active (the
            # rule clears after two normal readings, so later episodes are new alerts)
            "alerts_duplicated": int(overlapping[0]) if overlapping else 0,
            "alerts_opened": sum(alerts.values()),
            "alerts_seen_on_stream": len(latencies),
            "p50_publish_to_alert_ms": ms(_percentile(latencies, 0.5)) if latencies else None,
            "p99_publish_to_alert_ms": ms(_percentile(latencies, 0.99)) if latencies else None,
            "max_publish_to_alert_ms": ms(max(latencies)) if latencies else None,
            "max_backlog": max(depths, default=0), "final_backlog": int(final_backlog[0]),
            "cpu_us_per_reading": {
                **{name: per_reading(seconds) for name, seconds in cpu.items()},
                "postgres": per_reading(db_cpu), "broker": per_reading(broker_cpu),
                "load_generator": per_reading(load_cpu)},
            "raw_copy_rows_per_s": round(copy_rate),
        }
    finally:
        if watcher is not None:
            watcher.stop()
        if sampler is not None:
            sampler.stop()
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.stop()
        pg.stop(mode="immediate")
        shutil.rmtree(tmp, ignore_errors=True)


def render(result: dict[str, Any]) -> list[str]:
    lines = ["homeward bench pipeline"]
    for key, value in result.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        lines.append(f"  {key.replace('_', ' ')}: {value}")
    return lines


def passed(result: dict[str, Any]) -> bool:
    """Nothing lost or duplicated, every alert raised once and nothing left unevaluated."""
    return bool(result["lost"] == 0 and result["duplicated"] == 0 and result["alerts_missing"] == 0
            and result["alerts_duplicated"] == 0 and result["final_backlog"] == 0)


__all__ = ["PipelineOptions", "passed", "render", "run"]
