// The page's views (pasted into ui.html by page.py): #situation, #tasks (the browser),
// #task/<id> (the detail), #trends and #periodic (beat entries). Everything shown goes through textContent: no HTML
// is ever built from data. Uses api(), el(), row(), fill(), when(), ago() and renderPlan().
const VIEWS = ["situation", "tasks", "task", "trends", "periodic"];
const SVGNS = "http://www.w3.org/2000/svg";
let cursors = [null]; // the cursor of each page shown so far: [0] is the newest page
let timer = null;

function linkRow(taskId, label, cells) {
  const tr = el("tr");
  const td = el("td");
  td.appendChild(taskLink(taskId, label));
  tr.appendChild(td);
  for (const c of cells) tr.appendChild(el("td", c));
  return tr;
}

function taskLink(taskId, label) {
  const a = el("a", label === undefined ? taskId : label);
  a.href = "#task/" + encodeURIComponent(taskId);
  return a;
}

function stateBadge(status) {
  // Colour and text: the word is always there, the colour only helps.
  return el("span", status, "state s-" + String(status).replace(/[^A-Z]/g, ""));
}

function route() {
  const hash = decodeURIComponent(location.hash.slice(1));
  const [view, ...rest] = hash.split("/");
  const name = VIEWS.includes(view) ? view : "situation";
  for (const v of VIEWS) $("view-" + v).hidden = v !== name;
  for (const v of ["situation", "tasks", "trends", "periodic"]) {
    const a = $("nav-" + v);
    if (v === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (timer) { clearInterval(timer); timer = null; }
  if (!sessionStorage.getItem(KEY)) { refresh(); return; }
  if (name === "situation") { refresh(); timer = setInterval(refresh, 5000); }
  if (name === "tasks") { cursors = [null]; loadTasks(0); }
  if (name === "task") loadTask(rest.join("/"));
  if (name === "trends") { loadTrends(); timer = setInterval(loadTrends, 10000); }
  if (name === "periodic") { loadPeriodic(); timer = setInterval(loadPeriodic, 10000); }
}

function localToIso(value) {
  // datetime-local is the viewer's local time; the API reads a zoned ISO time exactly.
  return value ? new Date(value).toISOString() : "";
}

function taskQuery(cursor) {
  const q = new URLSearchParams();
  const pairs = [["status", $("f-status").value], ["name", $("f-name").value.trim()],
    ["queue", $("f-queue").value.trim()], ["worker", $("f-worker").value.trim()],
    ["since", localToIso($("f-since").value)], ["until", localToIso($("f-until").value)]];
  for (const [k, v] of pairs) if (v) q.set(k, v);
  q.set("limit", "50");
  if (cursor) q.set("cursor", cursor);
  return q;
}

async function loadTasks(index) {
  try {
    const page = await api("api/tasks/recent?" + taskQuery(cursors[index]).toString());
    showError(null);
    fill("t-rows", page.items.map((t) => {
      const tr = el("tr");
      const s = el("td");
      s.appendChild(stateBadge(t.status));
      tr.appendChild(s);
      const name = el("td");
      name.appendChild(taskLink(t.id, t.display_name));
      name.appendChild(el("div", t.name || "", "muted"));
      tr.appendChild(name);
      tr.appendChild(el("td", t.id, "id"));
      for (const c of [t.queue || "", t.worker || "", when(t.completed_at || t.started_at)]) {
        tr.appendChild(el("td", c));
      }
      return tr;
    }), "no task matches");
    const parts = Object.entries(page.by_status).sort((a, b) => b[1] - a[1])
      .map(([k, v]) => k + " " + v.toLocaleString());
    $("t-counts").textContent = page.matched.toLocaleString() + " task(s) match" +
      (parts.length ? " (by state: " + parts.join(", ") + ")" : "") + ".";
    $("t-reach").textContent = "Searched: the " + page.kept.toLocaleString() +
      " most recent finished or retried tasks this exporter keeps in memory" +
      (page.oldest_at ? ", back to " + when(page.oldest_at) : "") +
      " (--recent-size and --recent-failed-size). Older tasks: open them by id.";
    cursors = cursors.slice(0, index + 1);
    if (page.next_cursor) cursors.push(page.next_cursor);
    $("t-next").disabled = !page.next_cursor;
    $("t-next").dataset.index = String(index + 1);
    $("t-first").disabled = index === 0;
    $("t-page").textContent = "page " + (index + 1);
  } catch (e) { showError(e); }
}

function field(dl, label, value, node) {
  dl.appendChild(el("dt", label));
  const dd = el("dd", node ? null : (value === null || value === undefined ? "" : value));
  if (node) dd.appendChild(node);
  dl.appendChild(dd);
}

function seconds(value) {
  if (value === null || value === undefined) return "unknown";
  return value < 1 ? Math.round(value * 1000) + " ms" : value.toFixed(value < 10 ? 2 : 0) + " s";
}

async function loadTask(taskId) {
  $("detail-plan").replaceChildren();
  $("d-propose").dataset.taskId = taskId;
  $("d-title").textContent = taskId;
  for (const id of ["d-fields", "d-reports", "d-chain"]) $(id).replaceChildren();
  for (const id of ["d-exc", "d-tb", "d-args"]) $(id).textContent = "";
  try {
    const t = await api("api/tasks/" + encodeURIComponent(taskId));
    showError(null);
    $("d-title").textContent = t.display_name + " " + t.id;
    const dl = $("d-fields");
    field(dl, "State", null, stateBadge(t.status));
    field(dl, "What happened", t.description);
    field(dl, "Name", t.name || "unknown");
    field(dl, "Queue", t.queue);
    field(dl, "Worker", t.worker);
    field(dl, "Sent", when(t.sent_at));
    field(dl, "Received", when(t.received_at));
    field(dl, "Started", when(t.started_at));
    field(dl, "Finished", when(t.completed_at));
    field(dl, "Runtime", seconds(t.duration_seconds));
    field(dl, "Waited before starting", seconds(t.wait_seconds));
    field(dl, "Retries (by Celery)", t.retries);
    field(dl, "Read from", t.source === "ledger" ? "the exporter's memory" :
      "the result backend");
    fill("d-reports", t.reports.map((r) => row([r.state, r.source, when(r.at)])),
      "not kept (only the most recent tasks keep which source reported what)");
    const chain = $("d-chain");
    const item = (label, id) => {
      const li = el("li", label + " ");
      li.appendChild(taskLink(id));
      chain.appendChild(li);
    };
    if (t.parent_id) item("Parent:", t.parent_id);
    if (t.root_id && t.root_id !== t.parent_id && t.root_id !== t.id) item("Root:", t.root_id);
    for (const c of t.children) item("Child (a re-send or a subtask):", c);
    if (!chain.children.length) chain.appendChild(el("li", "no parent or children known",
      "muted"));
    $("d-exc").textContent = t.exception_type ? t.exception_type + (t.error ? ": " +
      t.error : "") : "none";
    $("d-tb").textContent = t.traceback || (t.exception_type ? "no traceback kept" : "");
    $("d-args").textContent = t.args === null && t.kwargs === null ?
      "not shown (the exporter runs without --show-task-args)" :
      "args " + JSON.stringify(t.args) + "\nkwargs " + JSON.stringify(t.kwargs);
  } catch (e) { showError(e); }
}

async function proposeForTask() {
  const taskId = $("d-propose").dataset.taskId;
  try {
    renderPlan(await api("api/fix-it", { method: "POST",
      body: JSON.stringify({ task_ids: [taskId] }) }));
    showError(null);
  } catch (e) { showError(e); }
}

function svgNode(tag, attrs, text) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

// One line over the last hour (60 steps), placed by time: a step without a poll is a gap.
function chart(title, points, value, format, step, max) {
  const w = 1000, h = 140, pad = 6;
  const svg = svgNode("svg", { viewBox: "0 0 " + w + " " + h, class: "chart", role: "img",
    preserveAspectRatio: "none" });
  const known = points.map(value).filter((v) => v !== null && v !== undefined);
  const top = max !== undefined ? max : Math.max(1, ...known);
  const last = known.length ? format(known[known.length - 1]) : "no data";
  const label = title + ": now " + last + (known.length ? ", lowest " +
    format(Math.min(...known)) + ", highest " + format(Math.max(...known)) : "");
  svg.setAttribute("aria-label", label);
  svg.appendChild(svgNode("title", {}, label));
  const end = points.length ? Date.parse(points[points.length - 1].start) : 0;
  const span = 59 * step * 1000;
  let d = "", pen = false, prev = null;
  for (const p of points) {
    const v = value(p);
    const at = Date.parse(p.start);
    if (v === null || v === undefined || (prev !== null && at - prev > step * 1000 * 1.5)) {
      pen = false; // a gap, never a zero
    }
    prev = at;
    if (v === null || v === undefined) continue;
    const x = (pad + (1 - (end - at) / span) * (w - 2 * pad)).toFixed(1);
    const y = (h - pad - (Math.min(v, top) / top) * (h - 2 * pad)).toFixed(1);
    d += (pen ? "L" : "M") + x + " " + y + " ";
    pen = true;
    svg.appendChild(svgNode("circle", { cx: x, cy: y, r: 3, fill: "#243447" }));
  }
  svg.appendChild(svgNode("path", { d: d.trim() || "M0 0", fill: "none", stroke: "#243447",
    "stroke-width": 2, "vector-effect": "non-scaling-stroke" }));
  const fig = el("figure");
  fig.appendChild(el("figcaption", label));
  fig.appendChild(svg);
  const axis = el("div", "scale 0 to " + format(top) + "; from " +
    (points.length ? when(new Date(end - span).toISOString()) : "") + " to " +
    (points.length ? when(points[points.length - 1].start) : ""), "muted");
  axis.setAttribute("aria-hidden", "true");
  fig.appendChild(axis);
  return fig;
}

async function loadTrends() {
  try {
    const tr = await api("api/trends");
    showError(null);
    $("tr-step").textContent = "(one point per " + ago(tr.step_seconds) + ")";
    $("tr-summary").textContent = tr.summary;
    const pct = (v) => Math.round(v * 100) + "%";
    const num = (v) => Number(v).toLocaleString();
    $("tr-charts").replaceChildren(
      chart("Success rate", tr.points, (p) => p.success_rate, pct, tr.step_seconds, 1),
      chart("Finished per minute", tr.points, (p) => p.finished_per_minute, num,
        tr.step_seconds),
      chart("Queue depth", tr.points, (p) => p.queue_depth, num, tr.step_seconds));
    fill("tr-rows", tr.points.slice().reverse().map((p) => row([when(p.start), p.succeeded,
      p.failed, p.success_rate === null ? "n/a" : pct(p.success_rate),
      p.finished_per_minute, p.queue_depth === null ? "unknown" : p.queue_depth])),
      "no points yet");
  } catch (e) { showError(e); }
}

function beatLine(s) {
  const up = s.beat_up === null ? "beat: not known yet" : s.beat_up ? "beat up" : "BEAT DOWN";
  const lock = s.lock_held === null ? "no lock" : !s.lock_held ? "RedBeat's lock is gone" :
    "lock refreshed " + when(s.lock_refreshed_at) + " (" + ago(s.lock_age_seconds) + " ago)";
  const read = s.read_ok ? "read " + when(s.last_read_at) : "cannot be read" +
    (s.read_error ? ": " + s.read_error : "") + (s.last_read_at ? "; last good read " +
    when(s.last_read_at) : "");
  return s.source + ": " + up + "; " + lock + "; " + read + "; " +
    s.entries_total.toLocaleString() + " entries in the store";
}

function periodicRow(e, beatDown) {
  const tr = el("tr");
  tr.dataset.entry = e.source + "/" + e.name;
  const st = el("td");
  st.appendChild(el("span", e.state, "state p-" + e.state));
  if (e.state === "missed") {
    st.appendChild(el("div", ago(e.overdue_seconds) + " overdue, " + e.missed_runs +
      " run(s) missed", "muted"));
  }
  tr.appendChild(st);
  const name = el("td", e.name);
  name.appendChild(el("div", e.source + (e.queue ? ", queue " + e.queue : ""), "muted"));
  tr.appendChild(name);
  tr.appendChild(el("td", e.task + (e.shared_task ? " (shared)" : "")));
  tr.appendChild(el("td", e.schedule));
  for (const t of [e.next_due_at, e.last_dispatched_at, e.last_started_at, e.last_success_at,
    e.last_failure_at]) tr.appendChild(el("td", t ? when(t) : "never seen"));
  const act = el("td");
  if (e.run_now && e.state === "missed") {
    const b = el("button", "Propose run now");
    b.className = "run-now";
    b.addEventListener("click", () => proposeRunNow(e.source + "/" + e.name));
    act.appendChild(b);
    if (beatDown.has(e.source)) {
      act.appendChild(el("div", "beat is down: once restarted it sends overdue entries " +
        "itself, so this would run twice", "err"));
    }
  } else {
    act.appendChild(el("span", e.run_now ? "possible (not missed)" : e.run_now_why_not,
      "muted"));
  }
  tr.appendChild(act);
  return tr;
}

async function loadPeriodic() {
  try {
    const p = await api("api/periodic");
    showError(null);
    $("p-generated").textContent = "at " + when(p.generated_at);
    $("p-sources").replaceChildren(...(p.sources.length ? p.sources.map((s) =>
      el("li", beatLine(s), s.beat_up === false || !s.read_ok ? "err" : "")) :
      [el("li", "No schedule source is configured (--beat-redbeat-url, " +
        "--beat-django-db-url or --beat-schedule-file).", "muted")]));
    $("p-count").textContent = p.entries.length + " of " + p.entries_total + " entries" +
      (p.truncated ? " (the list is capped: the rest are left out)" : "") +
      "; missed first, then failing.";
    const down = new Set(p.sources.filter((s) => s.beat_up === false).map((s) => s.source));
    fill("p-rows", p.entries.map((e) => periodicRow(e, down)), "no beat entries");
  } catch (e) { showError(e); }
}

async function proposeRunNow(entry) {
  try {
    renderPlan(await api("api/fix-it", { method: "POST",
      body: JSON.stringify({ run_entries: [entry] }) }));
    showError(null);
  } catch (e) { showError(e); }
}

$("filters").addEventListener("submit", (ev) => {
  ev.preventDefault();
  cursors = [null];
  loadTasks(0);
});
$("f-clear").addEventListener("click", () => {
  for (const id of ["f-status", "f-name", "f-queue", "f-worker", "f-since", "f-until"]) {
    $(id).value = "";
  }
  cursors = [null];
  loadTasks(0);
});
$("f-open").addEventListener("click", () => {
  const id = $("f-id").value.trim();
  if (id) location.hash = "#task/" + encodeURIComponent(id);
});
$("t-next").addEventListener("click", () => loadTasks(Number($("t-next").dataset.index)));
$("t-first").addEventListener("click", () => loadTasks(0));
$("d-propose").addEventListener("click", proposeForTask);
$("save-token").addEventListener("click", route);
window.addEventListener("hashchange", route);
route();
