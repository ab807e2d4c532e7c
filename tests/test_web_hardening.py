"""The dashboard's web hardening (issue 11; docs/security.md), over the real app under
uvicorn and a real PostgreSQL, and in headless Chromium where a browser decides:

- sign-in throttling: ten failed sign-ins for a username, or from an address, within
  15 minutes and the next attempt answers 429 with Retry-After, across API processes,
  strictly under a parallel burst, each lockout audited once;
- CSRF: a change made with the session cookie needs the session's token, and one from
  another origin is refused; bearer-token requests are not affected;
- security headers on every answer, a CSP the pages hold to in a browser (charts drawn,
  no violation reported, an injected inline script refused);
- server-side sessions: only a hash stored, idle and absolute limits, ended at logout;
- ``/login?next=`` goes back to a path of this site and nowhere else.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from homeward.settings import Settings
from server.api.app import create_app
from server.api.redirects import safe_next
from server.api.routes import alerts as alert_routes
from server.api.security_headers import CONTENT_SECURITY_POLICY
from server.web_sessions import SESSION_COOKIE
from tests.api_support import NURSE_PASSWORD, World, running_api, seed_world
from tests.browser_support import chromium

pytestmark = [pytest.mark.integration]

TEMPLATES = Path(__file__).resolve().parent.parent / "server" / "api" / "templates"
META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


@dataclass
class Site:
    world: World
    base: str

    def client(self, address: str = "127.0.0.1", **kwargs: Any) -> httpx.Client:
        """A client whose requests come from ``address`` (any of 127.0.0.0/8 reaches the
        server, and the server sees that address)."""
        return httpx.Client(base_url=self.base, timeout=20,
                            transport=httpx.HTTPTransport(local_address=address), **kwargs)


@pytest.fixture
def site(db_url: str) -> Iterator[Site]:
    world = seed_world(db_url)
    with running_api(Settings(database_url=db_url)) as base:
        yield Site(world, base)


def _sign_in(client: httpx.Client, username: str = "nurse", password: str = NURSE_PASSWORD,
             *, follow_redirects: bool = True, **extra: str) -> httpx.Response:
    return client.post("/login", data={"username": username, "password": password, **extra},
                       follow_redirects=follow_redirects)


def _signed_in(site: Site, address: str = "127.0.0.1") -> tuple[httpx.Client, str]:
    """A client with a session cookie, and the CSRF token its pages carry."""
    client = site.client(address)
    assert _sign_in(client).status_code == 200
    found = META_TOKEN.search(client.get("/queue").text)
    assert found and found.group(1)
    return client, found.group(1)


def _lockouts(url: str) -> list[tuple[str, int | None, str | None]]:
    with psycopg.connect(url) as conn:
        return [(r[0], r[1], r[2]) for r in conn.execute(
            "SELECT resource, clinician_id, client_addr FROM access_audit"
            " WHERE action = 'login.lockout' ORDER BY id")]


def _notes(url: str, alert: int) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM alert_event WHERE alert_id = %s"
                           " AND event = 'note'", (alert,)).fetchone()
    assert row is not None
    return int(row[0])


# -- sign-in throttling ----------------------------------------------------------------

@pytest.mark.hazard("H-023")
def test_ten_failures_for_a_username_lock_it_from_every_address(site: Site) -> None:
    for i in range(10):  # one attempt from each of ten addresses: no address is limited
        with site.client(f"127.0.0.{10 + i}") as client:
            assert _sign_in(client, password=f"wrong {i}").status_code == 401
    with site.client("127.0.0.20") as client:
        refused = _sign_in(client)  # the right password, from a fresh address
        assert refused.status_code == 429
        assert "Too many failed sign-ins" in refused.text
        assert 890 <= int(refused.headers["retry-after"]) <= 900
        assert _sign_in(client, username="NURSE").status_code == 429  # one name, any case
        assert SESSION_COOKIE not in client.cookies
        # another username from the same address is not affected
        assert _sign_in(client, username="admin", password="x").status_code == 401
    # one lockout, one audit row, naming the clinician; the refusals added none
    assert _lockouts(site.world.url) == [("username:nurse", site.world.nurse_id, "127.0.0.19")]


def test_ten_failures_from_an_address_lock_it_for_every_username(site: Site) -> None:
    with site.client("127.0.0.30") as client:
        for i in range(10):  # ten usernames, known or not: nothing tells them apart
            name = "nurse" if i == 0 else f"nobody-{i}"
            assert _sign_in(client, username=name, password="wrong").status_code == 401
        assert _sign_in(client).status_code == 429
        # an API token in the form is throttled by the address too
        assert client.post("/login", data={"token": site.world.token}).status_code == 429
    with site.client("127.0.0.31") as elsewhere:
        assert _sign_in(elsewhere).status_code == 200  # the nurse herself is not locked out
    assert _lockouts(site.world.url) == [("client:127.0.0.30", None, "127.0.0.30")]


def test_the_lockout_lifts_as_the_failures_age_out_of_the_window(site: Site) -> None:
    with site.client("127.0.0.40") as client:
        for _ in range(10):
            assert _sign_in(client, password="wrong").status_code == 401
        assert _sign_in(client).status_code == 429
        with psycopg.connect(site.world.url, autocommit=True) as conn:
            # the oldest failure is now 14 minutes old: a minute until it leaves the window
            conn.execute("UPDATE login_attempt SET at = at - interval '14 minutes'")
        assert 55 <= int(_sign_in(client).headers["retry-after"]) <= 60
        with psycopg.connect(site.world.url, autocommit=True) as conn:
            conn.execute("UPDATE login_attempt SET at = at - interval '1 minute'")
        assert _sign_in(client).status_code == 200


def test_the_throttle_holds_across_api_processes_and_under_a_parallel_burst(
        site: Site) -> None:
    with running_api(Settings(database_url=site.world.url)) as other:
        bases = [site.base, other]
        statuses: list[int] = []
        lock = threading.Lock()

        def attempt(i: int) -> None:
            with httpx.Client(base_url=bases[i % 2], timeout=60) as client:
                status = _sign_in(client, password=f"guess {i}").status_code
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        # every attempt is reserved before its password is checked: never more than ten
        # checks, whichever process took them and however they interleaved
        assert sorted(statuses) == [401] * 10 + [429] * 20
        for base in bases:
            with httpx.Client(base_url=base, timeout=20) as client:
                assert _sign_in(client).status_code == 429
    assert {r[0] for r in _lockouts(site.world.url)} == {"username:nurse", "client:127.0.0.1"}
    assert len(_lockouts(site.world.url)) == 2


# -- CSRF ------------------------------------------------------------------------------

@pytest.mark.hazard("H-023")
def test_a_change_made_with_the_session_cookie_needs_the_sessions_csrf_token(
        site: Site) -> None:
    world = site.world
    note = f"/api/alerts/{world.alert}/notes"
    nurse, token = _signed_in(site)
    other, other_token = _signed_in(site, "127.0.0.2")  # the same nurse, another session
    assert other_token != token
    with closing(nurse), closing(other):
        missing = nurse.post(note, json={"text": "no token"})
        assert missing.status_code == 403 and "CSRF" in missing.json()["detail"]
        assert nurse.post(note, json={"text": "another session's"},
                          headers={"X-CSRF-Token": other_token}).status_code == 403
        assert _notes(world.url, world.alert) == 0  # nothing was written
        assert nurse.post(note, json={"text": "with the token"},
                          headers={"X-CSRF-Token": token}).status_code == 201
        # reads need no token
        assert nurse.get(f"/api/alerts/{world.alert}").status_code == 200
    # a bearer-token request is not affected: no cookie, no token
    with site.client() as api:
        assert api.post(note, json={"text": "by token"}, headers={
            "Authorization": f"Bearer {world.token}"}).status_code == 201
    assert _notes(world.url, world.alert) == 2


@pytest.mark.hazard("H-023")
def test_a_change_from_another_origin_is_refused_even_with_the_token(site: Site) -> None:
    world = site.world
    note = f"/api/alerts/{world.alert}/notes"
    nurse, token = _signed_in(site)
    with closing(nurse):
        for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                        {"Origin": site.base.replace("127.0.0.1", "localhost")},
                        {"Sec-Fetch-Site": "cross-site"}):
            refused = nurse.post(note, json={"text": "forged"},
                                 headers={"X-CSRF-Token": token, **headers})
            assert refused.status_code == 403, headers
        assert _notes(world.url, world.alert) == 0
        assert nurse.post(note, json={"text": "from the page"}, headers={
            "X-CSRF-Token": token, "Origin": site.base,
            "Sec-Fetch-Site": "same-origin"}).status_code == 201
    with site.client() as stranger:
        # signing in from another site's form (login CSRF) is refused before any check
        forged = stranger.post("/login", headers={"Origin": "https://evil.example"}, data={
            "username": "nurse", "password": NURSE_PASSWORD})
        assert forged.status_code == 403 and SESSION_COOKIE not in stranger.cookies
        # an API client with a bearer token may send whatever Origin it likes
        assert stranger.post(note, json={"text": "api"}, headers={
            "Authorization": f"Bearer {world.token}",
            "Origin": "https://tool.example"}).status_code == 201


def test_sign_out_needs_the_token_and_ends_the_session_on_the_server(site: Site) -> None:
    nurse, token = _signed_in(site)
    cookie = nurse.cookies[SESSION_COOKIE]
    with closing(nurse):
        assert nurse.post("/logout").status_code == 403  # a forged sign-out does nothing
        assert nurse.get("/api/alerts").status_code == 200
        out = nurse.post("/logout", data={"csrf_token": token}, follow_redirects=False)
        assert (out.status_code, out.headers["location"]) == (303, "/login")
        assert SESSION_COOKIE not in nurse.cookies
    with site.client(cookies={SESSION_COOKIE: cookie}) as replay:
        assert replay.get("/api/alerts").status_code == 401
        page = replay.get("/queue", follow_redirects=False)
        assert (page.status_code, page.headers["location"]) == (303, "/login?next=/queue")
    with psycopg.connect(site.world.url) as conn:
        assert conn.execute("SELECT count(*) FROM web_session").fetchone() == (0,)


# -- sessions --------------------------------------------------------------------------

def test_the_session_cookie_is_a_random_id_stored_only_as_its_hash(site: Site) -> None:
    with site.client() as client:
        signed_in = _sign_in(client, follow_redirects=False)
        assert signed_in.status_code == 303
        set_cookie = signed_in.headers["set-cookie"]
        cookie = client.cookies[SESSION_COOKIE]
    flags = {f.strip().lower() for f in set_cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "path=/", "max-age=43200"} <= flags
    assert "secure" not in flags  # plain http here, and not configured
    assert len(cookie) >= 43 and str(site.world.nurse_id) not in cookie.split(".")
    with psycopg.connect(site.world.url) as conn:
        rows = conn.execute("SELECT id_hash, clinician_id, expires_at - created_at"
                            " FROM web_session").fetchall()
        dump = str(conn.execute("SELECT row_to_json(s)::text FROM web_session s").fetchall())
    assert rows == [(hashlib.sha256(cookie.encode()).hexdigest(), site.world.nurse_id,
                     timedelta(hours=12))]
    assert cookie not in dump


def test_the_cookie_is_secure_when_configured_or_the_dashboard_is_https(db_url: str) -> None:
    seed_world(db_url)
    for settings in (Settings(database_url=db_url, session_cookie_secure=True),
                     Settings(database_url=db_url, dashboard_url="https://homeward.example")):
        with running_api(settings) as base, httpx.Client(base_url=base, timeout=20) as client:
            signed_in = client.post("/login", data={"username": "nurse",
                                                    "password": NURSE_PASSWORD},
                                    follow_redirects=False)
            assert signed_in.status_code == 303
            assert "secure" in signed_in.headers["set-cookie"].lower().split("; ")


def test_a_live_stream_opened_with_the_session_ends_at_sign_out(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alert_routes, "SESSION_RECHECK_S", 0.2)  # 30 s in production
    monkeypatch.setattr(alert_routes, "STREAM_KEEPALIVE", 0.2)
    nurse, token = _signed_in(site)
    cookie = nurse.cookies[SESSION_COOKIE]
    with closing(nurse), nurse.stream("GET", "/api/alerts/stream") as response:
        assert response.status_code == 200
        lines = (line for line in response.iter_lines() if line)
        assert next(lines) == ": connected"
        assert next(lines) == ": keep-alive"  # it stays open while signed in
        with site.client(cookies={SESSION_COOKIE: cookie}) as same_browser:
            assert same_browser.post("/logout", data={"csrf_token": token},
                                     follow_redirects=False).status_code == 303
        started = time.monotonic()
        for _ in lines:  # ends by itself once the session is gone
            assert time.monotonic() - started < 5, "the stream outlived its session"
    assert time.monotonic() - started < 5


def test_a_session_ends_when_idle_and_at_its_absolute_limit(site: Site) -> None:
    url = site.world.url

    def session_age(sql: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql)

    nurse, _ = _signed_in(site)
    with closing(nurse):
        # used 50 minutes ago: still good (idle limit one hour), and the use renews it
        session_age("UPDATE web_session SET last_seen_at = now() - interval '50 minutes'")
        assert nurse.get("/api/alerts").status_code == 200
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT now() - last_seen_at FROM web_session").fetchone()
        assert row is not None and row[0] < timedelta(minutes=1)
        session_age("UPDATE web_session SET last_seen_at = now() - interval '61 minutes'")
        assert nurse.get("/api/alerts").status_code == 401
    nurse, _ = _signed_in(site)
    with closing(nurse):
        assert nurse.get("/api/alerts").status_code == 200
        session_age("UPDATE web_session SET expires_at = now() - interval '1 second'")
        assert nurse.get("/api/alerts").status_code == 401  # in use, and still ended


@pytest.mark.hazard("H-023")
def test_signing_in_again_replaces_the_session_it_came_with(site: Site) -> None:
    nurse, _ = _signed_in(site)
    first = nurse.cookies[SESSION_COOKIE]
    with closing(nurse):
        assert _sign_in(nurse).status_code == 200
        assert nurse.cookies[SESSION_COOKIE] != first
    with site.client(cookies={SESSION_COOKIE: first}) as planted:
        assert planted.get("/api/alerts").status_code == 401


# -- ?next= ----------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "kept"), [
    ("/alerts/123", "/alerts/123"),
    ("/caseload?team=heart-failure&sort=name", "/caseload?team=heart-failure&sort=name"),
    ("//evil.example/alerts/1", None),
    ("https://evil.example/", None),
    ("/\\evil.example", None),
    ("\\\\evil.example", None),
    ("/alerts/1\r\nSet-Cookie: x=y", None),
    ("javascript:alert(1)", None),
    ("alerts/1", None),
    ("", None),
])
def test_next_is_a_path_of_this_site_or_nothing(given: str, kept: str | None) -> None:
    assert safe_next(given) == kept


def test_sign_in_goes_back_to_the_page_asked_for_and_never_off_site(site: Site) -> None:
    alert = f"/alerts/{site.world.alert}"
    with site.client() as client:
        asked = client.get(alert, follow_redirects=False)
        assert (asked.status_code, asked.headers["location"]) == (303, f"/login?next={alert}")
        form = client.get(asked.headers["location"])
        assert f'<input type="hidden" name="next" value="{alert}">' in form.text
        back = _sign_in(client, next=alert, follow_redirects=False)
        assert (back.status_code, back.headers["location"]) == (303, alert)
        for bad in ("//evil.example", "https://evil.example/x", "/\\evil.example"):
            assert 'name="next"' not in client.get("/login", params={"next": bad}).text
            went = _sign_in(client, next=bad, follow_redirects=False)
            assert (went.status_code, went.headers["location"]) == (303, "/"), bad


# -- security headers ------------------------------------------------------------------

def _assert_headers(response: httpx.Response) -> None:
    where = f"{response.request.method} {response.request.url.path} {response.status_code}"
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, where
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, where
    assert response.headers.get("x-content-type-options") == "nosniff", where
    assert response.headers.get("referrer-policy") in ("same-origin", "no-referrer"), where


def test_an_unhandled_error_still_answers_500_with_the_security_headers() -> None:
    app = create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"))

    def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/broken", broken)

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/broken")

    response = asyncio.run(get())
    assert (response.status_code, response.text) == (500, "Internal Server Error")
    _assert_headers(response)
    assert response.headers["x-request-id"]


@pytest.mark.hazard("H-012")
def test_every_answer_carries_the_security_headers(site: Site) -> None:
    world = site.world
    nurse, _ = _signed_in(site)
    with closing(nurse), site.client() as anonymous:
        answers = [anonymous.get("/login"), anonymous.get("/", follow_redirects=False),
                   anonymous.get("/static/app.css"), anonymous.get("/static/api-forms.js"),
                   anonymous.get("/health"), anonymous.get("/openapi.json"),
                   anonymous.get("/no/such/page"), anonymous.get("/api/alerts"),
                   anonymous.post("/login", data={"username": "x", "password": "y"}),
                   anonymous.post("/login", content=b"x" * 2_000_000),  # 413, unread
                   anonymous.post("/login", headers={"Origin": "https://evil.example"}),
                   anonymous.get("/invite/not-a-token"),
                   nurse.get("/queue"), nurse.get(f"/alerts/{world.alert}"),
                   nurse.get(f"/patients/{world.patient}"), nurse.get("/caseload"),
                   nurse.get(f"/patients/{world.other_patient}"),  # 404 page
                   nurse.post(f"/api/alerts/{world.alert}/notes", json={"text": "x"})]  # 403
        docs = anonymous.get("/docs")
        assert anonymous.get("/redoc").status_code == 404  # it would need inline styles
    assert {a.status_code for a in answers} >= {200, 303, 401, 403, 404, 410, 413}
    for answer in answers:
        _assert_headers(answer)
    assert answers[0].headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    # nothing with patient data is kept by a browser's cache; the static assets may be
    for answer in answers:
        static = answer.request.url.path.startswith("/static/")
        assert ("cache-control" not in answer.headers) if static else (
            answer.headers["cache-control"] == "no-store"), answer.request.url
    # the API documentation: vendored Swagger UI, started from a file of ours, under
    # the same policy as every page (nothing from a CDN)
    _assert_headers(docs)
    assert docs.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "swagger-ui" in docs.text and "<script>" not in docs.text
    assert "http" not in docs.text.replace(str(docs.url).split("/docs")[0], "")


def test_no_template_has_inline_script_style_or_event_handlers() -> None:
    """Pages are served under a CSP without 'unsafe-inline'.  The print_*.html templates
    are never served: server/pdf.py hands them to headless Chromium to print, with
    JavaScript off and every network request refused, so their stylesheet is inline."""
    offences = []
    for template in sorted(TEMPLATES.glob("*.html")):
        text = template.read_text(encoding="utf-8")
        printed = template.name.startswith("print_")
        for pattern, what in [(r"<script(?![^>]*\bsrc=)[^>]*>", "inline <script>"),
                              (r"<style\b" if not printed else r"(?!)", "<style> element"),
                              (r"\sstyle\s*=", "style= attribute"),
                              (r"\son[a-z]+\s*=", "inline event handler"),
                              (r"javascript:", "javascript: URL")]:
            offences += [f"{template.name}: {what}" for _ in re.finditer(pattern, text)]
    assert offences == []


# -- in a browser ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def _watch_violations(page: Page) -> list[str]:
    """CSP violations the page reports (the DOM event, and the console's words)."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text)
            if "Content Security Policy" in m.text else None)
    page.expose_function("reportViolation", lambda text: seen.append(text))
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => window.reportViolation("
        "e.violatedDirective + ' ' + e.blockedURI))")
    return seen


def _recent_oximetry(world: World) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(world.url, autocommit=True) as conn:
        for hours, spo2 in [(30, 96), (20, 94), (10, 92), (2, 91)]:
            conn.execute(
                'INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, "values",'
                " received_at) VALUES (gen_random_uuid(), %s, 'spo2', 'hub-1', %s, 'AA:01',"
                " %s, now())", (now - timedelta(hours=hours), world.patient,
                                orjson.dumps({"spo2": spo2, "pulse_rate": 72}).decode()))


@pytest.mark.hazard("H-023")
@pytest.mark.browser
def test_pages_hold_to_the_servers_own_policy_in_chromium(site: Site,
                                                          browser: Browser) -> None:
    world = site.world
    _recent_oximetry(world)
    context = browser.new_context()
    page = context.new_page()
    violations = _watch_violations(page)
    try:
        page.goto(site.base + "/login")
        page.fill("input[name=username]", "nurse")
        page.fill("input[name=password]", NURSE_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/queue$"))
        for path in ("/caseload", f"/alerts/{world.alert}", f"/patients/{world.patient}"):
            page.goto(site.base + path)
        # uPlot drew the chart (canvas and element styles set from script) under the CSP
        chart = page.locator("figure[data-chart]").first
        expect(chart).to_have_attribute("data-thresholds-drawn", re.compile(r"\d"))
        expect(chart.locator("canvas")).to_have_count(1)
        assert violations == []
        # and the policy is really enforced: an inline script injected now does not run
        ran = page.evaluate("""() => { const s = document.createElement('script');
            s.textContent = 'window.__injected = true'; document.body.append(s);
            return window.__injected === true; }""")
        assert ran is False
        page.wait_for_timeout(200)
        assert any("script-src" in v for v in violations)
    finally:
        context.close()


@pytest.mark.browser
def test_a_nurse_following_a_link_lands_on_it_after_signing_in_and_acts_there(
        site: Site, browser: Browser) -> None:
    world = site.world
    context = browser.new_context()
    page = context.new_page()
    sent: list[str | None] = []
    page.on("request", lambda r: sent.append(r.headers.get("x-csrf-token"))
            if r.method == "POST" and "/api/" in r.url else None)
    try:
        page.goto(site.base + f"/alerts/{world.alert}")  # from an e-mail, signed out
        page.wait_for_url(re.compile(r"/login\?next="))
        page.fill("input[name=username]", "nurse")
        page.fill("input[name=password]", NURSE_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(site.base + f"/alerts/{world.alert}")
        # the page's form sends the session's CSRF token, and the note lands
        form = page.locator(f"form[data-api='/api/alerts/{world.alert}/notes']")
        form.locator("input[name=text]").fill("Rang the patient")
        form.locator("button[type=submit]").click()
        expect(page.get_by_text("Rang the patient")).to_be_visible(timeout=10_000)
        assert sent and all(sent)
        # sign out: the cookie it had is dead on the server
        cookie = next(c["value"] for c in context.cookies() if c["name"] == SESSION_COOKIE)
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(site.base + "/login")
    finally:
        context.close()
    with site.client(cookies={SESSION_COOKIE: cookie}) as replay:
        assert replay.get("/api/alerts").status_code == 401
