"""The ``homeward`` command line.

Each runtime package contributes its own commands through a ``register(app)``
function in its ``cli`` module, and the benchmarks theirs through
``bench.cli.register(bench)``, so this module knows only their names; heavy
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

#: Modules whose ``register(app)`` adds commands.
COMMAND_MODULES = ("server.cli", "server.admin_cli", "server.broker_cli", "alerts.cli",
                   "edge.cli", "device_sim.cli", "stack.ward_cli", "stack.demo", "stack.probe",
                   "stack.deploy_init", "stack.safety_report")
#: The benchmark harnesses (left out of the production image): ``register(bench)``.
BENCH_MODULE = "bench.cli"


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
    try:
        bench_cli = importlib.import_module(BENCH_MODULE)
    except ModuleNotFoundError as err:
        if err.name not in ("bench", BENCH_MODULE):  # an image without the harnesses
            raise
    else:
        bench_cli.register(bench)


_register_all()
