"""A team's own escalation policy (set by an admin) is the one its alerts follow, over
the policy the routing file's route chose; without one the route's holds."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from alerts.notify import Notifier
from alerts.routing import load_routing
from server import admin

pytestmark = pytest.mark.integration

MONDAY_NOON = datetime(2026, 3, 2, 12, tzinfo=UTC)  # in hours: the shipped tree's in-hours


@pytest.mark.parametrize(("team_policy", "severity", "expected"), [
    (None, "amber", "standard"),     # the route's
    (None, "red", "urgent"),         # the in-hours red route's
    ("review", "amber", "review"),   # the team's own, over the route's
    ("review", "red", "review"),
])
def test_the_teams_policy_wins_over_the_routes(db_url: str, team_policy: str | None,
                                               severity: str, expected: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        org = admin.create_organisation(conn, name="T")
        admin.create_team(conn, team_id="dn", organisation_id=org, name="DN",
                          kind="district_nursing", escalation_policy=team_policy)
        patient = admin.create_patient(conn, display_name="P", teams=["dn"])
        team, route = Notifier(load_routing()).route(conn, patient, None, severity,
                                                     MONDAY_NOON)
    assert (team, route["escalation"]) == ("dn", expected)
