"""Working together in the dashboard, in headless Chromium as nurses use it: a district
nurse hands an alert to the heart-failure team from the alert page with an SBAR note; a
heart-failure nurse finds it in her queue and accepts it; the alert is hers; a task is
asked from the patient page.  axe-core finds no serious or critical violation on the
queue with hand-overs waiting, the alert page with its hand-over, and the patient page
with its care team and tasks.  Screenshots go to /tmp/shots."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
from playwright.sync_api import Browser, Page, ViewportSize, expect

from alerts.model import Severity
from homeward.settings import Settings
from server import admin
from tests.api_support import running_api
from tests.browser_support import chromium
from tests.test_dashboard_pages import _open_alert, _reading

pytestmark = [pytest.mark.integration, pytest.mark.browser,
              pytest.mark.xdist_group("collaboration-pages")]

PASSWORD = "a long enough test password"
SHOTS = Path("/tmp/shots")
DESKTOP = ViewportSize(width=1280, height=800)
TABLET = ViewportSize(width=768, height=1024)


@pytest.fixture(scope="module")
def ward(postgres_server: Any) -> Iterator[tuple[dict[str, int], str]]:
    from tests.conftest import _TEMPLATE

    url = postgres_server.create_database(f"collab{id(postgres_server)}", template=_TEMPLATE)
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        org = admin.create_organisation(conn, name="Riverside Community Trust")
        gp_org = admin.create_organisation(conn, name="Riverside Practice")
        admin.create_team(conn, team_id="district-nursing", organisation_id=org,
                          name="District Nursing", kind="district_nursing")
        admin.create_team(conn, team_id="heart-failure", organisation_id=org,
                          name="Heart Failure", kind="heart_failure")
        admin.create_team(conn, team_id="riverside-gp", organisation_id=gp_org,
                          name="Riverside GP", kind="gp_practice")
        admin.create_clinician(conn, username="anna", display_name="Anna Ahmed",
                               teams=["district-nursing"], password=PASSWORD)
        admin.create_clinician(conn, username="hana", display_name="Hana Hart",
                               teams=["heart-failure"], password=PASSWORD)
        dora = admin.create_patient(conn, display_name="Dora District", nhs_number="9434765919",
                                    teams=["district-nursing", "heart-failure"],
                                    lead="district-nursing")
        admin.create_hub(conn, hub_id="hub-dora")
        admin.enrol(conn, hub_id="hub-dora", patient_id=dora, valid_from=now - timedelta(days=9))
        weights = [_reading(conn, dora, "hub-dora", "C4:7C:8D:00:00:02", "weight",
                            now - timedelta(days=d, hours=2), {"body_weight": w})
                   for d, w in [(3, 71.0), (2, 71.9), (1, 73.6)]]
        alert = _open_alert(conn, dora, "hf_weight_change", "district-nursing",
                            Severity.AMBER, "Weight up 2.6 kg in 3 days", weights,
                            now - timedelta(hours=20))
    with running_api(Settings(database_url=url)) as base:
        yield {"dora": dora, "alert": alert}, base


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def _signed_in(browser: Browser, base: str, username: str) -> Page:
    context = browser.new_context(viewport=DESKTOP, timezone_id="Europe/London",
                                  locale="en-GB")
    page = context.new_page()
    page.goto(base + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/(queue)?$"))
    return page


def _axe(page: Page, name: str) -> None:
    for label, viewport in (("1280", DESKTOP), ("768", TABLET)):
        page.set_viewport_size(viewport)
        results = Axe().run(page)
        bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
               for v in results.response["violations"] if v["impact"] in ("serious",
                                                                          "critical")]
        assert bad == [], f"{name} at {label}: {bad}"
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"collab-{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def test_a_nurse_hands_an_alert_over_and_the_other_team_accepts_it_in_its_queue(
        browser: Browser, ward: tuple[dict[str, int], str]) -> None:
    ids, base = ward
    anna = _signed_in(browser, base, "anna")
    anna.goto(f"{base}/alerts/{ids['alert']}")
    form = anna.locator("#handover form")
    form.get_by_label("To team").select_option(label="Heart Failure")
    form.get_by_label("Situation").fill("Weight up 2.6 kg in three days")
    form.get_by_label("Background").fill("Heart failure, on furosemide 40 mg")
    form.get_by_label("Assessment").fill("Fluid overload likely; breathless on stairs")
    form.get_by_label("Recommendation").fill("HF nurse to review diuretics today")
    form.get_by_role("button", name="Offer hand-over").click()
    expect(anna.locator("#handover")).to_contain_text("Offered to Heart Failure")
    expect(anna.locator("#handover")).to_contain_text("stays with District Nursing")
    _axe(anna, "alert-offered")

    hana = _signed_in(browser, base, "hana")
    hana.goto(f"{base}/queue")
    offered = hana.locator("#work li", has_text="Dora District")
    expect(offered).to_contain_text("Weight up 2.6 kg")
    expect(offered).to_contain_text("HF nurse to review diuretics today")
    _axe(hana, "queue-handover")
    offered.get_by_role("button", name=re.compile("^Accept")).click()
    expect(hana.locator("#work")).to_have_count(0)  # nothing waiting any more
    hana.goto(f"{base}/alerts/{ids['alert']}")
    expect(hana.locator("main")).to_contain_text("Heart Failure")
    hana.goto(f"{base}/patients/{ids['dora']}")
    expect(hana.locator("#timeline")).to_contain_text("handover accepted")
    expect(hana.locator("#timeline")).to_contain_text("Hana Hart")


def test_a_task_is_asked_from_the_patient_page_and_shows_in_the_teams_queue(
        browser: Browser, ward: tuple[dict[str, int], str]) -> None:
    ids, base = ward
    anna = _signed_in(browser, base, "anna")
    anna.goto(f"{base}/patients/{ids['dora']}")
    form = anna.locator("#tasks form")
    form.get_by_label("Ask team").select_option(label="Heart Failure")
    form.get_by_label("What").fill("Review her diuretic dose")
    form.get_by_label("Due").fill((datetime.now(UTC) + timedelta(hours=3)).astimezone(
        ).strftime("%Y-%m-%dT%H:%M"))
    form.get_by_label("Priority").select_option("urgent")
    form.get_by_role("button", name="Ask").click()
    expect(anna.locator("#tasks")).to_contain_text("Review her diuretic dose")
    expect(anna.locator("#care-team")).to_contain_text("Riverside Community Trust")
    _axe(anna, "patient-work")

    hana = _signed_in(browser, base, "hana")
    hana.goto(f"{base}/queue")
    task = hana.locator("#work li", has_text="Review her diuretic dose")
    task.get_by_role("button", name=re.compile("^Claim")).click()
    task = hana.locator("#work li", has_text="Review her diuretic dose")
    expect(task).to_contain_text("claimed by Hana Hart")
