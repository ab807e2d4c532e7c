"""The ``homeward`` command line.

Each package contributes its own commands through a ``register(app, bench)``
function in its ``cli`` module, so this module knows only their names; heavy
imports happen inside the commands, keeping ``homeward --help`` fast.
"""

from __future__ import annotations

import importlib

import typer

from homeward import __version__

app = typer.Typer(
    name="homeward",
    help="Homeward: remote monitoring for care at home.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
bench = typer.Typer(help="Benchmarks: figures with the command that produced them.",
                    no_args_is_help=True)
app.add_typer(bench, name="bench")

#: Modules whose ``register(app, bench)`` adds commands.
COMMAND_MODULES = ("server.cli", "alerts.cli", "edge.cli", "device_sim.cli", "homeward.demo")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # the package has no commands yet
                continue
            raise
        module.register(app, bench)


_register_all()
