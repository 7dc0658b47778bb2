// Cluster nodes from GET /api/nodes (the server's registry cache): status of the registry,
// one row per node with its load, refreshed every 2 s. The table is redrawn only when the
// answer changed (apart from the heartbeat ages, which are recomputed on each refresh).
import { get } from "./api.js";
import { h, clear, table, badge, bar, ago, emptyState, field, num } from "./dom.js";

export async function render(main, _params, ctx) {
  const q = new URLSearchParams(location.search);
  const pool = h("input", { id: "filter-pool", value: q.get("pool") || "", placeholder: "any pool", size: 16 });
  const status = h("div", { class: "card", id: "registry-status" });
  const box = h("div", { class: "card", id: "nodes-list" });
  main.append(h("h1", {}, "Nodes"),
    h("form", { class: "row card", onsubmit: (e) => { e.preventDefault(); load(); } },
      field("Pool", pool), h("button", { type: "submit" }, "Filter")), status, box);

  const load = async () => {
    history.replaceState(null, "", `/ui/nodes${pool.value ? "?pool=" + encodeURIComponent(pool.value) : ""}`);
    let answer;
    try { answer = await get("/api/nodes", pool.value ? { pool: pool.value } : {}); }
    catch (e) {
      // hidden, not removed: the next refresh that succeeds draws into it and shows it again
      // (without a registry there is nothing to show; after a blip it keeps the last answer)
      status.hidden = e.status === 503;
      clear(box, e.status === 503 ? emptyState("No node registry on this server.",
        "Start the server with --registry redis://host:port/db (or WEIRFLOW_REGISTRY). Workers join it with weirflow worker --registry URL --pool P --capacity N.",
        e.message) : h("p", { class: "error" }, e.message));
      return false;
    }
    const r = answer.registry;
    status.hidden = false;
    clear(status, h("h2", {}, "Registry"), h("dl", { class: "kv" },
      h("dt", {}, "status"), h("dd", { id: "registry-state" }, badge(r.status)),
      h("dt", {}, "revision"), h("dd", {}, String(r.revision)),
      h("dt", {}, "staleness"), h("dd", {}, `${r.staleness_s.toFixed(1)} s`),
      h("dt", {}, "nodes"), h("dd", {}, String(r.nodes)),
      h("dt", {}, "redis"), h("dd", { class: "mono" }, r.url)),
    r.status === "normal" ? null : h("p", { class: "muted small" }, r.status === "starting"
      ? "The registry has not listed the nodes yet (Redis has not answered since the server started)."
      : "Redis is not answering as it should: the list below is this server's cache, as of the staleness above."));
    const rows = answer.nodes.map((n) => {
      const load = n.capacity ? n.running / n.capacity : 1;
      return [h("span", { class: "mono" }, n.id), n.pool, badge(n.state), num(`${n.running}/${n.capacity}`),
        bar(load, load >= 1 ? "full" : load >= 0.8 ? "near_full" : ""),
        Object.entries(n.labels).map(([k, v]) => h("code", { class: "label" }, `${k}=${v}`)),
        h("span", { class: "mono" }, n.address || "—"), ago(n.heartbeat_at)];
    });
    clear(box, table(["id", "pool", "state", "running#", "load", "labels", "address", "heartbeat"], rows,
      { empty: pool.value ? `No node in pool ${pool.value}.` : "No nodes registered. Start one with weirflow worker --registry URL --pool P --capacity N." }));
    return true;
  };
  if (!(await load())) return;
  ctx.every(2000, load);
}
