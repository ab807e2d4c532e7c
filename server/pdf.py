"""HTML to PDF with headless Chromium (Playwright's sync API), for the printable reports
(the shift report, the discharge summary; docs/reports.md).

The same approach as the safety case report (stack/safety_report.py): the page is
rendered by our own templates into one self-contained HTML document (styles inline,
charts as inline SVG), given to a fresh headless Chromium with JavaScript off and
every network request refused, and printed to A4.  Nothing here is imported until a
PDF is asked for, so the server needs no browser to start; without Playwright or
Chromium, :func:`html_to_pdf` raises :class:`PdfUnavailable` (the routes answer 503).

A browser is started per document (about 1-1.5 s on the 2-core development machine,
most of it Chromium's start) and at most ``MAX_AT_ONCE`` print at once, so a burst of
requests cannot start a browser each.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

#: Chromium processes printing at once; a request waits up to WAIT_S for a turn.
MAX_AT_ONCE = 2
WAIT_S = 30.0
_TURNS = threading.BoundedSemaphore(MAX_AT_ONCE)
#: As the browser tests: no sandbox (containers, root), no background calls out.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-extensions"]


class PdfUnavailable(RuntimeError):
    """No PDF can be printed here (no Playwright, no Chromium, too busy)."""


def chromium_path() -> str | None:
    """``HOMEWARD_CHROMIUM`` when set, else ``chromium`` on the PATH, else Debian's."""
    for candidate in (os.environ.get("HOMEWARD_CHROMIUM"), shutil.which("chromium"),
                      shutil.which("chromium-browser"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def html_to_pdf(html: str, *, title: str = "document") -> bytes:
    """Print a self-contained HTML document to an A4 PDF (the page footer numbers the
    pages).  Blocking: call it from a worker thread."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        raise PdfUnavailable("PDF printing needs Playwright (pip install playwright) and "
                             "Chromium on the server") from None
    chromium = chromium_path()
    if chromium is None:
        raise PdfUnavailable("PDF printing needs Chromium on the server (apt-get install "
                             "chromium, or set HOMEWARD_CHROMIUM)")
    if not _TURNS.acquire(timeout=WAIT_S):
        raise PdfUnavailable("the server is printing too many PDFs at once; try again")
    started = time.perf_counter()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True,
                                        args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(java_script_enabled=False, offline=True)
                context.route("**/*", lambda route: route.abort())
                page = context.new_page()
                page.set_content(html, wait_until="load")
                data = page.pdf(format="A4", print_background=True,
                                margin={"top": "14mm", "bottom": "16mm", "left": "12mm",
                                        "right": "12mm"},
                                display_header_footer=True, header_template="<span></span>",
                                footer_template=(
                                    '<div style="font-size:8px;width:100%;text-align:center;'
                                    'color:#4a5561"><span class="title"></span> — page '
                                    '<span class="pageNumber"></span> of '
                                    '<span class="totalPages"></span></div>'))
            finally:
                browser.close()
    except PlaywrightError as err:
        raise PdfUnavailable(f"Chromium could not print the PDF: {err}") from err
    finally:
        _TURNS.release()
    log.info("printed %s to PDF in %.0f ms (%d bytes)", title,
             (time.perf_counter() - started) * 1000, len(data))
    return data
