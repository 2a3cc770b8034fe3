// The dashboard's overview pages (schedules, limits, workflows, workers, queues): plain JS over
// /v1/overview. Each page follows its view live over Server-Sent Events and falls back to
// polling when the stream cannot be read. Data goes into the page through textContent only.
"use strict";

const TOKEN_KEY = "offload.token";
const POLL_MS = 2000;
const RETRY_MS = 30000;
const SVG = "http://www.w3.org/2000/svg";
const $ = (selector) => document.querySelector(selector);

// ---- API and helpers ----------------------------------------------------------------------

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(path) {
  const response = await fetch(path, { headers: authHeaders() });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = body?.error?.message ?? `HTTP ${response.status}`;
    if (response.status === 401) askForToken(message);
    throw new Error(message);
  }
  return body;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell));
  return tr;
}

function cell(child, className) {
  const td = el("td", null, className);
  td.append(child);
  return td;
}

function fill(tbody, rows, empty, columns) {
  tbody.replaceChildren(...rows);
  if (!rows.length) {
    const td = el("td", empty, "muted");
    td.colSpan = columns;
    tbody.append(row([td]));
  }
}

const badge = (status) => el("span", status ?? "not started", `badge ${status ?? "none"}`);
const time = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "");

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function relative(iso, now) {
  if (!iso) return "";
  const delta = (Date.parse(iso) - Date.parse(now)) / 1000;
  return delta >= 0 ? `in ${ago(delta)}` : `${ago(-delta)} ago`;
}

// ---- token --------------------------------------------------------------------------------

function askForToken(message) {
  $("#token-form").hidden = false;
  $("#token-message").textContent = message;
  $("#token").focus();
}

function setupToken(restart) {
  if (sessionStorage.getItem(TOKEN_KEY)) $("#token-form").hidden = false;
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
    $("#token").value = "";
    $("#token-message").textContent = "";
    restart();
  });
  $("#token-clear").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("#token-message").textContent = "token forgotten";
  });
}

// ---- live: SSE first, polling as the fallback -----------------------------------------------

function setStatus(text, error = false) {
  $("#status").textContent = text;
  $("#status").className = error ? "error" : "muted";
  document.body.dataset.mode = text.split(" ")[0];
}

// The last view, drawn again every second with its `now` moved on by the time since it came,
// so that "in 4 s" and heartbeat ages count on between two updates.
const latest = { data: null, at: 0, render: null };

function shown(render, mode) {
  return (data) => {
    Object.assign(latest, { data, at: Date.now(), render });
    render(data);
    setStatus(`${mode} · updated ${new Date().toLocaleTimeString()}`);
  };
}

function tick() {
  if (!latest.data || document.hidden) return;
  const now = new Date(Date.parse(latest.data.now) + Date.now() - latest.at).toISOString();
  latest.render({ ...latest.data, now });
}

// EventSource when no token is needed (it cannot send headers), else the same stream read
// through fetch with the Authorization header. Resolves when the stream ends or fails.
async function stream(url, onData, signal) {
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    return new Promise((resolve) => {
      const source = new EventSource(url);
      const handle = (event) => onData(JSON.parse(event.data));
      source.addEventListener("snapshot", handle);
      source.addEventListener("update", handle);
      source.addEventListener("error", (event) => {
        if (event.data) setStatus(JSON.parse(event.data).error.message, true);
        else { source.close(); resolve(); }
      });
      signal.addEventListener("abort", () => { source.close(); resolve(); });
    });
  }
  const response = await fetch(url, { headers: authHeaders(), signal });
  if (!response.ok || !response.body) {
    if (response.status === 401) askForToken("the token was refused");
    return;
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if ((event === "snapshot" || event === "update") && data) onData(JSON.parse(data));
      else if (event === "error" && data) setStatus(JSON.parse(data).error.message, true);
    }
  }
}

// Poll until `until` (epoch ms), then return so that the stream is tried again.
async function poll(path, onData, signal, until) {
  while (!signal.aborted && Date.now() < until) {
    try {
      if (!document.hidden) onData(await api(path));
    } catch (error) {
      setStatus(error.message, true);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

// Follow the view over its stream; whenever the stream ends or fails, poll for a while
// (RETRY_MS) and try the stream again. `?mode=poll` polls only.
function live(view, render) {
  let controller = null;
  const range = new URLSearchParams(location.search);
  const query = view === "queues" && range.get("window")
    ? `?window=${encodeURIComponent(range.get("window"))}` +
      `&bucket=${encodeURIComponent(range.get("bucket") ?? "60")}`
    : "";
  const path = `/v1/overview/${view}`;
  const forced = range.get("mode") === "poll";
  const start = async () => {
    if (controller) controller.abort();
    controller = new AbortController();
    const { signal } = controller;
    while (!signal.aborted) {
      if (!forced) {
        await stream(`${path}/events${query}`, shown(render, "live"), signal).catch(() => {});
      }
      await poll(path + query, shown(render, "polling"), signal,
        forced ? Infinity : Date.now() + RETRY_MS);
    }
  };
  setupToken(start);
  start();
}

// ---- pages --------------------------------------------------------------------------------

function schedules(view) {
  const rows = view.schedules.map((s) => {
    const missed = el("td", s.missed_ticks, s.missed_ticks ? "error" : "");
    return row([s.task, s.queue, s.schedule, relative(s.next_tick, view.now),
      s.last_tick ? relative(s.last_tick, view.now) : "never",
      cell(s.last_status ? badge(s.last_status) : el("span", "", "muted")), missed,
      s.missed_policy]);
  });
  fill($("#schedules tbody"), rows, "no periodic tasks", 8);
}

function rate(perMinute) {
  return perMinute === null ? "" : `${perMinute}/min`;
}

function limits(view) {
  const rows = [];
  for (const l of view.limits) {
    rows.push(row([el("td", l.task, "strong"), l.queue,
      l.concurrency === null ? String(l.running) : `${l.running} / ${l.concurrency}`,
      l.key_concurrency ?? "", l.rate_per_minute === null ? String(l.started_last_minute)
        : `${l.started_last_minute} / ${rate(l.rate_per_minute)}`,
      rate(l.key_rate_per_minute), l.waiting]));
    for (const k of l.keys) {
      const tr = row([el("td", `key ${k.key}`, "sub"), "",
        l.key_concurrency === null ? String(k.running) : `${k.running} / ${l.key_concurrency}`,
        "", "", "", k.waiting]);
      tr.className = "key-row";
      rows.push(tr);
    }
  }
  fill($("#limits tbody"), rows, "no task has a cap or a rate limit", 7);
  $("#limits-note").hidden = !view.truncated;
}

function flowNode(node) {
  if (node.kind === "step") {
    const box = el("div", null, `step ${node.status ?? "none"}`);
    box.append(el("span", node.task, "task"), badge(node.status));
    box.title = node.job_id ?? "not submitted yet";
    box.dataset.path = node.path;
    return box;
  }
  const box = el("div", null, node.kind);
  box.dataset.path = node.path;
  node.children.forEach((child, i) => {
    if (node.kind === "chain" && i > 0) box.append(el("span", "→", "arrow"));
    box.append(flowNode(child));
  });
  return box;
}

function workflows(view) {
  const cards = view.workflows.map((w) => {
    const card = el("article", null, "workflow");
    card.dataset.id = w.id;
    const head = el("p");
    head.append(el("code", w.id), " ", badge(w.status), " ",
      el("span", `${w.done} of ${w.steps} steps done · ${time(w.created_at)}`, "muted"));
    card.append(head, flowNode(w.root));
    return card;
  });
  $("#workflows").replaceChildren(...cards);
  if (!cards.length) $("#workflows").append(el("p", "no workflows yet", "muted"));
}

function workers(view) {
  const rows = view.workers.map((w) => {
    const jobs = el("td", null, "jobs");
    for (const job of w.jobs) {
      const progress = job.progress === null ? "" : ` ${Math.round(job.progress * 100)}%`;
      jobs.append(el("span", `${job.task} ${job.id.slice(-8)}${progress}`, "chip"));
    }
    const age = Math.max(0, (Date.parse(view.now) - Date.parse(w.last_seen)) / 1000);
    const stale = age > 30 ? "error" : "";
    return row([w.name, w.host, w.pid, w.queues.join(", "), `${w.running}/${w.concurrency}`,
      w.processed, el("td", `${ago(age)} ago`, stale),
      relative(w.started_at, view.now).replace(" ago", ""), jobs]);
  });
  fill($("#workers tbody"), rows, "no live workers", 9);
  $("#orphans").textContent = view.orphaned
    ? `${view.orphaned} running job(s) of workers that are gone` : "";
}

// ---- queue charts (inline SVG) -------------------------------------------------------------

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function niceTop(value, whole) {
  if (value <= 0) return whole ? 2 : 1;
  if (whole) return Math.max(2, 2 * Math.ceil(value / 2));
  const step = 10 ** Math.floor(Math.log10(value));
  return Math.ceil(value / step) * step;
}

function chart(queue, view) {
  const width = 560;
  const height = 150;
  const pad = { left: 40, right: 44, top: 8, bottom: 18 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const n = queue.buckets.length;
  const slot = plotW / Math.max(n, 1);
  const counts = queue.buckets.map((b) => b.succeeded + b.failed);
  const waits = queue.buckets.map((b) => b.wait_avg);
  const topCount = niceTop(Math.max(0, ...counts), true);
  const topWait = niceTop(Math.max(0, ...waits.filter((w) => w !== null)), false);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `${queue.name}: ${counts.reduce((a, b) => a + b, 0)} jobs finished` });
  root.dataset.total = String(counts.reduce((a, b) => a + b, 0));
  root.dataset.buckets = String(n);
  for (const frac of [0, 0.5, 1]) {
    const y = pad.top + plotH * (1 - frac);
    root.append(svg("line", { x1: pad.left, x2: pad.left + plotW, y1: y, y2: y, class: "grid" }),
      svg("text", { x: pad.left - 4, y: y + 4, "text-anchor": "end" }, topCount * frac),
      svg("text", { x: pad.left + plotW + 4, y: y + 4, class: "wait" },
        ago(topWait * frac) || "0"));
  }
  queue.buckets.forEach((b, i) => {
    const x = pad.left + i * slot + 0.5;
    const okH = (b.succeeded / topCount) * plotH;
    const badH = (b.failed / topCount) * plotH;
    const base = pad.top + plotH;
    const title = `${time(b.start)}: ${b.succeeded} succeeded, ${b.failed} failed` +
      (b.wait_avg === null ? "" : `, wait ${ago(b.wait_avg)} (max ${ago(b.wait_max)})`);
    const group = svg("g", {});
    group.append(svg("title", {}, title));
    if (okH) group.append(svg("rect", { x, y: base - okH, width: Math.max(1, slot - 1), height: okH, class: "ok" }));
    if (badH) group.append(svg("rect", { x, y: base - okH - badH, width: Math.max(1, slot - 1), height: badH, class: "bad" }));
    root.append(group);
  });
  const points = waits.map((w, i) => (w === null ? null
    : `${pad.left + (i + 0.5) * slot},${pad.top + plotH * (1 - w / topWait)}`)).filter(Boolean);
  if (points.length) root.append(svg("polyline", { points: points.join(" "), class: "wait" }));
  for (const point of points) {
    const [cx, cy] = point.split(",");
    root.append(svg("circle", { cx, cy, r: 2, class: "wait" }));
  }
  const first = queue.buckets[0]?.start;
  root.dataset.window = String(view.window);
  root.append(svg("text", { x: pad.left, y: height - 4 }, relative(first, view.now)),
    svg("text", { x: pad.left + plotW, y: height - 4, "text-anchor": "end" }, "now"));
  return root;
}

function queues(view) {
  $("#range").textContent = view.window === 3600 ? "the last hour" : `the last ${ago(view.window)}`;
  $("#bucket").textContent = view.bucket === 60 ? "minute" : ago(view.bucket);
  const cards = view.queues.map((q) => {
    const card = el("article", null, "chart");
    card.dataset.queue = q.name;
    const head = el("h3", q.name);
    head.append(" ", el("small", `${q.ready} ready · ${q.running} running` +
      (q.oldest_ready_age === null ? "" : ` · oldest ready waited ${ago(q.oldest_ready_age)}`),
    "muted"));
    card.append(head, chart(q, view));
    return card;
  });
  $("#charts").replaceChildren(...cards);
  if (!cards.length) $("#charts").append(el("p", "no jobs yet", "muted"));
}

const PAGES = { schedules, limits, workflows, workers, queues };

function main() {
  const page = document.body.dataset.page;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href").includes(`/${page}.html`)) link.className = "current";
  }
  live(page, PAGES[page]);
  setInterval(tick, 1000);
}

main();
