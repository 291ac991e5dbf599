// One camera's score line: σ_t, s_t, the alarm threshold (s_t = 0.5) and shaded alarm bands (uPlot).
import uPlot from "./vendor/uPlot.esm.js";

const WINDOW_S = 60; // seconds of history on screen
const MAX_POINTS = 1200;

function alarmBands(u) {
  const [xs, , ss] = u.data;
  const { ctx, bbox } = u;
  ctx.save();
  ctx.fillStyle = "rgba(198, 40, 40, 0.15)";
  let start = null;
  for (let i = 0; i <= xs.length; i++) {
    const on = i < xs.length && ss[i] >= 0.5;
    if (on && start === null) start = xs[i];
    if (!on && start !== null) {
      const x0 = u.valToPos(start, "x", true);
      const x1 = u.valToPos(i < xs.length ? xs[i] : xs[xs.length - 1], "x", true);
      ctx.fillRect(x0, bbox.top, Math.max(1, x1 - x0), bbox.height);
      start = null;
    }
  }
  ctx.restore();
}

export class ScoreChart {
  constructor(el) {
    this.el = el;
    this.data = [[], [], [], []]; // time (s), σ, s_t, threshold
    this.dirty = false;
    const opts = {
      width: Math.max(200, el.clientWidth), height: 120,
      legend: { show: false },
      cursor: { show: false },
      scales: { x: { time: true }, y: { range: [0, 1] } },
      axes: [
        { size: 24, font: "10px system-ui", space: 70, incrs: [1, 2, 5, 10, 15, 30, 60],
          values: (u, splits) => splits.map((s) => new Date(s * 1000).toLocaleTimeString([], { hour12: false })) },
        { size: 30, font: "10px system-ui", splits: () => [0, 0.5, 1] },
      ],
      series: [
        {},
        { label: "σ", stroke: "#1f5fbf", width: 1, points: { show: false } },
        { label: "s", stroke: "#c62828", width: 2, points: { show: false } },
        { label: "alarm threshold", stroke: "#6b7280", width: 1, dash: [4, 4], points: { show: false } },
      ],
      hooks: { drawClear: [alarmBands] },
    };
    this.plot = new uPlot(opts, this.data, el);
    this.resizer = new ResizeObserver(() => this.resize());
    this.resizer.observe(el);
  }

  resize() {
    const w = Math.max(200, this.el.clientWidth);
    if (w !== this.plot.width) this.plot.setSize({ width: w, height: 120 });
  }

  push(tMs, sigma, score) {
    const d = this.data;
    d[0].push(tMs / 1000); d[1].push(sigma); d[2].push(score); d[3].push(0.5);
    const oldest = tMs / 1000 - WINDOW_S;
    let cut = 0;
    while (cut < d[0].length && (d[0][cut] < oldest || d[0].length - cut > MAX_POINTS)) cut++;
    if (cut) for (const a of d) a.splice(0, cut);
    if (!this.dirty) {
      this.dirty = true;
      requestAnimationFrame(() => { this.dirty = false; this.plot.setData(this.data); });
    }
  }
}
