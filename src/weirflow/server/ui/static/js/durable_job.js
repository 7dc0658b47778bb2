// One durable job: attempts, error with its traceback, outputs, steps with progress bars
// and times, events; retry (from the last step or from the start) and cancel.
import { get, post, canAct } from "./api.js";
import { h, clear, table, num, badge, bar, json, when, duration, toast } from "./dom.js";

const FINISHED = ["completed", "failed", "cancelled"];
const STEPS_SHOWN = 500;

export async function render(main, [id], ctx) {
  const base = `/api/store/jobs/${encodeURIComponent(id)}`;
  const head = h("div", { class: "card", id: "durable-head" });
  const steps = h("div", { class: "card", id: "steps" });
  const outputs = h("div", { class: "card", id: "durable-outputs" });
  const events = h("div", { class: "card", id: "durable-events" });
  main.append(h("h1", {}, "Durable job ", h("code", {}, id)), head, steps, outputs, events);
  let record = null;

  const act = async (path, body) => {
    try { await post(`${base}/${path}`, body); toast(`${path} done`); await load(); } catch (e) { toast(e.message, true); }
  };

  const load = async () => {
    const info = await get(base);
    record = await get(`${base}/record`);
    const actions = [];
    if (canAct()) {
      const retryable = ["failed", "cancelled"].includes(info.status);
      actions.push(h("button", { type: "button", id: "retry", disabled: !retryable, onclick: () => act("retry", { from_start: false }) }, "Retry from last step"),
        h("button", { type: "button", id: "retry-start", class: "secondary", disabled: !retryable, onclick: () => act("retry", { from_start: true }) }, "Retry from start"),
        h("button", { type: "button", id: "cancel", class: "danger", disabled: FINISHED.includes(info.status), onclick: () => act("cancel") }, "Cancel"));
    }
    clear(head, h("div", { class: "row" }, badge(info.status), h("span", {}, "flow ", h("code", {}, info.flow)),
      record ? h("span", {}, "queue ", h("code", {}, record.queue)) : null,
      h("span", {}, `attempt ${info.attempt}${record ? ` of ${record.max_attempts}` : ""}`),
      record ? h("span", { class: "muted" }, `created ${when(record.created_at)} · started ${when(record.started_at)} · finished ${when(record.finished_at)}`) : null),
      info.error ? [h("h3", {}, "Error"), h("pre", { class: "error", id: "durable-error" }, info.error)] : null,
      info.error_detail ? h("details", {}, h("summary", {}, "Traceback"), h("pre", { id: "durable-traceback" }, info.error_detail)) : null,
      actions.length ? h("div", { class: "actions" }, actions) : null);
    const rows = info.steps.slice(0, STEPS_SHOWN).map((s) => [h("code", {}, s.routine), num(s.seq), badge(s.status), num(s.attempt),
      h("td", {}, bar(s.status === "completed" ? 1 : s.progress || 0, s.status === "failed" ? "full" : ""), h("span", { class: "muted small" }, s.message || "")),
      when(s.started_at), duration(s.started_at, s.completed_at), s.worker || "", s.error ? [h("code", { class: "error" }, s.error.split("\n")[0]),
        s.traceback ? h("details", {}, h("summary", {}, "traceback"), h("pre", {}, s.traceback)) : null] : ""]);
    clear(steps, h("h2", {}, `Steps (${info.steps.length})`),
      table(["routine", "seq#", "status", "attempt#", "progress", "started", "took", "worker", "error"], rows,
        { empty: info.status === "queued" ? "No steps yet: the job waits for a worker." : "No steps recorded." }),
      info.steps.length > STEPS_SHOWN ? h("p", { class: "muted small" }, `first ${STEPS_SHOWN} of ${info.steps.length}`) : null);
    const outs = info.outputs || {};
    clear(outputs, h("h2", {}, "Outputs"), Object.keys(outs).length
      ? Object.entries(outs).map(([p, items]) => [h("h3", {}, h("code", {}, p)), h("pre", {}, json(Array.isArray(items) ? items.slice(0, 100) : items))])
      : h("p", { class: "empty" }, info.status === "completed" ? "No outputs." : "Outputs are shown when the job has completed."),
      info.dead_letters && info.dead_letters.length ? [h("h3", {}, `Dead letters (${info.dead_letters.length})`), h("pre", {}, json(info.dead_letters.slice(0, 50)))] : null);
    const evs = await get(`${base}/events`);
    clear(events, h("h2", {}, "Events"), table(["at", "kind", "data"], evs.slice(-200).map((e) => [when(e.at), e.kind, h("code", {}, json(e.data, 0))]),
      { empty: "No events." }));
    return info;
  };
  await load();
  // the store sends no stream to browsers: re-read while the job can still change
  let busy = false;
  ctx.every(1000, async () => {
    if (busy) return;
    busy = true;
    try { const info = await get(base); if (!FINISHED.includes(info.status) || info.status !== record.status) await load(); }
    finally { busy = false; }
  });
}
