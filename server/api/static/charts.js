// Charts of a patient's readings with uPlot (vendored, static/vendor/).  Each
// <figure data-chart='{"series": [...], "thresholds": [...], "from", "to"}'> gets one
// plot: a line per metric (raw readings, or hourly/daily means for long ranges) and a
// dashed line per threshold, in the severity's colour.  Times are Europe/London.
// data-font="16px ..." draws the axis labels in that font.
// After drawing, the figure says what it drew (data-points, data-thresholds-drawn and
// data-threshold-pixels, canvas pixel positions) so tests can check the picture.
"use strict";

(function () {
  if (typeof uPlot === "undefined") return;
  const COLOURS = ["#0b5cad", "#6a3d9a", "#1e6b35"];
  const SEVERITY = {red: "#b3261e", amber: "#d89200", info: "#0b4a8c"};
  const HEIGHT = 220;

  const zone = {timeZone: "Europe/London"};
  const clock = new Intl.DateTimeFormat("en-GB", {...zone, hour: "2-digit", minute: "2-digit"});
  const day = new Intl.DateTimeFormat("en-GB", {...zone, day: "numeric", month: "short"});

  // Axis labels in British form: "08:00" within a day (the date under midnight), "3 Dec"
  // for longer steps.
  function timeLabels(u, splits, axisIdx, space, incr) {
    return splits.map((ts) => {
      const at = new Date(ts * 1000);
      if (incr >= 86400 - 1) return day.format(at);
      const hm = clock.format(at);
      return hm === "00:00" ? `${hm}\n${day.format(at)}` : hm;
    });
  }

  function value(p) { return p.v !== undefined ? p.v : p.mean; }

  function aligned(chart) {
    const times = new Set();
    for (const s of chart.series) for (const p of s.points) times.add(Date.parse(p.t) / 1000);
    const xs = Array.from(times).sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    const columns = chart.series.map((s) => {
      const col = new Array(xs.length).fill(null);
      for (const p of s.points) col[index.get(Date.parse(p.t) / 1000)] = value(p);
      return col;
    });
    return [xs, ...columns];
  }

  function yRange(data, thresholds) {
    const values = [];
    for (const col of data.slice(1)) for (const v of col) if (v !== null) values.push(v);
    for (const t of thresholds) values.push(t.value);
    if (values.length === 0) return [0, 1];
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    const pad = Math.max((hi - lo) * 0.1, Math.abs(hi) * 0.02, 1);
    return [lo - pad, hi + pad];
  }

  function thresholdHook(fig, chart) {
    return (u) => {
      const ctx = u.ctx;
      const pixels = [];
      ctx.save();
      ctx.lineWidth = 2 * devicePixelRatio;
      ctx.setLineDash([8 * devicePixelRatio, 5 * devicePixelRatio]);
      ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
      ctx.textAlign = "right";
      ctx.textBaseline = "bottom";
      for (const t of chart.thresholds) {
        const y = Math.round(u.valToPos(t.value, "y", true));
        const left = u.bbox.left;
        const right = u.bbox.left + u.bbox.width;
        ctx.strokeStyle = SEVERITY[t.severity] || "#444";
        ctx.beginPath();
        ctx.moveTo(left, y);
        ctx.lineTo(right, y);
        ctx.stroke();
        ctx.fillStyle = ctx.strokeStyle;
        ctx.fillText(t.label, right - 4 * devicePixelRatio, y - 3 * devicePixelRatio);
        pixels.push({x: Math.round(left + 4 * devicePixelRatio), y,
                     colour: ctx.strokeStyle, severity: t.severity});
      }
      ctx.restore();
      fig.dataset.thresholdsDrawn = String(pixels.length);
      fig.dataset.thresholdPixels = JSON.stringify(pixels);
    };
  }

  function draw(fig) {
    const chart = JSON.parse(fig.dataset.chart);
    const plot = fig.querySelector(".plot");
    const data = aligned(chart);
    const bucketed = chart.series.some((s) => s.resolution !== "raw");
    const series = [{}].concat(chart.series.map((s, i) => ({
      label: s.label + (bucketed ? ` (${s.resolution === "hour" ? "hourly" : "daily"} mean)` : ""),
      stroke: COLOURS[i % COLOURS.length],
      width: 2,
      spanGaps: true,
      points: {show: true, size: bucketed ? 3 : 6},
      value: (u, v) => (v === null ? "—" : `${+v.toFixed(1)}${chart.unit ? " " + chart.unit : ""}`),
    })));
    const [lo, hi] = yRange(data, chart.thresholds);
    const font = fig.dataset.font ? {font: fig.dataset.font} : null;
    const opts = {
      width: Math.max(280, plot.clientWidth || fig.clientWidth),
      height: HEIGHT,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Europe/London"),
      scales: {
        x: {time: true, range: () => [Date.parse(chart.from) / 1000, Date.parse(chart.to) / 1000]},
        y: {range: () => [lo, hi]},
      },
      axes: [{stroke: "#1b1f24", values: timeLabels, size: font ? 64 : 50, ...font},
             {stroke: "#1b1f24", size: font ? 64 : 55, ...font}],
      legend: {live: false},
      series,
      hooks: {draw: [thresholdHook(fig, chart)]},
    };
    const u = new uPlot(opts, data, plot);
    fig.dataset.points = String(data[0].length);
    if (data[0].length === 0) {
      const note = document.createElement("p");
      note.className = "sub";
      note.textContent = "No readings in this range.";
      fig.insertBefore(note, plot.nextSibling);
    }
    if (typeof ResizeObserver !== "undefined") {
      new ResizeObserver(() => {
        const width = Math.max(280, fig.clientWidth);
        if (Math.abs(width - u.width) > 4) u.setSize({width, height: HEIGHT});
      }).observe(fig);
    }
  }

  document.querySelectorAll("figure[data-chart]").forEach(draw);
})();
