"""Data lifecycle commands under ``homeward db``: retention, backup and restore, a
patient's subject-access export and erasure (docs/operations.md)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

_URL_HELP = "libpq URL; default HOMEWARD_DATABASE_URL"


def _url(database_url: str | None) -> str:
    from homeward.settings import get_settings

    return database_url or get_settings().database_url


class _Progress:
    """Prints a step's running total every few seconds, and its total when done."""

    def __init__(self, every: float = 2.0) -> None:
        self.every = every
        self.started = time.monotonic()
        self.step_started = self.started
        self.last_print = self.started
        self.step = ""

    def __call__(self, step: str, rows: int, done: bool) -> None:
        now = time.monotonic()
        if step != self.step:
            self.step, self.step_started = step, now
        if done:
            if rows:
                typer.echo(f"{step}: {rows:,} rows deleted ({now - self.step_started:.1f} s)")
        elif now - self.last_print >= self.every:
            rate = rows / max(now - self.step_started, 1e-6)
            typer.echo(f"{step}: {rows:,} rows so far ({rate:,.0f} rows/s)")
            self.last_print = now


def register_db(db: typer.Typer) -> None:
    @db.command("retention")
    def retention(
        database_url: str = typer.Option(None, help=_URL_HELP),
        batch_rows: int = typer.Option(None, min=1, help="rows a transaction at most; default "
                                                         "HOMEWARD_RETENTION_BATCH_ROWS"),
        pause: float = typer.Option(0.0, min=0, help="seconds to sleep between batches"),
        every: float = typer.Option(0.0, min=0, help="run again every SECONDS (0: run once)"),
    ) -> None:
        """Delete what is older than its retention period (HOMEWARD_RETENTION_*), in batches."""
        import psycopg

        from homeward.settings import get_settings
        from server.retention import Periods, RetentionBusy, run_retention

        s = get_settings()
        while True:
            started = time.monotonic()
            with psycopg.connect(_url(database_url), autocommit=True) as conn:
                try:
                    report = run_retention(conn, Periods.from_settings(s),
                                           batch_rows=batch_rows or s.retention_batch_rows,
                                           on_progress=_Progress(), pause_seconds=pause)
                except RetentionBusy as err:
                    typer.echo(f"retention: {err}", err=True)
                    if not every:
                        raise typer.Exit(1) from None
                else:
                    typer.echo(f"{sum(report.values()):,} rows deleted in all in"
                               f" {time.monotonic() - started:.1f} s")
            if not every:
                return
            time.sleep(every)

    @db.command("backup")
    def backup(
        file: Path = typer.Argument(..., help="the dump to write (pg_dump custom format)"),
        database_url: str = typer.Option(None, help=_URL_HELP),
    ) -> None:
        """pg_dump the database (one consistent snapshot; the ingest keeps writing)."""
        from server.backup import dump

        dump(_url(database_url), file)
        typer.echo(f"wrote {file} ({file.stat().st_size:,} bytes)")

    @db.command("restore")
    def restore(
        file: Path = typer.Argument(..., exists=True, help="a dump made by `homeward db backup`"),
        database_url: str = typer.Option(..., help="the EMPTY database to restore into"),
        jobs: int = typer.Option(1, min=1, help="parallel restore jobs"),
        no_owner: bool = typer.Option(False, help="do not restore owners and grants"),
    ) -> None:
        """pg_restore a dump into an empty database."""
        from server.backup import restore as run_restore

        run_restore(file, database_url, jobs=jobs, no_owner=no_owner)
        typer.echo(f"restored {file}")

    @db.command("patient-export")
    def patient_export(
        patient_id: int = typer.Argument(...),
        out: Path = typer.Option(None, help="file to write (default: standard output)"),
        requested_by: int = typer.Option(None, help="clinician id the export is audited under"),
        database_url: str = typer.Option(None, help=_URL_HELP),
    ) -> None:
        """Subject-access export: everything held about the patient as one JSON bundle."""
        import psycopg

        from server.subject_access import PatientNotFound, write_bundle

        with psycopg.connect(_url(database_url), autocommit=True) as conn:
            try:
                if out is None:
                    counts = write_bundle(conn, patient_id, sys.stdout.buffer,
                                          requested_by=requested_by)
                    sys.stdout.buffer.flush()
                else:
                    with out.open("wb") as fp:
                        counts = write_bundle(conn, patient_id, fp, requested_by=requested_by)
            except PatientNotFound:
                typer.echo(f"no patient {patient_id}", err=True)
                raise typer.Exit(1) from None
        typer.echo(", ".join(f"{k}: {v}" for k, v in counts.items()), err=True)

    @db.command("patient-erase")
    def patient_erase(
        patient_id: int = typer.Argument(...),
        erased_by: int = typer.Option(..., help="the admin (clinician id) erasing"),
        basis: str = typer.Option(..., help="enrolled_in_error, objection_upheld, "
                                            "consent_withdrawn, retention_expired, "
                                            "court_order or test_record"),
        reason: str = typer.Option(..., help="why (must not name the patient)"),
        yes: bool = typer.Option(False, "--yes", help="do not ask to confirm"),
        database_url: str = typer.Option(None, help=_URL_HELP),
    ) -> None:
        """Erase a discharged patient: everything held about them; the erasure is recorded."""
        import psycopg

        from homeward.settings import get_settings
        from server.erasure import erase_patient

        if not yes:
            typer.confirm(f"Erase patient {patient_id} and everything held about them?",
                          abort=True)
        s = get_settings()
        with psycopg.connect(_url(database_url), autocommit=True) as conn:
            try:
                receipt = erase_patient(
                    conn, patient_id, erased_by=erased_by, basis=basis, reason=reason,
                    key=s.erasure_reference_key or s.secret_key,
                    batch_rows=s.retention_batch_rows)
            except (psycopg.Error, ValueError) as err:
                typer.echo(f"refused: {err}", err=True)
                raise typer.Exit(1) from None
        typer.echo(f"erasure {receipt.erasure_id} recorded (reference {receipt.reference});"
                   f" {sum(receipt.rows_removed.values()):,} rows removed")
