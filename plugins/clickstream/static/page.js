// The Clickstream page: fetches the plugin's JSON endpoints and draws tables and inline SVG charts.
// No framework, no chart library, no network beyond this Airflow server. Data goes into the DOM with
// textContent only. The page runs in the Airflow UI's sandboxed iframe (no popups, no modals, no top
// navigation), so confirmations are in-page and links to Airflow pages go through the parent's router.

const BODY = document.body;
const APP = BODY.dataset.appRoot || "./";
const AIRFLOW = BODY.dataset.airflowRoot || "/";
const SVG_NS = "http://www.w3.org/2000/svg";
const SESSION_HOURS_MAX = 48;
const LATE_ROWS = 25;
const CAUSE_LABELS = {
  matched: "matched",
  late: "late",
  duplicate: "dupl.",
  rule_difference: "rule diff.",
  missing_in_stream: "missing in stream",
  missing_in_batch: "missing in batch",
  mismatch: "mismatch",
  deferred: "deferred",
};

// ---------------------------------------------------------------- DOM helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
}

function section(id) {
  const root = document.getElementById(id);
  return {
    root,
    body: root.querySelector(".body"),
    error(message) {
      const box = root.querySelector(".error");
      box.textContent = message || "";
      box.hidden = !message;
    },
  };
}

const fmt = new Intl.NumberFormat("en-US");
const num = (n) => (n === null || n === undefined ? "–" : fmt.format(n));
const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)} %`);
const hourLabel = (iso) => iso.slice(0, 13).replace("T", " ") + ":00";

// ---------------------------------------------------------------- data access

async function getJSON(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined));
  const url = `${APP}${path}${query.toString() ? `?${query}` : ""}`;
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const message = (payload && (payload.error || payload.detail)) || response.statusText;
    throw new Error(`${path}: HTTP ${response.status}: ${typeof message === "string" ? message : JSON.stringify(message)}`);
  }
  return payload;
}

async function airflowApi(path, options = {}) {
  const response = await fetch(`${AIRFLOW}api/v2/${path}`, {
    credentials: "same-origin",
    headers: { Accept: "application/json", "Content-Type": "application/json" },
    ...options,
  });
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const detail = payload && payload.detail;
    const message = typeof detail === "string" ? detail : detail ? JSON.stringify(detail) : response.statusText;
    const error = new Error(`HTTP ${response.status}: ${message}`);
    error.status = response.status;
    throw error;
  }
  return payload;
}

// Links to Airflow's own pages: inside the UI's iframe, move the parent's router instead of nesting the UI.
function airflowLink(path, text, title) {
  const href = `${AIRFLOW}${path}`;
  return el("a", {
    href,
    title,
    text,
    onclick(event) {
      try {
        if (window.top === window) return;
        const top = window.top;
        const idx = (top.history.state && top.history.state.idx) || 0;
        top.history.pushState({ usr: null, key: Math.random().toString(36).slice(2, 10), idx: idx + 1 }, "", href);
        top.dispatchEvent(new PopStateEvent("popstate", { state: top.history.state }));
        event.preventDefault();
      } catch {
        // Not same-origin with the parent: let the frame follow the link.
      }
    },
  });
}

// ---------------------------------------------------------------- charts

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

function emptyChart(container, message) {
  container.replaceChildren(el("div", { class: "empty-chart", text: message }));
}

// A time series chart over minutes (ISO "YYYY-MM-DDTHH:MM"), one path per series.
function lineChart(container, { id, minutes, series, height = 220, yLabel }) {
  const total = series.reduce((sum, s) => sum + s.values.reduce((a, b) => a + b, 0), 0);
  if (!minutes.length || total === 0) {
    emptyChart(container, "No data in this window.");
    return;
  }
  const width = 960;
  const m = { top: 12, right: 14, bottom: 26, left: 44 };
  const w = width - m.left - m.right;
  const h = height - m.top - m.bottom;
  const yMax = niceMax(Math.max(...series.flatMap((s) => s.values)));
  const x = (i) => m.left + (minutes.length === 1 ? w / 2 : (i * w) / (minutes.length - 1));
  const y = (v) => m.top + h - (v / yMax) * h;
  const root = svg("svg", { id, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": yLabel });
  for (let k = 0; k <= 4; k++) {
    const v = (yMax * k) / 4;
    root.append(
      svg("line", { class: "grid", x1: m.left, x2: width - m.right, y1: y(v), y2: y(v) }),
      svg("text", { x: m.left - 6, y: y(v) + 4, "text-anchor": "end", text: fmt.format(Math.round(v * 10) / 10) }),
    );
  }
  const tickEvery = [15, 30, 60, 120, 180, 360, 720].find((t) => minutes.length / t <= 10) || 1440;
  minutes.forEach((minute, i) => {
    const mm = Number(minute.slice(11, 13)) * 60 + Number(minute.slice(14, 16));
    if (mm % tickEvery === 0) {
      const label = mm === 0 ? minute.slice(5, 10) : minute.slice(11, 16);
      root.append(
        svg("line", { class: "axis", x1: x(i), x2: x(i), y1: m.top + h, y2: m.top + h + 4 }),
        svg("text", { x: x(i), y: height - 8, "text-anchor": "middle", text: label }),
      );
    }
  });
  root.append(svg("line", { class: "axis", x1: m.left, x2: width - m.right, y1: m.top + h, y2: m.top + h }));
  for (const s of series) {
    const d = s.values.map((v, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join("");
    root.append(
      svg("path", {
        class: `series series-${s.key}`,
        d,
        dataset: { series: s.key, points: String(s.values.length), total: String(s.values.reduce((a, b) => a + b, 0)) },
      }),
    );
  }
  const legend = el(
    "div",
    { class: "legend" },
    series.map((s) =>
      el("span", {}, el("span", { class: `swatch ${s.key}` }), `${s.name}: ${num(s.values.reduce((a, b) => a + b, 0))}`),
    ),
    yLabel ? el("span", { text: yLabel }) : null,
  );
  container.replaceChildren(root, legend);
}

// Vertical bars, one group per category, one bar per series.
function groupedBars(container, { id, categories, series, height = 260 }) {
  const total = series.reduce((sum, s) => sum + s.values.reduce((a, b) => a + b, 0), 0);
  if (total === 0) {
    emptyChart(container, "No sessions in this window.");
    return;
  }
  const width = 620;
  const m = { top: 16, right: 10, bottom: 28, left: 50 };
  const w = width - m.left - m.right;
  const h = height - m.top - m.bottom;
  const yMax = niceMax(Math.max(...series.flatMap((s) => s.values)));
  const group = w / categories.length;
  const barWidth = Math.min(34, (group * 0.8) / series.length);
  const root = svg("svg", { id, viewBox: `0 0 ${width} ${height}`, role: "img" });
  for (let k = 0; k <= 4; k++) {
    const yy = m.top + h - (h * k) / 4;
    root.append(
      svg("line", { class: "grid", x1: m.left, x2: width - m.right, y1: yy, y2: yy }),
      svg("text", { x: m.left - 6, y: yy + 4, "text-anchor": "end", text: fmt.format((yMax * k) / 4) }),
    );
  }
  categories.forEach((category, ci) => {
    const x0 = m.left + ci * group + (group - barWidth * series.length) / 2;
    series.forEach((s, si) => {
      const v = s.values[ci];
      const bh = (v / yMax) * h;
      const bar = svg("rect", {
        class: `bar bar-${s.key}`,
        x: x0 + si * barWidth,
        y: m.top + h - bh,
        width: barWidth - 2,
        height: Math.max(bh, 0),
        dataset: { series: s.key, category, value: String(v) },
      });
      bar.append(svg("title", { text: `${s.name}, ${category}: ${num(v)}` }));
      root.append(bar);
    });
    root.append(svg("text", { x: m.left + ci * group + group / 2, y: height - 8, "text-anchor": "middle", text: category }));
  });
  root.append(svg("line", { class: "axis", x1: m.left, x2: width - m.right, y1: m.top + h, y2: m.top + h }));
  const legend = el(
    "div",
    { class: "legend" },
    series.map((s) =>
      el("span", {}, el("span", { class: `swatch ${s.key}` }), `${s.name}: ${num(s.values.reduce((a, b) => a + b, 0))} sessions`),
    ),
  );
  container.replaceChildren(root, legend);
}

// Horizontal bars of counts by label; the label sits above its bar (reasons can be long sentences).
function hbars(id, title, counts, cls) {
  const entries = Object.entries(counts);
  const box = el("div", { class: "hbars" }, el("h3", { class: "muted", text: title }));
  if (!entries.length) {
    box.append(el("div", { class: "empty-chart", text: "Nothing in this window." }));
    return box;
  }
  const row = 34;
  const width = 560;
  const max = Math.max(...entries.map(([, n]) => n));
  const root = svg("svg", { id, viewBox: `0 0 ${width} ${entries.length * row + 4}`, role: "img" });
  entries.forEach(([label, n], i) => {
    const y = i * row;
    const bw = ((width - 60) * n) / max;
    const bar = svg("rect", {
      class: `bar bar-${cls}`,
      x: 0,
      y: y + 16,
      width: Math.max(bw, 1),
      height: 13,
      rx: 2,
      dataset: { reason: label, value: String(n) },
    });
    bar.append(svg("title", { text: `${label}: ${num(n)}` }));
    root.append(
      svg("text", { class: "label", x: 0, y: y + 12, text: label }),
      bar,
      svg("text", { class: "value", x: bw + 6, y: y + 27, text: num(n) }),
    );
  });
  box.append(root);
  return box;
}

// ---------------------------------------------------------------- sections

function statusClass(status) {
  return ["passed", "failed", "not_reconciled"].includes(status) ? status : "other";
}

function renderSummary(hours, sessions) {
  const summary = document.getElementById("summary");
  const stats = [];
  if (hours) {
    const s = hours.summary || {};
    stats.push(["hours passed", s.passed || 0], ["hours failed", s.failed || 0], ["not reconciled", s.not_reconciled || 0]);
  }
  if (sessions) {
    stats.push(
      [`stream sessions (${sessions.window.hours} h)`, sessions.totals.stream_sessions],
      [`batch sessions (${sessions.window.hours} h)`, sessions.totals.batch_sessions],
    );
    if (sessions.stream_progress) stats.push(["stream progress", sessions.stream_progress.replace("T", " ").slice(0, 16)]);
  }
  summary.replaceChildren(
    ...stats.map(([label, value]) =>
      el("div", { class: "stat" }, el("span", { class: "value", text: typeof value === "number" ? num(value) : value }), el("span", { class: "label", text: label })),
    ),
  );
}

function renderFlink(data) {
  const s = section("flink");
  const status = data.status || "UNKNOWN";
  const kind = status === "RUNNING" ? "flink-running" : ["READY", "NOT_FOUND"].includes(status) ? "flink-idle" : ["STARTING", "STOPPING", "UPDATING", "AUTOSCALING"].includes(status) ? "" : "flink-bad";
  const facts = [
    ["Application", data.application],
    ["Version", data.version],
    ["Runtime", data.runtime],
    ["Updated", data.updated],
    ["Snapshots", data.snapshots],
    ["Newest snapshot", data.latest_snapshot ? `${data.latest_snapshot.name} (${data.latest_snapshot.status}, ${data.latest_snapshot.created})` : null],
  ].filter(([, v]) => v !== null && v !== undefined);
  const parts = [
    el("span", { id: "flink-status", class: `badge ${kind}`, text: status, dataset: { status } }),
    data.message ? el("p", { text: data.message }) : null,
    el("dl", { class: "facts" }, facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
  ];
  s.body.replaceChildren(...parts.filter(Boolean));
}

function renderQuarantine(data) {
  const s = section("quarantine");
  s.body.replaceChildren(
    hbars("chart-quarantine", `Compaction quarantine: ${num(data.compaction.total)} records in ${data.compaction.hours_compacted} compacted hours`, data.compaction.by_reason, "compaction"),
    hbars("chart-rejected", `Rejected by the stream: ${num(data.stream_rejected.total)} records`, data.stream_rejected.by_reason, "rejected"),
  );
}

function renderHeatmap(data) {
  const container = document.getElementById("heatmap");
  const byHour = new Map(data.hours.map((h) => [h.hour.slice(0, 13), h]));
  const days = [...new Set(data.hours.map((h) => h.hour.slice(0, 10)))].sort().reverse();
  const cell = 26;
  const left = 84;
  const top = 18;
  const root = svg("svg", { id: "heatmap-svg", viewBox: `0 0 ${left + 24 * cell + 4} ${top + days.length * cell + 4}`, role: "img" });
  for (let hh = 0; hh < 24; hh += 3) {
    root.append(svg("text", { x: left + hh * cell + cell / 2, y: 12, "text-anchor": "middle", text: String(hh).padStart(2, "0") }));
  }
  days.forEach((day, di) => {
    root.append(svg("text", { x: left - 8, y: top + di * cell + cell / 2 + 4, "text-anchor": "end", text: day }));
    for (let hh = 0; hh < 24; hh++) {
      const key = `${day}T${String(hh).padStart(2, "0")}`;
      const hour = byHour.get(key);
      if (!hour) continue;
      const shown = hour.status === "not_reconciled" && hour.compaction ? "compacted" : statusClass(hour.status);
      const rect = svg("rect", {
        class: `cell status-${shown}`,
        x: left + hh * cell,
        y: top + di * cell,
        width: cell,
        height: cell,
        rx: 4,
        dataset: { hour: hour.hour, status: hour.status },
        onclick: () => highlightRow(hour.hour),
      });
      const detail = hour.match_rate !== null ? `, match rate ${pct(hour.match_rate)}` : hour.compaction ? ", compacted, not reconciled yet" : "";
      rect.append(svg("title", { text: `${hourLabel(hour.hour)} UTC: ${hour.status.replace("_", " ")}${detail}` }));
      root.append(rect);
    }
  });
  container.replaceChildren(root);
  document.getElementById("legend").replaceChildren(
    ...[
      ["passed", "passed"],
      ["failed", "failed"],
      ["compacted", "compacted, not reconciled"],
      ["not_reconciled", "no report"],
      ["other", "other (batch only, invalid report)"],
    ].map(([cls, label]) => el("span", {}, el("span", { class: `swatch status-${cls}` }), label)),
  );
}

function highlightRow(hourIso) {
  for (const row of document.querySelectorAll("#hours-table tbody tr")) {
    row.classList.toggle("highlight", row.dataset.hour === hourIso);
    if (row.dataset.hour === hourIso) row.scrollIntoView({ block: "nearest" });
  }
}

function renderHoursTable(data) {
  const table = document.getElementById("hours-table");
  const causes = data.causes;
  table.tHead.replaceChildren(
    el(
      "tr",
      {},
      el("th", { text: "Hour (UTC)" }),
      el("th", { text: "Status" }),
      el("th", { class: "num", text: "Match rate" }),
      causes.map((c) => el("th", { class: "num", text: CAUSE_LABELS[c] || c })),
      el("th", { class: "num", text: "Compacted rows" }),
      el("th", { text: "Report" }),
      el("th", { text: "DAG run" }),
      el("th", { text: "Repair" }),
    ),
  );
  const rows = data.hours.filter((h) => h.report || h.compaction);
  if (!rows.length) {
    table.tBodies[0].replaceChildren(
      el("tr", {}, el("td", { class: "empty", colspan: causes.length + 7, text: "No compacted or reconciled hour in this window." })),
    );
    return;
  }
  table.tBodies[0].replaceChildren(
    ...rows.map((h) => {
      const counts = h.counts || {};
      return el(
        "tr",
        { dataset: { hour: h.hour, status: h.status } },
        el("td", { text: hourLabel(h.hour) }),
        el("td", {}, el("span", { class: `badge status-${h.status}`, text: h.status.replace("_", " "), title: h.report && h.report.error ? h.report.error : null })),
        el("td", { class: "num match-rate", text: pct(h.match_rate) }),
        causes.map((c) => {
          const v = h.counts ? counts[c] || 0 : null;
          return el("td", { class: `num cause ${v === 0 ? "zero" : ""}`, dataset: { cause: c }, text: num(v) });
        }),
        el("td", { class: "num", text: h.compaction ? num(h.compaction.written_rows) : "not compacted" }),
        el("td", {}, h.report ? reportCell(h) : "–"),
        el("td", { class: "dag-run", dataset: { hour: h.hour } }, airflowLink(`dags/${encodeURIComponent(data.reconciliation_dag_id)}/runs`, "runs", "The reconciliation DAG's runs")),
        el("td", {}, h.status === "failed" ? backfillCell(h) : null),
      );
    }),
  );
}

function reportCell(hour) {
  const url = `${APP}api/report?hour=${encodeURIComponent(hour.hour)}`;
  return el(
    "span",
    { class: "row-actions" },
    el("button", { class: "linklike", type: "button", text: "view", title: hour.report.uri, onclick: () => showReport(hour) }),
    el("a", { href: url, download: `report-${hour.hour.slice(0, 13)}.json`, text: "json", title: `Download ${hour.report.uri}` }),
  );
}

// [["batch.sessions", 350], …] from nested totals.
function flatten(object, prefix = "") {
  return Object.entries(object).flatMap(([key, value]) =>
    value && typeof value === "object" && !Array.isArray(value) ? flatten(value, `${prefix}${key}.`) : [[`${prefix}${key}`, value]],
  );
}

async function showReport(hour) {
  const panel = document.getElementById("report-panel");
  panel.hidden = false;
  panel.replaceChildren(el("p", { class: "muted", text: `Loading ${hour.report.uri} …` }));
  try {
    const found = await getJSON("api/report", { hour: hour.hour, max_differences: 50 });
    const report = found.report;
    const diffs = Array.isArray(report.differences) ? report.differences : [];
    panel.replaceChildren(
      el("h3", { text: `Report of ${hourLabel(hour.hour)} UTC` }),
      el("p", {}, el("code", { text: found.uri }), " ", el("button", { class: "linklike", type: "button", text: "close", onclick: () => (panel.hidden = true) })),
      el("dl", { class: "facts report-totals" }, flatten(report.totals || {}).flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: typeof v === "number" ? num(v) : JSON.stringify(v) })])),
      diffs.length
        ? el("pre", { class: "differences", text: diffs.map((d) => JSON.stringify(d)).join("\n") + (report.differences_truncated ? `\n… ${num(report.differences_total - diffs.length)} more` : "") })
        : el("p", { class: "muted", text: "No differences listed." }),
    );
  } catch (error) {
    panel.replaceChildren(el("p", { class: "error", text: String(error.message || error) }));
  }
}

function backfillCell(hour) {
  const cell = el("span", { class: "row-actions" });
  const start = el("button", {
    type: "button",
    class: "danger backfill",
    text: "Backfill",
    title: `Re-run ${hour.backfill.dag_id} for ${hourLabel(hour.hour)} (Airflow backfill)`,
    onclick: () => {
      cell.replaceChildren(
        el("span", { text: `Backfill ${hour.backfill.dag_id} for ${hourLabel(hour.hour)}?` }),
        el("button", { type: "button", class: "primary confirm-backfill", text: "Confirm", onclick: () => createBackfill(hour, cell) }),
        el("button", { type: "button", text: "Cancel", onclick: () => cell.replaceChildren(start) }),
      );
    },
  });
  cell.append(start);
  return cell;
}

async function createBackfill(hour, cell) {
  const result = document.getElementById("backfill-result");
  for (const button of cell.querySelectorAll("button")) button.disabled = true;
  result.hidden = false;
  result.className = "notice";
  result.textContent = `Creating a backfill of ${hour.backfill.dag_id} for ${hourLabel(hour.hour)} …`;
  try {
    const created = await airflowApi("backfills", { method: "POST", body: JSON.stringify(hour.backfill) });
    result.replaceChildren(
      `Backfill ${created.id} of ${created.dag_id} created for ${hourLabel(hour.hour)} UTC. `,
      airflowLink(`dags/${encodeURIComponent(created.dag_id)}/backfills`, "See its runs", "The DAG's backfills"),
    );
    cell.replaceChildren(el("span", { class: "muted", text: `backfill ${created.id} created` }));
  } catch (error) {
    result.className = "notice bad";
    result.textContent = `Backfill of ${hour.backfill.dag_id} for ${hourLabel(hour.hour)} failed: ${error.message}`;
    cell.replaceChildren(backfillCell(hour));
  }
}

// The reconciliation DAG's runs, matched to hours by data interval start (the UI's permissions apply).
async function linkDagRuns(data) {
  const dagId = data.reconciliation_dag_id;
  const params = new URLSearchParams({
    limit: "100",
    order_by: "-logical_date",
    logical_date_gte: new Date(Date.parse(data.window.start) - 3 * 3600e3).toISOString(),
    logical_date_lte: new Date(Date.parse(data.window.end) + 3 * 3600e3).toISOString(),
  });
  let runs = [];
  try {
    runs = (await airflowApi(`dags/${encodeURIComponent(dagId)}/dagRuns?${params}`)).dag_runs || [];
  } catch (error) {
    for (const cell of document.querySelectorAll("#hours-table td.dag-run a")) {
      cell.title = `${dagId}: ${error.message}`;
    }
    return;
  }
  const byHour = new Map();
  for (const run of runs) {
    if (!run.data_interval_start) continue;
    const key = new Date(run.data_interval_start).toISOString().slice(0, 13);
    if (!byHour.has(key)) byHour.set(key, run);
  }
  for (const cell of document.querySelectorAll("#hours-table td.dag-run")) {
    const run = byHour.get(cell.dataset.hour.slice(0, 13));
    if (run) {
      cell.replaceChildren(
        airflowLink(`dags/${encodeURIComponent(dagId)}/runs/${encodeURIComponent(run.dag_run_id)}`, run.state, run.dag_run_id),
      );
    }
  }
}

function renderSessions(data) {
  const hours = data.window.hours;
  document.querySelector("#sessions h2 .muted").textContent = `stream vs batch, last ${hours} h`;
  lineChart(document.getElementById("chart-sessions"), {
    id: "sessions-svg",
    minutes: data.minutes,
    series: [
      { key: "stream", name: "stream sessions", values: data.stream_sessions },
      { key: "batch", name: "batch sessions", values: data.batch_sessions },
    ],
    yLabel: "sessions starting per minute",
  });
  lineChart(document.getElementById("chart-events"), {
    id: "events-svg",
    minutes: data.minutes,
    height: 150,
    series: [{ key: "events", name: "events (Flink per-minute metrics)", values: data.stream_events }],
    yLabel: "events per minute",
  });
  groupedBars(document.getElementById("chart-durations"), {
    id: "durations-svg",
    categories: data.durations.bins,
    series: [
      { key: "stream", name: "stream", values: data.durations.stream },
      { key: "batch", name: "batch", values: data.durations.batch },
    ],
  });
  const truncated = Object.entries(data.sources).filter(([, s]) => s.truncated);
  if (truncated.length) {
    section("sessions").error(`Only part of the window was read (${truncated.map(([k]) => k).join(", ")}): the request's read budget ran out.`);
  }
}

function renderLate(data) {
  const table = document.getElementById("late-table");
  const columns = [
    ["arrival_time", "Arrived"],
    ["client_timestamp", "Event time"],
    ["late_by_ms", "Behind watermark"],
    ["event_id", "Event id"],
    ["user_id", "User"],
    ["device_id", "Device"],
    ["client_event", "Event"],
    ["countrycode", "Country"],
  ];
  table.tHead.replaceChildren(el("tr", {}, columns.map(([, label]) => el("th", { text: label }))));
  document.querySelector("#late h2 .muted").textContent = `(${num(data.total)} in the last ${data.window.hours} h, newest ${data.rows.length} shown)`;
  if (!data.rows.length) {
    table.tBodies[0].replaceChildren(el("tr", {}, el("td", { class: "empty", colspan: columns.length, text: "No late events in this window." })));
    return;
  }
  table.tBodies[0].replaceChildren(
    ...data.rows.map((row) =>
      el(
        "tr",
        { dataset: { eventId: row.event_id } },
        columns.map(([key]) => {
          let value = row[key];
          if (key === "late_by_ms") value = value === null ? "–" : `${(value / 1000).toFixed(1)} s`;
          return el("td", { text: value === null || value === undefined ? "–" : value });
        }),
      ),
    ),
  );
}

// ---------------------------------------------------------------- load

async function load() {
  BODY.dataset.loaded = "false";
  const hours = Number(document.getElementById("window").value);
  const refresh = document.getElementById("refresh");
  refresh.disabled = true;
  const requests = {
    hours: getJSON("api/hours", { hours }),
    sessions: getJSON("api/sessions", { hours: Math.min(hours, SESSION_HOURS_MAX) }),
    late: getJSON("api/late-events", { hours, limit: LATE_ROWS }),
    quarantine: getJSON("api/quarantine", { hours }),
    flink: getJSON("api/flink"),
  };
  const names = Object.keys(requests);
  const settled = await Promise.allSettled(Object.values(requests));
  const results = Object.fromEntries(names.map((name, i) => [name, settled[i]]));
  const ok = (name) => (results[name].status === "fulfilled" ? results[name].value : null);
  const show = (sectionId, name, render) => {
    const s = section(sectionId);
    if (results[name].status === "fulfilled") {
      s.error("");
      try {
        render(results[name].value);
      } catch (error) {
        s.error(`Could not draw this section: ${error.message}`);
      }
    } else {
      s.error(String(results[name].reason.message || results[name].reason));
    }
  };
  show("reconciliation", "hours", (data) => {
    renderHeatmap(data);
    renderHoursTable(data);
  });
  show("sessions", "sessions", renderSessions);
  show("durations", "sessions", () => {});
  show("late", "late", renderLate);
  show("quarantine", "quarantine", renderQuarantine);
  show("flink", "flink", renderFlink);
  renderSummary(ok("hours"), ok("sessions"));
  if (ok("hours")) await linkDagRuns(ok("hours"));
  document.getElementById("updated").textContent = `Updated ${new Date().toISOString().slice(0, 19).replace("T", " ")} UTC`;
  refresh.disabled = false;
  BODY.dataset.loaded = "true";
}

document.getElementById("refresh").addEventListener("click", load);
document.getElementById("window").addEventListener("change", load);
load();
