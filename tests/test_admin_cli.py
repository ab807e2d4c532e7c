"""``homeward admin`` against a private PostgreSQL (and a real Mosquitto for pairing):
bootstrap once and only once, teams, clinicians and patients with clear refusals,
devices published to the hub as its retained config, rotas that round-trip."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from homeward.settings import get_settings
from homeward.wire import config_topic
from stack.cli import app
from stack.services import MosquittoServer
from tests.ingest_support import one

pytestmark = pytest.mark.integration
runner = CliRunner()


def admin(db_url: str, *args: str, code: int = 0) -> str:
    """Run ``homeward admin ARGS``; asserts the exit code; returns stdout (and stderr)."""
    result = runner.invoke(app, ["admin", "--database-url", db_url, *args])
    assert result.exit_code == code, (args, result.output, result.exception)
    return result.output


def bootstrapped(db_url: str) -> dict[str, Any]:
    out = admin(db_url, "bootstrap", "--organisation", "North Trust", "--username", "ann",
                "--name", "Ann Admin", "--json")
    return dict(json.loads(out))


@pytest.fixture
def trust(db_url: str) -> str:
    """A bootstrapped database with a COPD team and a nurse on it."""
    bootstrapped(db_url)
    admin(db_url, "team", "create", "copd", "--name", "COPD", "--kind", "copd",
          "--email", "copd@example.nhs.uk")
    admin(db_url, "clinician", "create", "nina", "--name", "Nina Nurse", "--team", "copd",
          "--password", "a long enough password")
    return db_url


def test_bootstrap_on_an_empty_database_makes_the_first_admin_once(db_url: str) -> None:
    made = bootstrapped(db_url)
    with psycopg.connect(db_url) as conn:
        role, token_hash, org = one(conn.execute(
            "SELECT c.role, c.api_token_hash, o.name FROM clinician c JOIN organisation o"
            " ON o.id = c.organisation_id WHERE c.username = 'ann'"))
        audited = one(conn.execute("SELECT count(*) FROM access_audit WHERE action ="
                                   " 'homeward admin bootstrap' AND role = 'cli'"))[0]
    assert (role, org) == ("admin", "North Trust")
    assert token_hash == hashlib.sha256(made["api_token"].encode()).hexdigest()
    assert audited == 1
    again = admin(db_url, "bootstrap", "--organisation", "Another", "--username", "bob",
                  "--name", "Bob", code=1)
    assert "already bootstrapped" in again
    with psycopg.connect(db_url) as conn:
        assert one(conn.execute("SELECT count(*) FROM organisation"))[0] == 1
        assert one(conn.execute("SELECT count(*) FROM clinician"))[0] == 1


def test_the_human_output_shows_the_token_once_and_says_so(db_url: str) -> None:
    out = admin(db_url, "bootstrap", "--organisation", "T", "--username", "ann",
                "--name", "Ann")
    assert "API token:" in out and "shown once" in out


def test_teams_clinicians_and_patients_are_created_and_listed(trust: str) -> None:
    admin(trust, "team", "create", "hf", "--name", "Heart Failure", "--kind", "heart_failure",
          "--webhook", "https://hooks.example/hf", "--escalation", "urgent", "--fallback",
          "copd")
    admin(trust, "team", "shift", "hf", "night", "20:00", "08:00")
    admin(trust, "team", "shift", "hf", "on-call", "09:00", "09:00")  # 24 hours
    admin(trust, "clinician", "create", "lee", "--name", "Lee Lead", "--role", "team_lead",
          "--team", "hf", "--team", "copd")
    created = json.loads(admin(trust, "patient", "create", "--name", "Alice", "--team", "copd",
                               "--team", "hf", "--lead", "copd", "--nhs", "943 476 5919",
                               "--born", "1941-02-03", "--json"))
    teams = {t["id"]: t for t in json.loads(admin(trust, "team", "list", "--json"))}
    people = {c["username"]: c for c in json.loads(admin(trust, "clinician", "list", "--json"))}
    patients = json.loads(admin(trust, "patient", "list", "--json"))
    assert teams["hf"]["escalation_policy"] == "urgent"
    assert teams["hf"]["fallback_team"] == "copd"
    assert teams["hf"]["shifts"] == [
        {"name": "on-call", "starts": "09:00", "ends": "09:00", "timezone": "Europe/London"},
        {"name": "night", "starts": "20:00", "ends": "08:00", "timezone": "Europe/London"}]
    assert teams["copd"]["email"] == "copd@example.nhs.uk" and teams["copd"]["members"] == 2
    assert (people["lee"]["role"], people["lee"]["teams"]) == ("team_lead", ["copd", "hf"])
    assert people["nina"]["has_password"] is True
    assert patients == [{"id": created["id"], "display_name": "Alice",
                         "nhs_number": "9434765919", "date_of_birth": "1941-02-03",
                         "status": "active", "care_teams": ["copd", "hf"],
                         "lead_team": "copd", "hub_id": None}]
    table = admin(trust, "team", "list")
    assert "Heart Failure" in table and "urgent" in table


@pytest.mark.parametrize(("args", "message"), [
    (("team", "create", "copd", "--name", "Again", "--kind", "copd"), "team id taken"),
    (("team", "create", "Bad Id", "--name", "X", "--kind", "copd"), "bad team id"),
    (("team", "create", "x", "--name", "X", "--kind", "copd", "--escalation", "nope"),
     "unknown escalation policy 'nope'"),
    (("team", "update", "ghost", "--email", "a@b"), "unknown team 'ghost'"),
    (("clinician", "create", "nina", "--name", "Nina Again", "--password", "x" * 12),
     "username taken"),
    (("clinician", "create", "sam", "--name", "Sam", "--team", "ghost"), "unknown team 'ghost'"),
    (("clinician", "create", "sam", "--name", "Sam", "--role", "boss"), "unknown role 'boss'"),
    (("clinician", "deactivate", "nobody"), "unknown clinician 'nobody'"),
    (("patient", "create", "--name", "P", "--team", "copd", "--nhs", "943 476 5918"),
     "fails the Modulus 11 check"),
    (("patient", "create", "--name", "P", "--team", "copd", "--nhs", "12345"),
     "not ten digits"),
    (("patient", "create", "--name", "P", "--team", "ghost"), "unknown team 'ghost'"),
    (("patient", "create", "--name", "P"), "needs a care team"),
    (("enrol", "no-such-hub", "1"), "unknown hub 'no-such-hub'"),
    (("device", "pair", "no-such-hub", "AA:01", "spo2", "--no-publish"), "unknown hub"),
    (("team", "list", "--org", "Nowhere"), "unknown organisation 'Nowhere'"),
])
def test_refusals_are_one_clear_line_and_a_failing_exit_code(
        trust: str, args: tuple[str, ...], message: str) -> None:
    out = admin(trust, *args, code=1)
    assert message in out, out
    assert "Traceback" not in out


def test_a_duplicate_nhs_number_is_refused(trust: str) -> None:
    admin(trust, "patient", "create", "--name", "A", "--team", "copd", "--nhs", "9434765919")
    out = admin(trust, "patient", "create", "--name", "B", "--team", "copd",
                "--nhs", "943-476-5919", code=1)
    assert "NHS number taken" in out


def test_every_write_is_audited(trust: str) -> None:
    with psycopg.connect(trust) as conn:
        actions = [r[0] for r in conn.execute(
            "SELECT action FROM access_audit ORDER BY id").fetchall()]
    assert actions == ["homeward admin bootstrap", "homeward admin team create",
                       "homeward admin clinician create"]


def test_a_new_clinician_without_a_password_gets_a_one_time_invitation(trust: str) -> None:
    made = json.loads(admin(trust, "clinician", "create", "ola", "--name", "Ola",
                            "--team", "copd", "--expires", "2h", "--json"))
    assert made["invite_url"].startswith(get_settings().dashboard_url + "/invite/")
    with psycopg.connect(trust) as conn:
        hours = one(conn.execute("SELECT extract(epoch FROM expires_at - created_at) / 3600"
                                 " FROM clinician_invite WHERE clinician_id = %s",
                                 (made["id"],)))[0]
    assert float(hours) == pytest.approx(2.0)


def test_rotating_and_deactivating_change_the_stored_credentials(trust: str) -> None:
    with psycopg.connect(trust) as conn:
        before = one(conn.execute("SELECT api_token_hash FROM clinician"
                                  " WHERE username = 'nina'"))[0]
    new = json.loads(admin(trust, "clinician", "rotate-token", "nina", "--json"))["api_token"]
    with psycopg.connect(trust) as conn:
        after = one(conn.execute("SELECT api_token_hash FROM clinician"
                                 " WHERE username = 'nina'"))[0]
    assert before != after == hashlib.sha256(new.encode()).hexdigest()
    assert "deactivated" in admin(trust, "clinician", "deactivate", "nina")
    with psycopg.connect(trust) as conn:
        assert one(conn.execute("SELECT active, api_token_hash, password_hash FROM clinician"
                                " WHERE username = 'nina'")) == (False, None, None)
    assert "is deactivated" in admin(trust, "clinician", "rotate-token", "nina", code=1)


# -- devices reach the hub ----------------------------------------------------------------

class RetainedConfig:
    """Whatever the broker holds (and then sends) on one hub's config topic."""

    def __init__(self, port: int, hub: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self._arrived = threading.Condition()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(config_topic(hub), qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._arrived:
            self.messages.append(json.loads(message.payload))
            self._arrived.notify_all()

    def next(self, count: int, timeout: float = 10.0) -> dict[str, Any]:
        with self._arrived:
            assert self._arrived.wait_for(lambda: len(self.messages) >= count, timeout), \
                f"config message {count} never arrived: {self.messages}"
            return self.messages[count - 1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker_env(mosquitto: MosquittoServer, monkeypatch: pytest.MonkeyPatch
               ) -> Iterator[MosquittoServer]:
    monkeypatch.setenv("HOMEWARD_MQTT_HOST", "127.0.0.1")
    monkeypatch.setenv("HOMEWARD_MQTT_PORT", str(mosquitto.port))
    get_settings.cache_clear()
    yield mosquitto
    get_settings.cache_clear()


def test_pair_and_unpair_publish_the_hubs_retained_config(trust: str,
                                                          broker_env: MosquittoServer) -> None:
    admin(trust, "hub", "create", "hub-7")
    admin(trust, "device", "pair", "hub-7", "C4:7C:8D:6A:3E:21", "blood_pressure",
          "--name", "Cuff")
    admin(trust, "device", "pair", "hub-7", "AA:BB:CC:00:11:22", "spo2")
    seen = RetainedConfig(broker_env.port, "hub-7")  # subscribes after: the config is retained
    try:
        assert [d["address"] for d in seen.next(1)["devices"]] == [
            "C4:7C:8D:6A:3E:21", "AA:BB:CC:00:11:22"]
        admin(trust, "device", "unpair", "hub-7", "C4:7C:8D:6A:3E:21")
        assert seen.next(2)["devices"] == [
            {"address": "AA:BB:CC:00:11:22", "kind": "spo2", "name": None}]
    finally:
        seen.close()
    assert "not paired" in admin(trust, "device", "unpair", "hub-7", "C4:7C:8D:6A:3E:21",
                                 code=1)


def test_a_pairing_the_broker_cannot_take_says_so(trust: str, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    from stack.services import free_port

    monkeypatch.setenv("HOMEWARD_MQTT_PORT", str(free_port()))  # nothing listens there
    get_settings.cache_clear()
    try:
        admin(trust, "hub", "create", "hub-8")
        out = admin(trust, "device", "pair", "hub-8", "AA:01", "spo2", code=3)
    finally:
        get_settings.cache_clear()
    assert "saved in the database" in out and "device publish hub-8" in out


# -- rotas --------------------------------------------------------------------------------

ROTA_CSV = """team,clinician,level,starts_at,ends_at,date,shift
copd,nina,0,2026-03-02T08:00:00+00:00,2026-03-02T18:30:00+00:00,,
copd,lee,1,2026-03-02T08:00:00Z,2026-03-02T18:30:00Z,,
copd,nina,0,,,2026-03-28,night
copd,lee,0,,,2026-03-29,night
"""


@pytest.mark.hazard("H-019")
@pytest.mark.parametrize("fmt", ["csv", "yaml"])
def test_a_rota_round_trips_import_export_import(trust: str, tmp_path: Path, fmt: str) -> None:
    admin(trust, "clinician", "create", "lee", "--name", "Lee", "--team", "copd",
          "--password", "x" * 12)
    admin(trust, "team", "shift", "copd", "night", "20:00", "08:00")
    source = tmp_path / "rota.csv"
    source.write_text(ROTA_CSV)
    assert "4 shifts imported for copd" in admin(trust, "rota", "import", str(source))
    window = ("--from", "2026-03-01T00:00:00Z", "--to", "2026-04-01T00:00:00Z")
    first = tmp_path / f"first.{fmt}"
    admin(trust, "rota", "export", *window, "--format", fmt, "--out", str(first))
    assert "4 shifts imported" in admin(trust, "rota", "import", str(first))
    second = admin(trust, "rota", "export", *window, "--format", fmt)
    assert second == first.read_text()
    with psycopg.connect(trust) as conn:
        shifts = conn.execute("SELECT c.username, s.starts_at, s.ends_at FROM rota_shift s"
                              " JOIN clinician c ON c.id = s.clinician_id"
                              " WHERE s.starts_at > '2026-03-20' ORDER BY s.starts_at"
                              ).fetchall()
    # the night shift is 20:00-08:00 London time: GMT on the 28th, BST from the 29th
    assert [(u, s.isoformat(), e.isoformat()) for u, s, e in shifts] == [
        ("nina", "2026-03-28T20:00:00+00:00", "2026-03-29T07:00:00+00:00"),
        ("lee", "2026-03-29T19:00:00+00:00", "2026-03-30T07:00:00+00:00")]


@pytest.mark.hazard("H-019")
@pytest.mark.parametrize(("text", "message"), [
    ("team,clinician,level,starts_at,ends_at\nghost,nina,0,2026-03-02T08:00Z,2026-03-02T09:00Z\n",
     "line 2: unknown team 'ghost'"),
    ("team,clinician,level,starts_at,ends_at\ncopd,zed,0,2026-03-02T08:00Z,2026-03-02T09:00Z\n",
     "unknown clinician 'zed'"),
    ("team,clinician,level,starts_at,ends_at\ncopd,nina,0,2026-03-02T08:00,2026-03-02T09:00\n",
     "needs a UTC offset"),
    ("team,clinician,level,starts_at,ends_at\ncopd,nina,0,2026-03-02T09:00Z,2026-03-02T08:00Z\n",
     "ends_at must be after starts_at"),
    ("team,clinician,date,shift\ncopd,nina,2026-03-02,early\n", "has no shift 'early'"),
])
def test_a_bad_rota_is_refused_whole_with_the_row(trust: str, tmp_path: Path, text: str,
                                                  message: str) -> None:
    source = tmp_path / "rota.csv"
    source.write_text(text)
    assert message in admin(trust, "rota", "import", str(source), code=1)
    with psycopg.connect(trust) as conn:
        assert one(conn.execute("SELECT count(*) FROM rota_shift"))[0] == 0


@pytest.mark.hazard("H-017")
def test_personal_rule_settings_are_set_and_listed(trust: str) -> None:
    patient = json.loads(admin(trust, "patient", "create", "--name", "Pat", "--team", "copd",
                               "--json"))["id"]
    admin(trust, "patient", "rule", str(patient), "spo2_low", "--param",
          'levels={red: {metric: spo2, op: "<=", value: 85}}', "--by", "nina",
          "--note", "COPD: her usual is 88-92")
    admin(trust, "patient", "rule", str(patient), "missed_spo2", "--disable", "--by", "nina",
          "--note", "no oximeter at home yet")
    rules = json.loads(admin(trust, "patient", "rules", str(patient), "--json"))
    assert [(r["rule_id"], r["enabled"], r["params"]) for r in rules] == [
        ("spo2_low", True, {"levels": {"red": {"metric": "spo2", "op": "<=", "value": 85}}}),
        ("missed_spo2", False, {})]
    why = ("--by", "nina", "--note", "n")
    assert "unknown threshold params" in admin(trust, "patient", "rule", str(patient),
                                               "spo2_low", "--param", "below=88", *why, code=1)
    assert "unknown rule" in admin(trust, "patient", "rule", str(patient), "nope", *why, code=1)
    # who decided it and why are required (H-017)
    assert "--note" in admin(trust, "patient", "rule", str(patient), "missed_spo2",
                             "--disable", "--by", "nina", code=2)
    assert "--by" in admin(trust, "patient", "rule", str(patient), "missed_spo2",
                           "--disable", "--note", "x", code=2)
    assert "must say why" in admin(trust, "patient", "rule", str(patient), "missed_spo2",
                                   "--disable", "--by", "nina", "--note", " ", code=1)
    assert len(json.loads(admin(trust, "patient", "rules", str(patient), "--json"))) == 2


# -- hubs: provision and revoke -------------------------------------------------------------

@pytest.fixture
def dynsec_env(mosquitto_factory: Callable[..., MosquittoServer],
               monkeypatch: pytest.MonkeyPatch) -> Iterator[MosquittoServer]:
    from tests.broker_support import PASSWORDS, PROVISIONER, dynsec_broker

    broker = dynsec_broker(mosquitto_factory)
    for name, value in {"MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(broker.port),
                        "MQTT_PROVISIONER_USERNAME": PROVISIONER,
                        "MQTT_PROVISIONER_PASSWORD": PASSWORDS[PROVISIONER]}.items():
        monkeypatch.setenv(f"HOMEWARD_{name}", value)
    get_settings.cache_clear()
    yield broker
    get_settings.cache_clear()


def test_provision_prints_a_bundle_once_and_revoke_takes_it_away(
        trust: str, dynsec_env: MosquittoServer, tmp_path: Path) -> None:
    from homeward.provisioning import read_bundle
    from tests.broker_support import Probe

    out = admin(trust, "hub", "provision", "hub-42")
    bundle = json.loads(out[:out.rindex("}") + 1])
    assert (bundle["hub_id"], bundle["broker_url"]) == (
        "hub-42", f"mqtt://127.0.0.1:{dynsec_env.port}")
    refused = admin(trust, "hub", "provision", "hub-42", "--out", str(tmp_path / "b.json"),
                    code=1)
    assert "already has broker credentials" in refused and "--replace" in refused
    admin(trust, "hub", "provision", "hub-42", "--replace", "--out", str(tmp_path / "b.json"))
    replaced = read_bundle(tmp_path / "b.json")
    assert replaced.password != bundle["password"]
    hubs = json.loads(admin(trust, "hub", "list", "--json"))
    assert [(h["id"], h["revoked_at"]) for h in hubs] == [("hub-42", None)]
    assert "revoked" in admin(trust, "hub", "revoke", "hub-42")
    probe = Probe(dynsec_env.port, "hub-42", replaced.password)
    try:
        assert probe.connack != "Success"
    finally:
        probe.close()
    assert json.loads(admin(trust, "hub", "list", "--json"))[0]["revoked_at"] is not None
    assert "unknown hub 'ghost'" in admin(trust, "hub", "revoke", "ghost", code=1)


def test_provisioning_without_a_broker_says_so_and_can_be_run_again(
        trust: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from stack.services import free_port

    monkeypatch.setenv("HOMEWARD_MQTT_PORT", str(free_port()))  # nothing listens there
    get_settings.cache_clear()
    try:
        unset = admin(trust, "hub", "provision", "hub-43", code=1)
        monkeypatch.setenv("HOMEWARD_MQTT_PROVISIONER_PASSWORD", "pw")
        get_settings.cache_clear()
        out = admin(trust, "hub", "provision", "hub-43", code=1)
    finally:
        get_settings.cache_clear()
    assert "HOMEWARD_MQTT_PROVISIONER_PASSWORD is not set" in unset
    assert "the broker did not make hub hub-43's credentials" in out
    hubs = json.loads(admin(trust, "hub", "list", "--json"))
    assert [h["id"] for h in hubs] == ["hub-43"]  # recorded; provisioning again completes it
