"""What the browser tests share: headless Chromium (``chromium()``, every browser test's
module-scoped ``browser`` fixture), and for the report pages (tests/test_shift_report.py,
tests/test_discharge_summary.py) signing in, axe-core at two widths, screenshots, and no
refusal by the Content Security Policy the server sends.  No tests here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

from tests.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS

PASSWORD = "a long enough test password"
SHOTS = Path("/tmp")
WIDTHS = {"1280": ViewportSize(width=1280, height=800),
          "768": ViewportSize(width=768, height=1024)}


@contextmanager
def chromium() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Chromium is missing: run ./scripts/setup --dev"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                    headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def signed_in(browser: Browser, base: str, username: str) -> Iterator[tuple[Page, list[str]]]:
    """A page signed in as ``username``, and the console's CSP refusals as they come."""
    context = browser.new_context(viewport=WIDTHS["1280"], timezone_id="Europe/London",
                                  locale="en-GB")
    refused: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda m: refused.append(m.text)
                if "Content Security Policy" in m.text else None)
        page.goto(base + "/login")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/(queue)?$"))
        yield page, refused
    finally:
        context.close()


def check_accessibility(page: Page, url: str, name: str) -> None:
    """At 1280 and 768 wide: 0 serious or critical axe-core violations; a full-page
    screenshot of each at /tmp/report-<name>-<width>.png."""
    for label, viewport in WIDTHS.items():
        page.set_viewport_size(viewport)
        response = page.goto(url)
        assert response is not None and response.status == 200, url
        page.wait_for_load_state("networkidle")
        results = Axe().run(page)
        (SHOTS / f"report-{name}-{label}-axe.json").write_bytes(orjson.dumps(
            {"passes": len(results.response["passes"]),
             "violations": [(v["id"], v["impact"], len(v["nodes"]))
                            for v in results.response["violations"]]}))
        bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
               for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
        assert bad == [], f"{name} at {label}: {bad}"
        page.screenshot(path=str(SHOTS / f"report-{name}-{label}.png"), full_page=True)
