// The live page: one EventSource per page, tables re-rendered from each push, charts by uPlot.
// Every value from the server is put in the page as text (textContent), never as HTML.
"use strict";

const MAX_POINTS = 3000;
const $ = (id) => document.getElementById(id);
const page = { symbol: "", source: null, tables: null, price: null, vol: null, pnl: null, token: "" };

function fmt(value, digits) {
  if (value === null || value === undefined || value === "") return "";
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  return digits === undefined ? String(+n.toPrecision(8)) : n.toFixed(digits);
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "";
  return seconds < 120 ? seconds.toFixed(1) + "s" : Math.round(seconds / 60) + "m";
}

function renderTable(id, headers, rows, rowClass) {
  const table = $(id);
  const head = document.createElement("tr");
  for (const h of headers) { const th = document.createElement("th"); th.textContent = h; head.appendChild(th); }
  const body = [head];
  rows.forEach((row, i) => {
    const tr = document.createElement("tr");
    if (rowClass) tr.className = rowClass(i);
    for (const cell of row) {
      const td = document.createElement("td");
      if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell === undefined ? "" : String(cell);
      tr.appendChild(td);
    }
    body.push(tr);
  });
  if (!rows.length) {
    const tr = document.createElement("tr"), td = document.createElement("td");
    td.colSpan = headers.length; td.className = "muted"; td.textContent = "none";
    tr.appendChild(td); body.push(tr);
  }
  table.replaceChildren(...body);
}

function setPill(id, text, level) { const el = $(id); el.textContent = text; el.className = "pill " + level; }

// charts -----------------------------------------------------------------------------------------

function makeChart(id, series, scales, axes) {
  const el = $(id);
  el.replaceChildren();
  const opts = { width: el.clientWidth || 600, height: 240, series: [{}, ...series], scales: { x: { time: true }, ...scales },
                 axes: axes, legend: { live: true } };
  const data = [[]].concat(series.map(() => []));
  return { plot: new uPlot(opts, data, el), data: data, el: el, columns: null };
}

const points = (color) => ({ stroke: color, fill: color, paths: () => null, points: { show: true, size: 9, fill: color } });

function newPriceChart() {
  return makeChart("price-chart", [
    { label: "bid", stroke: "#3182ce" }, { label: "ask", stroke: "#e53e3e" },
    { label: "fair", stroke: "#1a202c", width: 2 },
    { label: "our bid", stroke: "#38a169", dash: [6, 4] }, { label: "our ask", stroke: "#dd6b20", dash: [6, 4] },
    Object.assign({ label: "fill buy" }, points("#276749")), Object.assign({ label: "fill sell" }, points("#9b2c2c")),
  ], {}, [{}, { size: 70 }]);
}

function newVolChart() {
  return makeChart("vol-chart", [
    { label: "volatility", stroke: "#805ad5", scale: "vol" }, { label: "spread", stroke: "#d69e2e", scale: "spread" },
  ], { vol: {}, spread: {} }, [{}, { scale: "vol", size: 60 }, { scale: "spread", side: 1, size: 60, grid: { show: false } }]);
}

function newPnlChart() {
  return makeChart("pnl-chart", [
    { label: "realized", stroke: "#2b6cb0" }, { label: "unrealized", stroke: "#c05621" },
    { label: "total", stroke: "#1a202c", width: 2 },
  ], {}, [{}, { size: 70 }]);
}

// Appends rows (server columns: t_ms first) to a chart; ``pick`` maps a row to the chart's y values.
function feed(chart, part, pick) {
  if (!part) return;
  if (part.reset) chart.data.forEach((col) => { col.length = 0; });
  for (const row of part.rows) {
    chart.data[0].push(row[0] / 1000);
    pick(row).forEach((v, i) => chart.data[i + 1].push(v));
  }
  const extra = chart.data[0].length - MAX_POINTS;
  if (extra > 0) chart.data.forEach((col) => col.splice(0, extra));
  if (part.reset || part.rows.length) {
    chart.plot.setData(chart.data);
    chart.el.dataset.points = String(chart.data[0].length);
  }
}

// rendering --------------------------------------------------------------------------------------

function renderBanners(t) {
  const box = $("banners");
  box.replaceChildren(...t.banners.map((b) => {
    const div = document.createElement("div"); div.className = b.level; div.dataset.id = b.id; div.textContent = b.text;
    return div;
  }));
  setPill("redis-state", t.redis.up ? "Redis up" : "Redis DOWN", t.redis.up ? "ok" : "error");
  setPill("halt-state", t.risk.halt ? "kill switch ON" : "kill switch off", t.risk.halt ? "error" : "ok");
  $("clock").textContent = new Date(t.now_ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function renderStack(t) {
  renderTable("processes",
    ["kind", "name", "state", "pid", "host", "uptime", "rate/s", "runs", "errors", "lag ms", "conflated", "bad msgs",
     "beat", "restarts", "detail"],
    t.processes.map((p) => [p.kind, p.name, p.state, p.pid, p.host, age(p.uptime_s), fmt(p.rate), p.runs, p.errors,
                            p.lag_ms, p.conflated, p.bad_messages, age(p.beat_age_s), p.restarts, p.detail]),
    (i) => "process " + t.processes[i].state);
}

function renderSymbols(t) {
  const select = $("symbol");
  const known = Array.from(select.options).map((o) => o.value);
  const wanted = t.symbols.includes(page.symbol) || !page.symbol ? t.symbols : t.symbols.concat([page.symbol]);
  if (known.join(",") !== wanted.join(",")) {
    select.replaceChildren(...wanted.map((s) => { const o = document.createElement("option"); o.value = s; o.textContent = s; return o; }));
  }
  if (!page.symbol && wanted.length) { connect(wanted[0]); }
  select.value = page.symbol;
}

function renderInstrument(t) {
  const m = t.market[page.symbol];
  const status = $("instrument-status");
  if (!page.symbol) { status.textContent = "no symbols yet: is a hub running?"; return; }
  if (!m || !m.streamed) {
    status.textContent = "Nobody streams " + page.symbol + ": there is no quote in Redis for it (no hub or agent asked for it).";
    status.className = "error"; status.dataset.state = "not-streamed";
  } else {
    const stale = m.quote_age_s !== null && m.quote_age_s > 5;
    status.textContent = stale ? "quote is " + age(m.quote_age_s) + " old: the feed looks stale" : "";
    status.className = stale ? "warn" : "muted"; status.dataset.state = stale ? "stale" : "live";
  }
  $("quote-line").textContent = m && m.streamed
    ? `${page.symbol}  bid ${fmt(m.bid)} × ${fmt(m.bid_size)}   ask ${fmt(m.ask)} × ${fmt(m.ask_size)}   age ${age(m.quote_age_s)}` : "";
  renderTable("cache", ["field", "value", "age"], (m ? m.cache : []).map((c) => [c.field, fmt(c.value), age(c.age_s)]));
}

function sideCell(side) { const s = document.createElement("span"); s.className = side; s.textContent = side; return s; }

function renderOrders(t) {
  const r = t.risk;
  $("risk-line").textContent = `kill switch ${r.halt ? "ON" : "off"} · reduce-only ${r.reduce_only ? "on" : "off"} · ` +
    "rejections by check: " + (Object.entries(r.rejected).map(([k, v]) => k + " " + v).join(", ") || "none");
  renderTable("limits", ["limit", "value", "in use", "", "%"], r.limits.map((l) => {
    const meter = document.createElement("meter");
    meter.min = 0; meter.max = 1; meter.low = 0.7; meter.high = 0.9; meter.optimum = 0; meter.value = l.ratio || 0;
    return [l.limit, fmt(l.value), fmt(l.used, 2), meter, l.ratio === null ? "" : (100 * l.ratio).toFixed(0) + "%"];
  }));
  renderTable("positions", ["symbol", "qty", "avg price", "realized", "unrealized", "total", "fees"],
    t.positions.map((p) => [p.symbol, fmt(p.qty), fmt(p.avg_price, 4), fmt(p.realized_pnl, 2), fmt(p.unrealized_pnl, 2),
                            fmt(p.total_pnl, 2), fmt(p.fees, 2)]));
  renderTable("orders", ["symbol", "side", "qty", "filled", "limit", "status", "agent", "id"],
    t.orders.map((o) => [o.symbol, sideCell(o.side), fmt(o.qty), fmt(o.filled_qty), fmt(o.limit_price), o.status, o.agent,
                         o.client_order_id]));
  renderTable("fills", ["time", "symbol", "side", "qty", "price", "agent", "position"],
    t.fills.map((f) => [new Date(Number(f.updated_ns) / 1e6).toISOString().slice(11, 23), f.symbol, sideCell(f.side),
                        fmt(f.fill_qty), fmt(f.fill_price), f.agent, fmt(f.position_qty)]));
  const control = $("control");
  control.hidden = !t.control;
  if (t.control) $("halt-toggle").textContent = r.halt ? "turn kill switch OFF" : "turn kill switch ON";
}

function render(message) {
  const t = message.tables;
  page.tables = t;
  renderBanners(t); renderStack(t); renderSymbols(t); renderInstrument(t); renderOrders(t);
  if (message.symbol === page.symbol) {
    feed(page.price, message.price, (r) => [r[1], r[2], r[3], r[4], r[5], r[6], r[7]]);
    feed(page.vol, message.price, (r) => [r[8], r[9]]);
  }
  feed(page.pnl, message.pnl, (r) => [r[1], r[2], r[3]]);
}

// the live stream and the controls -------------------------------------------------------------

function connect(symbol) {
  if (page.source) page.source.close();
  page.symbol = symbol;
  history.replaceState(null, "", "#" + encodeURIComponent(symbol));
  page.price = newPriceChart(); page.vol = newVolChart();
  if (!page.pnl) page.pnl = newPnlChart();
  const source = new EventSource("/events?symbol=" + encodeURIComponent(symbol));
  source.onopen = () => setPill("link-state", "live", "ok");
  source.onerror = () => setPill("link-state", "dashboard unreachable, retrying…", "error");
  source.onmessage = (event) => { setPill("link-state", "live", "ok"); render(JSON.parse(event.data)); };
  page.source = source;
}

async function control(path, body) {
  const result = $("control-result");
  const token = $("token").value;
  if (!token) { result.textContent = "enter the control token first"; return; }
  const reply = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json", "X-TF-Control-Token": token },
                                    body: JSON.stringify(body), credentials: "omit" });
  const answer = await reply.json();
  result.textContent = answer.ok ? "done" : "refused: " + answer.error;
  result.dataset.ok = String(answer.ok);
}

$("symbol").addEventListener("change", (e) => connect(e.target.value));
$("symbol-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const s = $("symbol-input").value.trim().toUpperCase();
  if (/^[A-Z0-9.\-\/]{1,32}$/.test(s)) connect(s);
});
$("halt-toggle").addEventListener("click", () => control("/api/control/halt", { on: !(page.tables && page.tables.risk.halt) }));
$("cancel-all").addEventListener("click", () => control("/api/control/cancel-all", {}));
window.addEventListener("resize", () => {
  for (const c of [page.price, page.vol, page.pnl]) if (c) c.plot.setSize({ width: c.el.clientWidth, height: 240 });
});

const initial = decodeURIComponent(location.hash.slice(1)).toUpperCase();
page.pnl = newPnlChart();
connect(/^[A-Z0-9.\-\/]{1,32}$/.test(initial) ? initial : "");
