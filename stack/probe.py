"""``homeward probe ingest|alerts|api``: the health check an orchestrator runs.

It asks the process on this machine (the container's own loopback) whether it
is ready, at the address its settings give it: the ingest's and the alert
worker's ``/healthz`` on their metrics ports (homeward.telemetry), the API's
``/health``.  Exit status 0 when the answer is 200, 1 otherwise, with the
answer's body on stdout, which ``docker inspect`` shows for the last checks.
"""

from __future__ import annotations

import enum
import urllib.error
import urllib.request

import typer


class Process(enum.StrEnum):
    ingest = "ingest"
    alerts = "alerts"
    api = "api"


def probe_url(process: Process) -> str:
    """Where ``process`` answers its readiness, from this process's settings."""
    from homeward.settings import get_settings
    from homeward.telemetry import READY_PATH

    s = get_settings()
    host, port, path = {
        Process.ingest: (s.ingest_metrics_host, s.ingest_metrics_port, READY_PATH),
        Process.alerts: (s.alerts_metrics_host, s.alerts_metrics_port, READY_PATH),
        Process.api: (s.api_host, s.api_port, "/health"),
    }[process]
    if port == 0:
        raise typer.BadParameter(f"{process.value} serves no readiness: its metrics port "
                                 "is 0 (HOMEWARD_*_METRICS_PORT)")
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 -- bound everywhere: ask the loopback
        host = "127.0.0.1"
    return f"http://{host}:{port}{path}"


def register(app: typer.Typer) -> None:
    @app.command()
    def probe(
        process: Process = typer.Argument(..., help="which process on this machine to ask"),
        url: str = typer.Option(None, help="ask here instead of the settings' address"),
        timeout: float = typer.Option(3.0, help="seconds to wait for the answer"),
    ) -> None:
        """Health check: exit 0 when the process answers ready (200), else 1."""
        target = url or probe_url(process)
        try:
            with urllib.request.urlopen(target, timeout=timeout) as response:  # noqa: S310
                typer.echo(response.read().decode(errors="replace"))
                raise typer.Exit(0 if response.status == 200 else 1)
        except urllib.error.HTTPError as err:
            typer.echo(err.read().decode(errors="replace"))
            raise typer.Exit(1) from None
        except OSError as err:
            typer.echo(f"{target}: {err}", err=True)
            raise typer.Exit(1) from None
