// Flows: the list, and one flow drawn as a graph with its slots' fill (summed over its
// unfinished jobs, refreshed live), a validate button and a form to start a job.
import { get, post, canAct } from "./api.js";
import { h, clear, table, num, field, toast, json } from "./dom.js";
import { drawGraph, parseConnection } from "./graph.js";
import { pager } from "./paging.js";

const PAGE = 50;

export async function renderList(main) {
  const flows = await get("/api/flows");
  const box = h("div", { class: "card" });
  main.append(h("h1", {}, "Flows"), box);
  const show = pager(box, flows.length, PAGE, (offset) => table(["name", "routines#", "slots#", "outputs"],
    flows.slice(offset, offset + PAGE).map((f) => [h("a", { href: `/ui/flows/${encodeURIComponent(f.name)}` }, f.name),
      num(f.routines.length), num(f.inputs.length), f.outputs.join(", ")]),
    { empty: "This server serves no flows: start it with --flows DIR_OR_MODULE." }));
  show(0);
}

/** Slots nothing inside the flow feeds: where a job's inputs usually go. */
export function entrySlots(flow) {
  const fed = new Set(flow.connections.map((c) => parseConnection(c).to));
  const out = [];
  for (const [r, spec] of Object.entries(flow.routines)) for (const sl of Object.keys(spec.slots)) {
    if (!fed.has(`${r}.${sl}`)) out.push(`${r}.${sl}`);
  }
  return out;
}

export async function renderFlow(main, [name], ctx) {
  const flow = await get(`/api/flows/${encodeURIComponent(name)}`);
  const graphBox = h("div", { class: "graph-wrap", id: "graph" });
  const fillNote = h("p", { class: "muted small", "aria-live": "off" });
  main.append(h("h1", {}, "Flow ", h("code", {}, flow.name)),
    h("div", { class: "card" }, h("h2", {}, "Graph"), fillNote, graphBox,
      h("p", { class: "muted small" }, `${Object.keys(flow.routines).length} routine(s), ${flow.connections.length} connection(s); outputs: ${flow.outputs.join(", ") || "none"}.`)));
  const graph = drawGraph(graphBox, flow);
  const running = h("div", { class: "card", id: "flow-jobs" });
  main.append(running);
  let listed = null;
  async function fill() {
    const jobs = await get("/api/jobs", { flow: name, status: "running", limit: 20 });
    const sig = JSON.stringify(jobs);
    if (sig !== listed) {
      listed = sig;
      clear(running, h("h2", {}, `Running jobs (${jobs.total})`),
        jobs.items.length ? h("p", {}, jobs.items.map((j) => [h("a", { href: `/ui/jobs/${encodeURIComponent(j.id)}`, class: "mono" }, j.id), " "]),
          jobs.total > jobs.items.length ? h("a", { href: `/ui/jobs?flow=${encodeURIComponent(name)}&status=running` }, `… all ${jobs.total}`) : null)
          : h("p", { class: "empty" }, "No job of this flow is running. Start one below; its page shows its own slots' fill."));
    }
    const q = await get(`/api/flows/${encodeURIComponent(name)}/queues`);
    if (!q.jobs) { graph.reset(); fillNote.textContent = "No unfinished job: each slot shows its capacity."; return; }
    graph.update(Object.fromEntries(Object.entries(q.slots).map(([p, s]) => [p, {
      size: s.size, capacity: s.capacity, usage: s.usage, state: s.full ? "full" : s.near_full ? "near_full" : "ok" }])));
    fillNote.textContent = `Fill of ${q.jobs} unfinished job(s): sizes and capacities summed, the bar at the fullest job.`;
  }
  await fill();
  ctx.every(1000, fill);

  if (!canAct()) return;
  const entries = entrySlots(flow);
  const inputs = h("textarea", { id: "inputs", rows: 5, spellcheck: "false" }, json(Object.fromEntries(entries.map((s) => [s, []]))));
  const keepOpen = h("input", { type: "checkbox", id: "keep-open" });
  const result = h("div", { "aria-live": "polite" });
  const parse = () => {
    try { return JSON.parse(inputs.value || "{}"); } catch (e) { clear(result, h("p", { class: "error" }, `Inputs are not JSON: ${e.message}`)); return null; }
  };
  const validate = async () => {
    const parsed = parse(); if (parsed === null) return;
    try {
      const r = await post(`/api/flows/${encodeURIComponent(name)}/check`, { inputs: parsed });
      clear(result, r.valid ? h("p", { class: "ok" }, `Valid: ${Object.entries(r.inputs).map(([s, n]) => `${n} item(s) for ${s}`).join(", ") || "no inputs"}.`)
        : h("div", { class: "error" }, r.problems.map((p) => h("p", {}, p))));
    } catch (e) { clear(result, h("p", { class: "error" }, e.message)); }
  };
  const start = async () => {
    const parsed = parse(); if (parsed === null) return;
    try {
      const job = await post("/api/jobs", { flow: name, inputs: parsed, keep_open: keepOpen.checked });
      toast(`Started job ${job.id}`);
      ctx.go(`/ui/jobs/${encodeURIComponent(job.id)}`);
    } catch (e) { clear(result, h("p", { class: "error" }, e.message)); }
  };
  main.append(h("div", { class: "card" }, h("h2", {}, "Start a job"),
    field("Inputs (JSON: {\"routine.slot\": [items]})", inputs),
    h("div", { class: "row" }, keepOpen, h("label", { for: "keep-open" }, "keep input open (send more items from the job page)")),
    h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", id: "validate", onclick: validate }, "Validate"),
      h("button", { type: "button", id: "start", onclick: start }, "Start job")), result));
}
