// The playground: runs the editor's code through this API with the key its user typed, and
// shows the job's output as it arrives (GET /jobs/{id}/events, read with fetch() because an
// EventSource cannot send the key), then its verdict, tests and returned files.
//
// Everything a job or the API sends back is shown as text (textContent, never innerHTML): a
// program printing markup shows its characters. A returned image is shown only as an <img>
// of a blob typed as that image; any other file is offered as a download of opaque bytes, so
// no blob of the page's origin can ever be opened as HTML.
"use strict";

const KEY_ITEM = "corral.key";
const IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
const LONG_POLL_S = 10;
const EXAMPLES = {
  python: 'print("Hello from Corral")\n',
  "python-sci": 'import os\nimport matplotlib\nmatplotlib.use("Agg")\nimport matplotlib.pyplot as plt\n\nos.makedirs("out", exist_ok=True)\nplt.plot([1, 4, 9, 16])\nplt.savefig("out/plot.png")\nprint("saved out/plot.png")\n',
  c: '#include <stdio.h>\n\nint main(void) {\n    printf("Hello from C\\n");\n    return 0;\n}\n',
};

const $ = (id) => document.getElementById(id);
let editor;
let running = null;

function say(text) {
  $("notice").textContent = text;
}

function key() {
  return $("key").value.trim();
}

async function call(path, options = {}) {
  const headers = { ...(options.headers || {}), Authorization: `Bearer ${key()}` };
  const answer = await fetch(path, { ...options, headers, cache: "no-store" });
  if (!answer.ok && answer.status !== 304) {
    throw new Error(await problem(answer));
  }
  return answer;
}

async function problem(answer) {
  let detail = answer.statusText;
  try {
    const body = await answer.json();
    const fields = (body.errors || []).map((error) => `${error.field}: ${error.message}`).join("; ");
    detail = body.detail || body.message || fields || detail;
  } catch (ignored) {
    // Not JSON: the status says enough.
  }
  return `${answer.status}: ${detail}`;
}

async function loadRuntimes() {
  if (!key()) {
    say("Type an API key to load the languages and run code.");
    return;
  }
  try {
    const runtimes = await (await call("runtimes")).json();
    const picker = $("language");
    const chosen = picker.value;
    picker.replaceChildren();
    for (const runtime of runtimes) {
      const option = document.createElement("option");
      option.value = runtime.language;
      option.textContent = `${runtime.language} ${runtime.version}`;
      picker.append(option);
    }
    if (runtimes.some((runtime) => runtime.language === chosen)) picker.value = chosen;
    say("");
  } catch (error) {
    say(`Languages not loaded: ${error.message}`);
  }
}

function fromFragment() {
  const shared = new URLSearchParams(location.hash.slice(1));
  return { language: shared.get("lang") || "python", code: shared.get("code") };
}

function share() {
  const fragment = new URLSearchParams({ lang: $("language").value, code: editor.getValue() });
  history.replaceState(null, "", `#${fragment}`);
  const link = location.href;
  if (navigator.clipboard) navigator.clipboard.writeText(link).catch(() => {});
  say(`Link to this code (the key is not in it): ${link}`);
}

function addTest(stdin = "", expected = "") {
  const row = document.createElement("div");
  row.className = "test";
  const input = document.createElement("textarea");
  input.placeholder = "stdin";
  input.value = stdin;
  const want = document.createElement("textarea");
  want.placeholder = "expected stdout";
  want.value = expected;
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "Remove";
  remove.addEventListener("click", () => row.remove());
  row.append(input, want, remove);
  $("tests").append(row);
}

function request() {
  const body = { code: editor.getValue(), language: $("language").value, stdin: $("stdin").value };
  const limits = {};
  if ($("cpu").value) limits.cpu_time_ms = Number($("cpu").value);
  if ($("memory").value) limits.memory_mb = Number($("memory").value);
  if (Object.keys(limits).length) body.limits = limits;
  const tests = [...$("tests").children].map((row) => {
    const [input, want] = row.querySelectorAll("textarea");
    return { stdin: input.value, expected_stdout: want.value };
  });
  // A job with tests returns no files (each test runs in a jail of its own).
  if (tests.length) body.tests = tests;
  else body.outputs = true;
  return body;
}

function show(kind, text) {
  const chunk = document.createElement("span");
  chunk.className = kind;
  chunk.textContent = text;
  $("output").append(chunk);
}

function clearResult() {
  $("output").replaceChildren();
  $("test-results").replaceChildren();
  for (const img of $("files").querySelectorAll("img, a")) URL.revokeObjectURL(img.src || img.href);
  $("files").replaceChildren();
  $("status").textContent = "";
  delete $("status").dataset.done;
  say("");
}

// One SSE event per blank-line-separated block: `event:`, `id:`, `data:` lines (several data
// lines are one event's lines); a line starting with ':' is a comment (keep-alive).
function parseEvent(block) {
  const event = { kind: "message", id: "", data: [] };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event.kind = value;
    else if (field === "id") event.id = value;
    else if (field === "data") event.data.push(value);
  }
  return { kind: event.kind, id: event.id, data: event.data.join("\n") };
}

// Follows the job's event stream; resolves with the finished job, or null if the stream could
// not be had (an API without it, or one that dropped it more than a few times).
async function follow(jobId, signal) {
  let lastId = "";
  for (let attempt = 0; attempt < 3; attempt += 1) {
    let answer;
    try {
      answer = await call(`jobs/${encodeURIComponent(jobId)}/events`, {
        headers: lastId ? { "Last-Event-ID": lastId } : {},
        signal,
      });
    } catch (error) {
      if (signal.aborted) throw error;
      return null;
    }
    const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffered.indexOf("\n\n")) >= 0) {
        const event = parseEvent(buffered.slice(0, end));
        buffered = buffered.slice(end + 2);
        if (event.id) lastId = event.id;
        if (event.kind === "stdout" || event.kind === "stderr") show(event.kind, event.data);
        else if (event.kind === "status") $("status").textContent = event.data;
        else if (event.kind === "result") return JSON.parse(event.data);
      }
    }
  }
  return null;
}

// Long-polling, for an API without the event stream: the job once it finishes.
async function poll(jobId, signal) {
  for (;;) {
    const job = await (await call(`jobs/${encodeURIComponent(jobId)}?wait=${LONG_POLL_S}`, { signal })).json();
    $("status").textContent = job.status;
    if (job.finished_at) return job;
  }
}

function showResult(job) {
  const result = job.result;
  $("status").textContent = result
    ? `${job.status}: ${result.verdict}, exit ${result.exit_code ?? "-"}, ${result.wall_time_ms} ms wall, ` +
      `${result.cpu_time_ms} ms CPU, ${result.memory_kb} KB`
    : job.status;
  if (job.error) say(`${job.error.code}: ${job.error.message}`);
  if (!result) return undefined;
  $("output").replaceChildren();
  if (result.compile_output) show("stderr", result.compile_output);
  show("stdout", result.stdout);
  show("stderr", result.stderr);
  for (const [index, test] of (result.tests || []).entries()) {
    const line = document.createElement("li");
    line.className = test.verdict === "ok" ? "passed" : "failed";
    const message = test.checker_message ? ` (${test.checker_message})` : "";
    line.textContent = `${test.name || `test ${index + 1}`}: ${test.verdict}${message}`;
    $("test-results").append(line);
  }
  return Promise.all((result.files || []).map((file) => showFile(job.job_id, file)));
}

async function showFile(jobId, file) {
  const path = file.name.split("/").map(encodeURIComponent).join("/");
  let bytes;
  try {
    bytes = await (await call(`jobs/${encodeURIComponent(jobId)}/files/${path}`)).arrayBuffer();
  } catch (error) {
    say(`${file.name}: ${error.message}`);
    return;
  }
  const type = file.media_type.split(";")[0].trim().toLowerCase();
  if (IMAGE_TYPES.has(type)) {
    const img = document.createElement("img");
    img.alt = file.name;
    img.src = URL.createObjectURL(new Blob([bytes], { type }));
    $("files").append(img);
    return;
  }
  const link = document.createElement("a");
  link.download = file.name.split("/").pop();
  link.href = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
  link.textContent = `${file.name} (${file.size} bytes)`;
  $("files").append(link);
}

async function run() {
  if (running) running.abort();
  const controller = new AbortController();
  running = controller;
  clearResult();
  if (!key()) {
    say("Type an API key first.");
    return;
  }
  $("status").textContent = "submitting";
  try {
    const body = JSON.stringify(request());
    const accepted = await (await call("execute", { method: "POST", body, headers: { "Content-Type": "application/json" } })).json();
    $("status").textContent = accepted.status;
    const job = (await follow(accepted.job_id, controller.signal)) || (await poll(accepted.job_id, controller.signal));
    if (running === controller) {
      await showResult(job);
      // Marks the job's whole result as shown (read by the browser test).
      $("status").dataset.done = job.job_id;
    }
  } catch (error) {
    if (!controller.signal.aborted) {
      $("status").textContent = "not run";
      say(error.message);
    }
  }
}

function start() {
  const shared = fromFragment();
  $("key").value = sessionStorage.getItem(KEY_ITEM) || "";
  $("language").value = shared.language;
  if ($("language").value !== shared.language) {
    const option = document.createElement("option");
    option.value = option.textContent = shared.language;
    $("language").append(option);
    $("language").value = shared.language;
  }
  editor = CorralEditor.create($("editor"), shared.code ?? EXAMPLES[shared.language] ?? "", shared.language);
  $("key").addEventListener("change", () => {
    sessionStorage.setItem(KEY_ITEM, key());
    loadRuntimes();
  });
  $("language").addEventListener("change", () => editor.setLanguage($("language").value));
  $("run").addEventListener("click", run);
  $("share").addEventListener("click", share);
  $("add-test").addEventListener("click", () => addTest());
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) run();
  });
  // When the page is ready to run code, in ms since navigation (read by the browser test).
  document.documentElement.dataset.ready = String(Math.round(performance.now()));
  loadRuntimes();
}

start();
