"""The dashboard's admin page (/admin) in headless Chromium, over the real admin API:
an admin creates a clinician and sees her invitation link once; a token rotated and
a clinician deactivated only after the confirm, and at once; a bad NHS number is
refused in the form's status area and a good one lands in the list; a hub without a
broker provisioner says why it cannot be provisioned; a nurse gets no Admin link and a
403 page; axe-core finds nothing serious or critical."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
from playwright.sync_api import Browser, Dialog, expect

from homeward.settings import Settings
from tests.api_support import running_api
from tests.test_dashboard_pages import (
    SHOTS,
    TABLET,
    Clinic,
    _shot,
    _signed_in,
    browser,  # noqa: F401  (the module-scoped fixture)
    seed_clinic,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser,
              pytest.mark.xdist_group("admin-pages")]


@pytest.fixture(scope="module")
def clinic(postgres_server: Any) -> Iterator[tuple[Clinic, str]]:
    from tests.conftest import _TEMPLATE

    url = postgres_server.create_database(f"adminpages{id(postgres_server)}",
                                          template=_TEMPLATE)
    world = seed_clinic(url)
    with running_api(Settings(database_url=url)) as base:
        yield world, base


def test_an_admin_creates_a_clinician_and_sees_her_invitation_link_once(
        browser: Browser, clinic: tuple[Clinic, str]) -> None:  # noqa: F811
    _, base = clinic
    context, page = _signed_in(browser, base, "ada")
    try:
        page.get_by_role("link", name="Admin").click()
        expect(page.get_by_role("heading", name="Administration")).to_be_visible()
        form = page.locator("#new-clinician")
        form.get_by_label("Name", exact=True).fill("Nina New")
        form.get_by_label("Username").fill("nina")
        form.get_by_label("Role").select_option("nurse")
        form.get_by_label("Teams").select_option(["district-nursing"])
        form.get_by_role("button", name="Create clinician").press("Enter")
        panel = page.locator(".panel", has=form)
        expect(panel.locator(".form-status")).to_contain_text("Created")
        link = panel.locator(".secret-value")
        expect(link).to_contain_text("/invite/")
        expect(panel.get_by_role("button", name="Copy")).to_be_visible()
        _shot(page, "admin-clinician-created")
        page.reload()
        row = page.locator("#clinician-list tr", has_text="Nina New")
        expect(row).to_contain_text("district-nursing")
        expect(row).to_contain_text("nurse")
        expect(page.locator(".secret-value:visible")).to_have_count(0)  # shown once
    finally:
        context.close()


def test_an_admin_rotates_a_token_and_deactivates_a_clinician_after_confirming(
        browser: Browser, clinic: tuple[Clinic, str]) -> None:  # noqa: F811
    _, base = clinic
    context, page = _signed_in(browser, base, "ada")
    dialogs: list[str] = []
    answer = {"accept": False}

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept() if answer["accept"] else dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        page.goto(base + "/admin#clinicians")
        form = page.locator("#new-clinician")
        form.get_by_label("Name", exact=True).fill("Tess Temp")
        form.get_by_label("Username").fill("tess")
        form.get_by_label("Teams").select_option(["district-nursing"])
        form.get_by_role("button", name="Create clinician").click()
        expect(page.locator(".panel", has=form).locator(".form-status")).to_contain_text(
            "Created")
        page.reload()
        row = page.locator("#clinician-list tr", has_text="Tess Temp")
        row.get_by_role("button", name="Rotate token of Tess Temp").click()
        expect(row.locator(".secret-value:visible")).to_have_count(0)  # dismissed: nothing
        answer["accept"] = True
        row.get_by_role("button", name="Rotate token of Tess Temp").click()
        expect(row.locator(".form-status")).to_contain_text("New token made")
        token = row.locator(".secret-value").inner_text().strip()
        assert len(token) >= 20
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as tess:
            assert tess.get("/api/me").json()["username"] == "tess"
            with page.expect_navigation():
                row.get_by_role("button", name="Deactivate Tess Temp").click()
            row = page.locator("#clinician-list tr", has_text="Tess Temp")
            expect(row.locator("td").nth(4)).to_have_text("no")
            expect(row.get_by_role("button", name="Deactivate Tess Temp")).to_have_count(0)
            assert tess.get("/api/me").status_code == 401  # at once, token and all
        assert dialogs == [
            "Make a new API token for Tess Temp? The old one stops working.",
            "Make a new API token for Tess Temp? The old one stops working.",
            "Deactivate Tess Temp? She can no longer sign in."]
    finally:
        context.close()


def test_a_bad_nhs_number_is_refused_in_the_form_and_a_good_one_is_listed(
        browser: Browser, clinic: tuple[Clinic, str]) -> None:  # noqa: F811
    _, base = clinic
    context, page = _signed_in(browser, base, "ada")
    try:
        page.goto(base + "/admin#patients")
        form = page.locator("#new-patient")
        form.get_by_label("Name", exact=True).fill("Pat Typo")
        form.get_by_label("NHS number").fill("943 476 5918")  # check digit wrong
        form.get_by_label("Care teams").select_option(["district-nursing"])
        form.get_by_role("button", name="Create patient").click()
        status = page.locator(".panel", has=form).locator(".form-status")
        expect(status).to_contain_text("Not done")
        expect(status).to_contain_text("NHS number")
        expect(page.locator("#patient-list")).not_to_contain_text("Pat Typo")
        form.get_by_label("NHS number").fill("401 023 2137")
        with page.expect_navigation():
            form.get_by_role("button", name="Create patient").click()
        row = page.locator("#patient-list tr", has_text="Pat Typo")
        expect(row).to_contain_text("4010232137")
        expect(row).to_contain_text("district-nursing")
    finally:
        context.close()


def test_a_hub_without_a_broker_provisioner_says_why_it_is_not_provisioned(
        browser: Browser, clinic: tuple[Clinic, str]) -> None:  # noqa: F811
    _, base = clinic
    context, page = _signed_in(browser, base, "ada")
    try:
        page.goto(base + "/admin#hubs-admin")
        with page.expect_navigation():
            page.locator("#new-hub").get_by_label("Hub id").fill("hub-new")
            page.locator("#new-hub").get_by_role("button", name="Record hub").click()
        row = page.locator("#hub-list tr[data-hub-id=hub-new]")
        expect(row).to_be_visible()
        row.get_by_role("button", name="Provision hub-new").click()
        expect(row.locator(".form-status").last).to_contain_text("Not done")
        expect(row.locator(".secret-value:visible")).to_have_count(0)
        _shot(page, "admin-hub-not-provisioned")
    finally:
        context.close()


def test_a_nurse_has_no_admin_link_and_no_admin_page(
        browser: Browser, clinic: tuple[Clinic, str]) -> None:  # noqa: F811
    _, base = clinic
    context, page = _signed_in(browser, base, "anna")
    try:
        expect(page.get_by_role("link", name="Admin")).to_have_count(0)
        response = page.goto(base + "/admin")
        assert response is not None and response.status == 403
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        expect(page.get_by_role("button", name="Create clinician")).to_have_count(0)
    finally:
        context.close()


def test_the_admin_page_has_no_serious_or_critical_accessibility_violations(
        browser: Browser, clinic: tuple[Clinic, str]) -> None:  # noqa: F811
    _, base = clinic
    context, page = _signed_in(browser, base, "ada")
    try:
        for label, viewport in (("1280", None), ("768", TABLET)):
            if viewport:
                page.set_viewport_size(viewport)
            response = page.goto(base + "/admin")
            assert response is not None and response.status == 200
            page.wait_for_load_state("networkidle")
            results = Axe().run(page)
            bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
                   for v in results.response["violations"]
                   if v["impact"] in ("serious", "critical")]
            assert bad == [], f"admin at {label}: {bad}"
            _shot(page, f"admin-{label}")
    finally:
        context.close()
    assert SHOTS.exists()
