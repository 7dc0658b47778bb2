// Jobs in memory: a list with filters (flow, status), paged by the server.
import { get } from "./api.js";
import { h, clear, table, badge, select, field, when } from "./dom.js";

const PAGE = 50;
const STATUSES = ["", "pending", "running", "paused", "completed", "failed", "cancelled"];

export async function render(main, _params, ctx) {
  const q = new URLSearchParams(location.search);
  const flows = await get("/api/flows");
  const flowSel = select([["", "any flow"], ...flows.map((f) => [f.name, f.name])], q.get("flow") || "");
  const statusSel = select(STATUSES.map((s) => [s, s || "any status"]), q.get("status") || "");
  flowSel.id = "filter-flow"; statusSel.id = "filter-status";
  const box = h("div", { class: "card" });
  let offset = Number(q.get("offset") || 0) || 0;
  let shown = null;
  const load = async () => {
    const params = { flow: flowSel.value, status: statusSel.value, limit: PAGE, offset };
    const search = new URLSearchParams(Object.entries(params).filter(([k, v]) => v && k !== "limit"));
    history.replaceState(null, "", `/ui/jobs${search.toString() ? "?" + search : ""}`);
    const page = await get("/api/jobs", params);
    // unchanged: keep the table (and the keyboard focus in it)
    const sig = JSON.stringify([params, page]);
    if (sig === shown) return;
    shown = sig;
    const rows = page.items.map((j) => [h("a", { href: `/ui/jobs/${encodeURIComponent(j.id)}`, class: "mono" }, j.id), j.flow,
      badge(j.status), j.pause ? j.pause.reason : "", when(j.created_at), j.error || ""]);
    const more = offset + PAGE < page.total;
    clear(box, h("p", { class: "muted" }, `${page.total} job(s)`),
      table(["id", "flow", "status", "paused by", "created", "error"], rows, { empty: "No job matches. Start one from a flow's page." }),
      (offset > 0 || more) ? h("div", { class: "pager" },
        h("button", { type: "button", class: "secondary", disabled: offset <= 0, onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, "← Previous"),
        h("span", { class: "muted" }, `${offset + 1}–${Math.min(page.total, offset + PAGE)} of ${page.total}`),
        h("button", { type: "button", class: "secondary", disabled: !more, onclick: () => { offset += PAGE; load(); } }, "Next →")) : null);
  };
  for (const el of [flowSel, statusSel]) el.addEventListener("change", () => { offset = 0; load(); });
  main.append(h("h1", {}, "Jobs"), h("p", { class: "muted" }, "Jobs of this server's engine (not durable). Oldest first; finished jobs are kept up to the server's keep_finished_jobs."),
    h("div", { class: "row card" }, field("Flow", flowSel), field("Status", statusSel)), box);
  await load();
  ctx.every(3000, load);
}
