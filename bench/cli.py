"""``homeward bench ingest|alerts|api|fhir-export|pipeline|edge|sim-racp``: figures with the
command that made them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(bench: typer.Typer) -> None:
    @bench.command("ingest")
    def bench_ingest(
        hubs: int = typer.Option(200, min=1, help="simulated hubs (one MQTT client each)"),
        per_message: int = typer.Option(100, min=1, help="readings per MQTT message"),
        seconds: float = typer.Option(20.0, min=1, help="how long to publish"),
        rate: int = typer.Option(24000, min=0, help="offered readings/s (0: as fast as "
                                                    "possible)"),
        database_url: str = typer.Option(None, help="use this database instead of a "
                                                    "private PostgreSQL"),
        mqtt_port: int = typer.Option(None, help="use the broker on 127.0.0.1:PORT instead "
                                                 "of a private Mosquitto"),
        in_process: bool = typer.Option(False, help="run the ingest in this process "
                                                    "(default: a subprocess)"),
        as_json: bool = typer.Option(False, "--json", help="print the figures as JSON"),
        enrolled: bool = typer.Option(False, help="enrol each hub to a patient first, so "
                                                  "readings are attributed"),
    ) -> None:
        """Readings/s and publish→commit latency through the real broker, ingest and database."""
        from bench.ingest import BenchOptions, main

        raise typer.Exit(main(BenchOptions(hubs=hubs, per_message=per_message, seconds=seconds,
                                           rate=rate, database_url=database_url,
                                           mqtt_port=mqtt_port, in_process=in_process,
                                           as_json=as_json, enrolled=enrolled)))

    @bench.command("alerts")
    def bench_alerts(
        readings: Annotated[int, typer.Option(help="readings for the throughput run")] = 20000,
        patients: Annotated[int, typer.Option(help="patients they are spread over")] = 500,
        rate: Annotated[float, typer.Option(help="readings/s offered in the latency run")]
        = 1000.0,
        seconds: Annotated[float, typer.Option(help="length of the latency run")] = 10.0,
        alert_every: Annotated[int, typer.Option(
            help="one reading in this many raises a new alert in the latency run")] = 50,
        database_url: Annotated[str | None, typer.Option(
            "--database-url", help="an EMPTY database to use; default: a private PostgreSQL "
                                   "in a temporary folder")] = None,
    ) -> None:
        """Readings evaluated per second and p99 commit -> alert time (`homeward alerts`)."""
        from bench.alerts import run_bench

        run_bench(readings=readings, patients=patients, rate=rate, seconds=seconds,
                  alert_every=alert_every, database_url=database_url, echo=typer.echo)

    @bench.command("api")
    def bench_api(
        requests: Annotated[int, typer.Option(min=5, help="timed requests per figure")] = 50,
        warmup: Annotated[int, typer.Option(min=0, help="untimed requests first")] = 3,
        database_url: Annotated[str | None, typer.Option(
            "--database-url", help="use (and seed once) this database instead of a private "
                                   "PostgreSQL")] = None,
        keep: Annotated[Path | None, typer.Option(
            help="keep the private PostgreSQL in this folder; a second run reuses it "
                 "without seeding")] = None,
        plain: Annotated[bool, typer.Option(
            help="a private PostgreSQL without TimescaleDB even when it is installed")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    ) -> None:
        """Caseload, triage queue and chart series p50/p95 on 2,000 patients x 90 days
        through the real `homeward serve`, and the access audit's cost per request."""
        import orjson

        from bench.api import ApiBenchOptions, render, run

        opts = ApiBenchOptions(requests=requests, warmup=warmup, database_url=database_url,
                               keep=keep, plain=plain, as_json=as_json)
        result = run(opts, echo=None if as_json else typer.echo)
        if as_json:
            typer.echo(orjson.dumps(result).decode())
        else:
            for line in render(result):
                typer.echo(line)

    @bench.command("fhir-export")
    def bench_fhir_export(
        readings: Annotated[int, typer.Option(min=1000, help="readings of the large team "
                                                         "(the small one has a tenth)")
                            ] = 1_000_000,
        patients: Annotated[int, typer.Option(min=1, help="patients per team")] = 1000,
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    ) -> None:
        """FHIR bulk export through the real `homeward serve`: Observations/s, MB/s and the
        server's peak RSS for a team of N readings and one of N/10."""
        import orjson

        from bench.fhir_export import ExportBenchOptions, render, run

        result = run(ExportBenchOptions(readings=readings, patients=patients,
                                        as_json=as_json),
                     echo=None if as_json else lambda line: typer.echo(line, err=True))
        if as_json:
            typer.echo(orjson.dumps(result).decode())
        else:
            for line in render(result):
                typer.echo(line)

    @bench.command("pipeline")
    def bench_pipeline(
        hubs: int = typer.Option(2000, min=1, help="simulated hubs, a patient each"),
        rate: int = typer.Option(24000, min=0, help="offered readings/s (0: as fast as "
                                                    "possible)"),
        seconds: float = typer.Option(60.0, min=1, help="how long to publish"),
        per_message: int = typer.Option(100, min=1, help="readings per MQTT message"),
        alert_share: float = typer.Option(0.0005, min=0, max=1, help="share of readings "
                                          "scripted to raise an alert (SpO2 85 %)"),
        ingests: int = typer.Option(1, min=1, help="ingest processes ($share group if > 1)"),
        engines: int = typer.Option(1, min=1, help="alert engine processes (partitions k/n)"),
        seed: int = typer.Option(7, help="seed of the scripted alerts"),
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    ) -> None:
        """The whole pipeline: hubs -> broker -> ingest(s) -> PostgreSQL -> engine(s) ->
        the API's live stream; stored/s, evaluated/s, publish->stored and publish->alert
        latency, backlog, lost and duplicated readings and alerts, CPU a reading."""
        import orjson

        from bench.pipeline import PipelineOptions, passed, render, run

        opts = PipelineOptions(hubs=hubs, rate=rate, seconds=seconds, per_message=per_message,
                               alert_share=alert_share, ingests=ingests, engines=engines,
                               seed=seed, as_json=as_json)
        result = run(opts, echo=None if as_json else lambda line: typer.echo(line, err=True))
        if as_json:
            typer.echo(orjson.dumps(result).decode())
        else:
            for line in render(result):
                typer.echo(line)
        if not passed(result):
            raise typer.Exit(1)

    @bench.command("edge")
    def bench_edge(
        seconds: float = typer.Option(2.0, min=0.2, help="Seconds per measurement."),
        folder: Annotated[Path | None, typer.Option(
            help="Where to put the outbox (default: /tmp); measure on the hub's own storage.")
        ] = None,
    ) -> None:
        """Edge decode rate (one core) and durable outbox throughput (FULL and NORMAL)."""
        import platform
        import sys

        from bench.edge_decode import measure_decode_rate
        from bench.edge_outbox import measure_outbox_rate
        from edge.outbox import Synchronous

        typer.echo(f"interpreter: {platform.python_implementation()} "
                   f"{platform.python_version()} ({sys.executable})")
        decode = measure_decode_rate(seconds)
        per_cpu = decode["readings_per_cpu_second"]
        typer.echo(f"decode: {decode['readings_per_second']:,} readings/s wall clock, "
                   f"{per_cpu:,} per CPU-second (the figure other load cannot lower) "
                   f"({decode['readings']:,} in {decode['seconds']} s; target >= 200,000)")
        where = folder or Path("/tmp")  # noqa: S108 -- a benchmark's scratch file
        typer.echo(f"outbox on {where} (readings/s; add_1 = one commit per reading, the "
                   "agent's contract):")
        modes: tuple[Synchronous, ...] = ("FULL", "NORMAL")
        for mode in modes:
            rates = measure_outbox_rate(mode, seconds=seconds, folder=folder)
            typer.echo(f"  synchronous={mode:<6} add_1 {rates['add_1']:>10,.0f}   "
                       f"add_100 {rates['add_100']:>10,.0f}   drain {rates['drain']:>10,.0f}")

    @bench.command("sim-racp")
    def bench_racp(records: int = typer.Option(2000, min=1, max=65000)) -> None:
        """Stored-record download rate: virtual glucose meter -> bleak -> edge.ble -> edge.gatt."""
        import asyncio
        import sys

        from bench.sim_racp import download_records

        elapsed = asyncio.run(download_records(records))
        typer.echo(f"{records} RACP records downloaded and decoded in {elapsed:.3f} s: "
                   f"{records / elapsed:,.0f} records/s ({sys.executable})")
