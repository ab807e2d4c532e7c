"""Alert commands: ``homeward alerts``, ``homeward rules ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DbUrl = Annotated[str | None, typer.Option("--database-url", envvar="HOMEWARD_DATABASE_URL",
                                           help="libpq URL; default from settings")]


def _db_url(url: str | None) -> str:
    from homeward.settings import get_settings

    return url or get_settings().database_url


def register(app: typer.Typer) -> None:
    rules_app = typer.Typer(help="Clinical rules and routing: check, route-test, backtest.",
                            no_args_is_help=True)
    app.add_typer(rules_app, name="rules")

    @app.command("alerts")
    def alerts_run(
        database_url: DbUrl = None,
        rules: Annotated[Path | None, typer.Option(
            "--rules", help="rule file (default: the shipped rules)")] = None,
        routes: Annotated[Path | None, typer.Option(
            "--routes", help="routing file (default: the shipped routes)")] = None,
        poll: Annotated[float, typer.Option(help="poll interval (s) without NOTIFY")] = 1.0,
        tick: Annotated[float, typer.Option(help="scheduler tick interval (s)")] = 5.0,
        batch: Annotated[int, typer.Option(help="readings per transaction, at most")] = 500,
        partition: Annotated[str, typer.Option(
            envvar="HOMEWARD_ALERTS_PARTITION",
            help="k/n: evaluate the patients of buckets b with b % n == k (run one engine per "
                 "k; another with the same k is a standby)")] = "0/1",
        metrics_port: Annotated[int | None, typer.Option(
            help="serve /metrics and /healthz on this port (0: off); default "
                 "HOMEWARD_ALERTS_METRICS_PORT")] = None,
    ) -> None:
        """Run the alert engine: evaluate queued readings, raise, route, escalate, notify."""
        import contextlib
        import faulthandler
        import logging
        import os
        import signal

        from alerts.metrics import AlertMetrics
        from alerts.service import build_worker
        from homeward.logs import configure_logging
        from homeward.settings import get_settings
        from homeward.telemetry import serve

        s = get_settings()
        level = logging.DEBUG if os.environ.get("HOMEWARD_ALERTS_DEBUG") else s.log_level
        configure_logging(s.log_format, level, process="alerts")
        url = _db_url(database_url)
        metrics = AlertMetrics(database_url=url)
        worker = build_worker(url, rules=rules, routes=routes,
                              poll_interval=poll, tick_interval=tick, batch_size=batch,
                              partition=partition, metrics=metrics)
        port = s.alerts_metrics_port if metrics_port is None else metrics_port
        if port:
            serve(metrics.registry, host=s.alerts_metrics_host, port=port,
                  ready=lambda: worker.readiness(max(s.health_worker_stale_seconds,
                                                     3 * poll)))
        # Stopping at any instant is safe (each step is one transaction), so SIGTERM
        # simply interrupts like Ctrl-C.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack
        with contextlib.suppress(KeyboardInterrupt):
            worker.run()

    @rules_app.command("check")
    def rules_check(files: Annotated[list[Path], typer.Argument(
            help="rule files (rules: ...) or routing files (route: ...)")]) -> None:
        """Validate rule or routing files; errors name the culprit and file:line."""
        from alerts.errors import RuleError
        from alerts.ruleset import check_file

        failed = False
        for f in files:
            try:
                typer.echo(f"{f}: OK ({check_file(f)})")
            except RuleError as err:
                failed = True
                typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1 if failed else 0)

    from alerts import cli_more

    cli_more.register_more(app, rules_app)
