# ruff: noqa: F811  -- pytest fixtures imported from tests/test_alerts_support.py
"""Backtest: replaying stored readings through a rule set counts the alerts it would raise,
per team per day and per rule, so a change can be judged before it goes live."""

from __future__ import annotations

import csv
import subprocess
from datetime import timedelta

import pytest

from alerts.backtest import backtest
from alerts.routing import load_routing
from alerts.ruleset import load_ruleset, parse_ruleset
from tests.test_alerts_support import MONDAY, build_world, conn, vitals  # noqa: F401

pytestmark = pytest.mark.integration

STRICT = """\
rules:
  - id: spo2_low
    kind: threshold
    title: Low SpO2 (strict trial)
    severity: amber
    source: local trial of a stricter limit
    reading_kinds: [spo2]
    auto_resolve: true
    labels: {system: respiratory}
    params:
      when: {metric: spo2, op: "<=", value: 96}
"""


def week_of_readings(conn, pid):
    """Seven days, 10:00 and 22:00: SpO2 96 every morning, 93 on Wednesday and Friday night."""
    for day in range(7):
        for hour in (10, 22):
            at = MONDAY + timedelta(days=day, hours=hour)
            spo2 = 93 if (day in (2, 4) and hour == 22) else 96
            vitals(conn, pid, at, spo2=spo2, pulse=80)
    conn.execute("DELETE FROM evaluation_queue")


def test_backtest_counts_alerts_per_team_per_day_and_per_rule(conn):
    world = build_world(conn)
    week_of_readings(conn, world["patient"])
    result = backtest(conn, load_ruleset(), load_routing(), start=MONDAY,
                      end=MONDAY + timedelta(days=7))
    assert result.readings == 14
    # default: SpO2 93 is amber (CO@home 93-94), at 22:00 -> out-of-hours; it clears after
    # two readings >= 95, so Wednesday's and Friday's are two separate alerts
    assert list(result.alerts["rule_id"]) == ["spo2_low", "spo2_low"]
    per_day = result.per_team_per_day()
    assert per_day.loc["2026-11-25", "out-of-hours"] == 1
    assert per_day.loc["2026-11-27", "out-of-hours"] == 1
    assert result.per_rule().loc["spo2_low", "total"] == 2

    strict = backtest(conn, parse_ruleset(STRICT), load_routing(), start=MONDAY,
                      end=MONDAY + timedelta(days=7))
    # every reading now fires and none clears it: one alert, opened on Monday morning
    assert len(strict.alerts) == 1
    assert strict.alerts.iloc[0]["team_id"] == "copd-north"  # Monday 10:00, in hours


def test_backtest_command_prints_tables_and_writes_csv(conn, db_url, tmp_path, repo_root):
    world = build_world(conn)
    week_of_readings(conn, world["patient"])
    out = tmp_path / "trial.csv"
    run = subprocess.run([str(repo_root / ".venv/bin/homeward"), "rules", "backtest",
                          "--from", "2026-11-23", "--to", "2026-11-30", "--database-url", db_url,
                          "--csv", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "14 readings replayed" in run.stdout and "2 alerts" in run.stdout
    assert "Alerts per team per day:" in run.stdout and "out-of-hours" in run.stdout
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["day"], r["rule_id"], r["team_id"]) for r in rows] == [
        ("2026-11-25", "spo2_low", "out-of-hours"), ("2026-11-27", "spo2_low", "out-of-hours")]
    assert (tmp_path / "trial-per-team-day.csv").exists()
    assert (tmp_path / "trial-per-rule.csv").exists()
