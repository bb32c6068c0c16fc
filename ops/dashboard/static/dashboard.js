// driftrec live dashboard: polls /dashboard/api/history (new rows after a cursor) and
// /dashboard/api/status every second, and draws with Chart.js (vendored). Every time
// chart shares one x axis (ms on Redis's clock); markers and the reference window are
// chartjs-plugin-annotation annotations, so nothing here draws on a canvas by hand.
"use strict";

const POLL_MS = 1000;
const COLORS = ["#3b6fd4", "#e5484d", "#2e9d57", "#f08c00", "#8e4ec6", "#12a5b0", "#6b7280", "#c2410c"];
const MARKER_STYLE = {
  "drift-alarm": { color: "#e5484d", width: 2 },
  "promote": { color: "#2e9d57", width: 2 },
  "auto-promote": { color: "#2e9d57", width: 1, dash: [4, 3] },
  "rollback": { color: "#f08c00", width: 3 },
  "embedding-switch": { color: "#8e4ec6", width: 2 },
  "checkpoint": { color: "#c8c8c8", width: 1, dash: [2, 4] },
};

// Each time chart: title, and series (key in a row, label, which rows carry it).
const TIMELINE = [
  { id: "auc", title: "rolling AUC (click, conversion)", series: [["click.auc", "click AUC"], ["conversion.auc", "conversion AUC"]], rows: "trainer", bands: true },
  { id: "logloss", title: "rolling log-loss", series: [["click.logloss", "click log-loss"], ["conversion.logloss", "conversion log-loss"]], rows: "trainer", bands: true },
  { id: "mae", title: "rolling dwell MAE (log s)", series: [["dwell.mae", "dwell MAE"]], rows: "trainer", bands: true },
  { id: "throughput", title: "throughput (per s, sliding window)", series: [["events_rate", "events/s", "joiner"], ["examples_rate", "examples/s", "trainer"]] },
  { id: "lag", title: "consumer lag per partition", series: "lag" },
  { id: "freshness", title: "freshness (s): emitted → learned", series: [["freshness_p50_s", "p50"], ["freshness_p95_s", "p95"]], rows: "trainer", target: "freshness" },
  { id: "psi", title: "label-free drift (PSI vs reference)", series: [["psi_max", "largest feature PSI"], ["click_psi", "predicted-click PSI"]], rows: "trainer", target: "psi" },
];

const state = {
  cursor: { trainer: "-", joiner: "-", events: "-", registry: "-" },
  rows: { trainer: [], joiner: [] },
  markers: [],
  reference: {},
  referenceWindow: null,
  nowMs: null,
  freshnessTarget: null,
  charts: {},
};

const timeLabel = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });

function makeTimeChart(spec) {
  const box = document.createElement("div");
  box.className = "chart";
  box.dataset.chart = spec.id;
  const canvas = document.createElement("canvas");
  canvas.id = `chart-${spec.id}`;
  box.appendChild(canvas);
  document.getElementById("timeline").appendChild(box);
  return new Chart(canvas, {
    type: "line",
    data: { datasets: [] },
    options: {
      animation: false,
      parsing: false,
      normalized: true,
      maintainAspectRatio: false,
      spanGaps: true,
      elements: { point: { radius: 0 }, line: { borderWidth: 1.5 } },
      scales: {
        x: { type: "linear", ticks: { callback: (v) => timeLabel(v), maxTicksLimit: 8 } },
        // A fixed width for every y axis, so the plot areas, and so the time axes, line up.
        y: { beginAtZero: spec.id === "throughput" || spec.id === "lag", afterFit: (scale) => { scale.width = 56; } },
      },
      plugins: {
        title: { display: true, text: spec.title, align: "start" },
        legend: { position: "top", align: "end", labels: { boxWidth: 10 } },
        decimation: { enabled: true, algorithm: "lttb", samples: 800 },
        annotation: { annotations: {} },
        tooltip: { mode: "nearest", intersect: false, callbacks: { title: (items) => items.length ? timeLabel(items[0].parsed.x) : "" } },
      },
    },
  });
}

function seriesOf(spec) {
  if (spec.series !== "lag") {
    return spec.series.map(([key, label, rows]) => ({ key, label, rows: rows || spec.rows }));
  }
  const keys = new Map();
  for (const rows of ["joiner", "trainer"]) {
    for (const row of state.rows[rows]) {
      for (const key of Object.keys(row)) if (key.startsWith("lag.")) keys.set(key, rows);
    }
  }
  return [...keys].sort().map(([key, rows]) => ({ key, label: key.slice(4), rows }));
}

function annotationsFor(spec, datasets) {
  const out = {};
  if (state.referenceWindow) {
    const [start, end] = state.referenceWindow;
    out.reference = { type: "box", xMin: start, xMax: end, backgroundColor: "rgba(70,130,220,0.08)", borderWidth: 0 };
  }
  if (spec.bands) {
    datasets.forEach((ds, i) => {
      const band = state.reference[ds.key];
      if (band) {
        out[`band-${ds.key}`] = {
          type: "box", yMin: band.low, yMax: band.high,
          backgroundColor: COLORS[i % COLORS.length] + "22", borderWidth: 0,
          label: { display: false, content: `${ds.label} reference ${band.mean.toFixed(4)}` },
        };
      }
    });
  }
  if (spec.target === "freshness" && state.freshnessTarget) {
    out.target = { type: "line", yMin: state.freshnessTarget, yMax: state.freshnessTarget, borderColor: "#e5484d", borderDash: [6, 4], borderWidth: 1,
      label: { display: true, content: "target", position: "end", font: { size: 10 } } };
  }
  if (spec.target === "psi") {
    out.moderate = { type: "line", yMin: 0.1, yMax: 0.1, borderColor: "#f08c00", borderDash: [6, 4], borderWidth: 1 };
    out.large = { type: "line", yMin: 0.25, yMax: 0.25, borderColor: "#e5484d", borderDash: [6, 4], borderWidth: 1 };
  }
  state.markers.forEach((m, i) => {
    const style = MARKER_STYLE[m.kind];
    out[`marker-${i}`] = {
      type: "line", xMin: m.ms, xMax: m.ms, borderColor: style.color, borderWidth: style.width,
      borderDash: style.dash || [], drawTime: "afterDatasetsDraw",
      label: { display: spec.id === "auc" && m.kind !== "checkpoint" && m.kind !== "auto-promote", content: m.kind, position: "start", font: { size: 9 } },
    };
  });
  return out;
}

function redrawTimeline() {
  const all = [...state.rows.trainer, ...state.rows.joiner];
  if (!all.length) return;
  const xMin = Math.min(state.rows.trainer[0]?.ms ?? Infinity, state.rows.joiner[0]?.ms ?? Infinity);
  const xMax = state.nowMs ?? Math.max(...all.map((r) => r.ms));
  for (const spec of TIMELINE) {
    const chart = state.charts[spec.id];
    const datasets = seriesOf(spec).map((s, i) => ({
      key: s.key,
      label: s.label,
      borderColor: COLORS[i % COLORS.length],
      backgroundColor: COLORS[i % COLORS.length],
      data: state.rows[s.rows].filter((r) => r[s.key] !== undefined && r[s.key] !== null).map((r) => ({ x: r.ms, y: r[s.key] })),
    }));
    chart.data.datasets = datasets;
    chart.options.scales.x.min = xMin;
    chart.options.scales.x.max = xMax;
    chart.options.plugins.annotation.annotations = annotationsFor(spec, datasets);
    chart.update("none");
  }
}

function renderMarkers() {
  const list = document.getElementById("markers");
  list.replaceChildren(...state.markers.slice().reverse().slice(0, 200).map((m) => {
    const li = document.createElement("li");
    li.dataset.kind = m.kind;
    li.textContent = `${timeLabel(m.ms)} ${m.label}`;
    return li;
  }));
}

function renderLabelFree(drift) {
  const movers = document.getElementById("top-movers");
  if (!drift) {
    movers.textContent = "no reference window yet (the first promotion sets it)";
    return;
  }
  const top = drift.top_movers.length ? drift.top_movers.map((f) => `${f} (${drift.psi[f].toFixed(3)})`).join(", ") : "none above 0.1";
  movers.innerHTML = "";
  movers.append(`reference ${drift.reference_version} (${drift.reference_rows} rows) vs last ${drift.current_rows} rows · top movers: `);
  const strong = document.createElement("strong");
  strong.id = "top-movers-list";
  strong.textContent = top;
  movers.append(strong, ` · predicted-click PSI ${drift.click_psi.toFixed(3)}`);
  const edges = [0, ...drift.click_edges, 1];
  const hist = state.charts.clickHist;
  hist.data.labels = drift.click_reference.map((_, i) => `${edges[i].toFixed(1)}–${edges[i + 1].toFixed(1)}`);
  hist.data.datasets[0].data = drift.click_reference;
  hist.data.datasets[1].data = drift.click_current;
  hist.update("none");
  const psi = state.charts.psiFeatures;
  psi.data.labels = Object.keys(drift.psi);
  psi.data.datasets[0].data = Object.values(drift.psi);
  psi.data.datasets[0].backgroundColor = Object.values(drift.psi).map((v) => v >= 0.25 ? "#e5484d" : v >= 0.1 ? "#f08c00" : "#3b6fd4");
  psi.update("none");
}

function cls(behind) {
  return behind === null ? "unknown" : behind ? "behind" : "ok";
}

function renderStatus(s) {
  state.freshnessTarget = s.freshness_target_s;
  const fmt = (v, d = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
  const workers = s.workers.map((w) => `${w.id} p${JSON.stringify(w.partitions)}`).join(", ") || "none alive";
  const trainer = s.trainer_alive ? `trainer alive (${fmt(s.trainer_age_s, 0)} s ago)` : s.trainer_age_s === null ? "no trainer yet" : `<span class="behind">trainer silent ${fmt(s.trainer_age_s, 0)} s (stopped or stalled)</span>`;
  const html = [
    `<span id="status-model">model <b>${s.active_model || "–"}</b></span>`,
    `<span>${trainer}</span>`,
    `<span id="status-workers">joiners: ${workers}${s.gone_workers ? ` (${s.gone_workers} gone)` : ""}</span>`,
    `<span>events/s <b>${fmt(s.events_rate, 0)}</b> · examples/s <b>${fmt(s.examples_rate, 0)}</b> (last ${s.window_s} s)</span>`,
    `<span class="${cls(s.lag_behind)}" id="status-lag">lag ${s.lag_total.toLocaleString()} (target ≤ ${s.lag_target.toLocaleString()})</span>`,
    `<span class="${cls(s.freshness_behind)}" id="status-freshness">freshness p50/p95 ${fmt(s.freshness_p50_s)}/${fmt(s.freshness_p95_s)} s (target ≤ ${s.freshness_target_s} s)</span>`,
  ];
  document.getElementById("status").innerHTML = html.join("");
}

function referenceQuery() {
  const params = new URLSearchParams(window.location.search);
  const out = new URLSearchParams(state.cursor);
  for (const key of ["ref_start", "ref_end"]) if (params.has(key)) out.set(key, params.get(key));
  return out;
}

async function poll() {
  try {
    const [history, status] = await Promise.all([
      fetch(`/dashboard/api/history?${referenceQuery()}`).then((r) => r.json()),
      fetch("/dashboard/api/status").then((r) => r.json()),
    ]);
    state.cursor = history.cursor;
    state.nowMs = history.now_ms;
    state.rows.trainer.push(...history.trainer);
    state.rows.joiner.push(...history.joiner);
    state.markers.push(...history.markers);
    state.reference = history.reference;
    state.referenceWindow = history.reference_window;
    const info = document.getElementById("reference-info");
    info.textContent = history.reference_window
      ? `· reference ${timeLabel(history.reference_window[0])}–${timeLabel(history.reference_window[1])} (${history.active ? "before " + history.active + "'s promotion" : "pinned"})`
      : "";
    renderStatus(status);
    redrawTimeline();
    renderMarkers();
    renderLabelFree(history.label_free);
    document.body.dataset.updated = String(Date.now());
  } catch (error) {
    document.getElementById("status").textContent = `cannot reach the server: ${error}`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

function init() {
  if (window["chartjs-plugin-annotation"]) Chart.register(window["chartjs-plugin-annotation"]);
  for (const spec of TIMELINE) state.charts[spec.id] = makeTimeChart(spec);
  state.charts.clickHist = new Chart(document.getElementById("chart-click-hist"), {
    type: "bar",
    data: { labels: [], datasets: [{ label: "reference", data: [], backgroundColor: "#9db7e8" }, { label: "current", data: [], backgroundColor: "#e5484d" }] },
    options: { animation: false, maintainAspectRatio: false, plugins: { title: { display: true, text: "predicted click probability (share of rows)" } } },
  });
  state.charts.psiFeatures = new Chart(document.getElementById("chart-psi-features"), {
    type: "bar",
    data: { labels: [], datasets: [{ label: "PSI", data: [] }] },
    options: { indexAxis: "y", animation: false, maintainAspectRatio: false, plugins: { legend: { display: false }, title: { display: true, text: "PSI per dense feature (≥ 0.1 moderate, ≥ 0.25 large)" } } },
  });
  // For people and for the browser test: the charts and what they hold.
  window.driftrec = { state, charts: state.charts };
  poll();
}

init();
