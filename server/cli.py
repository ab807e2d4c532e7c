"""Server commands: ``homeward db migrate``, ``homeward ingest``, ``homeward serve``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    db = typer.Typer(help="Database schema.", no_args_is_help=True)
    app.add_typer(db, name="db")

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
        metrics_port: int = typer.Option(0, help="serve Prometheus-style counters on "
                                                 "127.0.0.1:PORT/metrics (0: off)"),
        log_level: str = typer.Option("INFO"),
    ) -> None:
        """Store MQTT readings and hub status in PostgreSQL (acks only after commit)."""
        import logging

        from homeward.settings import get_settings
        from server.ingest import Ingest, IngestConfig
        from server.metrics import serve_metrics

        logging.basicConfig(level=log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        config = IngestConfig.from_settings(
            get_settings(), database_url=database_url, mqtt_host=mqtt_host,
            mqtt_port=mqtt_port, client_id=client_id, receive_maximum=receive_maximum)
        service = Ingest(config)
        if metrics_port:
            serve_metrics(service.counters, port=metrics_port)
        service.run()

    @app.command()
    def serve(
        host: str = typer.Option(None, help="default HOMEWARD_API_HOST"),
        port: int = typer.Option(None, help="default HOMEWARD_API_PORT"),
        log_level: str = typer.Option("info"),
    ) -> None:
        """Run the REST API and the nurse dashboard (uvicorn)."""
        from homeward.settings import get_settings
        from server.api.app import serve as run_server

        s = get_settings()
        run_server(host=host or s.api_host, port=port or s.api_port, log_level=log_level)

