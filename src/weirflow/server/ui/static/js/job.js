// One job of the engine: status and controls, the graph with each slot's live fill, queues,
// outputs, dead letters, the live event stream, and the debugger.
import { get, post, canAct } from "./api.js";
import { h, clear, table, num, badge, bar, brief, json, when, field, select, toast } from "./dom.js";
import { drawGraph } from "./graph.js";
import { entrySlots } from "./flows.js";
import { debuggerPanel } from "./debugger.js";
import { pager } from "./paging.js";

const PAGE = 50;
const EVENTS_SHOWN = 200;

export async function render(main, [id], ctx) {
  const base = `/api/jobs/${encodeURIComponent(id)}`;
  let job = await get(base);
  const flow = await get(`/api/flows/${encodeURIComponent(job.flow)}`);
  const head = h("div", { class: "card" });
  const graphBox = h("div", { class: "graph-wrap", id: "graph" });
  const queuesBox = h("div", {});
  const outputsBox = h("div", { class: "card", id: "outputs" });
  const lettersBox = h("div", { class: "card", id: "dead-letters" });
  const eventsList = h("div", { class: "events", id: "events", "aria-live": "off" });
  const debugBox = h("div", { class: "card", id: "debugger" });
  main.append(h("h1", {}, "Job ", h("code", {}, id)), head,
    h("div", { class: "cols" },
      h("div", {}, h("div", { class: "card" }, h("h2", {}, "Graph"),
        h("p", { class: "muted small" }, canAct() ? "Live slot fill. Click a routine, slot, event or arrow to add a breakpoint there." : "Live slot fill."),
        graphBox), h("div", { class: "card" }, h("h2", {}, "Queues"), queuesBox)),
      debugBox),
    outputsBox, lettersBox, h("div", { class: "card" }, h("h2", {}, "Events (live)"), eventsList));

  let dbg = null;
  const graph = drawGraph(graphBox, flow, { onPick: canAct() ? (kind, target) => dbg && dbg.pick(kind, target) : null });
  dbg = debuggerPanel(debugBox, { base, flow, graph, ctx });

  // the send form is made once (what is typed in it survives status changes), shown while
  // the job takes input
  const send = canAct() ? sendForm() : null;
  const headInfo = h("div", {});
  head.append(headInfo);
  if (send) head.append(send);
  const drawHead = () => {
    const live = !["completed", "failed", "cancelled"].includes(job.status);
    const actions = [];
    if (canAct()) {
      const act = (label, path, enabled, cls) => h("button", { type: "button", class: cls || "secondary", disabled: !enabled, "data-action": path,
        onclick: async () => { try { job = await post(`${base}/${path}`); drawHead(); refresh(); } catch (e) { toast(e.message, true); } } }, label);
      actions.push(act("Pause", "pause", live && job.status !== "paused"), act("Resume", "resume", job.status === "paused"),
        act("Close input", "close", live && !job.input_closed), act("Cancel", "cancel", live, "danger"));
    }
    clear(headInfo, h("div", { class: "row" }, badge(job.status), h("span", {}, "flow ", h("a", { href: `/ui/flows/${encodeURIComponent(job.flow)}` }, job.flow)),
      h("span", { class: "muted" }, `created ${when(job.created_at)}`), job.input_closed ? h("span", { class: "muted" }, "input closed") : null,
      job.pause ? h("span", {}, "paused: ", h("code", {}, job.pause.reason)) : null),
      job.error ? h("pre", { class: "error" }, job.error) : null,
      actions.length ? h("div", { class: "actions" }, actions) : null);
    if (send) send.hidden = !live || job.input_closed;
  };

  function sendForm() {
    const entries = entrySlots(flow);
    const all = Object.entries(flow.routines).flatMap(([r, spec]) => Object.keys(spec.slots).map((x) => `${r}.${x}`));
    const slot = select(all.map((p) => [p, p]), entries[0] || all[0]);
    slot.id = "send-slot";
    const items = h("textarea", { id: "send-items", rows: 2, spellcheck: "false" }, "[]");
    const submit = async () => {
      let parsed;
      try { parsed = JSON.parse(items.value); } catch (e) { toast(`Items are not JSON: ${e.message}`, true); return; }
      if (!Array.isArray(parsed)) parsed = [parsed];
      try { const r = await post(`${base}/input`, { slot: slot.value, items: parsed, timeout_s: 5 }); toast(`${r.accepted} item(s) accepted`); refresh(); }
      catch (e) { toast(e.message, true); }
    };
    return h("div", { class: "form" }, h("h3", {}, "Send items"), h("div", { class: "row top" }, field("Slot", slot),
      h("div", { style: "flex:1" }, field("Items (a JSON list)", items))), h("div", { class: "actions" }, h("button", { type: "button", id: "send", onclick: submit }, "Send")));
  }

  const drawQueues = (q) => {
    graph.update(q.slots);
    clear(queuesBox, h("p", { class: "muted small" }, `${q.full} full, ${q.near_full} near full`),
      table(["slot", "size#", "capacity#", "usage", "state", "blocked emitters#", "high water#", "processed#", "dead#"],
        Object.entries(q.slots).slice(0, 200).map(([p, s]) => [h("code", {}, p), num(s.size), num(s.capacity), h("td", {}, bar(s.usage, s.state)),
          badge(s.state), num(s.blocked_emitters), num(s.high_water), num(s.processed), num(s.dead_lettered)])));
  };

  const drawLetters = async () => {
    const first = await get(`${base}/dead-letters`, { limit: 1, offset: 0 });
    const show = pager(lettersBox, first.total, PAGE, (offset) => {
      const box = h("div", {}, h("p", { class: "muted" }, "Loading…"));
      get(`${base}/dead-letters`, { limit: PAGE, offset }).then((page) => clear(box,
        table(["slot", "reason", "error", "item", "at"], page.items.map((d) => [h("code", {}, d.slot), d.reason, d.error || "",
          h("code", { title: json(d.item) }, brief(d.item)), when(d.at)]), { empty: "No dead letters: no item was dropped or failed." })));
      return [h("h2", {}, `Dead letters (${first.total})`), box];
    }, { label: "dead letters" });
    show(0);
  };

  const drawOutputs = async () => {
    if (!["completed", "failed", "cancelled"].includes(job.status)) {
      clear(outputsBox, h("h2", {}, "Outputs"), h("p", { class: "empty" }, "Outputs are shown when the job has finished."));
      return;
    }
    const r = await get(`${base}/result`);
    clear(outputsBox, h("h2", {}, "Outputs"), r.error ? h("pre", { class: "error" }, r.error) : null,
      Object.keys(r.outputs).length ? Object.entries(r.outputs).map(([path, items]) => [h("h3", {}, h("code", {}, path), ` (${items.length})`),
        h("pre", { class: "output", "data-output": path }, json(items.slice(0, 100))), items.length > 100 ? h("p", { class: "muted small" }, `first 100 of ${items.length}`) : null])
        : h("p", { class: "empty" }, "This job emitted no outputs."));
  };

  let last = "";
  const refresh = async () => {
    job = await get(base);
    if (job.status !== last) { last = job.status; drawHead(); drawOutputs(); drawLetters(); }
    drawQueues(await get(`${base}/queues`));
  };
  await refresh();

  const events = [];
  const addEvent = (kind, e) => {
    let data; try { data = JSON.parse(e.data); } catch (_) { data = e.data; }
    events.push(h("div", {}, h("span", { class: "muted" }, `#${e.lastEventId} `), h("strong", {}, kind), " ", brief(data, 300)));
    while (events.length > EVENTS_SHOWN) events.shift();
    clear(eventsList, events);
    eventsList.scrollTop = eventsList.scrollHeight;
    return data;
  };
  let pending = false;
  const soon = () => { if (pending) return; pending = true; setTimeout(async () => { pending = false; try { await refresh(); } catch (_) { /* next event retries */ } }, 150); };
  const es = ctx.stream(`${base}/events`, {
    status: (e) => { addEvent("status", e); soon(); dbg.refresh(); },
    queue: (e) => { addEvent("queue", e); soon(); },
    dead_letter: (e) => { addEvent("dead_letter", e); drawLetters(); },
    breakpoint: (e) => { addEvent("breakpoint", e); dbg.refresh(); },
    gap: (e) => addEvent("gap", e),
    end: (e) => { addEvent("end", e); es.close(); soon(); dbg.refresh(); },
  });
  // sizes change without a fill-state change (no event for each item): redraw while it runs
  ctx.every(1000, () => { if (!["completed", "failed", "cancelled"].includes(job.status)) soon(); });
}
