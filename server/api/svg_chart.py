"""Small line charts as inline SVG, drawn on the server: for documents that are printed
(the discharge summary's PDF) as well as shown, where the dashboard's uPlot charts
(static/charts.js, a canvas drawn by JavaScript) cannot go.

One chart per kind: a line per metric (raw readings as points joined by a line; hourly
or daily buckets as the mean with the min-max range shaded), the time axis from the
start of the range to its end, the value axis from the lowest to the highest value with
a little room.  The numbers are written beside the chart too (the statistics table), so
the picture is never the only way to read them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup

from server.api import humantime

WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 10, 26
#: Line colours in drawing order (AA contrast on white), and the range band's.
COLOURS = ("#0b5cad", "#b3261e", "#1e6b35", "#5b3c8c")
BAND = ("#c9dcf2", "#f5c9c5", "#c8e3cf", "#dcd0ec")


@dataclass(frozen=True, slots=True)
class Line:
    label: str
    resolution: str
    points: Sequence[dict[str, Any]]


def _values(line: Line) -> list[tuple[datetime, float, float, float]]:
    """(t, low, mid, high) of each point with a value."""
    out = []
    for p in line.points:
        t = humantime.parse(p.get("t"))
        if t is None:
            continue
        if line.resolution == "raw":
            if p.get("v") is not None:
                v = float(p["v"])
                out.append((t, v, v, v))
        elif p.get("mean") is not None:
            out.append((t, float(p["min"]), float(p["mean"]), float(p["max"])))
    return out


def _ticks(lo: float, hi: float) -> list[float]:
    """Round values from at or below ``lo`` to at or above ``hi``, 3 to 6 of them, a step
    of 1, 2 or 5 times a power of ten apart."""
    if hi - lo < 1e-9:
        lo, hi = lo - max(abs(lo) * 0.05, 1.0), hi + max(abs(hi) * 0.05, 1.0)
    raw = (hi - lo) / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first, last = math.floor(lo / step) * step, math.ceil(hi / step) * step
    count = round((last - first) / step)
    return [first + i * step for i in range(count + 1)]


def _num(v: float) -> str:
    return f"{v:.0f}" if float(round(v, 6)).is_integer() else f"{v:g}"


def _pairs(points: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{a:.1f},{b:.1f}" for a, b in points)


def chart(title: str, unit: str, lines: Sequence[Line], start: datetime,
          end: datetime) -> Markup:
    """An ``<svg>`` with a title, its axes' extremes written, and a line per metric, and
    its legend.  Every text in it is escaped (Markup.format)."""
    data = [(line, _values(line)) for line in lines]
    every = [v for _, values in data for v in values]
    if not every:
        return Markup('<p class="sub">No readings to draw.</p>')
    label = f"{title} chart from {humantime.exact(start)} to {humantime.exact(end)}"
    ticks = _ticks(min(v[1] for v in every), max(v[3] for v in every))
    lo, hi = ticks[0], ticks[-1]
    span = max((end - start).total_seconds(), 1.0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: datetime) -> float:
        return LEFT + plot_w * min(max((t - start).total_seconds() / span, 0.0), 1.0)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - (v - lo) / (hi - lo))

    parts = [Markup('<svg class="svg-chart" viewBox="0 0 {} {}" role="img" aria-label="{}"'
                    ' xmlns="http://www.w3.org/2000/svg"><title>{}</title>'
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="#fff" stroke="#d5dbe1"/>'
                    ).format(WIDTH, HEIGHT, label, label, LEFT, TOP, plot_w, plot_h)]
    for value in ticks:
        parts.append(Markup('<line x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}" stroke="#e6eaee"/>'
                            '<text x="{}" y="{:.1f}" text-anchor="end" font-size="11"'
                            ' fill="#4a5561">{}</text>').format(
            LEFT, WIDTH - RIGHT, y(value), y(value), LEFT - 4, y(value) + 4, _num(value)))
    thirds = [start + (end - start) * i / 3 for i in (1, 2)]
    for t, anchor, words in [(start, "start", _day(start)),
                             *((t, "middle", _day(t, clock=False)) for t in thirds),
                             (end, "end", _day(end))]:
        parts.append(Markup('<line x1="{:.1f}" x2="{:.1f}" y1="{}" y2="{}" stroke="#8a96a3"/>'
                            '<text x="{:.1f}" y="{}" text-anchor="{}" font-size="11"'
                            ' fill="#4a5561">{}</text>').format(
            x(t), x(t), TOP + plot_h, TOP + plot_h + 4, x(t), HEIGHT - 8, anchor, words))
    for i, (line, values) in enumerate(data):
        colour, band = COLOURS[i % len(COLOURS)], BAND[i % len(BAND)]
        if not values:
            continue
        if line.resolution != "raw" and len(values) > 1:
            ring = ([(x(t), y(h)) for t, _, _, h in values]
                    + [(x(t), y(low)) for t, low, _, _ in reversed(values)])
            parts.append(Markup('<polygon points="{}" fill="{}" opacity="0.7"/>').format(
                _pairs(ring), band))
        parts.append(Markup('<polyline points="{}" fill="none" stroke="{}"'
                            ' stroke-width="1.6"/>').format(
            _pairs([(x(t), y(m)) for t, _, m, _ in values]), colour))
        if len(values) <= 200:
            parts += [Markup('<circle cx="{:.1f}" cy="{:.1f}" r="2.2" fill="{}"/>').format(
                x(t), y(m), colour) for t, _, m, _ in values]
    parts.append(Markup('</svg><ul class="legend">'))
    for i, line in enumerate(lines):
        how = {"day": " — daily mean, range shaded", "hour": " — hourly mean, range shaded",
               "minute": " — mean a minute, range shaded"}.get(line.resolution, "")
        parts.append(Markup('<li><span class="swatch swatch-{}" aria-hidden="true"></span>'
                            '{}{}{}</li>').format(i % len(COLOURS), line.label,
                                                 f" ({unit})" if unit else "", how))
    parts.append(Markup("</ul>"))
    return Markup("").join(parts)


def _day(at: datetime, *, clock: bool = True) -> str:
    local = at.astimezone(humantime.LONDON)
    return f"{local.day} {local.strftime('%b %Y %H:%M' if clock else '%b')}"
