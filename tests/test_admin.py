"""server.admin against a real PostgreSQL: credentials, enrolments, devices."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from server import admin
from server.auth import verify_password
from tests.ingest_support import one

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_clinician_token_is_returned_once_and_stored_hashed(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        org = admin.create_organisation(conn, name="Trust")
        admin.create_team(conn, team_id="copd", organisation_id=org, name="COPD", kind="copd")
        made = admin.create_clinician(conn, username="sam", display_name="Sam", teams=["copd"],
                                      password="s3cret pass")
        token_hash, password_hash = one(conn.execute(
            "SELECT api_token_hash, password_hash FROM clinician WHERE id = %s", (made.id,)))
        teams = conn.execute("SELECT team_id FROM team_member WHERE clinician_id = %s",
                             (made.id,)).fetchall()
        rotated = admin.rotate_api_token(conn, clinician_id=made.id)
        new_hash = one(conn.execute("SELECT api_token_hash FROM clinician WHERE id = %s",
                                    (made.id,)))[0]
    assert len(made.api_token) >= 40
    assert token_hash == hashlib.sha256(made.api_token.encode()).hexdigest()
    assert made.api_token not in password_hash
    assert password_hash.startswith("scrypt$")
    assert verify_password("s3cret pass", password_hash)
    assert not verify_password("s3cret pasS", password_hash)
    assert teams == [("copd",)]
    assert rotated != made.api_token
    assert new_hash == hashlib.sha256(rotated.encode()).hexdigest()


@pytest.mark.hazard("H-003")
def test_enrolments_follow_the_hub_from_patient_to_patient(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        admin.create_hub(conn, hub_id="hub-1")
        a = admin.create_patient(conn, display_name="A")
        b = admin.create_patient(conn, display_name="B")
        admin.enrol(conn, hub_id="hub-1", patient_id=a, valid_from=T0)
        admin.enrol(conn, hub_id="hub-1", patient_id=b, valid_from=T0 + timedelta(days=5))
        with pytest.raises(admin.EnrolmentConflict, match="overlaps"):
            admin.enrol(conn, hub_id="hub-1", patient_id=a, valid_from=T0 + timedelta(days=1),
                        valid_to=T0 + timedelta(days=2))
        with pytest.raises(ValueError, match="timezone-aware"):
            admin.enrol(conn, hub_id="hub-1", patient_id=a, valid_from=datetime(2026, 5, 1))
        assert admin.end_enrolment(conn, hub_id="hub-1", valid_to=T0 + timedelta(days=9)) == 1
        rows = conn.execute("SELECT patient_id, valid_from, valid_to FROM enrolment"
                            " ORDER BY valid_from").fetchall()
    assert rows == [(a, T0, T0 + timedelta(days=5)),
                    (b, T0 + timedelta(days=5), T0 + timedelta(days=9))]


def test_devices_pair_repair_and_remove(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        admin.create_hub(conn, hub_id="hub-d")
        admin.pair_device(conn, hub_id="hub-d", address="AA", kind="spo2")
        assert admin.remove_device(conn, hub_id="hub-d", address="AA")
        assert not admin.remove_device(conn, hub_id="hub-d", address="AA")
        admin.pair_device(conn, hub_id="hub-d", address="AA", kind="temperature", name="therm")
        row = conn.execute("SELECT kind, name, removed_at FROM device").fetchone()
        with pytest.raises(ValueError):
            admin.pair_device(conn, hub_id="hub-d", address="BB", kind="mood")
        with pytest.raises(ValueError, match="bad hub id"):
            admin.create_hub(conn, hub_id="no spaces/please")
    assert row == ("temperature", "therm", None)
