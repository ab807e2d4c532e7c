"""Server commands: ``homeward db migrate``, ``homeward ingest``, ``homeward serve``."""

from __future__ import annotations

import typer

from server.lifecycle_cli import register_db as register_lifecycle


def register(app: typer.Typer) -> None:
    db = typer.Typer(help="Database schema and data lifecycle.", no_args_is_help=True)
    app.add_typer(db, name="db")
    register_lifecycle(db)

    @db.command("migrate")
    def db_migrate(
        database_url: str = typer.Option(None, envvar="HOMEWARD_DATABASE_URL",
                                         help="libpq URL; default from settings"),
    ) -> None:
        """Apply pending SQL migrations in order."""
        from homeward.settings import get_settings
        from server.migrate import migrate

        applied = migrate(database_url or get_settings().database_url, echo=True)
        typer.echo(f"{len(applied)} migration(s) applied" if applied else "schema is up to date")

    @app.command()
    def ingest(
        database_url: str = typer.Option(None, help="libpq URL; default HOMEWARD_DATABASE_URL"),
        mqtt_host: str = typer.Option(None, help="default HOMEWARD_MQTT_HOST"),
        mqtt_port: int = typer.Option(None, help="default HOMEWARD_MQTT_PORT"),
        client_id: str = typer.Option(None, help="persistent session id; default "
                                                 "HOMEWARD_INGEST_CLIENT_ID"),
        receive_maximum: int = typer.Option(10000, min=1, max=65535,
                                            help="unacknowledged messages the broker may "
                                                 "send at once (MQTT 5 Receive Maximum)"),
        metrics_port: int = typer.Option(None, help="serve /metrics and /healthz on this port "
                                                    "(0: off); default "
                                                    "HOMEWARD_INGEST_METRICS_PORT"),
        log_level: str = typer.Option(None, help="default HOMEWARD_LOG_LEVEL"),
    ) -> None:
        """Store MQTT readings and hub status in PostgreSQL (acks only after commit)."""
        from homeward.logs import configure_logging
        from homeward.settings import get_settings
        from homeward.telemetry import serve as serve_metrics
        from server.ingest import Ingest, IngestConfig

        s = get_settings()
        configure_logging(s.log_format, log_level or s.log_level, process="ingest")
        config = IngestConfig.from_settings(
            s, database_url=database_url, mqtt_host=mqtt_host,
            mqtt_port=mqtt_port, client_id=client_id, receive_maximum=receive_maximum)
        service = Ingest(config)
        port = s.ingest_metrics_port if metrics_port is None else metrics_port
        if port:
            serve_metrics(service.metrics.registry, host=s.ingest_metrics_host, port=port,
                          ready=lambda: service.readiness(s.health_worker_stale_seconds))
        service.run()

    @app.command()
    def serve(
        host: str = typer.Option(None, help="default HOMEWARD_API_HOST"),
        port: int = typer.Option(None, help="default HOMEWARD_API_PORT"),
        log_level: str = typer.Option(None, help="default HOMEWARD_LOG_LEVEL"),
        metrics_port: int = typer.Option(None, help="serve /metrics on this port (0: off); "
                                                    "default HOMEWARD_API_METRICS_PORT"),
    ) -> None:
        """Run the REST API and the nurse dashboard (uvicorn)."""
        from homeward.logs import configure_logging
        from homeward.settings import get_settings
        from homeward.telemetry import serve as serve_metrics
        from server.api.app import serve as run_server
        from server.api.observe import API_REGISTRY

        s = get_settings()
        level = log_level or s.log_level
        configure_logging(s.log_format, level, process="api")
        port_ = s.api_metrics_port if metrics_port is None else metrics_port
        if port_:
            serve_metrics(API_REGISTRY, host=s.api_metrics_host, port=port_)
        run_server(host=host or s.api_host, port=port or s.api_port, log_level=level.lower())

