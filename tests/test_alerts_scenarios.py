# ruff: noqa: F811  -- pytest fixtures imported from tests/test_alerts_support.py
"""Scenario tests with an injected clock, on real PostgreSQL and a real SMTP server.

The world (tests/test_alerts_support.py): Colin has COPD and is under copd-north
(Amy on duty weekdays 08:00-18:30, Ben her senior cover) and dn-north; the
out-of-hours team (Olu) is copd-north's fallback.  The shipped rules and routes
apply: in hours his respiratory alerts go to copd-north, at night to out-of-hours;
the standard policy escalates after 15 and 30 minutes; an acknowledgement is a
4-hour lease.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts import store
from tests.test_alerts_support import (  # noqa: F401 -- fixtures
    MONDAY,
    Clock,
    build_world,
    conn,
    events,
    hub_heard_from,
    make_service,
    notifications,
    smtp_server,
    vitals,
)

pytestmark = pytest.mark.integration


def active(conn, rule_id):
    found = [a for a in store.list_alerts(conn) if a["rule_id"] == rule_id]
    return found[0] if found else None


def deteriorate(conn, svc, clock, pid, hour):
    """Three days: well, then amber (SpO2 94), then red (SpO2 91 and NEWS2 8)."""
    day1 = clock.set(MONDAY + timedelta(hours=hour))
    vitals(conn, pid, day1, spo2=96, pulse=80, temp=37.0, rr=16)
    svc.step(conn)
    assert store.list_alerts(conn) == []

    day2 = clock.set(MONDAY + timedelta(days=1, hours=hour))
    vitals(conn, pid, day2, spo2=94, pulse=95, temp=37.8, rr=18)
    svc.step(conn)
    amber = active(conn, "spo2_low")
    assert (amber["severity"], amber["state"]) == ("amber", "open")
    assert active(conn, "news2") is None  # NEWS2 2: low, no alert

    day3 = clock.set(MONDAY + timedelta(days=2, hours=hour))
    vitals(conn, pid, day3, spo2=91, pulse=112, temp=38.6, rr=24)
    svc.step(conn)
    red = active(conn, "spo2_low")
    assert red["id"] == amber["id"] and red["severity"] == "red" and red["count"] == 2
    assert "severity_raised" in events(conn, red["id"])
    news2 = active(conn, "news2")
    assert news2["severity"] == "red"
    assert news2["detail"]["total"] == 8 and news2["detail"]["partial"]  # no consciousness
    return red, news2


def test_copd_patient_deteriorating_in_hours_goes_to_the_copd_team(conn, smtp_server):
    world = build_world(conn)
    clock = Clock(MONDAY)
    svc = make_service(clock, smtp_server.port)
    red, news2 = deteriorate(conn, svc, clock, world["patient"], hour=10)
    assert red["team_id"] == news2["team_id"] == "copd-north"
    assert red["route"]["route"] == "root/in-hours/copd"
    # Amy (on duty) was e-mailed when it opened amber, and again when it turned red
    amy_mail = smtp_server.to("amy@example.nhs.uk")
    subjects = [m["Subject"] for m in amy_mail]
    assert any(s.startswith("[AMBER]") and "Colin Oakes" in s for s in subjects)
    assert any(s.startswith("[RED]") and "NEWS2 8" in s for s in subjects)


@pytest.mark.hazard("H-011")
def test_copd_patient_deteriorating_at_night_goes_to_out_of_hours(conn, smtp_server):
    world = build_world(conn)
    clock = Clock(MONDAY)
    svc = make_service(clock, smtp_server.port)
    red, news2 = deteriorate(conn, svc, clock, world["patient"], hour=22)
    assert red["team_id"] == news2["team_id"] == "out-of-hours"
    assert news2["route"]["route"] == "root/out-of-hours/red"
    assert news2["escalation_policy"] == "urgent"
    assert smtp_server.to("olu@example.nhs.uk")
    assert not smtp_server.to("amy@example.nhs.uk")


def open_amber(conn, svc, clock, world, at):
    clock.set(at)
    vitals(conn, world["patient"], at, spo2=94, pulse=80)
    svc.step(conn)
    return active(conn, "spo2_low")


@pytest.mark.hazard("H-009", "H-018")
def test_unacknowledged_alert_escalates_and_acknowledgement_stops_it(conn, smtp_server):
    world = build_world(conn)
    clock = Clock(MONDAY)
    svc = make_service(clock, smtp_server.port)
    a = open_amber(conn, svc, clock, world, MONDAY + timedelta(hours=10))
    assert a["escalation_level"] == 0
    assert [(n[2], n[3]) for n in notifications(conn, a["id"]) if n[1] == "email"] == [
        ("amy@example.nhs.uk", 0)]

    svc.tick(conn, clock.advance(minutes=14, seconds=59))
    assert store.get_alert(conn, a["id"])["escalation_level"] == 0
    svc.tick(conn, clock.advance(seconds=1))                      # 15 min: level 1 (Ben)
    assert store.get_alert(conn, a["id"])["escalation_level"] == 1
    assert smtp_server.to("ben@example.nhs.uk")[0]["Subject"].startswith("[AMBER] ESCALATED")

    store.acknowledge(conn, a["id"], clinician_id=world["ben"], now=clock.advance(minutes=5))
    for _ in range(4):                                           # an hour passes: nothing
        svc.tick(conn, clock.advance(minutes=15))
    got = store.get_alert(conn, a["id"])
    assert (got["state"], got["escalation_level"]) == ("acknowledged", 1)
    assert len(smtp_server.to("ooh@example.nhs.uk") + smtp_server.to("olu@example.nhs.uk")) == 0
    assert events(conn, a["id"]) == ["opened", "notified", "escalated", "acknowledged"]


@pytest.mark.hazard("H-009")
def test_unacknowledged_alert_reaches_the_fallback_and_then_reminds(conn, smtp_server):
    world = build_world(conn)
    clock = Clock(MONDAY)
    svc = make_service(clock, smtp_server.port)
    a = open_amber(conn, svc, clock, world, MONDAY + timedelta(hours=10))
    svc.tick(conn, clock.advance(minutes=15))
    svc.tick(conn, clock.advance(minutes=15))                     # 30 min: fallback
    got = store.get_alert(conn, a["id"])
    assert (got["escalation_level"], got["team_id"]) == (2, "out-of-hours")
    assert smtp_server.to("olu@example.nhs.uk")
    svc.tick(conn, clock.advance(minutes=30))                     # reminder at the last level
    assert events(conn, a["id"])[-1] == "reminder"
    assert len(smtp_server.to("olu@example.nhs.uk")) == 2


@pytest.mark.hazard("H-018")
def test_acknowledgement_lease_expiry_reopens_the_alert(conn, smtp_server):
    world = build_world(conn)
    clock = Clock(MONDAY)
    svc = make_service(clock, smtp_server.port)
    a = open_amber(conn, svc, clock, world, MONDAY + timedelta(hours=10))
    acked = store.acknowledge(conn, a["id"], clinician_id=world["amy"],
                              now=clock.advance(minutes=2))
    assert acked["ack_expires_at"] == (clock.now + timedelta(hours=4)).isoformat()  # route's lease
    svc.tick(conn, clock.advance(hours=3, minutes=59))
    assert store.get_alert(conn, a["id"])["state"] == "acknowledged"
    svc.tick(conn, clock.advance(minutes=1))
    got = store.get_alert(conn, a["id"])
    assert (got["state"], got["escalation_level"]) == ("open", 0)
    assert events(conn, a["id"])[-2:] == ["lease_expired", "reopened"]
    assert len(smtp_server.to("amy@example.nhs.uk")) == 2  # told again
    svc.tick(conn, clock.advance(minutes=15))               # and escalation runs again
    assert store.get_alert(conn, a["id"])["escalation_level"] == 1


@pytest.mark.hazard("H-009", "H-011")
def test_rota_gap_sends_to_fallback_and_raises_a_system_alert(conn, smtp_server):
    world = build_world(conn, rota=False)
    from alerts.notify import add_shift

    add_shift(conn, team_id="out-of-hours", clinician_id=world["olu"], starts_at=MONDAY,
              ends_at=MONDAY + timedelta(days=7))
    clock = Clock(MONDAY)
    svc = make_service(clock, smtp_server.port)
    a = open_amber(conn, svc, clock, world, MONDAY + timedelta(hours=10))  # nobody in copd-north
    got = store.get_alert(conn, a["id"])
    assert got["team_id"] == "out-of-hours"
    assert "fallback" in events(conn, a["id"])
    system = [x for x in store.list_alerts(conn) if x["category"] == "system"]
    assert len(system) == 1
    assert system[0]["rule_id"] == "system.rota_gap.copd-north.L0"
    assert system[0]["team_id"] == "out-of-hours" and system[0]["severity"] == "red"
    assert "Rota gap" in system[0]["summary"]
    olu = [m["Subject"] for m in smtp_server.to("olu@example.nhs.uk")]
    assert any("Colin Oakes" in s for s in olu) and any("Rota gap" in s for s in olu)


@pytest.mark.hazard("H-009", "H-011")
def test_a_deactivated_nurse_on_the_rota_is_a_gap_not_a_recipient(conn, smtp_server):
    world = build_world(conn)
    conn.execute("UPDATE clinician SET active = false WHERE id = %s", (world["amy"],))
    clock = Clock(MONDAY)
    svc = make_service(clock, smtp_server.port)
    a = open_amber(conn, svc, clock, world, MONDAY + timedelta(hours=10))  # Amy's shift
    assert smtp_server.to("amy@example.nhs.uk") == []
    assert store.get_alert(conn, a["id"])["team_id"] == "out-of-hours"  # the fallback
    system = [x for x in store.list_alerts(conn) if x["category"] == "system"]
    assert [x["rule_id"] for x in system] == ["system.rota_gap.copd-north.L0"]


@pytest.mark.hazard("H-009")
def test_rota_gap_without_any_fallback_keeps_the_alert_and_says_so(conn, smtp_server,
                                                                    tmp_path, caplog):
    """No fallback anywhere: copd-north has none of its own (team_escalation) and the
    routing file names no ``default_fallback_team``.  Nobody is on duty.  The alert stays
    open with copd-north (its dashboard and team mailbox), a system alert names each gap,
    the escalation's fallback level keeps it there, and nothing goes anywhere else."""
    from importlib import resources

    shipped = resources.files("alerts.rules").joinpath("routes.yaml").read_text("utf-8")
    assert "default_fallback_team: out-of-hours\n" in shipped
    routes = tmp_path / "routes.yaml"
    routes.write_text(shipped.replace("default_fallback_team: out-of-hours\n", ""))
    world = build_world(conn, rota=False)
    conn.execute("DELETE FROM team_escalation")
    clock = Clock(MONDAY)
    svc = make_service(clock, smtp_server.port, routes=routes)
    assert svc.notifier.routing.default_fallback_team is None

    caplog.set_level("WARNING", logger="alerts.notify")
    a = open_amber(conn, svc, clock, world, MONDAY + timedelta(hours=10))
    got = store.get_alert(conn, a["id"])
    assert (got["state"], got["team_id"], got["escalation_level"]) == ("open", "copd-north", 0)
    assert "fallback" not in events(conn, a["id"])
    assert [(n[1], n[2], n[5]) for n in notifications(conn, a["id"])] == [
        ("dashboard", "copd-north", "delivered"),
        ("email", "copd-north@example.nhs.uk", "delivered")]
    (gap,) = [x for x in store.list_alerts(conn) if x["category"] == "system"]
    assert (gap["rule_id"], gap["team_id"], gap["severity"]) == (
        "system.rota_gap.copd-north.L0", "copd-north", "red")
    assert "no fallback (stays with copd-north)" in gap["summary"]
    assert sorted(r.getMessage() for r in caplog.records) == sorted(
        f"rota gap: nobody on duty in copd-north at rota level 0 and no fallback team;"
        f" alert {alert_id} stays with copd-north"
        for alert_id in (a["id"], gap["id"]))   # the system alert falls in the same gap
    team_mail = [m["Subject"] for m in smtp_server.to("copd-north@example.nhs.uk")]
    assert any("Colin Oakes" in s for s in team_mail) and any("Rota gap" in s for s in team_mail)

    svc.tick(conn, clock.advance(minutes=15))         # level 1: nobody at rota level 1
    svc.tick(conn, clock.advance(minutes=15))         # level 2, "fallback": there is none
    got = store.get_alert(conn, a["id"])
    assert (got["state"], got["team_id"], got["escalation_level"]) == ("open", "copd-north", 2)
    assert sorted(x["rule_id"] for x in store.list_alerts(conn) if x["category"] == "system"
                  ) == ["system.rota_gap.copd-north.L0", "system.rota_gap.copd-north.L1"]
    assert events(conn, a["id"]) == ["opened", "notified", "escalated", "escalated"]
    assert [n[3] for n in notifications(conn, a["id"]) if n[1] == "email"] == [0, 1, 2]
    assert f"alert {a['id']} reached its fallback level but copd-north has no fallback" \
        " team; it stays there" in [r.getMessage() for r in caplog.records]
    svc.tick(conn, clock.advance(minutes=30))          # and it keeps reminding
    assert events(conn, a["id"])[-1] == "reminder"
    assert {m["To"] for m in smtp_server.messages} == {"copd-north@example.nhs.uk"}
    assert all(n[5] == "delivered" for n in notifications(conn))


def test_snooze_silences_until_expiry_then_notifies(conn, smtp_server):
    world = build_world(conn)
    clock = Clock(MONDAY)
    svc = make_service(clock, smtp_server.port)
    a = open_amber(conn, svc, clock, world, MONDAY + timedelta(hours=10))
    store.snooze(conn, a["id"], clinician_id=world["amy"], until=clock.now + timedelta(hours=1),
                 now=clock.advance(minutes=1))
    svc.tick(conn, clock.advance(minutes=20))
    svc.tick(conn, clock.advance(minutes=20))
    assert store.get_alert(conn, a["id"])["escalation_level"] == 0  # no escalation while snoozed
    assert len(smtp_server.messages) == 1
    svc.tick(conn, clock.advance(minutes=21))
    assert events(conn, a["id"])[-2:] == ["snooze_expired", "notified"]
    assert len(smtp_server.to("amy@example.nhs.uk")) == 2


def test_admitted_patient_alerts_are_recorded_but_muted(conn, smtp_server):
    world = build_world(conn)
    conn.execute("UPDATE patient SET status = 'admitted' WHERE id = %s", (world["patient"],))
    clock = Clock(MONDAY)
    svc = make_service(clock, smtp_server.port)
    a = open_amber(conn, svc, clock, world, MONDAY + timedelta(hours=10))
    got = store.get_alert(conn, a["id"])
    assert got["inhibited_by"] == "patient admitted or away"
    svc.tick(conn, clock.advance(hours=2))
    assert notifications(conn, a["id"]) == []
    assert smtp_server.messages == []


@pytest.mark.hazard("H-010", "H-013")
def test_hub_offline_mutes_missed_reading_alerts(conn, smtp_server):
    world = build_world(conn)
    from alerts.settings_store import set_patient_rule

    set_patient_rule(conn, patient_id=world["patient"], rule_id="missed_spo2",
                     params={"at": ["08:00"], "grace": "1h"}, set_by=world["amy"],
                     valid_from=MONDAY)
    conn.execute("UPDATE hub SET state = 'offline', last_status_at = %s, last_seen_at = %s"
                 " WHERE id = 'hub-colin'", (MONDAY + timedelta(hours=6),) * 2)
    clock = Clock(MONDAY + timedelta(hours=9, minutes=30))
    svc = make_service(clock, smtp_server.port)
    svc.tick(conn)
    hub = active(conn, "hub_offline")
    missed = active(conn, "missed_spo2")
    assert hub is not None and hub["inhibited_by"] is None
    assert missed is not None and missed["inhibited_by"] == "hub offline"
    assert notifications(conn, missed["id"]) == []
    assert notifications(conn, hub["id"])  # the hub alert itself is notified
    # the hub comes back and the reading arrives: both resolve themselves
    conn.execute("UPDATE hub SET state = 'online', last_status_at = %s, last_seen_at = %s"
                 " WHERE id = 'hub-colin'", (clock.advance(minutes=5),) * 2)
    vitals(conn, world["patient"], clock.now, spo2=97)
    svc.step(conn)
    assert active(conn, "hub_offline") is None and active(conn, "missed_spo2") is None
    # and a repeated tick does not re-trigger the same missed slot
    assert [e for e in events(conn, missed["id"]) if e == "retriggered"] == []


@pytest.mark.hazard("H-017")
def test_personal_thresholds_apply_from_when_they_were_set(conn, smtp_server):
    """A COPD patient with a low baseline: SpO2 limits set by a nurse, from a given time."""
    world = build_world(conn)
    from alerts.settings_store import set_patient_rule

    clock = Clock(MONDAY + timedelta(hours=10))
    svc = make_service(clock, smtp_server.port)
    set_patient_rule(conn, patient_id=world["patient"], rule_id="spo2_low", set_by=world["amy"],
                     params={"levels": {"amber": {"metric": "spo2", "op": "<=", "value": 88},
                                        "red": {"metric": "spo2", "op": "<=", "value": 85}},
                             "clear": {"metric": "spo2", "op": ">=", "value": 89}},
                     valid_from=MONDAY + timedelta(hours=12), note="baseline 88-92 %")
    vitals(conn, world["patient"], MONDAY + timedelta(hours=11), spo2=90)  # before: default
    svc.step(conn)
    assert active(conn, "spo2_low")["severity"] == "red"
    store.resolve(conn, active(conn, "spo2_low")["id"], clinician_id=world["amy"],
                  outcome="patient_contacted_no_action")
    vitals(conn, world["patient"], MONDAY + timedelta(hours=13), spo2=90)  # after: personal
    svc.step(conn)
    assert active(conn, "spo2_low") is None
    vitals(conn, world["patient"], MONDAY + timedelta(hours=14), spo2=87)
    svc.step(conn)
    assert active(conn, "spo2_low")["severity"] == "amber"


def test_threshold_held_for_a_duration_fires_on_the_tick_without_a_new_reading(conn,
                                                                            smtp_server):
    world = build_world(conn)
    rules = """\
rules:
  - id: spo2_sustained
    kind: threshold
    title: SpO2 below 92 % for 10 minutes
    severity: red
    source: test (continuous oximetry)
    reading_kinds: [spo2]
    window: 1h
    labels: {system: respiratory}
    params:
      when: {metric: spo2, op: "<", value: 92}
      for: 10m
"""
    import pathlib
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "r.yaml"
        path.write_text(rules)
        clock = Clock(MONDAY + timedelta(hours=10))
        svc = make_service(clock, smtp_server.port, rules=path)
    for minute in (0, 4, 8):
        vitals(conn, world["patient"], MONDAY + timedelta(hours=10, minutes=minute), spo2=90)
    svc.step(conn, clock.advance(minutes=8))
    assert active(conn, "spo2_sustained") is None          # held 8 minutes so far
    svc.tick(conn, clock.advance(minutes=2))               # no new reading; 10 minutes held
    alert = active(conn, "spo2_sustained")
    assert alert is not None and alert["count"] == 1
    svc.tick(conn, clock.advance(minutes=1))               # same evidence: not a new trigger
    assert active(conn, "spo2_sustained")["count"] == 1


def evaluation_failures(conn):
    return [a for a in store.list_alerts(conn)
            if a["rule_id"].startswith("system.evaluation_failed.")]


@pytest.mark.hazard("H-007", "H-021")
def test_a_stored_setting_the_rules_refuse_stops_no_evaluation_and_tells_the_team(
        conn, smtp_server):
    """A personal setting the rule set no longer accepts (stored before a rule changed):
    the engine judges that patient by the default rules, every other patient as before,
    and a red system alert to the patient's team says their readings need a person."""
    world = build_world(conn)
    from alerts.sample_data import add_patient
    from alerts.settings_store import set_patient_rule

    dora = add_patient(conn, "Dora Finch", teams=["copd-north"], hub_id="hub-dora",
                       since=MONDAY - timedelta(days=7))
    hub_heard_from(conn, "hub-dora")
    set_patient_rule(conn, patient_id=world["patient"], rule_id="spo2_low", set_by=world["amy"],
                     params={"levels": {"amber": {"metric": "spo2", "op": "<=",
                                                  "value": "eighty-eight"}}},
                     valid_from=MONDAY, note="stored before the rule changed")  # no ruleset
    clock = Clock(MONDAY + timedelta(hours=10))
    svc = make_service(clock, smtp_server.port)
    vitals(conn, world["patient"], clock.now, spo2=91)
    vitals(conn, dora, clock.now, spo2=91)
    svc.step(conn)  # does not raise

    assert conn.execute("SELECT count(*) FROM evaluation_queue").fetchone()[0] == 0
    red = {a["patient_id"]: a["severity"] for a in store.list_alerts(conn)
           if a["rule_id"] == "spo2_low"}
    assert red == {world["patient"]: "red", dora: "red"}  # Colin by the default rules
    (failure,) = evaluation_failures(conn)
    assert failure["rule_id"] == f"system.evaluation_failed.{world['patient']}.personal-settings"
    assert (failure["severity"], failure["team_id"]) == ("red", "copd-north")
    assert "Colin Oakes" in failure["summary"] and "by hand" in failure["summary"]
    assert failure["detail"]["error"].startswith("RuleError")
    assert failures_notified(conn, failure["id"])

    vitals(conn, world["patient"], clock.now + timedelta(minutes=5), spo2=90)
    svc.step(conn)  # the same fault again: the one system alert counts it
    (again,) = evaluation_failures(conn)
    # each reading judged without its setting, and the scheduler tick once (not each tick)
    assert again["id"] == failure["id"] and again["count"] == 3


def failures_notified(conn, alert_id):
    return [n for n in notifications(conn, alert_id) if n[1] == "email"]


@pytest.mark.hazard("H-007", "H-021")
def test_a_rule_that_raises_for_one_reading_leaves_the_rest_of_the_batch_evaluated(
        conn, smtp_server, monkeypatch):
    """Fault injection (a bug in an evaluator, which no real input can be chosen to hit):
    the threshold evaluator raises for one patient's readings only."""
    world = build_world(conn)
    from alerts import worker
    from alerts.sample_data import add_patient

    dora = add_patient(conn, "Dora Finch", teams=["copd-north"], hub_id="hub-dora",
                       since=MONDAY - timedelta(days=7))
    hub_heard_from(conn, "hub-dora")
    real = worker.registry()

    class Broken:
        def __init__(self, judge):
            self.judge, self.firing = judge, None

        def evaluate(self, rule, window, now):
            if window.readings and window.readings[-1].values["spo2"] == 93:
                raise ZeroDivisionError("a bug")
            return self.judge.evaluate(rule, window, now)

    monkeypatch.setattr(worker, "registry",
                        lambda: {**real, "threshold": Broken(real["threshold"])})
    clock = Clock(MONDAY + timedelta(hours=10))
    svc = make_service(clock, smtp_server.port)
    vitals(conn, world["patient"], clock.now, spo2=93)
    vitals(conn, dora, clock.now, spo2=91)
    svc.step(conn)

    assert conn.execute("SELECT count(*) FROM evaluation_queue").fetchone()[0] == 0
    assert active(conn, "spo2_low")["patient_id"] == dora
    failures = evaluation_failures(conn)
    assert failures and all(f"evaluation_failed.{world['patient']}." in f["rule_id"]
                            for f in failures)
    assert any("ZeroDivisionError: a bug" in f["detail"]["error"] for f in failures)
