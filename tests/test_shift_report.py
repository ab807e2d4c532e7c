"""The shift hand-over report (issue 9 part 5, docs/reports.md): a scripted night of team
District Nursing North, 20:00-08:00 London, with events before, during and just outside
it.  The CSV is compared row by row with the rows written out by hand below; the JSON
and the page carry the same rows, the PDF's text holds each of them; the e-mail at the
shift change reaches a real SMTP server once, with the CSV attached; another team's
report is 404 and audited; the period is the team's last shift, across clock changes.
"""

from __future__ import annotations

import csv
import email.message
import functools
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from alerts import shift_report
from alerts.events import record_event
from alerts.shift_report import Shift
from alerts.store import acknowledge, resolve
from homeward.settings import Settings
from server import admin
from tests.api_support import running_api
from tests.browser_support import PASSWORD, check_accessibility, chromium, signed_in
from tests.test_alerts_support import Clock, make_service, smtp_server  # noqa: F401
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

#: November: London is on GMT, so a London time here is the same UTC time.
START = datetime(2026, 11, 23, 20, tzinfo=UTC)   # Monday 20:00
END = datetime(2026, 11, 24, 8, tzinfo=UTC)      # Tuesday 08:00
NIGHT = {"from": "2026-11-23T20:00:00Z", "to": "2026-11-24T08:00:00Z"}


def mon(hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(2026, 11, 23, hh, mm, ss, tzinfo=UTC)


def tue(hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(2026, 11, 24, hh, mm, ss, tzinfo=UTC)


@dataclass
class Night:
    url: str
    ids: dict[str, int]
    tokens: dict[str, str]


def _alert(conn: psycopg.Connection[Any], patient: int | None, rule: str, severity: str,
           summary: str, team: str, at: datetime) -> int:
    category = "clinical" if patient is not None else "system"
    row = conn.execute(
        "INSERT INTO alert (category, patient_id, rule_id, rule, severity, summary, team_id,"
        " opened_at, updated_at, last_triggered_at) VALUES (%s, %s, %s, %s::jsonb, %s, %s,"
        " %s, %s, %s, %s) RETURNING id",
        (category, patient, rule, orjson.dumps({"id": rule}).decode(), severity, summary, team,
         at, at, at)).fetchone()
    assert row is not None
    with conn.transaction():
        record_event(conn, int(row[0]), "opened", at=at, detail={"summary": summary},
                     state="open", severity=severity, team_id=team, patient_id=patient)
    return int(row[0])


def _escalated(conn: psycopg.Connection[Any], alert: int, level: int, team: str,
               at: datetime) -> None:
    with conn.transaction():
        record_event(conn, alert, "escalated", at=at, detail={"level": level, "team_id": team},
                     state="open", team_id=team)


SBAR = {"situation": "Moving to district nursing", "background": "Heart failure stable",
        "assessment": "Needs daily visits", "recommendation": "Take over as lead"}


def _handover(conn: psycopg.Connection[Any], *, kind: str, patient: int, alert: int | None,
              from_team: str, to_team: str, by: int, offered: datetime, respond_by: datetime,
              state: str = "offered", decided: datetime | None = None,
              decided_by: int | None = None, reason: str | None = None) -> int:
    row = conn.execute(
        "INSERT INTO handover (kind, alert_id, patient_id, from_team, to_team, note, state,"
        " offered_by, offered_at, respond_by, decided_by, decided_at, decline_reason)"
        " VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (kind, alert, patient, from_team, to_team, orjson.dumps(SBAR).decode(), state, by,
         offered, respond_by, decided_by, decided, reason)).fetchone()
    assert row is not None
    return int(row[0])


def _task(conn: psycopg.Connection[Any], *, patient: int, title: str, due: datetime,
          requested: datetime, by: int, requested_team: str, priority: str = "routine",
          state: str = "requested", claimed: datetime | None = None,
          claimed_by: int | None = None, closed: datetime | None = None,
          closed_by: int | None = None, note: str | None = None) -> int:
    row = conn.execute(
        "INSERT INTO task (patient_id, team_id, title, priority, due_at, state, requested_by,"
        " requested_team, requested_at, claimed_by, claimed_at, closed_by, closed_at,"
        " close_note) VALUES (%s, 'dn-north', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " RETURNING id", (patient, title, priority, due, state, by, requested_team, requested,
                          claimed_by, claimed, closed_by, closed, note)).fetchone()
    assert row is not None
    return int(row[0])


def _status(conn: psycopg.Connection[Any], patient: int, status: str, at: datetime,
            by: int | None = None, note: str | None = None) -> int:
    row = conn.execute("INSERT INTO patient_status_event (patient_id, at, status, note,"
                       " clinician_id, team_id) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                       (patient, at, status, note, by, "dn-north" if by else None)).fetchone()
    assert row is not None
    return int(row[0])


def script_night(url: str) -> Night:
    """The night, and what lies just outside it (marked "out" below)."""
    with psycopg.connect(url, autocommit=True) as conn:
        org = admin.create_organisation(conn, name="Riverside Trust")
        other = admin.create_organisation(conn, name="Hillside Trust")
        admin.create_team(conn, team_id="dn-north", organisation_id=org,
                          name="District Nursing North", kind="district_nursing",
                          email="dn-north@example.nhs.uk")
        admin.create_team(conn, team_id="hf", organisation_id=org, name="Heart Failure",
                          kind="heart_failure", email="hf@example.nhs.uk")
        admin.create_team(conn, team_id="ooh", organisation_id=org, name="Out of Hours",
                          kind="out_of_hours")
        admin.create_team(conn, team_id="hill", organisation_id=other, name="Hill DN",
                          kind="district_nursing")
        admin.set_team_shift(conn, team_id="dn-north", name="night", starts="20:00",
                             ends="08:00")
        admin.set_team_shift(conn, team_id="dn-north", name="day", starts="08:00",
                             ends="20:00")
        people = {
            "nina": admin.create_clinician(conn, username="nina", display_name="Nina Nurse",
                                           teams=["dn-north", "hf"], password=PASSWORD),
            "hana": admin.create_clinician(conn, username="hana", display_name="Hana Heart",
                                           teams=["hf"]),
            "adam": admin.create_clinician(conn, username="adam", display_name="Adam Admin",
                                           role="admin", organisation_id=org),
            "hilda": admin.create_clinician(conn, username="hilda", role="admin",
                                            display_name="Hilda Admin", teams=["hill"]),
        }
        nina, hana = people["nina"].id, people["hana"].id
        colin = admin.create_patient(conn, display_name="Colin Oakes", teams=["dn-north"],
                                     nhs_number="9434765919")
        dora = admin.create_patient(conn, display_name="Dora Finch", teams=["dn-north", "hf"],
                                    nhs_number="9434765927")
        pat = admin.create_patient(conn, display_name="Pat Reed", teams=["dn-north"],
                                   nhs_number="9434765935")
        hari = admin.create_patient(conn, display_name="Hari Shah", teams=["hf"],
                                    nhs_number="9434765943")
        # alerts
        a1 = _alert(conn, colin, "spo2_low", "amber", "SpO2 93 %", "dn-north", mon(15))
        _escalated(conn, a1, 1, "dn-north", mon(19, 50))                 # out: before
        _escalated(conn, a1, 2, "dn-north", mon(20, 30))
        a2 = _alert(conn, dora, "bp_severe", "red", "BP 184/112", "dn-north", mon(19))
        resolve(conn, a2, clinician_id=nina, outcome="advice_given", now=mon(19, 45))  # out
        a3 = _alert(conn, colin, "news2", "amber", "NEWS2 5", "dn-north", mon(22, 10))
        acknowledge(conn, a3, clinician_id=nina, now=mon(22, 20))
        resolve(conn, a3, clinician_id=nina, outcome="home_visit", note="visited",
                now=tue(1))
        a8 = _alert(conn, None, "system.delivery_failed.webhook.dn-north", "red",
                    "Webhook to District Nursing North failing", "dn-north", mon(23))
        a4 = _alert(conn, dora, "bp_low", "amber", "BP 98/60", "dn-north", tue(3))
        acknowledge(conn, a4, clinician_id=nina, now=tue(3, 5))
        _alert(conn, hari, "bp_severe", "red", "BP 190/115", "hf", tue(2))   # out: hf's
        a7 = _alert(conn, colin, "glucose_low", "amber", "Glucose 3.6 mmol/L", "ooh", tue(5))
        _alert(conn, dora, "glucose_low", "red", "Glucose 2.8 mmol/L", "dn-north",
               tue(8))                                                     # out: at the end
        # hand-overs
        h1 = _handover(conn, kind="lead", patient=hari, alert=None, from_team="hf",
                       to_team="dn-north", by=hana, offered=mon(21), respond_by=mon(21, 30),
                       state="accepted", decided=mon(21, 20), decided_by=nina)
        h2 = _handover(conn, kind="alert", patient=dora, alert=a4, from_team="dn-north",
                       to_team="ooh", by=nina, offered=tue(4), respond_by=tue(9))
        _handover(conn, kind="lead", patient=pat, alert=None, from_team="dn-north",
                  to_team="hf", by=nina, offered=mon(18), respond_by=mon(18, 30),
                  state="declined", decided=mon(19), decided_by=hana,
                  reason="not ours")                                        # out: before
        _handover(conn, kind="lead", patient=colin, alert=None, from_team="hf",
                  to_team="dn-north", by=hana, offered=tue(8), respond_by=tue(9))  # out
        # tasks of dn-north
        t1 = _task(conn, patient=colin, title="Repeat blood pressure", due=tue(2),
                   requested=mon(20, 5), by=nina, requested_team="dn-north", priority="urgent",
                   state="completed", closed=tue(1, 30), closed_by=nina, note="BP 128/80")
        t2 = _task(conn, patient=dora, title="Call the GP about her tablets", due=tue(6),
                   requested=mon(21), by=hana, requested_team="hf")
        t3 = _task(conn, patient=pat, title="Check the dressing", due=mon(18),
                   requested=mon(9), by=nina, requested_team="dn-north", state="claimed",
                   claimed=mon(19), claimed_by=nina)
        _task(conn, patient=colin, title="Weekly weight", due=tue(10), requested=mon(12),
              by=nina, requested_team="dn-north")                          # out: due after
        _task(conn, patient=dora, title="Book bloods", due=mon(12), requested=mon(8),
              by=nina, requested_team="dn-north", state="completed", closed=mon(13),
              closed_by=nina)                                              # out: before
        t6 = _task(conn, patient=dora, title="Morning insulin check", due=tue(7),
                   requested=mon(20), by=nina, requested_team="dn-north", state="completed",
                   closed=tue(8, 30), closed_by=nina)   # done after the end: overdue at 08:00
        # status changes
        _status(conn, pat, "active", mon(10))                               # out: before
        s1 = _status(conn, pat, "admitted", mon(23, 40), by=nina,
                     note="Admitted to the Royal Infirmary")
        _status(conn, colin, "away", tue(8))                                # out: at the end
        _status(conn, hari, "admitted", tue(1))                             # out: hf's
    ids = {"colin": colin, "dora": dora, "pat": pat, "hari": hari, "a1": a1, "a3": a3,
           "a4": a4, "a7": a7, "a8": a8, "h1": h1, "h2": h2, "t1": t1, "t2": t2, "t3": t3,
           "t6": t6, "s1": s1, **{k: v.id for k, v in people.items()}}
    return Night(url, ids, {k: v.api_token for k, v in people.items()})


def expected_rows(n: Night) -> list[list[str]]:
    """Every row of the night's report, written out by hand."""
    i = n.ids
    colin = [str(i["colin"]), "Colin Oakes", "9434765919"]
    dora = [str(i["dora"]), "Dora Finch", "9434765927"]
    pat = [str(i["pat"]), "Pat Reed", "9434765935"]
    hari = [str(i["hari"]), "Hari Shah", "9434765943"]
    nobody = ["", "", ""]
    sbar = ("S: Moving to district nursing | B: Heart failure stable | A: Needs daily visits"
            " | R: Take over as lead")

    def row(section: str, at: str, who: list[str], *rest: str) -> list[str]:
        return [section, f"{at}Z", f"{at[:10]} {at[11:16]} GMT", *who, *rest]

    return [
        row("alert_new", "2026-11-23T22:10:00", colin, f"alert {i['a3']}", "NEWS2 5", "amber",
            "resolved", "dn-north", "Nina Nurse", "news2; outcome: home visit"),
        row("alert_new", "2026-11-23T23:00:00", nobody, f"alert {i['a8']}",
            "Webhook to District Nursing North failing", "red", "open", "dn-north", "",
            "system.delivery_failed.webhook.dn-north"),
        row("alert_new", "2026-11-24T03:00:00", dora, f"alert {i['a4']}", "BP 98/60", "amber",
            "acknowledged", "dn-north", "Nina Nurse", "bp_low"),
        row("alert_new", "2026-11-24T05:00:00", colin, f"alert {i['a7']}",
            "Glucose 3.6 mmol/L", "amber", "open", "ooh", "", "glucose_low"),
        row("alert_escalated", "2026-11-23T20:30:00", colin, f"alert {i['a1']}", "SpO2 93 %",
            "amber", "open", "dn-north", "", "to level 2"),
        row("alert_open", "2026-11-23T15:00:00", colin, f"alert {i['a1']}", "SpO2 93 %",
            "amber", "open", "dn-north", "", "spo2_low"),
        row("alert_open", "2026-11-23T23:00:00", nobody, f"alert {i['a8']}",
            "Webhook to District Nursing North failing", "red", "open", "dn-north", "",
            "system.delivery_failed.webhook.dn-north"),
        row("alert_open", "2026-11-24T03:00:00", dora, f"alert {i['a4']}", "BP 98/60", "amber",
            "acknowledged", "dn-north", "Nina Nurse", "bp_low"),
        row("alert_open", "2026-11-24T05:00:00", colin, f"alert {i['a7']}",
            "Glucose 3.6 mmol/L", "amber", "open", "ooh", "", "glucose_low"),
        row("handover_in", "2026-11-23T21:00:00", hari, f"handover {i['h1']}",
            "lead of the care team", "", "accepted", "hf", "Nina Nurse", sbar),
        row("handover_out", "2026-11-24T04:00:00", dora, f"handover {i['h2']}",
            f"alert {i['a4']}: BP 98/60", "amber", "offered", "ooh", "Nina Nurse", sbar),
        row("task_overdue", "2026-11-23T18:00:00", pat, f"task {i['t3']}",
            "Check the dressing", "routine", "claimed", "dn-north", "Nina Nurse", ""),
        row("task_overdue", "2026-11-24T06:00:00", dora, f"task {i['t2']}",
            "Call the GP about her tablets", "routine", "requested", "hf", "Hana Heart", ""),
        row("task_overdue", "2026-11-24T07:00:00", dora, f"task {i['t6']}",
            "Morning insulin check", "routine", "requested", "dn-north", "Nina Nurse", ""),
        row("task_due", "2026-11-24T02:00:00", colin, f"task {i['t1']}",
            "Repeat blood pressure", "urgent", "completed", "dn-north", "Nina Nurse",
            "BP 128/80"),
        row("status_change", "2026-11-23T23:40:00", pat, f"status {i['s1']}",
            "active → admitted", "", "admitted", "dn-north", "Nina Nurse",
            "Admitted to the Royal Infirmary"),
    ]


def _csv_rows(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(shift_report.CSV_COLUMNS)
    return rows[1:]


def _assert_rows(actual: list[list[str]], expected: list[list[str]]) -> None:
    for number, (got, want) in enumerate(zip(actual, expected, strict=False), start=1):
        assert got == want, f"row {number}"
    assert len(actual) == len(expected)


@pytest.fixture(scope="module")
def night(postgres_server: Any) -> Iterator[tuple[Night, str]]:
    from tests.conftest import _TEMPLATE

    url = postgres_server.create_database(f"night{id(postgres_server)}", template=_TEMPLATE)
    world = script_night(url)
    with running_api(Settings(database_url=url)) as base:
        yield world, base


def _get(base: str, token: str, path: str, params: dict[str, str] | None = None,
         timeout: float = 30) -> httpx.Response:
    return httpx.get(base + path, params=params, timeout=timeout,
                     headers={"Authorization": f"Bearer {token}"})


# -- the night, row by row ----------------------------------------------------------------

def test_the_built_report_lists_exactly_the_nights_events(night: tuple[Night, str]) -> None:
    world, _ = night
    with psycopg.connect(world.url) as conn:
        report = shift_report.build(conn, "dn-north", shift_report.Period(START, END, "night"),
                                    now=tue(8, 1))
    _assert_rows(_csv_rows(shift_report.to_csv(report)), expected_rows(world))
    assert report.counts() == {"alert_new": 4, "alert_escalated": 1, "alert_open": 4,
                               "handover_in": 1, "handover_out": 1, "task_overdue": 3,
                               "task_due": 1, "status_change": 1}


def test_the_csv_from_the_api_is_the_nights_rows(night: tuple[Night, str]) -> None:
    world, base = night
    response = _get(base, world.tokens["nina"], "/api/teams/dn-north/shift-report.csv", NIGHT)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert ('filename="shift-report-dn-north-20261124-0800.csv"'
            in response.headers["content-disposition"])
    assert response.text.endswith("\r\n")
    _assert_rows(_csv_rows(response.text), expected_rows(world))
    # the JSON carries the same rows
    body = _get(base, world.tokens["nina"], "/api/teams/dn-north/shift-report", NIGHT).json()
    assert body["period"] == {"from": "2026-11-23T20:00:00+00:00",
                              "to": "2026-11-24T08:00:00+00:00", "shift": None,
                              "source": "given"}
    assert [[r["section"], r["item"], r["state"]] for r in body["rows"]] == [
        [r[0], r[6], r[9]] for r in expected_rows(world)]


def test_the_pdf_holds_every_event_of_the_night(night: tuple[Night, str]) -> None:
    from pypdf import PdfReader

    world, base = night
    response = _get(base, world.tokens["nina"], "/api/teams/dn-north/shift-report.pdf", NIGHT,
                    timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    timing = re.search(r"pdf;dur=(\d+)", response.headers["server-timing"])
    assert timing is not None
    print(f"shift report PDF printed in {timing.group(1)} ms ({len(response.content)} bytes)")
    reader = PdfReader(io.BytesIO(response.content))
    # NFKC: Chromium prints "fi" as a ligature, which pypdf reads back as one letter
    text = unicodedata.normalize("NFKC", " ".join(
        " ".join((page.extract_text() or "").split()) for page in reader.pages))
    assert "Shift report: District Nursing North" in text
    assert "Mon 23 Nov 2026 20:00 GMT to Tue 24 Nov 2026 08:00 GMT" in text
    for row in expected_rows(world):
        section, local, patient, item, what = row[0], row[2], row[4], row[6], row[7]
        assert f"{local[11:16]} GMT" in text, row
        assert item in text, row
        assert " ".join(what.split()) in text, row
        if patient:
            assert patient in text, row
        assert shift_report.SECTIONS[section] in text
    # nothing from outside the night
    for outside in ("BP 184/112", "BP 190/115", "Glucose 2.8", "Weekly weight", "Book bloods",
                    "not ours"):
        assert outside not in text


def test_the_page_shows_the_same_rows(night: tuple[Night, str]) -> None:
    world, base = night
    page = _get(base, world.tokens["nina"], "/teams/dn-north/shift-report", NIGHT)
    assert page.status_code == 200
    items = re.findall(r'<tr data-item="([a-z]+ \d+)">', page.text)
    assert items == [r[6] for r in expected_rows(world)]
    assert "/api/teams/dn-north/shift-report.csv?from=2026-11-23T20%3A00%3A00Z" in page.text


# -- access -------------------------------------------------------------------------------

def _outcomes(url: str, clinician: int, path: str) -> list[tuple[str, int | None]]:
    with psycopg.connect(url) as conn:
        return [(r[0], r[1]) for r in conn.execute(
            "SELECT outcome, patient_id FROM access_audit WHERE clinician_id = %s"
            " AND resource LIKE %s ORDER BY id", (clinician, path + "%")).fetchall()]


def _has(url: str, clinician: int, path: str, row: tuple[str, int | None]) -> bool:
    return row in _outcomes(url, clinician, path)


def test_another_teams_report_is_404_and_audited(night: tuple[Night, str]) -> None:
    world, base = night
    for path in ("/api/teams/dn-north/shift-report", "/api/teams/dn-north/shift-report.csv",
                 "/api/teams/dn-north/shift-report.pdf", "/teams/dn-north/shift-report"):
        for who in ("hana", "hilda"):  # another team; another organisation's admin
            response = _get(base, world.tokens[who], path, NIGHT)
            assert response.status_code == 404, (who, path)
            assert "Colin" not in response.text
            refused = ("not_found", None)
            wait_for(functools.partial(_has, world.url, world.ids[who], path, refused), 5,
                     "the refusal's audit row")
    assert _get(base, world.tokens["hana"], "/api/teams/nowhere/shift-report").status_code == 404
    # the organisation's admin may read it
    assert _get(base, world.tokens["adam"], "/api/teams/dn-north/shift-report.csv",
                NIGHT).status_code == 200


def test_a_read_is_audited_once_and_for_every_patient_it_lists(
        night: tuple[Night, str]) -> None:
    world, base = night
    path = "/api/teams/dn-north/shift-report"
    before = len(_outcomes(world.url, world.ids["nina"], path))
    assert _get(base, world.tokens["nina"], path, NIGHT).status_code == 200
    patients = {world.ids[p] for p in ("colin", "dora", "pat", "hari")}

    def rows() -> list[tuple[str, int | None]]:
        return _outcomes(world.url, world.ids["nina"], path)[before:]
    wait_for(lambda: len(rows()) == 5, 5, "the report's audit rows")
    assert sorted(rows(), key=lambda r: r[1] or 0) == [
        ("ok", None), *sorted(("ok", p) for p in patients)]


# -- the period ---------------------------------------------------------------------------

def test_the_default_period_is_the_last_shift_and_the_overrides_are_checked(
        night: tuple[Night, str]) -> None:
    world, base = night
    body = _get(base, world.tokens["nina"], "/api/teams/dn-north/shift-report").json()
    expected = shift_report.last_shift([Shift("day", time(8), time(20)),
                                        Shift("night", time(20), time(8))], datetime.now(UTC))
    assert expected is not None
    assert (body["period"]["shift"], body["period"]["source"]) == (expected.shift, "shift")
    assert body["period"]["from"] == expected.start.isoformat()
    assert body["period"]["to"] == expected.end.isoformat()
    # a team without shifts: the last 12 hours, and the page says so
    hf = _get(base, world.tokens["hana"], "/api/teams/hf/shift-report").json()
    assert hf["period"]["source"] == "default"
    span = (datetime.fromisoformat(hf["period"]["to"])
            - datetime.fromisoformat(hf["period"]["from"]))
    assert span == timedelta(hours=12)
    page = _get(base, world.tokens["hana"], "/teams/hf/shift-report")
    assert "This team has no shifts defined" in page.text
    for params in ({"from": "2026-11-23T20:00:00Z"},
                   {"from": "2026-11-24T08:00:00Z", "to": "2026-11-23T20:00:00Z"},
                   {"from": "2026-11-01T00:00:00Z", "to": "2026-11-09T00:00:00Z"},
                   {"from": "1700000000", "to": "1700003600"}):
        response = _get(base, world.tokens["nina"], "/api/teams/dn-north/shift-report", params)
        assert response.status_code == 422, params


def _utc(year: int, month: int, day: int, hh: int, mm: int = 0) -> datetime:
    return datetime(year, month, day, hh, mm, tzinfo=UTC)


@pytest.mark.parametrize(("now", "start", "end"), [
    # an ordinary November night: GMT
    (_utc(2026, 11, 24, 8, 0), _utc(2026, 11, 23, 20), _utc(2026, 11, 24, 8)),
    (_utc(2026, 11, 24, 7, 59), _utc(2026, 11, 22, 20), _utc(2026, 11, 23, 8)),
    # clocks go back on Sunday 25 October 2026: 20:00 BST to 08:00 GMT is 13 hours
    (_utc(2026, 10, 25, 9), _utc(2026, 10, 24, 19), _utc(2026, 10, 25, 8)),
    # clocks go forward on Sunday 29 March 2026: 20:00 GMT to 08:00 BST is 11 hours
    (_utc(2026, 3, 29, 7, 30), _utc(2026, 3, 28, 20), _utc(2026, 3, 29, 7)),
    # summer: BST, the night ends at 07:00 UTC
    (_utc(2026, 7, 1, 7, 0), _utc(2026, 6, 30, 19), _utc(2026, 7, 1, 7)),
])
def test_a_night_shift_is_worked_out_on_the_local_clock(now: datetime, start: datetime,
                                                         end: datetime) -> None:
    night_shift = Shift("night", time(20), time(8))
    assert night_shift.last_ended(now) == (start, end)


def test_the_last_shift_is_the_latest_that_has_ended() -> None:
    shifts = [Shift("day", time(8), time(20)), Shift("night", time(20), time(8)),
              Shift("on-call", time(9), time(9))]
    found = shift_report.last_shift(shifts, _utc(2026, 11, 24, 8, 30))
    assert found == shift_report.Period(_utc(2026, 11, 23, 20), _utc(2026, 11, 24, 8), "night")
    found = shift_report.last_shift(shifts, _utc(2026, 11, 24, 9, 0))  # a whole day's on-call
    assert found == shift_report.Period(_utc(2026, 11, 23, 9), _utc(2026, 11, 24, 9),
                                        "on-call")
    found = shift_report.last_shift(shifts, _utc(2026, 11, 24, 20, 0))
    assert found == shift_report.Period(_utc(2026, 11, 24, 8), _utc(2026, 11, 24, 20), "day")
    assert shift_report.last_shift([], _utc(2026, 11, 24, 20)) is None


# -- the e-mail at the shift change -------------------------------------------------------

def _csv_attachment(msg: email.message.Message) -> tuple[str, str]:
    for part in msg.walk():
        if part.get_filename():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return part.get_filename() or "", payload.decode()
    raise AssertionError("no attachment")


def test_the_report_is_emailed_once_at_the_shift_change(db_url: str, smtp_server) -> None:  # noqa: F811
    world = script_night(db_url)
    clock = Clock(tue(7, 59))
    service = make_service(clock, smtp_server.port)

    def reports(address: str = "dn-north@example.nhs.uk") -> list[email.message.Message]:
        # the team's address also gets its alerts' e-mails (the tasks overdue, by the tick)
        return [m for m in smtp_server.to(address)
                if str(m["Subject"]).startswith("Shift report")]

    with psycopg.connect(db_url, autocommit=True) as conn:
        # before 08:00 the last shift (Monday's day) ended 12 h ago: too long for an e-mail
        service.send_shift_reports(conn, clock())
        service.deliver(conn)
        assert reports() == []
        clock.set(tue(8, 0, 5))
        service.tick(conn)
        wait_for(lambda: len(reports()) == 1, 10, "the shift report's e-mail")
        clock.advance(seconds=5)
        service.tick(conn)
        clock.advance(minutes=30)
        service.tick(conn)
        rows = conn.execute("SELECT reason, state, team_id, idempotency_key FROM notification"
                            " WHERE kind = 'message'").fetchall()
    assert rows == [("shift_report", "delivered", "dn-north",
                     "shift-report:dn-north:night:2026-11-24T08:00Z")]
    messages = reports()
    assert len(messages) == 1, "a second tick must send nothing"
    msg = messages[0]
    subject = re.sub(r"\r?\n(?=[ \t])", "", str(msg["Subject"]))  # unfolded
    assert subject == ("Shift report District Nursing North: Night shift, Mon 23 Nov 2026 20:00"
                       " GMT to Tue 24 Nov 2026 08:00 GMT (4 new, 1 escalated, 4 still open,"
                       " 3 tasks overdue)")
    filename, text = _csv_attachment(msg)
    assert filename == "shift-report-dn-north-20261124-0800.csv"
    _assert_rows(_csv_rows(text), expected_rows(world))
    body = next(p for p in msg.walk() if p.get_content_type() == "text/plain"
                and not p.get_filename()).get_payload(decode=True)
    assert isinstance(body, bytes)
    words = body.decode()
    assert "New alerts (4)" in words and "Tasks overdue (3)" in words
    assert ("/teams/dn-north/shift-report?from=2026-11-23T20%3A00%3A00Z"
            "&to=2026-11-24T08%3A00%3A00Z") in words
    # the teams without shifts (or without an e-mail address) got nothing
    assert [m for m in smtp_server.messages if str(m["Subject"]).startswith("Shift report")
            ] == messages


# -- in a browser -------------------------------------------------------------------------

@pytest.mark.browser
def test_the_report_page_in_a_browser(night: tuple[Night, str]) -> None:
    """Reached from the dashboard's navigation; axe-core finds no serious or critical
    violation at 1280 and 768 wide; the Content Security Policy refuses nothing; the
    earlier-shift link and the team switcher lead to the right reports."""
    world, base = night
    with chromium() as browser, signed_in(browser, base, "nina") as (page, refused):
        page.get_by_role("link", name="Shift report").click()
        page.wait_for_url(re.compile(r"/teams/dn-north/shift-report$"))
        assert page.locator("h1").inner_text() == "Shift report: District Nursing North"
        url = f"{base}/teams/dn-north/shift-report?from={NIGHT['from']}&to={NIGHT['to']}"
        check_accessibility(page, url, "night")
        rows = page.locator("table.report tbody tr")
        assert rows.count() == len(expected_rows(world))
        assert page.locator("#s-task_overdue table tbody tr").count() == 3
        assert page.locator("#s-alert_new time").first.get_attribute("title") == (
            "Mon 23 Nov 2026 22:10:00 GMT")
        page.get_by_role("link", name="← Earlier period").click()
        page.wait_for_url(re.compile(r"from=2026-11-23T08%3A00%3A00Z&to=2026-11-23T20"))
        page.get_by_role("link", name="Heart Failure").click()
        page.wait_for_url(re.compile(r"/teams/hf/shift-report$"))
        check_accessibility(page, page.url, "no-shifts")
        assert refused == []
