// Durable jobs in the store: a list by status, queue and flow with paging, and bulk actions.
import { get, post, canAct } from "./api.js";
import { h, clear, table, badge, select, field, when, toast, emptyState } from "./dom.js";

const PAGE = 50;
const STATUSES = ["", "queued", "running", "completed", "failed", "cancelled"];

export async function render(main, _params, ctx) {
  const q = new URLSearchParams(location.search);
  const status = select(STATUSES.map((s) => [s, s || "any status"]), q.get("status") || ""); status.id = "filter-status";
  const queue = h("input", { id: "filter-queue", value: q.get("queue") || "", placeholder: "any queue", size: 16 });
  const flow = h("input", { id: "filter-flow", value: q.get("flow") || "", placeholder: "any flow", size: 16 });
  const box = h("div", { class: "card", id: "durable-list" });
  const bulk = h("div", { class: "card", id: "bulk" });
  let offset = Number(q.get("offset") || 0) || 0;
  let shown = null;
  main.append(h("h1", {}, "Durable jobs"),
    h("form", { class: "row card", onsubmit: (e) => { e.preventDefault(); offset = 0; load(); } },
      field("Status", status), field("Queue", queue), field("Flow", flow), h("button", { type: "submit" }, "Filter")), box, bulk);
  status.addEventListener("change", () => { offset = 0; load(); });

  const load = async () => {
    const params = { status: status.value, queue: queue.value, flow: flow.value, limit: PAGE, offset };
    const search = new URLSearchParams(Object.entries(params).filter(([k, v]) => v && k !== "limit"));
    history.replaceState(null, "", `/ui/durable${search.toString() ? "?" + search : ""}`);
    let page;
    try { page = await get("/api/store/jobs", params); }
    catch (e) {
      clear(box, e.status === 503 ? emptyState("No durable store.", "Start the server with --store URL (e.g. sqlite:///weirflow.db); durable jobs submitted to it are listed here.", e.message)
        : h("p", { class: "error" }, e.message));
      return false;
    }
    const sig = JSON.stringify([params, page]);
    if (sig === shown) return true;  // unchanged: keep the table (and the keyboard focus in it)
    shown = sig;
    const rows = page.items.map((j) => [h("a", { href: `/ui/durable/${encodeURIComponent(j.id)}`, class: "mono" }, j.id), j.flow, j.queue,
      badge(j.status), `${j.attempt}/${j.max_attempts}`, when(j.created_at), when(j.finished_at), j.error ? j.error.split("\n")[0].slice(0, 120) : ""]);
    clear(box, table(["id", "flow", "queue", "status", "attempt", "created", "finished", "error"], rows,
      { empty: "No durable job matches. Submit one with POST /api/store/jobs or weirflow jobs submit." }),
      (offset > 0 || page.next_offset !== null) ? h("div", { class: "pager" },
        h("button", { type: "button", class: "secondary", disabled: offset <= 0, onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, "← Newer"),
        h("span", { class: "muted" }, `${offset + 1}–${offset + page.items.length}`),
        h("button", { type: "button", class: "secondary", disabled: page.next_offset === null, onclick: () => { offset = page.next_offset; load(); } }, "Older →")) : null);
    return true;
  };
  if (!(await load())) return;
  ctx.every(3000, load);

  if (canAct()) {
    const bulkQueue = h("input", { id: "bulk-queue", value: q.get("queue") || "default", size: 16 });
    const retryAll = async () => {
      if (!confirm(`Retry every failed job of queue ${bulkQueue.value}?`)) return;
      try {
        const r = await post(`/api/store/queues/${encodeURIComponent(bulkQueue.value)}/retry-failed`);
        toast(`${r.retried.length} job(s) queued again${r.refused.length ? `, ${r.refused.length} refused` : ""}`);
        load();
      } catch (e) { toast(e.message, true); }
    };
    const cleanStatus = select([["completed", "completed"], ["failed", "failed and cancelled"]], "completed"); cleanStatus.id = "clean-status";
    const age = h("input", { id: "clean-age", type: "number", min: 0, step: "any", value: 7, size: 6 });
    const unit = select([["60", "minutes"], ["3600", "hours"], ["86400", "days"]], "86400"); unit.id = "clean-unit";
    const cleanOld = async () => {
      const seconds = Number(age.value) * Number(unit.value);
      if (!(seconds >= 0)) { toast("The age must be a number ≥ 0", true); return; }
      const what = cleanStatus.options[cleanStatus.selectedIndex].text;
      if (!confirm(`Delete every ${what} job that finished more than ${age.value} ${unit.options[unit.selectedIndex].text} ago?`)) return;
      try { const r = await post("/api/store/clean", { status: cleanStatus.value, older_than_s: seconds }); toast(`${r.deleted} job(s) deleted`); load(); }
      catch (e) { toast(e.message, true); }
    };
    const pausedNote = h("span", { id: "queues-paused", class: "muted" }, "");
    const showPaused = async () => {
      try { const r = await get("/api/store/queues"); pausedNote.textContent = r.paused.length ? `paused: ${r.paused.join(", ")}` : "no queue paused"; }
      catch (e) { pausedNote.textContent = e.message; }
    };
    const setPaused = async (pause) => {
      try {
        const r = await post(`/api/store/queues/${encodeURIComponent(bulkQueue.value)}/${pause ? "pause" : "resume"}`);
        toast(`Queue ${r.queue} ${r.paused ? "paused" : "resumed"}${r.changed ? "" : " (it was already)"}`);
      } catch (e) { toast(e.message, true); }
      showPaused();
    };
    clear(bulk, h("h2", {}, "Bulk actions"),
      h("div", { class: "row" }, field("Queue", bulkQueue), h("button", { type: "button", id: "retry-failed", onclick: retryAll }, "Retry all failed"),
        h("button", { type: "button", id: "pause-queue", class: "secondary", onclick: () => setPaused(true) }, "Pause"),
        h("button", { type: "button", id: "resume-queue", class: "secondary", onclick: () => setPaused(false) }, "Resume"), pausedNote),
      h("div", { class: "row" }, field("Clean", cleanStatus), field("finished more than", age), field("ago", unit),
        h("button", { type: "button", id: "clean", class: "danger", onclick: cleanOld }, "Delete")),
      h("p", { class: "muted small" }, "Cleaning applies to every queue. A paused queue's jobs are not claimed by any worker until it is resumed; running jobs go on."));
    showPaused();
  } else {
    bulk.remove();
  }
  await schedules(main);
}

async function schedules(main) {
  let list;
  try { list = await get("/api/store/schedules"); } catch (e) {
    if (e.status === 404) main.append(h("div", { class: "card" }, h("h2", {}, "Schedules"),
      emptyState("Schedules are not served by this server yet.", "Use weirflow schedules list|add|remove meanwhile.")));
    return;
  }
  const items = Array.isArray(list) ? list : (list.items || []);
  main.append(h("div", { class: "card" }, h("h2", {}, "Schedules"),
    table(["name", "flow", "queue", "cron", "next run"], items.slice(0, 200).map((s) => [s.name, s.flow, s.queue || "", h("code", {}, s.cron || ""), when(s.next_run_at)]),
      { empty: "No schedules. Add one with weirflow schedules add." })));
}
