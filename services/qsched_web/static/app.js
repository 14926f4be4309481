// qsched web view: fills the server-rendered pages from server-sent events (no polling) and sends
// the viewer's actions. Every action is authorized by the scheduler; a refusal is shown as one line.
"use strict";

const page = document.body.dataset.page;
const $ = (id) => document.getElementById(id);
const short = (state) => (state || "").replace(/^STATE_/, "").toLowerCase();
const TERMINAL = new Set(["STATE_SUCCEEDED", "STATE_FAILED", "STATE_CANCELLED"]);
// How late each live update reaches the page (ms after the scheduler stamped it); the browser
// test logs these. Same-machine clocks: a measurement, not an assertion.
window.qschedLatencies = [];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

function notice(text, ok = false) {
  const line = $("notice");
  line.textContent = text;
  line.className = ok ? "ok" : "";
  line.hidden = !text;
}

function latency(stamp, what, receivedAt) {
  if (!stamp) return;
  const ms = Date.now() - Date.parse(stamp);
  // receivedAt: when the web view got it from the scheduler's stream (seconds since the epoch).
  const upstream = receivedAt ? Math.round(receivedAt * 1000 - Date.parse(stamp)) : null;
  window.qschedLatencies.push({ what, ms, upstream });
  console.log(`qsched-latency ${what} ${ms} ms (${upstream} ms of it before the web view had it)`);
}

async function act(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "X-Qsched": "1", "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  const answer = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (answer.error) notice(answer.error.split("\n")[0]);
  else notice("");
  return answer;
}

function when(stamp) {
  if (!stamp) return "";
  const seconds = Math.round((Date.parse(stamp) - Date.now()) / 1000);
  if (Math.abs(seconds) < 5) return "now";
  return seconds > 0 ? `in ${seconds} s` : `${-seconds} s ago`;
}

function what(job) {
  const lab = job.payload && job.payload.lab_experiment;
  if (lab) return lab.experiment_class;
  return (job.kind || "").replace(/^JOB_KIND_/, "").toLowerCase();
}

// -- the board -------------------------------------------------------------------------------------
function deviceState(device) {
  const held = (device.queue_state || "").replace(/^DEVICE_QUEUE_STATE_/, "").toLowerCase();
  if (held === "paused" || held === "draining" || held === "drained") return held;
  return device.running_job_id ? "running" : "idle";
}

function renderDevice(device, jobs) {
  const id = `device-${device.name}`;
  let box = document.getElementById(id);
  if (!box) {
    box = el("div", { class: "device", id, "data-device": device.name });
    $("devices").append(box);
  }
  const state = deviceState(device);
  const buttons = ["pause", "drain", "resume"].map((action) =>
    el("button", { class: `action-${action}`, onclick: () => act(`/api/devices/${encodeURIComponent(device.name)}/${action}`) }, action[0].toUpperCase() + action.slice(1)),
  );
  const hold = device.hold_reason ? el("span", { class: "hint" }, `held by ${device.held_by || "?"}: ${device.hold_reason}`) : "";
  const rows = jobs.map((job) => {
    const progress = job.current_run && job.state === "STATE_RUNNING" ? `${Math.round((job.current_run.progress || 0) * 100)} %` : "";
    return el(
      "tr",
      { "data-job": job.job_id, "data-state": short(job.state) },
      el("td", {}, job.queue_position || (job.state === "STATE_RUNNING" ? "▶" : "")),
      el("td", {}, el("a", { href: `/jobs/${job.job_id}` }, job.job_id)),
      el("td", {}, job.owner),
      el("td", {}, what(job)),
      el("td", { class: "state" }, short(job.state)),
      el("td", {}, job.state === "STATE_QUEUED" ? when(job.estimated_start_time) : progress),
      el("td", {}, el("button", { class: "cancel", onclick: () => act(`/api/jobs/${job.job_id}/cancel`) }, "Cancel")),
    );
  });
  const table = jobs.length
    ? el("table", {}, el("thead", {}, el("tr", {}, ...["#", "job", "owner", "what", "state", "start / progress", ""].map((h) => el("th", {}, h)))), el("tbody", {}, ...rows))
    : el("p", { class: "hint" }, "queue empty");
  box.replaceChildren(
    el("h2", {}, device.name, el("span", { class: `badge ${state}`, "data-state": state }, state), ...buttons),
    hold,
    table,
  );
  box.dataset.state = state;
}

function board() {
  const source = new EventSource("/events/board");
  source.addEventListener("devices", (message) => {
    $("devices").replaceChildren();
    const idle = [];
    for (const device of JSON.parse(message.data)) {
      // Lab devices and busy ones get a live queue; idle provider devices are listed until they get a job.
      const lab = (device.kinds || []).includes("JOB_KIND_LAB_EXPERIMENT");
      if (lab || device.queued || device.running_job_id) renderDevice(device, []);
      else idle.push(device.name);
    }
    $("others").textContent = idle.length ? `Idle provider devices: ${idle.join(", ")}` : "";
  });
  source.addEventListener("queue", (message) => {
    const data = JSON.parse(message.data);
    latency(data.event_time, `queue ${data.device.name}`, data.received_at);
    renderDevice(data.device, data.jobs);
  });
  source.addEventListener("refused", (message) => notice(JSON.parse(message.data).error));
}

// -- the job page ----------------------------------------------------------------------------------
function pairs(target, values, format = (v) => v) {
  const entries = Object.entries(values || {});
  if (!entries.length) return;
  target.replaceChildren(...entries.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, format(v))]));
}

function renderJob(job) {
  const run = job.current_run || {};
  $("facts").replaceChildren(
    ...[
      ["state", short(job.state)],
      ["owner", job.owner],
      ["device", job.device],
      ["what", what(job)],
      ["queue position", job.queue_position || ""],
      ["estimated start", job.state === "STATE_QUEUED" ? when(job.estimated_start_time) : ""],
      ["error", job.error ? `${job.error.reason}: ${job.error.message}` : ""],
    ]
      .filter(([, v]) => v !== "")
      .flatMap(([k, v]) => [el("dt", {}, k), el("dd", { id: `fact-${k.replace(/ /g, "-")}` }, v)]),
  );
  document.body.dataset.state = short(job.state);
  setProgress(job.state === "STATE_SUCCEEDED" ? 1 : run.progress || 0);
  pairs($("revisions"), run.config_revisions);
  pairs($("fit"), run.summary, (v) => Number(v).toPrecision(5));
  $("cancel").hidden = TERMINAL.has(job.state);
  if (job.state === "STATE_SUCCEEDED" && job.kind === "JOB_KIND_LAB_EXPERIMENT" && run.task_id) showPlot(job.job_id, run.task_id);
}

function setProgress(fraction) {
  $("bar").style.width = `${Math.round(fraction * 100)}%`;
  $("progress-text").textContent = `${Math.round(fraction * 100)} %`;
}

function showPlot(jobId, taskId) {
  const img = $("plot");
  const src = `/jobs/${jobId}/plot.png?task=${encodeURIComponent(taskId)}`;
  if (img.getAttribute("src") === src) return;
  live.final = true; // the data file's plot replaces the live one
  img.onload = () => { img.hidden = false; img.dataset.rounds = "final"; $("plot-note").hidden = true; };
  img.onerror = () => { $("plot-note").textContent = "no plot for this run's data"; };
  img.src = src;
}

// Live partial data: one image request at a time; a round that arrives meanwhile replaces the
// one waiting (the latest is drawn, older ones are dropped).
const live = { loading: false, next: null, final: false };
window.qschedPartialsDrawn = []; // the rounds each live plot drew (the browser test reads it)

async function showPartial(jobId, partial) {
  if (live.final) return;
  if (live.loading) { live.next = partial; return; }
  live.loading = true;
  const img = $("plot");
  try {
    // Fetched first, then swapped in: the plot on the page never blanks while the next one loads.
    const response = await fetch(`/jobs/${jobId}/plot.png?task=${encodeURIComponent(partial.task_id)}&partial=${partial.rounds_done}`);
    if (response.ok && !live.final) {
      const url = URL.createObjectURL(await response.blob());
      const loaded = await new Promise((resolve) => {
        const old = img.src;
        img.onload = () => resolve(true);
        img.onerror = () => resolve(false);
        img.src = url;
        if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      });
      if (loaded && !live.final) {
        img.hidden = false;
        const rounds = Number(response.headers.get("X-Qsched-Rounds") || partial.rounds_done);
        img.dataset.rounds = String(rounds);
        if (window.qschedPartialsDrawn.at(-1) !== rounds) window.qschedPartialsDrawn.push(rounds);
        $("plot-note").hidden = false;
        $("plot-note").textContent = `live: ${rounds} of ${partial.rounds_total} rounds averaged`;
        latency(partial.time, `partial-drawn ${rounds}`, partial.received_at);
      }
    }
  } finally {
    live.loading = false;
    const next = live.next;
    live.next = null;
    if (next) showPartial(jobId, next);
  }
}

function appendLog(event) {
  const lines = (event.log && event.log.lines) || [];
  const log = $("log");
  for (const line of lines) log.append(el("div", { class: line.startsWith("[qsched]") ? "dropped" : "" }, line));
  $("log-section").hidden = log.childElementCount === 0;
}

function jobPage() {
  const jobId = document.body.dataset.job;
  $("cancel").onclick = () => act(`/api/jobs/${jobId}/cancel`);
  const source = new EventSource(`/events/jobs/${jobId}`);
  source.addEventListener("snapshot", (message) => renderJob(JSON.parse(message.data)));
  source.addEventListener("event", (message) => {
    const event = JSON.parse(message.data);
    if (event.log) { // log lines of the run: the Log section, not the event list
      appendLog(event);
      if (event.received_at) latency(event.time, `log ${event.seq}`, event.received_at);
      return;
    }
    latency(event.time, `job ${event.seq}`, event.received_at);
    const time = event.time ? new Date(event.time).toLocaleTimeString() : "";
    $("events").append(el("li", { "data-seq": event.seq, "data-state": short(event.state) }, `${time} ${short(event.state)} ${event.message || ""}`));
    if (event.job) renderJob(event.job);
    else if (event.progress) setProgress(event.progress);
  });
  source.addEventListener("partial", (message) => {
    const partial = JSON.parse(message.data);
    latency(partial.time, `partial ${partial.rounds_done}/${partial.rounds_total}`, partial.received_at);
    showPartial(jobId, partial);
  });
  source.addEventListener("record", (message) => {
    const result = JSON.parse(message.data);
    let record = result.benchmark_results_json ? JSON.parse(result.benchmark_results_json) : { tasks: result.tasks };
    $("record").textContent = JSON.stringify(record, null, 2);
    $("record-section").hidden = false;
  });
  source.addEventListener("refused", (message) => notice(JSON.parse(message.data).error));
  source.addEventListener("end", () => source.close());
}

if (page === "board") board();
else if (page === "job") jobPage();
