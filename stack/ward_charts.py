"""PNG charts of a virtual-ward report (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]


def charts(out: Path, episodes: pd.DataFrame, report: dict[str, Any],
           other: dict[str, Any] | None = None) -> list[Path]:
    """sensitivity.png, time-to-alert.png and workload.png in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    names = list(report["scenarios"])
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.4 if other is not None else 0.6
    xs = range(len(names))
    ax.bar([x - (width / 2 if other else 0) for x in xs],
           [100 * (report["scenarios"][n]["sensitivity"] or 0) for n in names], width,
           label="rules")
    if other is not None:
        ax.bar([x + width / 2 for x in xs],
               [100 * ((other["scenarios"].get(n) or {}).get("sensitivity") or 0)
                for n in names], width, label="other rules")
        ax.legend()
    ax.set_xticks(list(xs), names, rotation=20, ha="right")
    ax.set_ylabel("deteriorations alerted before harm (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Sensitivity per scenario")
    fig.tight_layout()
    written.append(_save(fig, out / "sensitivity.png"))

    fig, ax = plt.subplots(figsize=(8, 4))
    hit = episodes[episodes["alerted"]] if len(episodes) else episodes
    data = [list(hit[hit["scenario"] == n]["hours_to_alert"]) if len(hit) else []
            for n in names]
    ax.boxplot([d or [0.0] for d in data])
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right")
    ax.set_ylabel("hours from onset to alert")
    ax.set_title("Time to alert (alerted deteriorations)")
    fig.tight_layout()
    written.append(_save(fig, out / "time-to-alert.png"))

    fig, ax = plt.subplots(figsize=(8, 4))
    teams = report["alerts_per_team_per_day"]
    ax.bar(list(teams), list(teams.values()))
    ax.set_ylabel("alerts per day")
    ax.set_title("Workload per team")
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    written.append(_save(fig, out / "workload.png"))
    plt.close("all")
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path
