"""Alert commands: ``homeward alerts``, ``homeward rules ...``, ``homeward bench alerts``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command("alerts")
    def alerts_run(
        database_url: str = typer.Option(None, envvar="HOMEWARD_DATABASE_URL",
                                         help="libpq URL; default from settings"),
        rules: Annotated[Path | None, typer.Option(
            "--rules", help="rule file (default: shipped rules)")] = None,
        poll: float = typer.Option(1.0, help="poll interval (s) when no NOTIFY arrives"),
        batch: int = typer.Option(500, help="readings per transaction, at most"),
    ) -> None:
        """Run the alert engine: evaluate queued readings, raise and route alerts."""
        import contextlib
        import logging
        import signal

        from alerts.ruleset import load_ruleset
        from alerts.worker import AlertEngine, Worker
        from homeward.settings import get_settings

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        ruleset = load_ruleset(rules)
        worker = Worker(database_url or get_settings().database_url,
                        AlertEngine(ruleset, batch_size=batch), poll_interval=poll)
        # Stopping at any instant is safe (each batch is one transaction), so SIGTERM
        # simply interrupts like Ctrl-C.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        with contextlib.suppress(KeyboardInterrupt):
            worker.run()
