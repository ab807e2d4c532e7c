# ruff: noqa: F811  -- pytest fixtures imported from tests/test_alerts_support.py
"""Observability (docs/observability.md): every process's metrics endpoint scraped while a
reading, a bad message and a hub status flow through the real processes; the workers'
readiness paths answering 503 when they should; JSON log lines carrying the request id
that the API echoes and the access audit records."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from alerts.channels import ChannelSettings, default_senders
from alerts.metrics import AlertMetrics
from alerts.outbox import Outbox
from alerts.routing import load_routing
from alerts.ruleset import load_ruleset
from alerts.service import AlertService, build_worker
from homeward.telemetry import serve
from homeward.wire import readings_topic, status_topic
from stack.probe import Process
from stack.services.common import free_port
from tests.api_support import seed_world
from tests.ingest_support import reading
from tests.test_alerts_support import (  # noqa: F401 -- fixtures
    MONDAY,
    Clock,
    build_world,
    conn,
    smtp_server,
    vitals,
    webhook_server,
)
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Every sample of a metrics endpoint: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def status_of(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read())


def healthz(metrics_url: str) -> str:
    return metrics_url.removesuffix("/metrics") + "/healthz"


class HubClient:
    """The hub's own MQTT login (the broker runs the production ACL)."""

    def __init__(self, port: int, hub: str, password: str) -> None:
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=hub, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(hub, password)
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert connected.wait(10), "the hub could not connect"

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.e2e
def test_every_endpoint_moves_with_what_flows_through(platform: dict[str, Any]) -> None:
    endpoints = platform["metrics"]
    assert set(endpoints) == {"ingest", "alerts", "api"}
    for url in endpoints.values():  # each process is up and serving
        wait_for(lambda u=url: _answers(u), timeout=30, what=f"metrics at {url}")
    wait_for(lambda: status_of(healthz(endpoints["ingest"]))[0] == 200, timeout=30,
             what="the ingest ready")
    wait_for(lambda: status_of(healthz(endpoints["alerts"]))[0] == 200, timeout=30,
             what="the alert worker ready")
    before = {name: scrape(url) for name, url in endpoints.items()}

    hub = HubClient(platform["broker"].port, platform["hub"], platform["hub_password"])
    try:
        severe = reading(kind="blood_pressure", device=platform["device"],
                         values={"systolic": 186, "diastolic": 104, "mean_arterial": 131,
                                 "pulse_rate": 88})
        hub.publish(readings_topic(platform["hub"]), orjson.dumps(severe))
        hub.publish(readings_topic(platform["hub"]), b"{not json")
        hub.publish(status_topic(platform["hub"]), orjson.dumps(
            {"state": "online", "ts": datetime.now(UTC).isoformat(), "agent": "test",
             "outbox_depth": 42}), retain=True)

        def ingest_moved() -> Samples | None:
            now = scrape(endpoints["ingest"])
            was = before["ingest"]
            done = all(value(now, n) >= value(was, n) + 1 for n in (
                "homeward_ingest_readings_received_total",
                "homeward_ingest_readings_stored_total",
                "homeward_ingest_readings_quarantined_total",
                "homeward_ingest_statuses_total"))
            return now if done else None

        ingest = wait_for(ingest_moved, timeout=30, what="the ingest's counters to move")
        assert value(ingest, "homeward_ingest_batch_seconds_count") \
            > value(before["ingest"], "homeward_ingest_batch_seconds_count")
        assert value(ingest, "homeward_ingest_mqtt_connected") == 1

        def outbox_reported() -> Samples | None:
            now = scrape(endpoints["ingest"])
            return now if value(now, "homeward_hub_outbox_readings", state="online") else None

        outbox = wait_for(outbox_reported, timeout=15, what="the hub's outbox depth")
        assert value(outbox, "homeward_hub_outbox_readings", state="online") == 42
        assert value(outbox, "homeward_hub_outbox_depth_max", state="online") == 42
        assert value(outbox, "homeward_hub_outbox_hubs", state="online", le="10") == 0
        assert value(outbox, "homeward_hub_outbox_hubs", state="online", le="100") == 1
        assert value(outbox, "homeward_hub_outbox_hubs", state="online", le="+Inf") == 1
        assert not [k for k in outbox if "hub" in dict(k[1])]  # never a label per hub

        def alert_counted() -> Samples | None:
            now = scrape(endpoints["alerts"])
            opened = value(now, "homeward_alerts_opened_total", team="district-nursing",
                           severity="red")
            return now if opened >= value(before["alerts"], "homeward_alerts_opened_total",
                                          team="district-nursing", severity="red") + 1 \
                else None

        alerts = wait_for(alert_counted, timeout=30, what="the alert counted by team")
        assert value(alerts, "homeward_alerts_readings_evaluated_total") >= 1
        assert value(alerts, "homeward_alerts_batch_seconds_count") >= 1
        assert ("homeward_evaluation_backlog_readings", ()) in alerts
        assert ("homeward_evaluation_lag_seconds", ()) in alerts

        auth = {"Authorization": f"Bearer {platform['token']}"}
        now = datetime.now(UTC)
        request_id = f"test-{uuid.uuid4().hex[:12]}"
        response = httpx.get(
            f"{platform['api']}/api/patients/{platform['patient']}/readings",
            params={"from": (now - timedelta(hours=1)).isoformat(), "to": now.isoformat()},
            headers={**auth, "X-Request-ID": request_id}, timeout=5)
        assert response.status_code == 200
        assert response.headers["x-request-id"] == request_id
        assert len(response.json()["readings"]) == 1
        httpx.get(f"{platform['api']}/no/such/{uuid.uuid4().hex}", timeout=5)
        api = scrape(endpoints["api"])
        route = "/api/patients/{patient_id}/readings"
        assert value(api, "homeward_api_request_seconds_count", method="GET", route=route) \
            > value(before["api"], "homeward_api_request_seconds_count", method="GET",
                    route=route)
        assert value(api, "homeward_api_requests_total", method="GET", route=route,
                     status="200") >= 1
        # the counters move as each request ends, which may be just after its response
        deadline = time.monotonic() + 5
        while value(api, "homeward_api_requests_total", method="GET", route="unmatched",
                    status="404") < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
            api = scrape(endpoints["api"])
        assert value(api, "homeward_api_requests_total", method="GET", route="unmatched",
                     status="404") >= 1
        routes = {dict(k[1]).get("route") for k in api} - {None}
        assert not [r for r in routes if str(platform["patient"]) in r or "no/such" in r]
        with psycopg.connect(platform["db_url"]) as conn:
            audited = conn.execute("SELECT count(*) FROM access_audit WHERE request_id = %s",
                                   (request_id,)).fetchone()
        assert audited == (1,)  # the id the API echoed is the one it audited

        assert probe("ingest", endpoints["ingest"]) == 0  # compose's check, while ready
        assert probe("alerts", endpoints["alerts"]) == 0
        # The broker goes away: the ingest is no longer ready (503, naming the broker).
        platform["broker"].stop()
        def unready() -> dict[str, Any] | None:
            code, body = status_of(healthz(endpoints["ingest"]))
            return body if code == 503 else None

        body = wait_for(unready, timeout=15, what="the ingest's /healthz to answer 503")
        assert body["status"] == "unavailable" and body["failing"] == ["broker"]
        assert scrape(endpoints["ingest"])[("homeward_ingest_mqtt_connected", ())] == 0
        assert probe("ingest", endpoints["ingest"]) == 1
    finally:
        hub.client.loop_stop()


def probe(process: str, metrics_url: str) -> int:
    """The exit status of `homeward probe <process>` (docker-compose's health check) run
    with the settings the process has (its metrics port)."""
    port = metrics_url.rsplit(":", 1)[1].split("/")[0]
    env = {**os.environ, f"HOMEWARD_{process.upper()}_METRICS_PORT": port}
    return subprocess.run([sys.executable, "-m", "stack", "probe", process], env=env,
                          capture_output=True, timeout=30).returncode


def test_compose_health_checks_probe_each_worker_on_its_exposed_metrics_port(
        repo_root: Path) -> None:
    """No Docker engine here: the ingest's and the alert worker's health checks run
    `homeward probe` for themselves, on the metrics port they expose on all interfaces.
    (tests/test_deploy.py checks that every command parses and every name is a setting.)"""
    compose = yaml.safe_load((repo_root / "docker-compose.yml").read_text())
    for service, process in (("ingest", "ingest"), ("alerts", "alerts")):
        spec = compose["services"][service]
        assert spec["healthcheck"]["test"] == ["CMD", "homeward", "probe", process]
        assert process in [p.value for p in Process]
        port = spec["environment"][f"HOMEWARD_{process.upper()}_METRICS_PORT"]
        assert spec["expose"] == [port]
        assert spec["environment"][f"HOMEWARD_{process.upper()}_METRICS_HOST"] == "0.0.0.0"


def _answers(url: str) -> bool:
    try:
        return bool(scrape(url))
    except OSError:
        return False


def test_alerts_by_team_and_notification_attempts_by_channel(conn, smtp_server,
                                                             webhook_server) -> None:
    world = build_world(conn, webhook_url=webhook_server.url)
    webhook_server.fail_next = 1
    clock = Clock(MONDAY + timedelta(hours=10))
    metrics = AlertMetrics()  # no database URL: no scrape-time queries in this test
    channels = ChannelSettings(smtp_host="127.0.0.1", smtp_port=smtp_server.port,
                               smtp_timeout=5, webhook_timeout=5)
    svc = AlertService(load_ruleset(None), load_routing(None), clock=clock,
                       outbox=Outbox(default_senders(channels)), metrics=metrics)
    vitals(conn, world["patient"], clock.now, sys_=190)
    svc.step(conn)
    endpoint = serve(metrics.registry, host="127.0.0.1", port=0)
    try:
        first = scrape(endpoint.url)
        assert value(first, "homeward_alerts_opened_total", team="copd-north",
                     severity="red") == 1
        assert value(first, "homeward_notification_attempts_total", channel="webhook") == 1
        assert value(first, "homeward_notification_failures_total", channel="webhook") == 1
        assert value(first, "homeward_notification_attempts_total", channel="email") >= 1
        assert value(first, "homeward_notification_failures_total", channel="email") == 0
        assert value(first, "homeward_alerts_escalated_total", team="copd-north") == 0

        svc.tick(conn, clock.advance(minutes=16))  # unacknowledged: the next level
        later = scrape(endpoint.url)
        assert value(later, "homeward_alerts_escalated_total", team="copd-north") == 1
        assert value(later, "homeward_notification_attempts_total", channel="webhook") >= 2
        assert value(later, "homeward_notification_failures_total", channel="webhook") == 1
    finally:
        endpoint.close()


@pytest.mark.hazard("H-007")
def test_alert_worker_readiness_follows_its_loop(db_url: str) -> None:
    metrics = AlertMetrics(database_url=db_url)
    worker = build_worker(db_url, poll_interval=0.1, tick_interval=0.5, metrics=metrics)
    endpoint = serve(metrics.registry, host="127.0.0.1", port=0,
                     ready=lambda: worker.readiness(stale_s=2.0))
    try:
        url = f"http://127.0.0.1:{endpoint.port}/healthz"
        code, body = status_of(url)
        assert code == 503 and set(body["failing"]) == {"heartbeat", "database"}

        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        wait_for(lambda: status_of(url)[0] == 200, timeout=15, what="the worker ready")
        samples = scrape(f"http://127.0.0.1:{endpoint.port}/metrics")
        assert value(samples, "homeward_evaluation_backlog_readings") == 0

        worker.last_beat_at = time.monotonic() - 60  # as if its loop had hung for a minute
        code, body = status_of(url)
        assert code == 503 and "heartbeat" in body["failing"]

        worker.stop_event.set()
        thread.join(10)
        code, body = status_of(url)
        assert code == 503 and {"database", "running"} <= set(body["failing"])
    finally:
        endpoint.close()
        metrics.close()


def test_json_log_lines_parse_and_carry_the_request_id(db_url: str, tmp_path: Path) -> None:
    world = seed_world(db_url)
    port, log = free_port(), tmp_path / "api.log"
    env = {**os.environ, "HOMEWARD_DATABASE_URL": db_url, "HOMEWARD_LOG_FORMAT": "json",
           "HOMEWARD_API_METRICS_PORT": "0"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "stack", "serve", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        api = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(f"{api}/health"), timeout=30, what="the API up")
        request_id = f"req-{uuid.uuid4().hex[:12]}"
        response = httpx.get(f"{api}/api/patients/{world.patient}",
                             headers={"Authorization": f"Bearer {world.token}",
                                      "X-Request-ID": request_id}, timeout=5)
        assert response.status_code == 200 and response.headers["x-request-id"] == request_id
        # an id that is not printable ASCII is replaced, and the new one echoed
        replaced = httpx.get(f"{api}/api/patients/{world.patient}",
                             headers={"Authorization": f"Bearer {world.token}",
                                      "X-Request-ID": "x" * 500}, timeout=5)
        assert replaced.headers["x-request-id"] not in ("", "x" * 500)

        def access_line() -> dict[str, Any] | None:
            lines = [orjson.loads(line) for line in log.read_text().splitlines() if line]
            return next((x for x in lines if x.get("request_id") == request_id), None)

        line = wait_for(access_line, timeout=10, what="the request's log line")
        assert line["route"] == "/api/patients/{patient_id}" and line["status"] == 200
        assert line["logger"] == "homeward.api.access" and line["process"] == "api"
        assert line["level"] == "info" and "ts" in line and line["duration_ms"] >= 0
        with psycopg.connect(db_url) as conn:
            audited = conn.execute("SELECT request_id FROM access_audit WHERE request_id = %s",
                                   (request_id,)).fetchall()
        assert audited == [(request_id,)]
    finally:
        proc.terminate()
        proc.wait(10)
    lines = log.read_text().splitlines()
    assert len(lines) >= 3  # uvicorn's start-up lines and ours, every one of them JSON
    for text in lines:
        parsed = orjson.loads(text)
        assert {"ts", "level", "logger", "message"} <= set(parsed)


def _up(url: str) -> bool:
    """Does the server answer at all (/health itself is 503 here: no broker)?"""
    try:
        httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return False
    return True


def test_a_json_line_carries_the_bound_context_the_call_s_fields_and_the_traceback() -> None:
    import io
    import logging

    from homeward.logs import configure_logging, log_context

    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("json", "INFO", process="ingest", stream=stream)
        log = logging.getLogger("homeward.ingest")
        with log_context(hub="hub-7", mqtt_mid=42):
            log.warning("refused %s", "once", extra={"digest": "ab12"})
            worker = threading.Thread(target=lambda: log.info("other thread"))
            worker.start()
            worker.join()
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    first, other, failed = (orjson.loads(x) for x in stream.getvalue().splitlines())
    assert first["message"] == "refused once" and first["level"] == "warning"
    assert (first["hub"], first["mqtt_mid"], first["digest"]) == ("hub-7", 42, "ab12")
    assert first["process"] == "ingest" and first["logger"] == "homeward.ingest"
    assert "hub" not in other  # a thread of its own has a context of its own
    assert "hub" not in failed and "ValueError: boom" in failed["exc"]
