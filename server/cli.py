"""Server commands: ``homeward db migrate`` (and the server processes)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
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
