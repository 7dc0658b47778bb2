// Overview: jobs by status (in memory and durable), full and near-full slots across jobs,
// failure rate per queue, pipelines by state, nodes by state. Refreshed every 2 s without a reload.
import { get } from "./api.js";
import { h, clear, table, num, badge, bar, emptyState } from "./dom.js";

const REFRESH_MS = 2000;

function figures(counts) {
  return h("div", { class: "figures" }, Object.entries(counts).map(([k, n]) =>
    h("div", { class: "figure", "data-status": k }, h("span", { class: "n" }, n), h("span", { class: "l" }, k))));
}

/** Redraw ``box`` only when its data changed (links keep the keyboard focus otherwise). */
function redraw(box, data, draw) {
  const sig = JSON.stringify(data);
  if (box.dataset.sig === sig) return;
  box.dataset.sig = sig;
  draw();
}

export async function render(main, _params, ctx) {
  const memory = h("div", { class: "card", id: "overview-memory" }, h("p", { class: "muted" }, "Loading…"));
  const slots = h("div", { class: "card" });
  const durable = h("div", { class: "card" });
  const pipelines = h("div", { class: "card", id: "overview-pipelines" });
  const nodes = h("div", { class: "card", id: "overview-nodes" });
  const updated = h("span", { class: "muted small", "aria-live": "off" });
  main.append(h("h1", {}, "Overview ", updated), h("div", { class: "grid" }, memory, durable), slots,
    h("div", { class: "grid" }, pipelines, nodes));

  async function refresh() {
    let ready;
    try {
      ready = await get("/readyz");
    } catch (e) {  // 503 while the store does not answer: the same body, with the store's error
      if (e.status !== 503 || !e.body || !e.body.jobs) throw e;
      ready = e.body;
    }
    const store = ready.store && ready.store.status !== "ok" ? ready.store : null;
    redraw(memory, [ready.jobs, store && [store.url, store.error]], () => clear(memory, h("h2", {}, "Jobs in memory"), figures(ready.jobs),
      h("p", { class: "muted small" }, `${ready.flows} flow(s) served. `, h("a", { href: "/ui/jobs" }, "All jobs")),
      store ? h("p", { class: "error", role: "alert" }, `Store ${store.url} unreachable: ${store.error}`) : null));
    const flows = await get("/api/flows");
    const rows = [];
    const seen = [];
    for (const f of flows) {
      const q = await get(`/api/flows/${encodeURIComponent(f.name)}/queues`);
      for (const [path, s] of Object.entries(q.slots)) {
        if (!s.full && !s.near_full) continue;
        seen.push([f.name, path, s.full, s.near_full, s.usage, s.blocked_emitters]);
        rows.push([h("a", { href: `/ui/flows/${encodeURIComponent(f.name)}` }, f.name), h("code", {}, path),
          num(s.full), num(s.near_full), h("td", {}, bar(s.usage, s.full ? "full" : "near_full")), num(s.blocked_emitters)]);
      }
    }
    const fullJobs = ready.full_slots.slice(0, 20).map((j) => [h("a", { href: `/ui/jobs/${encodeURIComponent(j.job)}` }, j.job), j.flow, j.slots.join(", ")]);
    redraw(slots, [seen, ready.full_slots.slice(0, 20)], () => clear(slots, h("h2", {}, "Full and near-full slots"),
      table(["flow", "slot", "jobs full#", "jobs near full#", "max usage", "blocked emitters#"], rows,
        { empty: "No slot of an unfinished job is full or near full (≥ 80 %)." }),
      fullJobs.length ? [h("h3", {}, "Jobs with a full slot"), table(["job", "flow", "full slots"], fullJobs)] : null));
    try {
      const sum = await get("/api/store/summary", { max_jobs: 10000 });
      const qrows = Object.entries(sum.queues).map(([name, q]) => [
        h("a", { href: `/ui/durable?queue=${encodeURIComponent(name)}` }, name),
        num(q.counts.queued), num(q.counts.running), num(q.counts.completed), num(q.counts.failed),
        num(q.failure_rate === null ? "—" : `${(q.failure_rate * 100).toFixed(1)} %`),
        num(`${q.last_hour.failed} / ${q.last_hour.finished}`)]);
      redraw(durable, sum, () => clear(durable, h("h2", {}, "Durable jobs"), figures(sum.by_status),
        sum.truncated ? h("p", { class: "muted small" }, `Counted the newest ${sum.counted} jobs.`) : null,
        h("h3", {}, "Failure rate per queue"),
        table(["queue", "queued#", "running#", "completed#", "failed#", "failure rate#", "last hour failed / finished#"], qrows,
          { empty: "No durable jobs in the store yet." })));
    } catch (e) {
      durable.dataset.sig = "";
      clear(durable, h("h2", {}, "Durable jobs"), e.status === 503
        ? emptyState("No durable store.", "Start the server with --store URL (e.g. sqlite:///weirflow.db) to see durable jobs here.", String(e.message))
        : h("p", { class: "error" }, e.message));
    }
    await refreshPipelines();
    await refreshNodes();
    updated.textContent = `updated ${new Date().toLocaleTimeString(undefined, { hour12: false })}`;
  }
  async function refreshPipelines() {
    try {
      const list = await get("/api/pipelines");
      const byState = {};
      for (const p of list) byState[p.state] = (byState[p.state] || 0) + 1;
      const restarts = list.reduce((n, p) => n + p.restarts, 0);
      redraw(pipelines, [byState, restarts], () => clear(pipelines, h("h2", {}, "Pipelines"),
        list.length ? [figures(byState), h("p", { class: "muted small" }, `${restarts} restart(s) in all. `,
          h("a", { href: "/ui/pipelines" }, "All pipelines"))]
          : emptyState("No pipeline yet.", "Start one on the Pipelines page, with weirflow pipelines start, or POST /api/pipelines.")));
    } catch (e) {
      pipelines.dataset.sig = "";
      clear(pipelines, h("h2", {}, "Pipelines"), h("p", { class: "error" }, e.message));
    }
  }

  async function refreshNodes() {
    try {
      const answer = await get("/api/nodes");
      const byState = {};
      for (const n of answer.nodes) byState[n.state] = (byState[n.state] || 0) + 1;
      redraw(nodes, [byState, answer.registry.status], () => clear(nodes, h("h2", {}, "Nodes"),
        h("p", {}, "registry ", badge(answer.registry.status)),
        answer.nodes.length ? figures(byState) : emptyState("No node has joined the registry.",
          "Workers join it with weirflow worker --registry URL --pool P --capacity N."),
        h("p", { class: "muted small" }, h("a", { href: "/ui/nodes" }, "All nodes"))));
    } catch (e) {
      nodes.dataset.sig = "";
      clear(nodes, h("h2", {}, "Nodes"), e.status === 503
        ? emptyState("No node registry on this server.", "Start the server with --registry redis://host:port/db (or WEIRFLOW_REGISTRY).")
        : h("p", { class: "error" }, e.message));
    }
  }

  await refresh();
  let busy = false;
  ctx.every(REFRESH_MS, async () => { if (busy) return; busy = true; try { await refresh(); } finally { busy = false; } });
}
