"""The discharge summary (issue 9 part 6, docs/reports.md): one patient's monitoring
episode, from her enrolment after the previous discharge to this discharge.  The
statistics per kind and metric (count, lowest, highest, mean) are checked against values
worked out by hand, readings of the previous episode and after the discharge left out;
the alerts with their outcomes, the notes, the hand-overs and the status changes of the
episode are listed; the page and the PDF (its text read back with pypdf) say the same;
a clinician outside the care team gets 404.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from alerts.events import record_event
from alerts.store import acknowledge, resolve
from homeward.settings import Settings
from server import admin, discharge_summary
from tests.api_support import running_api
from tests.browser_support import PASSWORD, check_accessibility, chromium, signed_in

pytestmark = pytest.mark.integration


def nov(day: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(2026, 11, day, hh, mm, tzinfo=UTC)


START, DISCHARGE = nov(1, 9), nov(20, 10, 30)
BP = [  # (taken_at, systolic, diastolic, mean arterial, pulse)
    (nov(2, 8), 142, 88, 106, 72), (nov(5, 8), 150, 92, 111, 80),
    (nov(9, 20), 138, 84, 102, 68), (nov(15, 8, 20), 161, 95, 117, 90)]
SPO2 = [(nov(3, 8), 96, 70), (nov(6, 8), 94, 75), (nov(8, 8), 92, 88),
        (nov(20, 10, 10), 97, 72)]  # the last one in the discharge's partial hour
WEIGHT = [(nov(2, 7), 81.0), (nov(9, 7), 82.4), (nov(16, 7), 83.3)]
#: Worked out by hand: count, lowest, highest, mean.
EXPECTED: dict[str, dict[str, tuple[int, float, float, float]]] = {
    "blood_pressure": {"systolic": (4, 138, 161, 147.75), "diastolic": (4, 84, 95, 89.75),
                       "mean_arterial": (4, 102, 117, 109.0), "pulse_rate": (4, 68, 90, 77.5)},
    "spo2": {"spo2": (4, 92, 97, 94.75), "pulse_rate": (4, 70, 88, 76.25),
             "perfusion_index": (1, 3.5, 3.5, 3.5)},
    "weight": {"body_weight": (3, 81.0, 83.3, 82.2333333)},
}
SBAR = {"situation": "Discharged from the virtual ward", "background": "HF, stable on ramipril",
        "assessment": "Weight steady for a week", "recommendation": "GP review in 2 weeks"}


@dataclass
class Ward:
    url: str
    dora: int
    sam: int
    alerts: dict[str, int]
    tokens: dict[str, str]


def _reading(conn: psycopg.Connection[Any], patient: int, kind: str, at: datetime,
             values: dict[str, float]) -> None:
    conn.execute('INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, "values",'
                 " received_at) VALUES (gen_random_uuid(), %s, %s, 'hub-dora', %s, 'AA:01', %s,"
                 " %s)", (at, kind, patient, orjson.dumps(values).decode(), at))


def _alert(conn: psycopg.Connection[Any], patient: int, rule: str, severity: str,
           summary: str, at: datetime) -> int:
    row = conn.execute(
        "INSERT INTO alert (patient_id, rule_id, rule, severity, summary, team_id, opened_at,"
        " updated_at, last_triggered_at) VALUES (%s, %s, '{}', %s, %s, 'hf', %s, %s, %s)"
        " RETURNING id", (patient, rule, severity, summary, at, at, at)).fetchone()
    assert row is not None
    with conn.transaction():
        record_event(conn, int(row[0]), "opened", at=at, state="open", team_id="hf",
                     patient_id=patient)
    return int(row[0])


def seed(url: str) -> Ward:
    with psycopg.connect(url, autocommit=True) as conn:
        org = admin.create_organisation(conn, name="Riverside Trust")
        admin.create_team(conn, team_id="hf", organisation_id=org, name="Heart Failure",
                          kind="heart_failure")
        admin.create_team(conn, team_id="gp-elm", organisation_id=org, name="Elm Surgery",
                          kind="gp_practice", email="elm.surgery@example.nhs.uk")
        admin.create_team(conn, team_id="dn", organisation_id=org, name="District Nursing",
                          kind="district_nursing")
        hana = admin.create_clinician(conn, username="hana", display_name="Hana Heart",
                                      teams=["hf"], password=PASSWORD)
        dan = admin.create_clinician(conn, username="dan", display_name="Dan District",
                                     teams=["dn"])
        dora = admin.create_patient(conn, display_name="Dora Finch", teams=["hf", "gp-elm"],
                                    lead="hf", nhs_number="9434765927",
                                    date_of_birth=date(1948, 5, 17))
        sam = admin.create_patient(conn, display_name="Sam Still", teams=["hf"])
        conn.execute("INSERT INTO hub (id) VALUES ('hub-dora'), ('hub-sam')")
        conn.execute("INSERT INTO enrolment (hub_id, patient_id, valid_from, valid_to) VALUES"
                     " ('hub-dora', %s, %s, %s), ('hub-dora', %s, %s, %s),"
                     " ('hub-sam', %s, now() - interval '3 days', NULL)",
                     (dora, datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC),
                      dora, START, DISCHARGE, sam))
        for at, status, note in [
                (datetime(2026, 10, 1, tzinfo=UTC), "discharged", "first episode ended"),
                (START, "active", "enrolled again"), (nov(10, 12), "admitted", "chest pain"),
                (nov(12, 10), "active", "home"),
                (DISCHARGE, "discharged", "Stable, back to GP care")]:
            conn.execute("INSERT INTO patient_status_event (patient_id, at, status, note,"
                         " clinician_id, team_id) VALUES (%s, %s, %s, %s, %s, 'hf')",
                         (dora, at, status, note, hana.id))
        conn.execute("UPDATE patient SET status = 'discharged' WHERE id = %s", (dora,))
        for at, sys_, dia, mean, pulse in BP:
            _reading(conn, dora, "blood_pressure", at, {"systolic": sys_, "diastolic": dia,
                                                        "mean_arterial": mean,
                                                        "pulse_rate": pulse})
        for at, spo2, pulse in SPO2:
            values: dict[str, float] = {"spo2": spo2, "pulse_rate": pulse}
            if spo2 == 92:
                values["perfusion_index"] = 3.5
            _reading(conn, dora, "spo2", at, values)
        for at, kg in WEIGHT:
            _reading(conn, dora, "weight", at, {"body_weight": kg})
        # out of the episode: the previous one, and after the discharge
        _reading(conn, dora, "blood_pressure", datetime(2026, 9, 15, 8, tzinfo=UTC),
                 {"systolic": 190, "diastolic": 110, "mean_arterial": 137, "pulse_rate": 99})
        _reading(conn, dora, "blood_pressure", nov(20, 11),
                 {"systolic": 200, "diastolic": 120, "mean_arterial": 147, "pulse_rate": 101})
        _reading(conn, dora, "spo2", nov(21, 8), {"spo2": 85, "pulse_rate": 110})
        bp = _alert(conn, dora, "home_bp_average", "amber", "Home BP average 148/90",
                    nov(9, 20, 5))
        acknowledge(conn, bp, clinician_id=hana.id, now=nov(9, 20, 30))
        with conn.transaction():
            record_event(conn, bp, "escalated", at=nov(9, 20, 20), detail={"level": 1},
                         state="open", team_id="hf", patient_id=dora)
        resolve(conn, bp, clinician_id=hana.id, outcome="medication_changed",
                note="Ramipril increased", now=nov(10, 9))
        low = _alert(conn, dora, "spo2_low", "red", "SpO2 92 %", nov(8, 8, 5))
        conn.execute("UPDATE alert SET state = 'auto_resolved', resolved_at = %s WHERE id = %s",
                     (nov(8, 20), low))
        old = _alert(conn, dora, "bp_severe", "red", "BP 190/110",
                     datetime(2026, 9, 15, 8, 5, tzinfo=UTC))
        conn.execute("UPDATE alert SET state = 'resolved', resolved_at = %s WHERE id = %s",
                     (datetime(2026, 9, 15, 9, tzinfo=UTC), old))
        for at, text in [(nov(4, 11), "Confident with the cuff"),
                         (nov(19, 14), "Discussed discharge with the GP"),
                         (datetime(2026, 9, 20, tzinfo=UTC), "From the first episode")]:
            conn.execute("INSERT INTO patient_note (patient_id, at, clinician_id, team_id, text)"
                         " VALUES (%s, %s, %s, 'hf', %s)", (dora, at, hana.id, text))
        conn.execute(
            "INSERT INTO handover (kind, patient_id, from_team, to_team, note, state,"
            " offered_by, offered_at, respond_by, decided_at) VALUES ('lead', %s, 'hf',"
            " 'gp-elm', %s::jsonb, 'accepted', %s, %s, %s, %s)",
            (dora, orjson.dumps(SBAR).decode(), hana.id, nov(19, 15), nov(19, 16),
             nov(19, 16)))
    return Ward(url, dora, sam, {"bp": bp, "low": low, "old": old},
                {"hana": hana.api_token, "dan": dan.api_token})


@pytest.fixture(scope="module")
def ward(postgres_server: Any) -> Iterator[tuple[Ward, str]]:
    from tests.conftest import _TEMPLATE

    url = postgres_server.create_database(f"discharge{id(postgres_server)}",
                                          template=_TEMPLATE)
    world = seed(url)
    with running_api(Settings(database_url=url)) as base:
        yield world, base


def _get(base: str, token: str, path: str) -> httpx.Response:
    return httpx.get(base + path, timeout=60, headers={"Authorization": f"Bearer {token}"})


def test_the_episode_runs_from_the_enrolment_to_the_discharge(ward: tuple[Ward, str]) -> None:
    world, _ = ward
    with psycopg.connect(world.url) as conn:
        ep = discharge_summary.episode(conn, world.dora, datetime.now(UTC))
        assert (ep.start, ep.end, ep.ended) == (START, DISCHARGE, True)
        still = discharge_summary.episode(conn, world.sam, datetime.now(UTC))
        assert still.ended is False


def test_the_statistics_are_the_hand_computed_ones(ward: tuple[Ward, str]) -> None:
    world, base = ward
    body = _get(base, world.tokens["hana"],
                f"/api/patients/{world.dora}/discharge-summary").json()
    assert body["episode"] == {"from": START.isoformat(), "to": DISCHARGE.isoformat(),
                               "ended": True}
    got = {k["kind"]: {m["metric"]: (m["count"], m["min"], m["max"], m["mean"])
                       for m in k["metrics"]} for k in body["kinds"]}
    assert got.keys() == EXPECTED.keys()
    for kind, metrics in EXPECTED.items():
        assert got[kind].keys() == metrics.keys(), kind
        for metric, (count, low, high, mean) in metrics.items():
            assert got[kind][metric][:3] == (count, low, high), (kind, metric)
            assert got[kind][metric][3] == pytest.approx(mean), (kind, metric)
    assert {k["kind"]: k["readings"] for k in body["kinds"]} == {
        "blood_pressure": 4, "spo2": 4, "weight": 3}


def test_the_alerts_notes_handovers_and_statuses_of_the_episode(
        ward: tuple[Ward, str]) -> None:
    world, base = ward
    body = _get(base, world.tokens["hana"],
                f"/api/patients/{world.dora}/discharge-summary").json()
    alerts = {a["id"]: a for a in body["alerts"]}
    assert list(alerts) == [world.alerts["low"], world.alerts["bp"]]  # opening order
    bp = alerts[world.alerts["bp"]]
    assert (bp["state"], bp["outcome"], bp["resolve_note"], bp["resolved_by"],
            bp["acknowledged_by"], bp["escalations"]) == (
        "resolved", "medication_changed", "Ramipril increased", "Hana Heart", "Hana Heart", 1)
    assert alerts[world.alerts["low"]]["state"] == "auto_resolved"
    assert [n["text"] for n in body["notes"]] == ["Confident with the cuff",
                                                  "Discussed discharge with the GP"]
    assert [(h["from_team"], h["to_team"], h["state"], h["note"]) for h in body["handovers"]
            ] == [("Heart Failure", "Elm Surgery", "accepted", SBAR)]
    assert [s["status"] for s in body["statuses"]] == ["active", "admitted", "active",
                                                      "discharged"]
    assert [t["id"] for t in body["care_team"]] == ["hf", "gp-elm"]


def _mean(v: float) -> str:
    return f"{v:.1f}"


def test_the_page_and_the_pdf_say_the_same(ward: tuple[Ward, str]) -> None:
    from pypdf import PdfReader

    world, base = ward
    page = _get(base, world.tokens["hana"], f"/patients/{world.dora}/discharge-summary")
    assert page.status_code == 200
    html = page.text
    rows = dict(re.findall(r'<tr data-metric="(\w+)">(.*?)</tr>', html, re.S))
    assert set(rows) == {m for metrics in EXPECTED.values() for m in metrics}
    assert "<svg" in html and "Monitoring continues" not in html
    response = _get(base, world.tokens["hana"], f"/api/patients/{world.dora}/discharge-summary.pdf")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    timing = re.search(r"pdf;dur=(\d+)", response.headers["server-timing"])
    assert timing is not None
    print(f"discharge summary PDF printed in {timing.group(1)} ms "
          f"({len(response.content)} bytes)")
    reader = PdfReader(io.BytesIO(response.content))
    # NFKC: Chromium prints "fi" as a ligature, which pypdf reads back as one letter
    text = unicodedata.normalize("NFKC", " ".join(
        " ".join((page.extract_text() or "").split()) for page in reader.pages))
    for needle in ("Discharge summary: Dora Finch", "9434765927", "Elm Surgery",
                   "Home BP average 148/90", "medication changed", "Ramipril increased",
                   "SpO2 92 %", "Confident with the cuff", "Discussed discharge with the GP",
                   "GP review in 2 weeks", "Stable, back to GP care",
                   "Sun 1 Nov 2026 09:00 GMT", "Fri 20 Nov 2026 10:30 GMT"):
        assert needle in text, needle
    for kind, metrics in EXPECTED.items():
        for _metric, (count, low, high, mean) in metrics.items():
            assert f"{count} {low:g} {high:g} {_mean(mean)}" in text, (kind, _metric)
    for outside in ("From the first episode", "BP 190/110"):
        assert outside not in text


def test_a_patient_still_monitored_gets_a_summary_so_far(ward: tuple[Ward, str]) -> None:
    world, base = ward
    page = _get(base, world.tokens["hana"], f"/patients/{world.sam}/discharge-summary")
    assert page.status_code == 200
    assert "Monitoring continues" in page.text and "No readings in the episode." in page.text
    body = _get(base, world.tokens["hana"], f"/api/patients/{world.sam}/discharge-summary"
                ).json()
    assert body["episode"]["ended"] is False
    end = datetime.fromisoformat(body["episode"]["to"])
    assert abs(end - datetime.now(UTC)) < timedelta(minutes=1)


def test_outside_the_care_team_it_is_404(ward: tuple[Ward, str]) -> None:
    world, base = ward
    for path in (f"/patients/{world.dora}/discharge-summary",
                 f"/api/patients/{world.dora}/discharge-summary",
                 f"/api/patients/{world.dora}/discharge-summary.pdf"):
        response = _get(base, world.tokens["dan"], path)
        assert response.status_code == 404, path
        assert "Dora" not in response.text


@pytest.mark.browser
def test_the_summary_page_in_a_browser(ward: tuple[Ward, str]) -> None:
    """Reached from the patient's page; axe-core finds no serious or critical violation at
    1280 and 768 wide; the charts are drawn (inline SVG) under the Content Security
    Policy, which refuses nothing."""
    world, base = ward
    with chromium() as browser, signed_in(browser, base, "hana") as (page, refused):
        page.goto(f"{base}/patients/{world.dora}")
        page.get_by_role("link", name="Discharge summary").click()
        page.wait_for_url(re.compile(rf"/patients/{world.dora}/discharge-summary$"))
        check_accessibility(page, page.url, "discharge")
        assert page.locator("svg.svg-chart").count() == 3
        assert page.locator("svg.svg-chart polyline").count() == 4  # systolic, diastolic
        mean = page.locator("#kind-blood_pressure tr[data-metric=systolic] td").nth(3)
        assert mean.inner_text() == "147.8"
        check_accessibility(page, f"{base}/patients/{world.sam}/discharge-summary",
                            "still-monitored")
        assert refused == []
