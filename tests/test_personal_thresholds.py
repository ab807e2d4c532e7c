"""A personal threshold set through the API with a reason takes effect on the patient's
next reading: the real alert engine raises, or stays quiet, by it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from alerts import store
from alerts.ruleset import load_ruleset
from alerts.sample_data import insert_reading
from alerts.worker import AlertEngine
from homeward.settings import Settings
from tests.api_support import running_api
from tests.test_access import seed_clinic

pytestmark = pytest.mark.integration


def _systolic_at_least(value: int) -> dict[str, object]:
    return {"when": {"any": [{"metric": "systolic", "op": ">=", "value": value},
                             {"metric": "diastolic", "op": ">=", "value": 120}]}}


@pytest.mark.hazard("H-017")
def test_a_personal_threshold_takes_effect_on_the_next_reading(db_url: str) -> None:
    world = seed_clinic(db_url)
    engine = AlertEngine(load_ruleset())
    with psycopg.connect(db_url, autocommit=True) as conn, \
            running_api(Settings(database_url=db_url)) as base, \
            httpx.Client(base_url=base, timeout=10, headers={
                "Authorization": f"Bearer {world.tokens['nurse_b']}"}) as nurse:
        patient, path = world.patient_b, f"/api/patients/{world.patient_b}/rules/bp_severe"
        conn.execute("UPDATE alert SET state = 'resolved', resolved_at = now(),"
                     " outcome = 'other' WHERE patient_id = %s", (patient,))

        def bp_open_after(systolic: int, minutes: int) -> bool:
            insert_reading(conn, patient_id=patient, kind="blood_pressure", hub_id="hub-b",
                           values={"systolic": systolic, "diastolic": 90, "pulse_rate": 70},
                           taken_at=datetime.now(UTC) + timedelta(seconds=minutes))
            engine.process_batch(conn)
            return any(a["rule_id"] == "bp_severe"
                       for a in store.list_alerts(conn, patient_id=patient))

        raised = nurse.put(path, json={"overrides": _systolic_at_least(200),
                                       "reason": "known high baseline; GP aware"})
        assert raised.status_code == 200, raised.text
        assert not bp_open_after(186, 1)   # above NICE's 180, below her own 200
        lowered = nurse.put(path, json={"overrides": _systolic_at_least(170),
                                        "reason": "new medication, watch closely"})
        assert lowered.status_code == 200
        assert bp_open_after(175, 2)       # below 180, above her own 170
        timeline = nurse.get(f"/api/patients/{patient}/timeline").json()
    reasons = [e["detail"]["note"] for e in timeline if e["type"] == "rule_setting"]
    assert reasons == ["new medication, watch closely", "known high baseline; GP aware"]
