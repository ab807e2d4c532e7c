"""``homeward bench fhir-export``: FHIR bulk export rows/s, and the server's memory.

Two teams on a private PostgreSQL: a small one (``--readings`` / 10 readings) and a
large one (``--readings``, default 1,000,000), each of ``--patients`` patients with
blood pressures and oximetry spread over 90 days, generated inside PostgreSQL.
The real ``homeward serve`` runs as a subprocess; a system client kicks off
``Group/{team}/$export`` for each team in turn and downloads every NDJSON file
with httpx, streaming, while a thread samples the server's resident memory
(``VmRSS`` in /proc) every 50 ms.  The figures: resources and readings a second,
MB/s, and the server's RSS before and at its peak during each export.  If the
server buffered a file, the large export's peak would be about ten times the
small one's growth; streamed, both stay near the baseline.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.api import _say
from bench.proc import rss_kib

KINDS_SQL = """
INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, "values", received_at)
SELECT gen_random_uuid(), %(start)s + (n * interval '90 days' / %(per)s),
       CASE WHEN n %% 2 = 0 THEN 'blood_pressure' ELSE 'spo2' END,
       'bench-hub-' || p.id, p.id, 'C4:7C:8D:6A:3E:21',
       CASE WHEN n %% 2 = 0
            THEN jsonb_build_object('systolic', 120 + n %% 40, 'diastolic', 80,
                                    'pulse_rate', 60 + n %% 30)
            ELSE jsonb_build_object('spo2', 90 + n %% 9, 'pulse_rate', 60 + n %% 30) END,
       %(start)s + (n * interval '90 days' / %(per)s) + interval '3 seconds'
  FROM patient p CROSS JOIN generate_series(0, %(per)s - 1) AS n
 WHERE p.id = ANY(%(patients)s)
"""


@dataclass(frozen=True)
class ExportBenchOptions:
    readings: int = 1_000_000
    patients: int = 1000
    as_json: bool = False


def _seed(conn: psycopg.Connection[Any], team: str, organisation: int, readings: int,
          patients: int, echo: Callable[[str], None] | None) -> None:
    from datetime import UTC, datetime

    from server import admin

    admin.create_team(conn, team_id=team, organisation_id=organisation, name=team,
                      kind="district_nursing")
    ids = [admin.create_patient(conn, display_name=f"{team} {n}", teams=[team])
           for n in range(patients)]
    per = max(1, readings // patients)
    start = datetime(2026, 9, 1, tzinfo=UTC)
    for first in range(0, len(ids), 100):  # a commit every 100 patients
        with conn.transaction():
            conn.execute(KINDS_SQL, {"start": start, "per": per,
                                     "patients": ids[first:first + 100]})
        _say(echo, f"  {team}: {min(first + 100, len(ids)) * per:,} readings")


class RssSampler:
    """The peak of a process's VmRSS while running, sampled every ``every`` seconds."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def export_team(base: str, token: str, team: str, pid: int) -> dict[str, Any]:
    """Kick off, poll and download one team's export; count lines and bytes."""
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=600, headers=auth) as client:
        before = rss_kib(pid)
        started = time.perf_counter()
        kick = client.get(f"{base}/fhir/r4/Group/{team}/$export",
                          headers={"Prefer": "respond-async"})
        kick.raise_for_status()
        manifest = client.get(kick.headers["content-location"]).json()
        files: dict[str, dict[str, float]] = {}
        with RssSampler(pid) as rss:
            for output in manifest["output"]:
                lines = size = 0
                file_start = time.perf_counter()
                with client.stream("GET", output["url"]) as response:
                    response.raise_for_status()
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        lines += chunk.count(b"\n")
                files[output["type"]] = {"resources": lines, "bytes": size,
                                         "seconds": time.perf_counter() - file_start}
        seconds = time.perf_counter() - started
    observation = files["Observation"]
    return {
        "team": team,
        "seconds": round(seconds, 2),
        "files": {k: {"resources": int(v["resources"]), "mb": round(v["bytes"] / 1e6, 1),
                      "seconds": round(v["seconds"], 2)} for k, v in files.items()},
        "observations_per_s": round(observation["resources"] / observation["seconds"]),
        "mb_per_s": round(observation["bytes"] / 1e6 / observation["seconds"], 1),
        "rss_before_mib": round(before / 1024, 1),
        "rss_peak_mib": round(rss.peak / 1024, 1),
    }


def run(opts: ExportBenchOptions, echo: Callable[[str], None] | None) -> dict[str, Any]:
    from bench.api import running_server
    from server import admin
    from server.migrate import migrate
    from stack.services import PostgresServer

    folder = Path(tempfile.mkdtemp(prefix="homeward-bench-fhir-"))
    pg = PostgresServer(folder / "pg", durable=False, timescaledb=False)
    pg.start()
    try:
        migrate(pg.url)
        sizes = {"small": max(opts.patients, opts.readings // 10), "large": opts.readings}
        with psycopg.connect(pg.url, autocommit=True) as conn:
            organisation = admin.create_organisation(conn, name="Bench Trust")
            client = admin.create_system_client(conn, username="bench-gp",
                                                display_name="Bench GP system",
                                                organisation_id=organisation)
            for team, readings in sizes.items():
                _say(echo, f"seeding team {team}: {readings:,} readings ...")
                _seed(conn, team, organisation, readings, opts.patients, echo)
            conn.execute("VACUUM ANALYZE reading")
            counts: dict[str, int] = dict(conn.execute(
                "SELECT t.team_id, count(*) FROM reading r JOIN patient_team t"
                " ON t.patient_id = r.patient_id GROUP BY t.team_id").fetchall())
        load_before = os.getloadavg()
        with running_server(pg.url, folder / "serve.log") as (base, pid):
            exports = []
            for team in ("small", "large"):
                _say(echo, f"exporting team {team} ...")
                result = export_team(base, client.api_token, team, pid)
                result["readings"] = int(counts[team])
                result["readings_per_s"] = round(result["readings"] / result["files"][
                    "Observation"]["seconds"])
                exports.append(result)
        small, large = exports
        return {
            "command": f"homeward bench fhir-export --readings {opts.readings} "
                       f"--patients {opts.patients}",
            "interpreter": f"{platform.python_implementation()} {platform.python_version()} "
                           f"({sys.executable})",
            "database": "plain PostgreSQL (private, non-durable)",
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "exports": exports,
            "size_ratio": round(large["readings"] / small["readings"], 1),
            "rss_growth_ratio": round(
                max(large["rss_peak_mib"] - large["rss_before_mib"], 0.1)
                / max(small["rss_peak_mib"] - small["rss_before_mib"], 0.1), 2),
        }
    finally:
        pg.stop()


def render(result: dict[str, Any]) -> list[str]:
    lines = [f"$ {result['command']}", f"{result['interpreter']}; {result['database']}; "
             f"{result['cpus']} CPUs; load {result['load_average_before']} -> "
             f"{result['load_average_after']}"]
    for e in result["exports"]:
        obs = e["files"]["Observation"]
        lines.append(
            f"team {e['team']}: {e['readings']:,} readings -> {obs['resources']:,} "
            f"Observations, {obs['mb']} MB in {obs['seconds']} s: {e['readings_per_s']:,} "
            f"readings/s, {e['observations_per_s']:,} Observations/s, {e['mb_per_s']} MB/s; "
            f"server RSS {e['rss_before_mib']} MiB before, peak {e['rss_peak_mib']} MiB")
    lines.append(f"{result['size_ratio']}x the readings, {result['rss_growth_ratio']}x the "
                 "RSS growth")
    return lines
