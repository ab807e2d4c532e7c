"""schemathesis, with all its checks, against the API served by uvicorn on a real database.

Every operation in /openapi.json is generated against (positive and negative
data, the coverage and fuzzing phases), as the organisation's admin so that no
route is out of reach.  The assertion is the one issue 11 asks for: not one
failure of any check (status codes, headers and bodies as published, a 405's
Allow header, schema-valid data accepted, invalid data refused, no 5xx) and no
request the server failed to answer.  tests/schemathesis.toml holds the one
setting that differs from schemathesis's defaults, and why.

The event stream is left out: it never ends, so a generated request would
only time out; tests/test_api_limits.py covers it.  So are the PDF routes: each answer
is a Chromium print, and their own tests cover them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from homeward.settings import Settings
from stack.services import MosquittoServer
from tests.api_support import running_api, seed_world

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ST = Path(sys.executable).with_name("st")
CONFIG = Path(__file__).with_name("schemathesis.toml")
#: Test cases per operation and phase: 40 runs in ~56 s here (50 took ~68 s).  25 missed the
#: NUL in ``team`` that made the old GET /api/alerts answer 500; test_api_limits's
#: test_nul_bytes_answer_422 now holds that one directly.
MAX_EXAMPLES = 40
SEED = 7  # a fixed seed: a failure found is found again


def test_schemathesis_with_all_checks_finds_no_failure(
        db_url: str, mosquitto: MosquittoServer, tmp_path: Path) -> None:
    world = seed_world(db_url)
    report = tmp_path / "schemathesis.json"
    with running_api(Settings(database_url=db_url, mqtt_port=mosquitto.port)) as base:
        run = subprocess.run(
            [str(ST), "--config-file", str(CONFIG), "run", f"{base}/openapi.json",
             "--checks", "all",
             "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
             "--header", f"Authorization: Bearer {world.admin_token}",
             "--exclude-path", "/api/alerts/stream",
             # each PDF is a headless Chromium print (about 1.2 s): schemathesis spent
             # most of its time there; tests/test_shift_report.py and
             # test_discharge_summary.py hold those routes to their documented answers
             "--exclude-path-regex", r"\.pdf$",
             "--request-timeout", "10",
             "--workers", "1", "--report", "json", "--report-json-path", str(report)],
            capture_output=True, text=True, timeout=240, check=False)
    assert report.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    result = orjson.loads(report.read_bytes())
    failures = result["failures"]
    print("\n".join(f"{f['code']} {f['title']}: {f['count']} in {', '.join(f['operations'])}"
                    for f in failures) or "no failures of any check")

    operations = result["operations"]
    assert operations["tested"] == operations["selected"] > 0, operations
    assert result["test_cases"]["generated"] > 10 * operations["tested"]
    assert failures == [], run.stdout[-6000:]
    assert result["errors"] == [], run.stdout[-6000:]  # e.g. a connection dropped mid-answer
