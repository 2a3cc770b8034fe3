// The offload dashboard: plain JS over the /v1 API. Every piece of job data goes into the page
// through textContent, never parsed as markup, and the CSP forbids inline scripts besides.
"use strict";

const TOKEN_KEY = "offload.token";
const REFRESH_MS = 2000;
const PAGE = 50;
const $ = (selector) => document.querySelector(selector);

const view = { jobs: [], cursor: null, pages: 1, selected: null, stream: null, filters: "" };

// ---- API ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(path, method = "GET") {
  // A request that changes state says it is JSON, as the API asks of every such request.
  const json = method === "GET" ? {} : { "Content-Type": "application/json" };
  const response = await fetch(path, { method, headers: { ...authHeaders(), ...json } });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = body?.error?.message ?? `HTTP ${response.status}`;
    if (response.status === 401) askForToken(message);
    throw new ApiError(response.status, message);
  }
  return body;
}

// ---- DOM helpers --------------------------------------------------------------------------

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

function fill(tbody, rows, empty, columns) {
  tbody.replaceChildren(...rows);
  if (!rows.length) {
    const td = el("td", empty, "muted");
    td.colSpan = columns;
    const tr = el("tr");
    tr.append(td);
    tbody.append(tr);
  }
}

const json = (value) => JSON.stringify(value);
const time = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "");
const ms = (from, to) => (from && to ? Date.parse(to) - Date.parse(from) : null);

function duration(millis) {
  if (millis === null) return "";
  if (millis < 1000) return `${millis} ms`;
  if (millis < 120000) return `${(millis / 1000).toFixed(1)} s`;
  return `${(millis / 60000).toFixed(1)} min`;
}

function badge(status) {
  return el("span", status, `badge ${status}`);
}

function percent(progress) {
  return progress === null || progress === undefined ? "" : `${Math.round(progress * 100)}%`;
}

// ---- token --------------------------------------------------------------------------------

function askForToken(message) {
  $("#token-form").hidden = false;
  $("#token-message").textContent = message;
  $("#token").focus();
}

function setupToken() {
  if (sessionStorage.getItem(TOKEN_KEY)) $("#token-form").hidden = false;
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
    $("#token").value = "";
    $("#token-message").textContent = "";
    refresh();
  });
  $("#token-clear").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("#token-message").textContent = "token forgotten";
  });
}

// ---- queues, workers, jobs ----------------------------------------------------------------

const STATES = ["scheduled", "queued", "running", "succeeded", "failed", "cancelled"];

function showQueues(queues) {
  const rows = queues.map((q) => row([q.name, ...STATES.map((s) => q.counts[s] ?? 0), q.total]));
  fill($("#queues tbody"), rows, "no jobs yet", 8);
  addOptions($("#f-queue"), queues.map((q) => q.name));
}

// A worker's `running` is counted from the backend now, like the queue table's; jobs still
// "running" under a worker that is gone (until their lease expires) get a row of their own.
function showWorkers(workers, queues) {
  const rows = workers.map((w) =>
    row([w.name, w.host, w.pid, w.queues.join(", "), `${w.running}/${w.concurrency}`,
      w.processed, time(w.last_seen)]));
  const total = queues.reduce((sum, q) => sum + (q.counts.running ?? 0), 0);
  const orphans = total - workers.reduce((sum, w) => sum + w.running, 0);
  if (orphans > 0) {
    const note = el("td", "no live worker: queued again once their leases expire", "muted");
    note.colSpan = 2;
    rows.push(row(["(gone)", "", "", "", String(orphans), note]));
  }
  fill($("#workers tbody"), rows, "no live workers", 7);
}

function addOptions(select, names) {
  const have = new Set([...select.options].map((o) => o.value));
  for (const name of names) if (!have.has(name)) select.append(new Option(name, name));
}

function filterQuery() {
  const params = new URLSearchParams();
  for (const key of ["status", "task", "queue"]) {
    const value = $(`#f-${key}`).value;
    if (value) params.set(key, value);
  }
  return params;
}

function jobRow(job) {
  const tr = row([time(job.created_at), el("td", job.id.slice(-10), "mono"), job.task, job.queue,
    el("td").appendChild(badge(job.status)).parentNode, percent(job.progress),
    el("td", json(job.args.length || !Object.keys(job.kwargs).length ? job.args : job.kwargs),
      "args"),
    duration(ms(job.created_at, job.started_at)), duration(ms(job.started_at, job.finished_at))]);
  tr.dataset.id = job.id;
  tr.title = job.id;
  if (job.id === view.selected) tr.classList.add("selected");
  tr.addEventListener("click", () => select(job.id));
  return tr;
}

function showJobs() {
  fill($("#jobs tbody"), view.jobs.map(jobRow), "no jobs match", 9);
  $("#more").hidden = !view.cursor;
}

async function loadJobs() {
  // One request refreshes every page loaded so far (the API allows up to 500 a page).
  const params = filterQuery();
  const filters = params.toString();
  if (filters !== view.filters) view.pages = 1;
  view.filters = filters;
  params.set("limit", String(Math.min(500, PAGE * view.pages)));
  const page = await api(`/v1/jobs?${params}`);
  view.jobs = page.jobs;
  view.cursor = page.next_cursor;
  showJobs();
}

async function loadMore() {
  if (!view.cursor) return;
  const params = filterQuery();
  params.set("limit", String(PAGE));
  params.set("cursor", view.cursor);
  const page = await api(`/v1/jobs?${params}`);
  view.jobs.push(...page.jobs);
  view.cursor = page.next_cursor;
  view.pages += 1;
  showJobs();
}

// ---- charts (canvas) ----------------------------------------------------------------------

// The top of the axis: with `whole` (counts), an even number so that the three ticks
// (0, half, top) are distinct whole numbers, never "1, 1, 0".
function axisTop(series, whole) {
  const highest = Math.max(0, ...series.flatMap((s) => s.values));
  return whole ? Math.max(2, 2 * Math.ceil(highest / 2)) : Math.max(1, highest);
}

function bars(canvas, series, count, unit, whole = false) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  const pad = { left: 44, bottom: 16, top: 8 };
  ctx.clearRect(0, 0, width, height);
  const top = axisTop(series, whole);
  const ticks = [1, 0.5, 0].map((frac) => unit(top * frac));
  canvas.dataset.ticks = ticks.join(",");
  canvas.dataset.values = series.map((s) => s.values.join(" ")).join(";");
  canvas.setAttribute("aria-label", `axis ${ticks.join(", ")}`);
  const plotH = height - pad.bottom - pad.top;
  const slot = (width - pad.left) / Math.max(count, 1);
  const barW = Math.max(1, (slot - 2) / series.length);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#888";
  ctx.strokeStyle = "#ddd";
  for (const frac of [0, 0.5, 1]) {
    const y = pad.top + plotH * (1 - frac);
    ctx.beginPath();
    ctx.moveTo(pad.left, y);
    ctx.lineTo(width, y);
    ctx.stroke();
    ctx.fillText(unit(top * frac), 2, y + 4);
  }
  series.forEach((s, i) => {
    ctx.fillStyle = s.color;
    s.values.forEach((v, j) => {
      const h = (v / top) * plotH;
      ctx.fillRect(pad.left + j * slot + 1 + i * barW, pad.top + plotH - h, barW, h);
    });
  });
  if (!count) ctx.fillText("no data yet", pad.left + 8, pad.top + plotH / 2);
}

function drawCharts(jobs) {
  const bucket = 10000;
  const buckets = 30;
  const now = Date.now();
  const finished = new Array(buckets).fill(0);
  for (const job of jobs) {
    if (!job.finished_at) continue;
    const index = buckets - 1 - Math.floor((now - Date.parse(job.finished_at)) / bucket);
    if (index >= 0 && index < buckets) finished[index] += 1;
  }
  bars($("#throughput"), [{ values: finished, color: "#3b82f6" }], buckets, String, true);
  const recent = jobs.filter((j) => j.started_at && j.finished_at).slice(0, 40).reverse();
  const wait = recent.map((j) => ms(j.created_at, j.started_at));
  const run = recent.map((j) => ms(j.started_at, j.finished_at));
  bars($("#latency"), [{ values: wait, color: "#f59e0b" }, { values: run, color: "#10b981" }],
    recent.length, (v) => duration(Math.round(v)));
}

// ---- the job panel ------------------------------------------------------------------------

function showJob(job) {
  if (job.id !== view.selected) return;
  $("#job-id").textContent = job.id;
  $("#job-status").replaceWith(Object.assign(badge(job.status), { id: "job-status" }));
  $("#job-task").textContent = job.task;
  $("#job-queue").textContent = job.queue;
  $("#job-attempts").textContent = job.attempts;
  const progress = job.status === "succeeded" ? 1 : job.progress ?? 0;
  $("#job-progress").value = progress;
  $("#job-percent").textContent = percent(progress);
  $("#job-progress-message").textContent = job.progress_message ?? "";
  const args = { args: job.args, kwargs: job.kwargs };
  $("#job-args").textContent = JSON.stringify(args, null, 2);
  $("#job-result-box").hidden = job.status !== "succeeded";
  $("#job-result").textContent = JSON.stringify(job.result, null, 2);
  $("#job-error-box").hidden = !job.error;
  $("#job-error").textContent = job.error
    ? `${job.error.type ?? "Error"}: ${job.error.message ?? ""}\n\n${job.error.traceback ?? ""}`
    : "";
  const times = [["created", job.created_at], ["run at", job.run_at],
    ["started", job.started_at], ["finished", job.finished_at],
    ["retry of", job.retry_of]].filter(([, v]) => v);
  $("#job-times").replaceChildren(...times.flatMap(([k, v]) =>
    [el("dt", k), el("dd", k === "retry of" ? v : new Date(v).toLocaleString())]));
  $("#cancel").disabled = Boolean(job.finished_at);
  $("#retry").disabled = !["failed", "cancelled"].includes(job.status);
}

async function loadHistory(id) {
  const history = await api(`/v1/jobs/${encodeURIComponent(id)}/history`);
  if (id !== view.selected) return;
  const rows = history.transitions.map((t) => row([time(t.at), t.from_status ?? "", t.to_status,
    t.reason, t.attempt, t.worker_id ?? "", t.detail ?? ""]));
  fill($("#history tbody"), rows, "no transitions", 7);
}

// Follow a job's events: EventSource when no token is needed (it cannot send headers), else
// the same stream read through fetch with the Authorization header.
function follow(id, onJob) {
  const url = `/v1/jobs/${encodeURIComponent(id)}/events`;
  const names = ["snapshot", "progress", "status"];
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    const source = new EventSource(url);
    const handle = (event) => {
      const job = JSON.parse(event.data);
      onJob(job);
      if (job.finished_at) source.close();
    };
    for (const name of names) source.addEventListener(name, handle);
    return () => source.close();
  }
  const controller = new AbortController();
  (async () => {
    const response = await fetch(url, { headers: authHeaders(), signal: controller.signal });
    if (!response.ok || !response.body) return;
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
        const data = block.split("\n").filter((l) => l.startsWith("data: "))
          .map((l) => l.slice(6)).join("\n");
        if (names.includes(event) && data) onJob(JSON.parse(data));
      }
    }
  })().catch(() => {});
  return () => controller.abort();
}

async function select(id) {
  if (view.stream) view.stream();
  view.stream = null;
  view.selected = id;
  for (const tr of document.querySelectorAll("#jobs tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.id === id);
  }
  $("#job").hidden = false;
  $("#job-message").textContent = "";
  try {
    showJob(await api(`/v1/jobs/${encodeURIComponent(id)}`));
    await loadHistory(id);
  } catch (error) {
    $("#job-message").textContent = error.message;
    return;
  }
  let last = null;
  view.stream = follow(id, (job) => {
    showJob(job);
    if (job.status !== last) {
      last = job.status;
      loadHistory(id).catch(() => {});
    }
  });
}

async function act(action) {
  const id = view.selected;
  $("#job-message").textContent = "";
  try {
    const job = await api(`/v1/jobs/${encodeURIComponent(id)}/${action}`, "POST");
    await refresh();
    await select(job.id); // a retry is a new job: follow it
  } catch (error) {
    $("#job-message").textContent = error.message;
  }
}

// ---- refresh loop -------------------------------------------------------------------------

let tasksLoaded = false;

async function refresh() {
  try {
    if (!tasksLoaded) {
      const { tasks } = await api("/v1/tasks");
      addOptions($("#f-task"), tasks.map((t) => t.name));
      addOptions($("#f-queue"), tasks.map((t) => t.queue));
      tasksLoaded = true;
    }
    const [queues, workers] = await Promise.all([api("/v1/queues"), api("/v1/workers")]);
    showQueues(queues.queues);
    showWorkers(workers.workers, queues.queues);
    await loadJobs();
    drawCharts(view.jobs);
    $("#status").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("#status").className = "muted";
  } catch (error) {
    $("#status").textContent = error.message;
    $("#status").className = "error";
  }
}

async function loop() {
  if (!document.hidden) await refresh();
  setTimeout(loop, REFRESH_MS);
}

function main() {
  setupToken();
  $("#filters").addEventListener("change", () => refresh());
  $("#more").addEventListener("click", () => loadMore().then(() => drawCharts(view.jobs))
    .catch((error) => { $("#status").textContent = error.message; }));
  $("#cancel").addEventListener("click", () => act("cancel"));
  $("#retry").addEventListener("click", () => act("retry"));
  $("#close").addEventListener("click", () => {
    if (view.stream) view.stream();
    view.stream = null;
    view.selected = null;
    $("#job").hidden = true;
    showJobs();
  });
  loop();
}

main();
