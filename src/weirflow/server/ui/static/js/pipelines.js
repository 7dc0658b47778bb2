// Supervised pipelines (/api/pipelines): state, pid, restarts, last exit, health, RSS,
// with start, pause, resume and stop, and remove for a finished one. Re-read every second.
import { get, post, api, canAct } from "./api.js";
import { h, clear, table, num, field, select, toast, ago, when } from "./dom.js";

const RESTARTS = ["permanent", "transient", "temporary"];

export async function render(main, _params, ctx) {
  const box = h("div", { class: "card", id: "pipelines" });
  main.append(h("h1", {}, "Pipelines"),
    h("p", { class: "muted" }, "Long-running jobs, each in a child process of this server's supervisor: a crash is seen at once and restarted by its policy, a hung child is found by its health checks and replaced."));
  if (canAct()) main.append(await startForm(() => load()));
  main.append(box);
  let shown = null;
  const act = (p, label, path, enabled, cls) => h("button", { type: "button", class: cls || "secondary", disabled: !enabled,
    "data-action": path, "data-pipeline": p.id,
    onclick: async () => {
      try {
        const url = `/api/pipelines/${encodeURIComponent(p.id)}`;
        if (path === "stop") await api("DELETE", url);
        else if (path === "remove") {
          const unread = p.results ? ` and its ${p.results} unread result(s)` : "";
          if (!confirm(`Remove the ${p.state} pipeline ${p.id}${unread}?`)) return;
          await api("DELETE", url, undefined, { query: { forget: "true" } });
          toast(`pipeline ${p.id} removed`);
        } else await post(`/api/pipelines/${encodeURIComponent(p.id)}/${path}`);
        load();
      } catch (e) { toast(e.message, true); }
    } }, label);
  async function load() {
    const list = await get("/api/pipelines");
    const sig = JSON.stringify(list.map((p) => [p.id, p.state, p.pid, p.restarts, p.last_exit, p.health.failures,
      p.health.rtt_ms, p.rss_mb, p.results]));
    if (sig === shown) return;
    shown = sig;
    const live = (p) => ["running", "paused", "unhealthy"].includes(p.state);
    const finished = (p) => ["stopped", "failed"].includes(p.state);
    // a finished pipeline can only be removed (its results buffer goes with it); a live one
    // paused, resumed or stopped
    const actions = (p) => finished(p)
      ? h("div", { class: "actions" }, act(p, "Remove", "remove", true, "danger"))
      : h("div", { class: "actions" }, act(p, "Pause", "pause", live(p) && p.state !== "paused"),
        act(p, "Resume", "resume", p.state === "paused"), act(p, "Stop", "stop", true, "danger"));
    const rows = list.map((p) => [
      h("code", {}, p.id), p.name, p.flow, h("span", { class: `badge p-${p.state}`, "data-state": p.state }, p.state), p.pid || "—",
      num(p.restarts),
      p.last_exit ? h("span", { title: `at ${when(p.last_exit.at)}` }, p.last_exit.reason) : "—",
      h("span", { title: `last healthy answer ${ago(p.health.last_ok_at)}` },
        `${p.health.failures} failed · every ${p.health.interval_s}s · deadline ${p.health.deadline_s}s`),
      p.health.rtt_ms.p50 === null ? "—" : `${p.health.rtt_ms.p50} / ${p.health.rtt_ms.p99} ms`,
      p.rss_mb === null ? "—" : `${p.rss_mb} MiB${p.max_rss_mb ? ` / ${p.max_rss_mb}` : ""}`,
      num(p.results),
      canAct() ? actions(p) : "",
    ]);
    clear(box, h("p", { class: "muted" }, `${list.length} pipeline(s)`),
      table(["id", "name", "flow", "state", "pid", "restarts#", "last exit", "health", "rtt p50 / p99", "RSS", "results#", ""], rows,
        { empty: "No pipeline yet. Start one above, or POST /api/pipelines." }),
      list.filter((p) => p.reason).map((p) => h("p", { class: "muted small" }, h("code", {}, p.id), `: ${p.reason}`)));
  }
  await load();
  ctx.every(1000, load);
}

async function startForm(started) {
  const flows = await get("/api/flows");
  const flow = select(flows.map((f) => [f.name, f.name]), flows.length ? flows[0].name : "");
  flow.id = "pipeline-flow";
  const inputs = h("textarea", { id: "pipeline-inputs", rows: 2, spellcheck: "false" }, "{}");
  const name = h("input", { id: "pipeline-name", type: "text", placeholder: "optional" });
  const restart = select(RESTARTS.map((r) => [r, r]), "permanent");
  restart.id = "pipeline-restart";
  const submit = async () => {
    let parsed;
    try { parsed = JSON.parse(inputs.value || "{}"); } catch (e) { toast(`Inputs are not JSON: ${e.message}`, true); return; }
    const body = { flow: flow.value, inputs: parsed, restart: restart.value };
    if (name.value.trim()) body.name = name.value.trim();
    try { const p = await post("/api/pipelines", body); toast(`pipeline ${p.id} started`); started(); }
    catch (e) { toast(e.message, true); }
  };
  return h("div", { class: "card" }, h("h2", {}, "Start a pipeline"),
    h("div", { class: "row top" }, field("Flow", flow), field("Name", name), field("Restart", restart),
      h("div", { style: "flex:1" }, field("Inputs", inputs, '{"routine.slot": [item, ...]}'))),
    h("div", { class: "actions" }, h("button", { type: "button", id: "pipeline-start", onclick: submit }, "Start")));
}
