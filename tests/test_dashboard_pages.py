"""The care-team dashboard in a real browser (headless Chromium, Playwright), issue 8.

One seeded clinic and one API server for the module: two nurses on different teams
whose caseloads overlap in one shared patient, and an admin.  Nurse A sees only her
teams' alerts, acknowledges the shared patient's alert in the queue, and nurse B's
queue (another browser context) shows it live while B is typing a note; the patient
page draws the readings with the patient's own thresholds; axe-core finds no serious
or critical violation on any page.  Screenshots go to /tmp/shots.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    ViewportSize,
    expect,
)

from alerts.lifecycle import apply_finding
from alerts.model import Finding, Severity, WindowReading
from alerts.ruleset import load_ruleset
from alerts.settings_store import set_patient_rule
from homeward.settings import Settings
from server import admin
from tests.api_support import running_api
from tests.browser_support import chromium

# one worker, one seeded clinic and one server for the whole module
pytestmark = [pytest.mark.integration, pytest.mark.browser,
              pytest.mark.xdist_group("dashboard-pages")]

PASSWORD = "a long enough test password"
SHOTS = Path("/tmp/shots")
DESKTOP = ViewportSize(width=1280, height=800)
TABLET = ViewportSize(width=768, height=1024)


@dataclass
class Clinic:
    url: str
    dora: int      # district nursing only
    harry: int     # heart failure only
    sam: int       # both teams: the shared patient
    dora_alert: int
    harry_alert: int
    sam_alert: int
    kim_alert: int  # district nursing, amber: the keyboard test's to acknowledge
    system_alert: int  # no patient: routed to heart failure, info


def _reading(conn: psycopg.Connection[Any], patient: int, hub: str, device: str, kind: str,
             at: datetime, values: dict[str, float]) -> WindowReading:
    row = conn.execute(
        'INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, "values",'
        " received_at) VALUES (gen_random_uuid(), %s, %s, %s, %s, %s, %s, now())"
        " RETURNING id::text", (at, kind, hub, patient, device,
                                orjson.dumps(values).decode())).fetchone()
    assert row is not None
    return WindowReading(row[0], kind, at, values)


def _open_alert(conn: psycopg.Connection[Any], patient: int, rule_id: str, team: str,
                severity: Severity, summary: str, readings: list[WindowReading],
                at: datetime) -> int:
    rule = load_ruleset().by_id()[rule_id]
    with conn.transaction():
        change = apply_finding(conn, patient_id=patient, rule=rule, at=at, team_id=team,
                               finding=Finding(True, severity, summary, tuple(readings)))
        assert change is not None
        conn.execute("UPDATE alert SET next_escalation_at = %s WHERE id = %s",
                     (datetime.now(UTC) + timedelta(minutes=45), change.alert_id))
    return change.alert_id


def seed_clinic(url: str) -> Clinic:
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        org = admin.create_organisation(conn, name="Riverside Community Trust")
        admin.create_team(conn, team_id="district-nursing", organisation_id=org,
                          name="District Nursing", kind="district_nursing")
        admin.create_team(conn, team_id="heart-failure", organisation_id=org,
                          name="Heart Failure", kind="heart_failure")
        admin.create_clinician(conn, username="anna", display_name="Anna Ahmed",
                               teams=["district-nursing"], password=PASSWORD)
        admin.create_clinician(conn, username="ben", display_name="Ben Brown",
                               teams=["heart-failure"], password=PASSWORD)
        admin.create_clinician(conn, username="ada", display_name="Ada Admin", role="admin",
                               teams=["district-nursing"], password=PASSWORD)
        dora = admin.create_patient(conn, display_name="Dora District", nhs_number="9434765919",
                                    teams=["district-nursing"])
        harry = admin.create_patient(conn, display_name="Harry Heart", nhs_number="9434765870",
                                     teams=["heart-failure"])
        sam = admin.create_patient(conn, display_name="Sam Shared", nhs_number="9434765838",
                                   teams=["district-nursing", "heart-failure"])
        conn.execute("UPDATE patient SET date_of_birth = '1948-05-17' WHERE id = %s", (sam,))
        for hub, patient, address, kind in [("hub-dora", dora, "C4:7C:8D:00:00:01",
                                             "blood_pressure"),
                                            ("hub-harry", harry, "C4:7C:8D:00:00:02", "weight"),
                                            ("hub-sam", sam, "C4:7C:8D:00:00:03", "spo2")]:
            admin.create_hub(conn, hub_id=hub)
            admin.enrol(conn, hub_id=hub, patient_id=patient, valid_from=now - timedelta(days=30))
            admin.pair_device(conn, hub_id=hub, address=address, kind=kind)
        status = {"state": "online", "agent": "0.9.0", "outbox_depth": 3,
                  "devices": [{"address": "C4:7C:8D:00:00:03", "kind": "spo2", "battery": 14,
                               "connected": True}]}
        conn.execute("UPDATE hub SET state = 'online', last_status = %s::jsonb,"
                     " last_status_at = %s, last_seen_at = %s WHERE id = 'hub-sam'",
                     (orjson.dumps(status).decode(), now - timedelta(minutes=5),
                      now - timedelta(minutes=2)))
        conn.execute("UPDATE hub SET state = 'offline', last_seen_at = %s WHERE id = 'hub-harry'",
                     (now - timedelta(hours=7),))
        # Sam: a week of oximetry three times a day, the last one low.
        sam_readings = [_reading(conn, sam, "hub-sam", "C4:7C:8D:00:00:03", "spo2",
                                 now - timedelta(hours=8 * i + 1),
                                 {"spo2": 93 + (i % 4), "pulse_rate": 70 + i % 9})
                        for i in range(21, 0, -1)]
        sam_readings.append(_reading(conn, sam, "hub-sam", "C4:7C:8D:00:00:03", "spo2",
                                     now - timedelta(minutes=20), {"spo2": 87, "pulse_rate": 96}))
        # Sam's own limits (COPD): amber at 90 %, red at 88 %, instead of 94/92.
        set_patient_rule(conn, patient_id=sam, rule_id="spo2_low", set_by=None,
                         valid_from=now - timedelta(days=10), note="COPD baseline 90-92 %",
                         params={"levels": {"amber": {"metric": "spo2", "op": "<=", "value": 90},
                                            "red": {"metric": "spo2", "op": "<=", "value": 88}}})
        sam_alert = _open_alert(conn, sam, "spo2_low", "district-nursing", Severity.RED,
                                "SpO2 87 % (red)", sam_readings[-1:], now - timedelta(minutes=19))
        bp = _reading(conn, dora, "hub-dora", "C4:7C:8D:00:00:01", "blood_pressure",
                      now - timedelta(hours=2),
                      {"systolic": 192, "diastolic": 110, "mean_arterial": 137, "pulse_rate": 71})
        dora_alert = _open_alert(conn, dora, "bp_severe", "district-nursing", Severity.RED,
                                 "Severe hypertension 192/110", [bp], now - timedelta(hours=2))
        # the alert's e-mail: refused once by the mail server, then delivered
        sent = conn.execute(
            "INSERT INTO notification (alert_id, channel, target, team_id, level, reason,"
            " idempotency_key, payload, state, attempts, created_at, next_attempt_at,"
            " delivered_at) VALUES (%s, 'email', 'dn@example.org', 'district-nursing', 0,"
            " 'opened', 'dora-1', '{}', 'delivered', 2, %s, %s, %s) RETURNING id",
            (dora_alert, now - timedelta(hours=2), now, now - timedelta(minutes=110))).fetchone()
        assert sent is not None
        conn.execute("INSERT INTO notification_attempt (notification_id, at, ok, duration_ms,"
                     " error) VALUES (%s, %s, false, 41.5, '451 4.7.1 try again later'),"
                     " (%s, %s, true, 38.2, NULL)",
                     (sent[0], now - timedelta(hours=2), sent[0], now - timedelta(minutes=110)))
        weights = [_reading(conn, harry, "hub-harry", "C4:7C:8D:00:00:02", "weight",
                            now - timedelta(days=d, hours=9), {"body_weight": w})
                   for d, w in [(3, 81.0), (2, 81.9), (1, 83.4)]]
        harry_alert = _open_alert(conn, harry, "hf_weight_change", "heart-failure",
                                  Severity.AMBER, "Weight up 2.4 kg in 3 days", weights,
                                  now - timedelta(days=1, hours=9))
        kim = admin.create_patient(conn, display_name="Kim Keyboard", teams=["district-nursing"])
        temp = _reading(conn, kim, "hub-dora", "C4:7C:8D:00:00:01", "temperature",
                        now - timedelta(hours=5), {"body_temperature": 38.4})
        kim_alert = _open_alert(conn, kim, "news2", "district-nursing", Severity.AMBER,
                                "NEWS2 5 (partial)", [temp], now - timedelta(hours=5))
        system = conn.execute(
            "INSERT INTO alert (category, rule_id, rule, severity, summary, team_id, opened_at,"
            " updated_at, last_triggered_at) VALUES ('system', 'delivery_failed:hf-webhook',"
            " %s::jsonb, 'info', 'Webhook to Heart Failure failing', 'heart-failure', %s, %s,"
            " %s) RETURNING id", (orjson.dumps({"id": "delivery_failed", "kind": "system",
                                                "title": "Notification delivery failing"}
                                               ).decode(), now, now, now)).fetchone()
        assert system is not None
    return Clinic(url, dora, harry, sam, dora_alert, harry_alert, sam_alert, kim_alert,
                  int(system[0]))


@pytest.fixture(scope="module")
def clinic(postgres_server: Any) -> Iterator[tuple[Clinic, str]]:
    from tests.conftest import _TEMPLATE

    url = postgres_server.create_database(f"dash{id(postgres_server)}", template=_TEMPLATE)
    world = seed_clinic(url)
    with running_api(Settings(database_url=url)) as base:
        yield world, base


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def _signed_in(browser: Browser, base: str, username: str,
               viewport: ViewportSize = DESKTOP) -> tuple[BrowserContext, Page]:
    context = browser.new_context(viewport=viewport, timezone_id="Europe/London",
                                  locale="en-GB")
    page = context.new_page()
    page.goto(base + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/(queue)?$"))
    return context, page


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.hazard("H-012")
def test_nurse_a_sees_only_her_teams_alerts_and_patients(browser: Browser,
                                                         clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    context, page = _signed_in(browser, base, "anna")
    try:
        # signing in lands on the queue (the page at / used to list every team's alerts)
        expect(page).to_have_url(base + "/queue")
        rows = page.locator("#alerts tbody tr[data-alert-id]")
        expect(rows).to_have_count(3)
        ids = [int(r.get_attribute("data-alert-id") or 0) for r in rows.all()]
        # attention order: red before amber (within a severity, unacknowledged and oldest
        # first: tests/test_dashboard_pages.py::test_the_queue_is_in_attention_order)
        assert set(ids[:2]) == {world.dora_alert, world.sam_alert}
        assert ids[2] == world.kim_alert
        expect(page.locator("#counts [data-severity=red]")).to_have_text("2")
        expect(page.locator("#counts [data-severity=amber]")).to_have_text("1")
        expect(page.locator("#alerts")).not_to_contain_text("Harry Heart")
        first = page.locator(f"#alert-{world.dora_alert}")
        expect(first).to_contain_text("192/110 mmHg")
        expect(first).to_contain_text("2 h ago")
        exact = re.compile(r"\d\d:\d\d:\d\d (GMT|BST)")
        expect(first.locator("time").first).to_have_attribute("title", exact)
        expect(first).to_contain_text(re.compile(r"escalates in \d+ min"))

        page.goto(base + "/caseload")
        names = page.locator("#caseload tbody tr[data-patient-id] td:nth-child(2) a")
        expect(names).to_have_text(["Dora District", "Sam Shared", "Kim Keyboard"])
        # each latest reading with its own age, exact on hover (H-012)
        latest = page.locator("#caseload tr", has_text="Dora District").locator(
            "td[data-label='Latest readings'] .sub", has_text="192/110 mmHg")
        expect(latest).to_contain_text("2 h ago")
        expect(latest.locator("time")).to_have_attribute("title", exact)

        for path in (f"/patients/{world.harry}", f"/alerts/{world.harry_alert}"):
            response = page.goto(base + path)
            assert response is not None and response.status == 404, path
            expect(page.get_by_role("heading", name="Not found")).to_be_visible()
            expect(page.locator("body")).not_to_contain_text("Harry")
        with psycopg.connect(world.url) as conn:
            seen = conn.execute(
                "SELECT a.outcome, count(*) FROM access_audit a JOIN clinician c"
                " ON c.id = a.clinician_id WHERE c.username = 'anna' AND (a.patient_id = %s"
                " OR a.resource IN (%s, %s)) GROUP BY 1",
                (world.harry, f"/patients/{world.harry}", f"/alerts/{world.harry_alert}")
            ).fetchall()
        assert dict(seen) == {"not_found": 2}  # audited, and no successful read of Harry
    finally:
        context.close()


def test_acknowledged_in_one_queue_shows_live_in_another_without_losing_typing(
        browser: Browser, clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    ctx_b, page_b = _signed_in(browser, base, "ben")
    ctx_a, page_a = _signed_in(browser, base, "anna")
    try:
        page_b.goto(base + "/queue")
        expect(page_b.locator("#live")).to_have_text("live", timeout=10_000)
        row_b = page_b.locator(f"#alert-{world.sam_alert}")
        expect(row_b.locator('[data-col="state"]')).to_contain_text("open")
        # Ben starts a note on the shared patient's alert and is still typing ...
        row_b.get_by_text("More actions").click()
        note_b = row_b.get_by_label("Add a note")
        note_b.fill("Rang Sam, no answer, trying daughter")

        page_a.goto(base + "/queue")
        row_a = page_a.locator(f"#alert-{world.sam_alert}")
        row_a.get_by_role("button", name=re.compile("^Acknowledge")).click()
        expect(row_a.locator('[data-col="state"]')).to_contain_text("acknowledged by Anna Ahmed")

        # ... Ben's queue shows it without a reload, and his words are still there.
        expect(row_b.locator('[data-col="state"]')).to_contain_text(
            "acknowledged by Anna Ahmed", timeout=10_000)
        expect(row_b.locator('[data-col="next"]')).to_contain_text("re-opens in")
        expect(row_b.locator("button.primary")).to_contain_text("Renew acknowledgement")
        expect(note_b).to_have_value("Rang Sam, no answer, trying daughter")
        expect(note_b).to_be_focused()
        note_b.press("Enter")
        expect(row_b.locator(".form-status")).to_have_text("Note added")
        _shot(page_b, "queue-b-after-live-ack-1280")

        page_b.goto(base + f"/alerts/{world.sam_alert}")
        history = page_b.locator("ol.history")
        expect(history).to_contain_text("acknowledged by Anna Ahmed")
        expect(history).to_contain_text("Rang Sam, no answer, trying daughter")
    finally:
        ctx_a.close()
        ctx_b.close()


def test_the_patient_page_draws_the_readings_with_the_patients_own_thresholds(
        browser: Browser, clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    context, page = _signed_in(browser, base, "anna")
    try:
        page.goto(base + f"/patients/{world.sam}?range=7d")
        expect(page.get_by_role("heading", name="Sam Shared")).to_be_visible()
        expect(page.locator("dl.facts")).to_contain_text("9434765838")
        chart = page.locator("figure#chart-spo2")
        expect(chart.locator("canvas")).to_have_count(1)
        expect(chart).to_have_attribute("data-thresholds-drawn", "2")
        expect(chart.locator(".limits")).to_contain_text("red ≤ 88")
        expect(chart.locator(".limits")).to_contain_text("amber ≤ 90")
        # 21 of the 22 readings fall within 7 days (the oldest was 169 h ago)
        assert int(chart.get_attribute("data-points") or 0) == 21
        drawn = page.evaluate(
            """() => {
                const fig = document.querySelector('figure#chart-spo2');
                const canvas = fig.querySelector('canvas');
                const ctx = canvas.getContext('2d');
                const img = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
                let inked = 0;
                for (let i = 3; i < img.length; i += 4) if (img[i] > 0) inked++;
                const lines = JSON.parse(fig.dataset.thresholdPixels).map((p) => {
                    const px = ctx.getImageData(p.x, p.y, 1, 1).data;
                    return {severity: p.severity, rgb: [px[0], px[1], px[2]], alpha: px[3]};
                });
                return {inked, lines};
            }""")
        assert drawn["inked"] > 2000, drawn
        colours = {line["severity"]: line["rgb"] for line in drawn["lines"]}
        assert colours == {"red": [0xb3, 0x26, 0x1e], "amber": [0xd8, 0x92, 0x00]}, drawn
        expect(page.locator("#readings tbody tr")).to_have_count(21)
        expect(page.locator("#readings tbody tr").first).to_contain_text("87 %")
        _shot(page, "patient-1280")
        page.set_viewport_size(TABLET)
        _shot(page, "patient-768")
    finally:
        context.close()


PAGES = [("queue", "anna", "/queue"), ("alert", "anna", "/alerts/{dora_alert}"),
         ("alert-news2", "anna", "/alerts/{kim_alert}"),
         ("alert-system", "ben", "/alerts/{system_alert}"),
         ("caseload", "anna", "/caseload"), ("patient", "anna", "/patients/{sam}"),
         ("hubs", "ada", "/hubs")]


@pytest.mark.parametrize(("name", "user", "path"), PAGES, ids=[p[0] for p in PAGES])
def test_no_serious_or_critical_accessibility_violations(
        browser: Browser, clinic: tuple[Clinic, str], name: str, user: str, path: str) -> None:
    world, base = clinic
    context, page = _signed_in(browser, base, user)
    try:
        for label, viewport in (("1280", DESKTOP), ("768", TABLET)):
            page.set_viewport_size(viewport)
            response = page.goto(base + path.format(**vars(world)))
            assert response is not None and response.status == 200
            if name != "queue":  # the queue holds its event stream open: never idle
                page.wait_for_load_state("networkidle")
            results = Axe().run(page)
            SHOTS.mkdir(parents=True, exist_ok=True)
            (SHOTS / f"axe-{name}-{label}.json").write_bytes(orjson.dumps(
                {"passes": len(results.response["passes"]),
                 "violations": [(v["id"], v["impact"], len(v["nodes"]))
                                for v in results.response["violations"]]}))
            bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
                   for v in results.response["violations"]
                   if v["impact"] in ("serious", "critical")]
            assert bad == [], f"{name} at {label}: {bad}"
            _shot(page, f"{name}-{label}")
    finally:
        context.close()


def test_a_personal_threshold_set_on_the_patient_page_is_drawn_and_kept_with_its_reason(
        browser: Browser, clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    context, page = _signed_in(browser, base, "anna")
    try:
        page.goto(base + f"/patients/{world.dora}?range=24h")
        limits = page.locator("figure#chart-blood_pressure .limits")
        expect(limits).to_contain_text("systolic red ≥ 180")
        form = page.locator("form#rule-bp_severe")
        form.get_by_label("Raise: systolic ≥").fill("170")
        reason = form.get_by_label("Reason (required)")
        form.get_by_role("button", name="Save severe hypertension").click()
        # without a reason the browser's own check stops the form: nothing is sent
        assert reason.evaluate("el => el.validity.valueMissing") is True
        expect(form.locator(".form-status")).to_be_empty()
        reason.fill("Known hypertensive; GP asked for 170")
        form.get_by_role("button", name="Save severe hypertension").click()
        expect(limits).to_contain_text("systolic red ≥ 170")
        history = page.locator("section[aria-labelledby=h-thresholds] ol.history")
        expect(history).to_contain_text("Known hypertensive; GP asked for 170")
        with psycopg.connect(world.url) as conn:
            row = conn.execute("SELECT params, note, set_by IS NOT NULL FROM patient_rule_setting"
                               " WHERE patient_id = %s AND rule_id = 'bp_severe'"
                               " AND valid_to IS NULL", (world.dora,)).fetchone()
        assert row is not None
        assert row[0]["when"]["any"][0] == {"metric": "systolic", "op": ">=", "value": 170}
        assert row[1:] == ("Known hypertensive; GP asked for 170", True)
    finally:
        context.close()


def test_the_queue_is_in_attention_order(clinic: tuple[Clinic, str]) -> None:
    """Red before amber; within a severity unacknowledged before acknowledged, then the
    longest wait first."""
    from server import triage
    from server.access import load_scope

    world, _ = clinic
    with psycopg.connect(world.url, autocommit=True) as conn:
        ada = conn.execute("SELECT id FROM clinician WHERE username = 'ada'").fetchone()
        assert ada is not None
        scope = load_scope(conn, int(ada[0]))
        assert scope is not None
        rows = triage.queue(conn, scope)
    keys = [(triage.SEVERITIES.index(r["severity"]), r["state"] == "acknowledged",
             r["opened_at"]) for r in rows]
    assert len(rows) >= 3 and keys == sorted(keys)
    by_severity = {s: sum(r["severity"] == s for r in rows) for s in triage.SEVERITIES}
    assert triage.counts(rows) == by_severity


def test_caseload_filters_and_sorts_with_severity_in_words(
        browser: Browser, clinic: tuple[Clinic, str]) -> None:
    _, base = clinic
    context, page = _signed_in(browser, base, "anna")
    try:
        names = page.locator("#caseload tbody tr[data-patient-id] td:nth-child(2) a")
        page.goto(base + "/caseload")
        page.get_by_label("Name or NHS number").fill("9434765838")
        page.get_by_role("button", name="Filter").click()
        expect(names).to_have_text(["Sam Shared"])
        page.goto(base + "/caseload")
        page.get_by_role("link", name="Patient").click()
        expect(names).to_have_text(["Dora District", "Kim Keyboard", "Sam Shared"])
        expect(page.locator("th[aria-sort=ascending]")).to_have_text("Patient ▲")
        page.get_by_role("link", name="Patient").click()
        expect(names).to_have_text(["Sam Shared", "Kim Keyboard", "Dora District"])
        page.get_by_label("Highest open alert").select_option("amber")
        page.get_by_role("button", name="Filter").click()
        expect(names).to_have_text(["Kim Keyboard"])
        expect(page.locator("#caseload tbody tr").first.locator(".sev")).to_have_text("amber")
    finally:
        context.close()


@pytest.mark.hazard("H-014")
def test_hubs_are_for_admins(browser: Browser, clinic: tuple[Clinic, str]) -> None:
    _, base = clinic
    context, page = _signed_in(browser, base, "ada")
    try:
        page.goto(base + "/hubs")
        sam = page.locator("#hubs tr[data-hub-id=hub-sam]")
        expect(sam).to_contain_text("online")
        expect(sam).to_contain_text("14 % low")
        expect(sam.locator("td.num")).to_have_text("3")
        expect(page.locator("#hubs tr[data-hub-id=hub-harry]")).to_contain_text("offline")
        expect(page.locator("#hubs tr[data-hub-id=hub-harry]")).to_contain_text("7 h ago")
    finally:
        context.close()
    context, page = _signed_in(browser, base, "anna")
    try:
        expect(page.get_by_role("link", name="Hubs")).to_have_count(0)
        response = page.goto(base + "/hubs")
        assert response is not None and response.status == 403
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    finally:
        context.close()


def test_a_nurse_acknowledges_by_keyboard_alone(browser: Browser,
                                               clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    context, page = _signed_in(browser, base, "anna", viewport=TABLET)
    try:
        page.goto(base + "/queue")
        target = page.locator(f"#alert-{world.kim_alert}").get_by_role(
            "button", name=re.compile("^Acknowledge"))
        for _ in range(60):
            page.keyboard.press("Tab")
            if target.evaluate("el => el === document.activeElement"):
                break
        else:
            pytest.fail("Tab never reached the acknowledge button")
        page.keyboard.press("Enter")
        expect(page.locator(f"#alert-{world.kim_alert} [data-col=state]")).to_contain_text(
            "acknowledged by Anna Ahmed")
        _shot(page, "queue-keyboard-768")
    finally:
        context.close()


def test_pages_work_under_a_strict_content_security_policy(
        browser: Browser, clinic: tuple[Clinic, str]) -> None:
    """No inline script or style: the patient page still draws its charts when the
    browser refuses everything but the server's own files (issue 11 will send this)."""
    world, base = clinic
    context, page = _signed_in(browser, base, "anna")
    policy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:"
    refused: list[str] = []
    strict_pages: list[str] = []
    page.on("console", lambda m: refused.append(m.text)
            if "Content Security Policy" in m.text else None)

    def strict(route: Any) -> None:
        strict_pages.append(route.request.url)
        response = route.fetch()
        route.fulfill(response=response,
                      headers={**response.headers, "content-security-policy": policy})

    try:
        page.route(re.compile(r"/(patients|alerts)/\d+"), strict)
        for path in (f"/patients/{world.sam}", f"/alerts/{world.dora_alert}"):
            page.goto(base + path)
            expect(page.locator("figure[data-chart]").first).to_have_attribute(
                "data-thresholds-drawn", re.compile(r"[1-9]"))
        assert len(strict_pages) == 2 and refused == []
    finally:
        context.close()


def test_resolving_in_the_queue_takes_the_row_and_its_count_away(
        browser: Browser, clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    context, page = _signed_in(browser, base, "ben")
    try:
        page.goto(base + "/queue")
        row = page.locator(f"#alert-{world.harry_alert}")
        expect(page.locator("#counts [data-severity=amber]")).to_have_text("1")
        row.get_by_text("More actions").click()
        resolve = row.locator("form[data-api$=resolve]")
        resolve.get_by_role("button", name="Resolve").click()
        assert resolve.get_by_label("Outcome").evaluate("el => el.validity.valueMissing")
        resolve.get_by_label("Outcome").select_option("advice_given")
        resolve.get_by_label("Note").fill("Diuretic dose reviewed by phone")
        resolve.get_by_role("button", name="Resolve").click()
        # the row is still being worked in (More actions is open), so it stays, marked,
        # until the nurse closes it; the count drops at once
        expect(page.locator("#counts [data-severity=amber]")).to_have_text("0")
        expect(row).to_contain_text("no longer in the queue")
        page.reload()
        expect(page.locator(f"#alert-{world.harry_alert}")).to_have_count(0)
        page.goto(base + f"/alerts/{world.harry_alert}")
        expect(page.locator("dl.facts")).to_contain_text("resolved")
        expect(page.locator("dl.facts")).to_contain_text("advice given")
        expect(page.locator("ol.history")).to_contain_text("Diuretic dose reviewed by phone")
        expect(page.get_by_role("heading", name="Actions")).to_have_count(0)
    finally:
        context.close()


def test_a_status_change_from_the_patient_page_lands_on_the_timeline(
        browser: Browser, clinic: tuple[Clinic, str]) -> None:
    _, base = clinic
    context, page = _signed_in(browser, base, "anna")
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        kim = page.locator("#caseload tr", has_text="Kim Keyboard")
        page.goto(base + "/caseload")
        kim.get_by_role("link", name="Kim Keyboard").click()
        form = page.locator("section[aria-labelledby=h-status] form")
        form.get_by_label("New status").select_option("away")
        form.get_by_label("Expected end (when away)").fill(
            (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT10:00"))
        form.get_by_label("Note").fill("Staying with her daughter")
        form.get_by_role("button", name="Change status").click()
        expect(page.locator("dl.facts")).to_contain_text("away")
        expect(page.locator("dl.facts")).to_contain_text("expected back")
        expect(page.locator("#timeline")).to_contain_text("Staying with her daughter")
        expect(page.locator("#timeline li").first).to_contain_text("by Anna Ahmed")
    finally:
        context.close()


def test_a_new_alert_appears_live_in_attention_order_and_is_announced(
        browser: Browser, clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    context, page = _signed_in(browser, base, "anna")
    try:
        page.goto(base + "/queue?team=district-nursing")
        expect(page.locator("#live")).to_have_text("live", timeout=10_000)
        reds = page.locator("#counts [data-severity=red]")
        before = int(reds.inner_text())
        now = datetime.now(UTC)
        with psycopg.connect(world.url, autocommit=True) as conn:
            nell = admin.create_patient(conn, display_name="Nell New",
                                        teams=["district-nursing"])
            bp = _reading(conn, nell, "hub-dora", "C4:7C:8D:00:00:01", "blood_pressure", now,
                          {"systolic": 84, "diastolic": 50, "mean_arterial": 61})
            alert = _open_alert(conn, nell, "bp_low", "district-nursing", Severity.RED,
                                "Systolic 84 (red)", [bp], now)
        row = page.locator(f"#alert-{alert}")
        expect(row).to_contain_text("Nell New", timeout=10_000)
        expect(row).to_contain_text("84/50 mmHg")
        expect(reds).to_have_text(str(before + 1))
        expect(page.locator("#queue-status")).to_have_text("A new alert is in the queue.")
        # the newest red alert waits least: last among the open reds, before any amber
        order = [r.get_attribute("data-alert-id") for r in
                 page.locator("#alerts tbody tr[data-alert-id]").all()]
        severities = [page.locator(f"#alert-{i}").get_attribute("class") for i in order]
        assert severities == sorted(severities, key=["red", "amber", "info"].index)
        open_reds = [i for i in order if page.locator(f"#alert-{i}").get_attribute(
            "data-state") == "open" and page.locator(f"#alert-{i}").get_attribute(
            "class") == "red"]
        assert open_reds[-1] == str(alert)
    finally:
        context.close()


def test_the_alert_page_says_why_cites_its_source_and_shows_every_attempt(
        browser: Browser, clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    context, page = _signed_in(browser, base, "anna")
    try:
        page.goto(base + f"/alerts/{world.dora_alert}")
        why = page.locator("section[aria-labelledby=h-rule]")
        expect(why).to_contain_text(
            "Raised (red) when systolic ≥ 180 mmHg or diastolic ≥ 120 mmHg.")
        expect(why.locator(".source")).to_contain_text("NICE NG136")
        evidence = page.locator("section[aria-labelledby=h-evidence] tbody tr")
        expect(evidence).to_have_count(1)
        expect(evidence).to_contain_text("192/110 mmHg, pulse 71/min")
        chart = page.locator("figure#chart-blood_pressure1")
        expect(chart).to_have_attribute("data-points", "1")
        expect(chart).to_have_attribute("data-thresholds-drawn", "2")
        sent = page.locator("section[aria-labelledby=h-history] table tbody tr")
        expect(sent).to_have_count(1)
        expect(sent).to_contain_text("dn@example.org")
        attempts = sent.locator("td").last.locator(".sub")
        expect(attempts).to_have_count(2)
        expect(attempts.first).to_contain_text("failed (42 ms) — 451 4.7.1 try again later")
        expect(attempts.last).to_contain_text("ok (38 ms)")
        expect(page.locator("ol.history li").first).to_contain_text("opened")
        # a NEWS2 alert covers four kinds; only the kinds with readings get a chart
        page.goto(base + f"/alerts/{world.kim_alert}")
        expect(page.locator("figure[data-chart]")).to_have_count(1)
        expect(page.locator("figure[data-chart] figcaption")).to_have_text("Temperature (°C)")
    finally:
        context.close()


def test_snoozing_in_the_queue_says_until_when(browser: Browser,
                                               clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    context, page = _signed_in(browser, base, "ben")
    try:
        page.goto(base + "/queue?team=heart-failure")
        row = page.locator(f"#alert-{world.system_alert}")
        expect(row).to_contain_text("system")
        row.get_by_text("More actions").click()
        row.get_by_label("Snooze for").select_option("120")
        row.get_by_role("button", name="Snooze").click()
        expect(row.locator(".form-status")).to_have_text("Snoozed")
        expect(row.locator("[data-col=state]")).to_contain_text("snoozed until")
        with psycopg.connect(world.url) as conn:
            left = conn.execute("SELECT snoozed_until - now() FROM alert WHERE id = %s",
                                (world.system_alert,)).fetchone()
        assert left is not None and timedelta(minutes=118) < left[0] <= timedelta(hours=2)
    finally:
        context.close()


def test_dense_oximetry_is_drawn_in_hourly_buckets_to_the_last_hour(
        browser: Browser, clinic: tuple[Clinic, str]) -> None:
    """A day of oximetry every 4 s (21,600 readings) is more than a chart draws point by
    point: the page asks for hourly buckets, so the chart reaches the latest hour
    instead of stopping where the raw series' row limit (20,000, oldest first) cut it."""
    world, base = clinic
    with psycopg.connect(world.url, autocommit=True) as conn:
        olly = admin.create_patient(conn, display_name="Olly Oximeter", teams=["heart-failure"])
        conn.execute(
            'INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, "values",'
            " received_at) SELECT gen_random_uuid(), now() - make_interval(secs => 4 * i),"
            " 'spo2', 'hub-sam', %s, 'C4:7C:8D:00:00:03',"
            " jsonb_build_object('spo2', 90 + i %% 7, 'pulse_rate', 70), now()"
            " FROM generate_series(1, 21600) AS i", (olly,))
    context, page = _signed_in(browser, base, "ben")
    try:
        page.goto(base + f"/patients/{olly}?range=24h")
        chart = page.locator("figure#chart-spo2")
        data = orjson.loads(chart.get_attribute("data-chart") or "{}")
        series = data["series"][0]
        assert series["resolution"] == "hour"
        assert 24 <= len(series["points"]) <= 25
        last = datetime.fromisoformat(series["points"][-1]["t"])
        assert datetime.now(UTC) - last < timedelta(hours=1)
        expect(chart).to_have_attribute("data-points", str(len(series["points"])))
        expect(page.locator("#readings tbody tr")).to_have_count(100)
        newest = page.locator("#readings tbody tr time").first.get_attribute("datetime")
        assert newest and datetime.now(UTC) - datetime.fromisoformat(newest) < timedelta(
            minutes=1)
    finally:
        context.close()


def test_every_page_takes_its_data_through_an_access_dependency() -> None:
    """A new page without one fails here (the OpenAPI walk of tests/test_access.py does
    not see pages: they are not in the schema)."""
    from fastapi.dependencies.models import Dependant
    from fastapi.routing import APIRoute

    from server.api import scope
    from server.api.routes import pages

    guards = {scope.list_access, scope.patient_access, scope.alert_access, scope.admin_scope}

    def calls(dependant: Dependant) -> set[object]:
        found: set[object] = {dependant.call} if dependant.call else set()
        for sub in dependant.dependencies:
            found |= calls(sub)
        return found

    routes = [r for r in pages.router.routes if isinstance(r, APIRoute)]
    assert {r.path for r in routes} >= {"/queue", "/queue/rows", "/alerts/{alert_id}",
                                       "/caseload", "/patients/{patient_id}", "/hubs", "/admin"}
    unguarded = [r.path for r in routes if not calls(r.dependant) & guards]
    assert unguarded == []
