"""The patient portal (issue 9, "the patient in the loop"), below the browser: one-time
codes (e-mailed through the real outbox to a real SMTP server, kept only as keyed
hashes, single use, expiring, tries and requests limited, the same answer for an
unknown address), the patient's session cookie (HttpOnly, SameSite, Path, Secure) and
CSRF, every request audited as the patient's and another patient's ids answered 404,
the nurse's message API, and when a reading counts as seen by the care team.
The whole scenario in a browser: tests/test_patient_portal_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from pydantic import ValidationError

from alerts.channels import ChannelSettings, default_senders
from alerts.outbox import Outbox
from homeward.settings import Settings
from server import admin, patient_auth, patient_messages, patient_seen
from server.api.patient_scope import PATIENT_COOKIE
from server.api.routes.portal import CHALLENGE_COOKIE
from server.auth import hash_token
from tests.api_support import running_api
from tests.test_alerts_support import smtp_server  # noqa: F401 -- a fixture
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

SECRET = "a test secret key for the portal"
CODE = re.compile(r"sign-in code is (\d{4} \d{4})")


@dataclass
class Ward:
    url: str
    ada: int
    bob: int
    nurse: str          # a COPD nurse's API token
    nurse_id: int
    admin: str          # the organisation's admin's API token
    ada_reading: str
    bob_reading: str
    bob_alert: int


def reading(conn: psycopg.Connection[Any], patient: int, hub: str, kind: str,
            values: dict[str, float], *, taken: datetime, received: datetime) -> str:
    row = conn.execute(
        'INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, "values",'
        " received_at) VALUES (gen_random_uuid(), %s, %s, %s, %s, 'AA:01', %s, %s)"
        " RETURNING id::text", (taken, kind, hub, patient, orjson.dumps(values).decode(),
                                received)).fetchone()
    assert row is not None
    return str(row[0])


def seed(url: str) -> Ward:
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        org = admin.create_organisation(conn, name="North Trust")
        admin.create_team(conn, team_id="copd", organisation_id=org, name="COPD Team",
                          kind="copd")
        admin.create_team(conn, team_id="dn", organisation_id=org, name="District Nursing",
                          kind="district_nursing")
        nurse = admin.create_clinician(conn, username="nina", display_name="Nina Nurse",
                                       teams=["copd"])
        boss = admin.create_clinician(conn, username="ann", display_name="Ann Admin",
                                      role="admin", teams=["dn"])
        ada = admin.create_patient(conn, display_name="Ada Lovelace", teams=["copd"])
        bob = admin.create_patient(conn, display_name="Bob Babbage", teams=["copd"])
        patient_auth.set_email(conn, ada, "Ada@Example.org")
        patient_auth.set_email(conn, bob, "bob@example.org")
        for hub, patient in (("hub-ada", ada), ("hub-bob", bob)):
            admin.create_hub(conn, hub_id=hub)
            admin.enrol(conn, hub_id=hub, patient_id=patient, valid_from=now - timedelta(days=9))
        ada_reading = reading(conn, ada, "hub-ada", "spo2", {"spo2": 94, "pulse_rate": 80},
                              taken=now - timedelta(hours=3), received=now - timedelta(hours=3))
        bob_reading = reading(conn, bob, "hub-bob", "spo2", {"spo2": 91, "pulse_rate": 88},
                              taken=now - timedelta(hours=2), received=now - timedelta(hours=2))
        row = conn.execute(
            "INSERT INTO alert (patient_id, rule_id, rule, severity, summary, team_id,"
            " opened_at, updated_at, last_triggered_at) VALUES (%s, 'spo2_low', '{}', 'amber',"
            " 'SpO2 91 %%', 'copd', now(), now(), now()) RETURNING id", (bob,)).fetchone()
        assert row is not None
    return Ward(url, ada, bob, nurse.api_token, nurse.id, boss.api_token, ada_reading,
                bob_reading, int(row[0]))


@pytest.fixture
def ward(db_url: str) -> Ward:
    return seed(db_url)


def settings(url: str, **more: Any) -> Settings:
    return Settings(database_url=url, secret_key=SECRET, **more)


def mailed_codes(path: Path) -> list[str]:
    """The codes of the sign-in e-mails the mail file holds, oldest first."""
    if not path.exists():
        return []
    mails = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return [m.group(1).replace(" ", "") for mail in mails
            if (m := CODE.search(mail["body"]))]


# -- codes --------------------------------------------------------------------------------

def test_a_code_is_mailed_through_the_outbox_works_once_and_is_kept_only_as_a_hash(
        ward: Ward, smtp_server: Any) -> None:  # noqa: F811
    s = settings(ward.url)
    with psycopg.connect(ward.url, autocommit=True) as conn:
        sent = patient_auth.request_code(conn, s, email="ada@example.org",
                                         client_addr="192.0.2.7")
        assert isinstance(sent, patient_auth.CodeSent)
        outbox = Outbox(default_senders(ChannelSettings(smtp_host="127.0.0.1",
                                                        smtp_port=smtp_server.port,
                                                        smtp_timeout=5)))
        assert outbox.deliver_due(conn, datetime.now(UTC)) == 1
        (mail,) = smtp_server.to("ada@example.org")
        assert mail["Subject"] == patient_auth.CODE_SUBJECT
        found = CODE.search(str(mail.get_payload()))
        assert found is not None
        code = found.group(1).replace(" ", "")
        # the table holds no code and no challenge in clear
        row = conn.execute("SELECT row_to_json(s)::text FROM patient_sign_in s").fetchone()
        assert row is not None and code not in row[0] and sent.challenge not in row[0]
        # a second code, asked for in another browser, does not open the first's challenge
        other = patient_auth.request_code(conn, s, email="ada@example.org", client_addr=None)
        assert isinstance(other, patient_auth.CodeSent)
        wrong = patient_auth.check_code(conn, s, challenge=other.challenge, code=code,
                                        client_addr="192.0.2.7")
        assert wrong == patient_auth.Refused("wrong", tries_left=4)
        spaced = code[:4] + " " + code[4:]  # typed as the e-mail writes it
        assert patient_auth.check_code(conn, s, challenge=sent.challenge, code=spaced,
                                       client_addr="192.0.2.7") == patient_auth.SignedIn(ward.ada)
        again = patient_auth.check_code(conn, s, challenge=sent.challenge, code=code,
                                        client_addr="192.0.2.7")
        assert again == patient_auth.Refused("expired")
        # once used, the code is not kept in clear in the outbox either
        payload = conn.execute("SELECT payload::text FROM notification n JOIN patient_sign_in s"
                               " ON s.notification_id = n.id WHERE s.used_at IS NOT NULL"
                               ).fetchone()
        assert payload is not None and code not in payload[0]


def test_a_code_expires(ward: Ward, tmp_path: Path) -> None:
    s = settings(ward.url, patient_mail_file=tmp_path / "mail.jsonl")
    with psycopg.connect(ward.url, autocommit=True) as conn:
        sent = patient_auth.request_code(conn, s, email="ada@example.org", client_addr=None)
        assert isinstance(sent, patient_auth.CodeSent)
        (code,) = mailed_codes(tmp_path / "mail.jsonl")
        expires = conn.execute("SELECT expires_at - created_at FROM patient_sign_in").fetchone()
        assert expires is not None and expires[0] == timedelta(minutes=10)
        conn.execute("UPDATE patient_sign_in SET expires_at = now() - interval '1 second'")
        assert patient_auth.check_code(conn, s, challenge=sent.challenge, code=code,
                                       client_addr=None) == patient_auth.Refused("expired")


def test_a_code_allows_five_tries(ward: Ward, tmp_path: Path) -> None:
    s = settings(ward.url, patient_mail_file=tmp_path / "mail.jsonl")
    with psycopg.connect(ward.url, autocommit=True) as conn:
        sent = patient_auth.request_code(conn, s, email="ada@example.org", client_addr=None)
        assert isinstance(sent, patient_auth.CodeSent)
        (code,) = mailed_codes(tmp_path / "mail.jsonl")
        bad = "00000000" if code != "00000000" else "11111111"
        answers = [patient_auth.check_code(conn, s, challenge=sent.challenge, code=bad,
                                           client_addr=None) for _ in range(5)]
        assert answers == [patient_auth.Refused("wrong", tries_left=n) for n in (4, 3, 2, 1)] + [
            patient_auth.Refused("expired")]
        assert patient_auth.check_code(conn, s, challenge=sent.challenge, code=code,
                                       client_addr=None) == patient_auth.Refused("expired")


def test_wrong_codes_count_in_the_sign_in_throttle_across_codes(ward: Ward,
                                                                tmp_path: Path) -> None:
    s = settings(ward.url, patient_mail_file=tmp_path / "mail.jsonl", login_max_failures=3)
    with psycopg.connect(ward.url, autocommit=True) as conn:
        answers = []
        for _ in range(4):
            sent = patient_auth.request_code(conn, s, email="ada@example.org",
                                             client_addr="198.51.100.4")
            assert isinstance(sent, patient_auth.CodeSent)
            answers.append(patient_auth.check_code(conn, s, challenge=sent.challenge,
                                                   code="not it", client_addr="198.51.100.4"))
        assert [a.why for a in answers if isinstance(a, patient_auth.Refused)] == [
            "wrong", "wrong", "wrong", "locked"]
        locked = answers[-1]
        assert isinstance(locked, patient_auth.Refused) and 0 < locked.retry_after <= 900
        lockouts = conn.execute("SELECT count(*) FROM access_audit WHERE action ="
                                " 'login.lockout'").fetchone()
        assert lockouts is not None and lockouts[0] >= 1


def test_codes_asked_for_are_limited_and_an_unknown_address_gets_the_same_answer(
        ward: Ward, tmp_path: Path) -> None:
    mail = tmp_path / "mail.jsonl"
    s = settings(ward.url, patient_mail_file=mail)
    with psycopg.connect(ward.url, autocommit=True) as conn:
        nobody = patient_auth.request_code(conn, s, email="nobody@example.org", client_addr=None)
        assert isinstance(nobody, patient_auth.CodeSent)
        assert mailed_codes(mail) == []
        assert patient_auth.check_code(conn, s, challenge=nobody.challenge, code="12345678",
                                       client_addr=None) == patient_auth.Refused(
            "wrong", tries_left=4)
        answers = [patient_auth.request_code(conn, s, email="ada@example.org", client_addr=None)
                   for _ in range(patient_auth.CODE_REQUESTS + 1)]
        assert [type(a).__name__ for a in answers] == ["CodeSent"] * 5 + ["TooMany"]
        assert len(mailed_codes(mail)) == 5
        # a discharged patient is told the same, and sent nothing
        conn.execute("UPDATE patient SET status = 'discharged' WHERE id = %s", (ward.bob,))
        assert isinstance(patient_auth.request_code(conn, s, email="bob@example.org",
                                                    client_addr=None), patient_auth.CodeSent)
        assert len(mailed_codes(mail)) == 5


def test_a_session_ends_when_idle_at_its_limit_or_when_the_patient_is_discharged(
        ward: Ward) -> None:
    with psycopg.connect(ward.url, autocommit=True) as conn:
        def live(session: str) -> tuple[int, str] | None:
            return patient_auth.session_patient(conn, session, idle_seconds=1800)

        idle, old, fresh = (patient_auth.new_session(conn, ward.ada, absolute_seconds=43200)
                            for _ in range(3))
        assert live(fresh) == (ward.ada, "Ada Lovelace")
        row = conn.execute("SELECT id_hash FROM patient_session").fetchall()
        assert fresh not in {r[0] for r in row}  # only the id's hash is kept
        conn.execute("UPDATE patient_session SET last_seen_at = now() - interval '31 minutes'"
                     " WHERE id_hash = %s", (hash_token(idle),))
        conn.execute("UPDATE patient_session SET expires_at = now() WHERE id_hash = %s",
                     (hash_token(old),))
        assert (live(idle), live(old), live(fresh) is not None) == (None, None, True)
        assert patient_auth.prune_sessions(conn, idle_seconds=1800) == 2
        conn.execute("UPDATE patient SET status = 'discharged' WHERE id = %s", (ward.ada,))
        assert live(fresh) is None


def test_a_patient_email_is_one_patients_and_an_address(ward: Ward) -> None:
    with psycopg.connect(ward.url, autocommit=True) as conn:
        with pytest.raises(ValueError, match="another patient"):
            patient_auth.set_email(conn, ward.bob, "ADA@example.org ")
        with pytest.raises(ValueError, match="not an e-mail"):
            patient_auth.set_email(conn, ward.bob, "bob at home")
        row = conn.execute("SELECT email FROM patient WHERE id = %s", (ward.ada,)).fetchone()
    assert row == ("ada@example.org",)


def test_an_admin_sets_the_portal_address_from_the_command_line(ward: Ward) -> None:
    from typer.testing import CliRunner

    from stack.cli import app

    def run(*args: str) -> tuple[int, str]:
        done = CliRunner().invoke(app, ["admin", "--database-url", ward.url, "patient",
                                        "portal-email", str(ward.bob), *args])
        return done.exit_code, done.output

    assert run(" Bob.B@Example.org") == (0, f"Patient {ward.bob}: portal sign-in codes go to"
                                            " bob.b@example.org.\n")
    code, out = run("ada@example.org")
    assert code == 1 and "another patient has this e-mail address" in out
    assert run() == (0, f"Patient {ward.bob}: portal sign-in removed.\n")
    with psycopg.connect(ward.url) as conn:
        assert conn.execute("SELECT email FROM patient WHERE id = %s",
                            (ward.bob,)).fetchone() == (None,)
        audited = conn.execute("SELECT count(*) FROM access_audit WHERE patient_id = %s"
                               " AND action LIKE %s", (ward.bob, "%portal-email%")).fetchone()
    assert audited is not None and audited[0] == 2  # the refused one changed nothing


def test_no_portal_template_has_inline_script_style_or_event_handlers() -> None:
    """As the dashboard's (tests/test_web_hardening.py): a CSP of 'self' holds."""
    folder = Path(__file__).resolve().parent.parent / "server/api/templates/portal"
    offences = [f"{t.name}: {what}" for t in sorted(folder.glob("*.html"))
                for pattern, what in [(r"<script(?![^>]*\bsrc=)[^>]*>", "inline <script>"),
                                      (r"<style\b", "<style>"), (r"\sstyle\s*=", "style="),
                                      (r"\son[a-z]+\s*=", "event handler"),
                                      (r"javascript:", "javascript: URL")]
                for _ in re.finditer(pattern, t.read_text(encoding="utf-8"))]
    assert len(list(folder.glob("*.html"))) >= 7 and offences == []


def test_production_refuses_to_write_codes_to_a_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="HOMEWARD_PATIENT_MAIL_FILE"):
        Settings(env="production", secret_key="x" * 40, patient_mail_file=tmp_path / "m")


# -- over HTTP: cookies, CSRF, audit, 404 ------------------------------------------------------

class Browserish:
    """Cookies as a browser keeps them, by hand (a Secure cookie over plain HTTP too)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar: dict[str, str] = {}
        self.set: dict[str, str] = {}  # name -> the whole Set-Cookie header last seen

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {**kw.pop("headers", {}),
                   "Cookie": "; ".join(f"{k}={v}" for k, v in self.jar.items())}
        response = httpx.request(method, self.base + path, headers=headers, timeout=10, **kw)
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            self.set[name] = header
            if value in ("", '""') or "max-age=0" in header.lower():
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return response

    def csrf(self, path: str = "/my") -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', self.request("GET", path).text)
        assert found is not None
        return found.group(1)


def sign_in(client: Browserish, email: str, mail: Path) -> None:
    before = len(mailed_codes(mail))
    asked = client.request("POST", "/my/sign-in", data={"email": email})
    assert asked.status_code == 303 and asked.headers["location"] == "/my/sign-in/code"
    codes = wait_for(lambda: mailed_codes(mail)[before:], 5, "the code's e-mail")
    entered = client.request("POST", "/my/sign-in/code", data={"code": codes[-1]})
    assert entered.status_code == 303 and entered.headers["location"] == "/my", entered.text


@pytest.fixture
def portal(ward: Ward, tmp_path: Path) -> Iterator[tuple[Ward, str, Path]]:
    mail = tmp_path / "mail.jsonl"
    s = settings(ward.url, patient_mail_file=mail, dashboard_url="https://homeward.example")
    with running_api(s) as base:
        yield ward, base, mail


def _flags(header: str) -> set[str]:
    return {part.strip().lower() for part in header.split(";")[1:]}


def test_signing_in_sets_strict_cookies_and_the_session_is_no_clinicians(
        portal: tuple[Ward, str, Path]) -> None:
    _, base, mail = portal
    client = Browserish(base)
    first = client.request("GET", "/my")
    assert first.status_code == 303 and first.headers["location"] == "/my/sign-in"
    asked = client.request("POST", "/my/sign-in", data={"email": " ADA@example.org"})
    assert asked.status_code == 303
    assert _flags(client.set[CHALLENGE_COOKIE]) >= {
        "httponly", "samesite=strict", "path=/my/sign-in", "secure", "max-age=600"}
    code = wait_for(lambda: mailed_codes(mail), 5, "the code's e-mail")[-1]
    wrong = client.request("POST", "/my/sign-in/code", data={"code": "0000 0000"})
    assert wrong.status_code == 401 and "4 tries left" in wrong.text
    entered = client.request("POST", "/my/sign-in/code", data={"code": code})
    assert entered.status_code == 303 and entered.headers["location"] == "/my"
    flags = _flags(client.set[PATIENT_COOKIE])
    assert flags >= {"httponly", "samesite=lax", "path=/my", "secure"}
    assert CHALLENGE_COOKIE not in client.jar
    home = client.request("GET", "/my")
    assert home.status_code == 200 and "Ada Lovelace" in home.text
    assert "Bob" not in home.text
    # the patient's cookie is no session of the dashboard or the API
    assert client.request("GET", "/api/patients").status_code == 401
    queue = client.request("GET", "/queue")
    assert queue.status_code == 303 and queue.headers["location"].startswith("/login")
    # the same code again, in a new sign-in: spent
    client.jar[CHALLENGE_COOKIE] = "a challenge nobody was given"
    assert client.request("POST", "/my/sign-in/code", data={"code": code}).status_code == 401
    # signing out ends the session on the server: the cookie replayed is worth nothing
    session = client.jar[PATIENT_COOKIE]
    out = client.request("POST", "/my/sign-out", data={"csrf_token": client.csrf()})
    assert out.status_code == 303 and PATIENT_COOKIE not in client.jar
    client.jar[PATIENT_COOKIE] = session
    replay = client.request("GET", "/my")
    assert replay.status_code == 303 and replay.headers["location"] == "/my/sign-in"


def test_another_patients_ids_are_404_changes_need_the_csrf_token_and_all_is_audited(
        portal: tuple[Ward, str, Path]) -> None:
    ward, base, mail = portal
    with psycopg.connect(ward.url, autocommit=True) as conn:
        ada_msg = conn.execute(
            "INSERT INTO patient_message (patient_id, direction, clinician_id, team_id, body,"
            " needs_confirmation, sent_at) VALUES (%s, 'to_patient', %s, 'copd',"
            " 'Please repeat your oxygen reading', true, now()) RETURNING id",
            (ward.ada, ward.nurse_id)).fetchone()
        bob_msg = conn.execute(
            "INSERT INTO patient_message (patient_id, direction, clinician_id, team_id, body,"
            " needs_confirmation, sent_at) VALUES (%s, 'to_patient', %s, 'copd',"
            " 'For Bob only', true, now()) RETURNING id", (ward.bob, ward.nurse_id)).fetchone()
    assert ada_msg is not None and bob_msg is not None
    client = Browserish(base)
    sign_in(client, "ada@example.org", mail)
    assert client.request("GET", f"/my/readings/{ward.ada_reading}").status_code == 200
    for path in (f"/my/readings/{ward.bob_reading}", "/my/readings/not-a-reading",
                 "/my/readings/00000000-0000-0000-0000-000000000000"):
        page = client.request("GET", path)
        assert page.status_code == 404 and "Page not found" in page.text, path
        assert "91" not in page.text
    token = client.csrf("/my/messages")
    confirm = f"/my/messages/{ada_msg[0]}/confirm"
    assert client.request("POST", confirm, data={}).status_code == 403
    assert client.request("POST", confirm, data={"csrf_token": "forged"}).status_code == 403
    assert client.request("POST", confirm, data={"csrf_token": token},
                          headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.request("POST", f"/my/messages/{bob_msg[0]}/confirm",
                          data={"csrf_token": token}).status_code == 404
    assert client.request("POST", f"/my/messages/{bob_msg[0]}/reply",
                          data={"csrf_token": token, "text": "hi"}).status_code == 404
    done = client.request("POST", confirm, data={"csrf_token": token})
    assert done.status_code == 303
    with psycopg.connect(ward.url) as conn:
        states = conn.execute("SELECT patient_id, confirmed_at IS NOT NULL FROM patient_message"
                              " ORDER BY id").fetchall()
        assert states == [(ward.ada, True), (ward.bob, False)]

        def rows() -> list[tuple[Any, ...]]:
            return conn.execute(
                "SELECT clinician_id, patient_id, action, outcome FROM access_audit"
                " WHERE role = 'patient' ORDER BY id").fetchall()

        wait_for(lambda: len(rows()) >= 11, 5, "the patient's audit rows")
        audited = rows()
    assert {(c, p) for c, p, _, _ in audited} == {(None, ward.ada)}
    outcomes = {(a, o) for _, _, a, o in audited}
    assert ("POST /my/sign-in/code", "ok") in outcomes
    assert ("GET /my/readings/{reading_id}", "ok") in outcomes
    assert ("GET /my/readings/{reading_id}", "not_found") in outcomes
    assert ("POST /my/messages/{message_id}/confirm", "refused") in outcomes  # no CSRF token
    assert ("POST /my/messages/{message_id}/confirm", "not_found") in outcomes
    assert ("POST /my/messages/{message_id}/confirm", "ok") in outcomes


# -- the nurse's side ----------------------------------------------------------------------

def test_a_nurse_writes_the_patient_confirms_and_replies_and_the_nurse_sees_both(
        portal: tuple[Ward, str, Path]) -> None:
    ward, base, mail = portal
    with httpx.Client(base_url=base, timeout=10,
                      headers={"Authorization": f"Bearer {ward.nurse}"}) as api:
        nurse_writes_patient_answers(ward, api, mail)


def nurse_writes_patient_answers(ward: Ward, api: httpx.Client, mail: Path) -> None:
    body = {"text": "Please repeat your blood pressure in 15 minutes",
            "needs_confirmation": True}
    sent = api.post(f"/api/patients/{ward.ada}/messages", json=body)
    assert sent.status_code == 201, sent.text
    message = sent.json()
    assert (message["author"], message["team_name"], message["read_at"]) == (
        "Nina Nurse", "COPD Team", None)
    # sent again (a retry): the same message
    assert api.post(f"/api/patients/{ward.ada}/messages", json=body).json()["id"] == message["id"]
    # about another patient's alert: refused
    refused = api.post(f"/api/patients/{ward.ada}/messages",
                       json={"text": "x", "alert_id": ward.bob_alert})
    assert refused.status_code == 422
    # the patient is told there is a message, not what it says
    notices = [orjson.loads(line) for line in mail.read_bytes().splitlines()]
    assert [(n["to"], n["subject"]) for n in notices] == [
        ("ada@example.org", "A new message from COPD Team")]
    assert body["text"] not in notices[0]["body"]
    with psycopg.connect(ward.url, autocommit=True) as conn:
        patient_messages.confirm(conn, ward.ada, message["id"])
        patient_messages.reply(conn, ward.ada, message["id"], "Done: 132/84")
        with pytest.raises(patient_messages.NotTheirs):
            patient_messages.confirm(conn, ward.bob, message["id"])
    listed = api.get(f"/api/patients/{ward.ada}/messages").json()
    assert [m["direction"] for m in listed] == ["from_patient", "to_patient"]
    reply, original = listed
    assert original["confirmed_at"] and original["read_at"]
    assert (reply["body"], reply["reply_to"], reply["clinician_id"], reply["team_id"]) == (
        "Done: 132/84", message["id"], None, "copd")
    page = api.get(f"/patients/{ward.ada}")
    assert page.status_code == 200
    assert "confirmed" in page.text and "Patient replied" in page.text


def test_a_reading_is_seen_when_a_care_team_nurse_opens_the_record_after_it_arrived(
        portal: tuple[Ward, str, Path]) -> None:
    ward, base, _ = portal

    def get(token: str, path: str) -> int:
        return httpx.get(base + path, headers={"Authorization": f"Bearer {token}"},
                         timeout=10).status_code

    def seen() -> dict[str, patient_seen.Seen]:
        with psycopg.connect(ward.url) as conn:
            rows = conn.execute("SELECT id::text, received_at FROM reading WHERE patient_id = %s",
                                (ward.ada,)).fetchall()
            return patient_seen.seen_by(conn, ward.ada, [{"id": r[0], "received_at": r[1]}
                                                         for r in rows])

    assert seen() == {}
    # an admin of the organisation browsing the record is not the care team looking
    assert get(ward.admin, f"/api/patients/{ward.ada}/readings") == 200
    assert get(ward.nurse, f"/api/patients/{ward.ada}/timeline") == 200  # shows no readings
    assert seen() == {}
    assert get(ward.nurse, f"/api/patients/{ward.ada}/readings") == 200
    first = wait_for(lambda: seen().get(ward.ada_reading), 5, "the nurse's read")
    assert first.team == "COPD Team"
    now = datetime.now(UTC)
    with psycopg.connect(ward.url, autocommit=True) as conn:
        later = reading(conn, ward.ada, "hub-ada", "spo2", {"spo2": 88, "pulse_rate": 99},
                        taken=now, received=now)
        assert later not in seen()
        # acknowledged: the alert it fired was seen, by the team it was routed to
        evidence = orjson.dumps([{"id": later, "kind": "spo2"}]).decode()
        alert = conn.execute(
            "INSERT INTO alert (patient_id, rule_id, rule, severity, summary, team_id,"
            " opened_at, updated_at, last_triggered_at, readings) VALUES (%s, 'spo2_low', '{}',"
            " 'red', 'SpO2 88 %%', 'dn', now(), now(), now(), %s::jsonb) RETURNING id",
            (ward.ada, evidence)).fetchone()
        assert alert is not None
        conn.execute("INSERT INTO alert_event (alert_id, at, event, clinician_id)"
                     " VALUES (%s, now(), 'acknowledged', %s)", (alert[0], ward.nurse_id))
    acknowledged = seen()[later]
    assert acknowledged.team == "District Nursing"
    assert seen()[ward.ada_reading] == first  # the first look is what the patient is told
