# ruff: noqa: F811  -- pytest fixtures imported from tests/test_alerts_support.py
"""SIGKILL of the alert process in the middle of an escalation, then a restart: the escalation
resumes at the right level and time, and no notification is lost (at-least-once: any
duplicate carries the same idempotency key, at most one per crash)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from alerts.notify import add_shift
from alerts.sample_data import insert_reading
from tests.test_alerts_support import build_world, conn, smtp_server  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST_ROUTES = """\
escalation_policies:
  fast:
    ack_lease: 1h
    reminder: 10m
    levels:
      - {notify: on_duty, rota_level: 0}
      - {after: 3s, notify: on_duty, rota_level: 1}
      - {after: 6s, notify: fallback}
route:
  team: $care_team
  channels: [dashboard, email]
  escalation: fast
"""


def start(repo_root, db_url, routes, smtp_port):
    env = {**os.environ, "HOMEWARD_SMTP_HOST": "127.0.0.1",
           "HOMEWARD_SMTP_PORT": str(smtp_port)}
    return subprocess.Popen([str(repo_root / ".venv/bin/homeward"), "alerts", "--database-url",
                             db_url, "--routes", str(routes), "--tick", "0.2", "--poll", "0.2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def level_times(conn, alert_id):
    return conn.execute("SELECT event, at, detail->>'level' FROM alert_event WHERE alert_id = %s"
                        " AND event IN ('notified', 'escalated') ORDER BY id",
                        (alert_id,)).fetchall()


@pytest.mark.hazard("H-008", "H-018")
def test_sigkill_during_escalation_resumes_at_the_right_level_and_time(
        conn, db_url, smtp_server, tmp_path, repo_root):
    routes = tmp_path / "routes.yaml"
    routes.write_text(FAST_ROUTES)
    world = build_world(conn, rota=False)
    now = datetime.now(UTC)
    for who, level in (("amy", 0), ("ben", 1)):
        add_shift(conn, team_id="copd-north", clinician_id=world[who], level=level,
                  starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=1))
    add_shift(conn, team_id="out-of-hours", clinician_id=world["olu"],
              starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=1))

    proc = start(repo_root, db_url, routes, smtp_server.port)
    try:
        insert_reading(conn, patient_id=world["patient"], kind="blood_pressure",
                       values={"systolic": 200, "diastolic": 100}, taken_at=now)
        alert_id = wait_for(lambda: (conn.execute("SELECT id FROM alert").fetchone() or [None])[0])
        # in the middle of the escalation: level 1 done, level 2 due 3 s later
        wait_for(lambda: len(level_times(conn, alert_id)) == 2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at = time.monotonic()
        assert len(level_times(conn, alert_id)) == 2
        proc = start(repo_root, db_url, routes, smtp_server.port)
        wait_for(lambda: len(level_times(conn, alert_id)) == 3)
        restarted_after = time.monotonic() - killed_at
        wait_for(lambda: conn.execute("SELECT count(*) FROM notification WHERE state <> "
                                      "'delivered'").fetchone()[0] == 0)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    levels = level_times(conn, alert_id)
    assert [(e, lvl) for e, _, lvl in levels] == [("notified", "0"), ("escalated", "1"),
                                                  ("escalated", "2")]
    gap = (levels[2][1] - levels[1][1]).total_seconds()
    assert 3.0 <= gap < 3.0 + restarted_after + 2, (gap, restarted_after)  # on time, not late

    sent = conn.execute("SELECT target, idempotency_key FROM notification WHERE channel = "
                        "'email' ORDER BY id").fetchall()
    assert [t for t, _ in sent] == ["amy@example.nhs.uk", "ben@example.nhs.uk",
                                    "olu@example.nhs.uk"]
    received = Counter(m["X-Homeward-Idempotency-Key"] for m in smtp_server.messages)
    for _, key in sent:
        assert 1 <= received[key] <= 2, received     # none lost; at most one duplicate
    assert set(received) == {k for _, k in sent}
