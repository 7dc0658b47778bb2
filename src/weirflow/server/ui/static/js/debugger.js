// The debugger of one job: breakpoints (from the graph or the form, with a CEL condition),
// where the job is stopped and the held item (edit as JSON, drop with a reason), step,
// step-into, resume, evaluate, routine state and the first queued items of each slot.
import { get, post, api, canAct } from "./api.js";
import { h, clear, table, json, brief, field, select, toast } from "./dom.js";

const KINDS = ["routine", "slot", "event", "connection"];

function targetsOf(flow) {
  const out = { routine: [], slot: [], event: [], connection: flow.connections.slice() };
  for (const [r, spec] of Object.entries(flow.routines)) {
    out.routine.push(r);
    for (const s of Object.keys(spec.slots)) out.slot.push(`${r}.${s}`);
    for (const e of spec.events) out.event.push(`${r}.${e}`);
  }
  return out;
}

function conditionError(e) {
  const body = e.body || {};
  const where = body.line ? ` (line ${body.line}, column ${body.column})` : "";
  return `${e.message}${where}`;
}

export function debuggerPanel(box, { base, flow, graph }) {
  const targets = targetsOf(flow);
  const kind = select(KINDS.map((k) => [k, k]), "connection"); kind.id = "bp-kind";
  const target = h("input", { id: "bp-target", list: "bp-targets", autocomplete: "off", size: 34 });
  const options = h("datalist", { id: "bp-targets" });
  const condition = h("textarea", { id: "bp-condition", rows: 2, spellcheck: "false", placeholder: 'e.g. item == "x" or size(item) > 3' });
  const once = h("input", { type: "checkbox", id: "bp-once" });
  const enabled = h("input", { type: "checkbox", id: "bp-enabled", checked: true });
  const scope = select([["job", "job (the whole job pauses)"], ["routine", "routine (only that routine stops)"]], "job"); scope.id = "bp-scope";
  const formError = h("p", { class: "error", id: "bp-error", role: "alert" });
  const list = h("div", { id: "breakpoints" });
  const stopped = h("div", { id: "stopped" });
  const queued = h("div", { id: "queued" });
  // evaluating: made once, so what is typed survives the panel being redrawn
  const expr = h("input", { id: "eval-expr", placeholder: "item", size: 30 });
  const value = h("pre", { id: "eval-value", "aria-live": "polite" });
  const evaluate = async () => {
    try { value.textContent = json((await post(`${base}/debug/eval`, { expr: expr.value })).value); value.classList.remove("error"); }
    catch (e) { value.textContent = conditionError(e); value.classList.add("error"); }
  };
  const evalBox = h("div", { class: "form", id: "eval-box" }, h("div", { class: "row" }, field("Evaluate (CEL) at the stop", expr),
    h("button", { type: "button", class: "secondary", id: "eval", onclick: evaluate }, "Evaluate")), value);
  const fillOptions = () => clear(options, targets[kind.value].map((t) => h("option", { value: t })));
  kind.addEventListener("change", fillOptions);
  fillOptions();

  const add = async () => {
    formError.textContent = "";
    try {
      await post(`${base}/breakpoints`, { kind: kind.value, target: target.value, condition: condition.value || null,
        once: once.checked, scope: scope.value, enabled: enabled.checked });
      toast(`Breakpoint on ${kind.value} ${target.value}`);
      refresh();
    } catch (e) { formError.textContent = conditionError(e); }
  };

  const parts = [h("h2", {}, "Debugger"), stopped, canAct() ? evalBox : null];
  if (canAct()) {
    parts.push(h("div", { class: "form", id: "bp-form" }, h("h3", {}, "Add a breakpoint"),
      h("div", { class: "row" }, field("Kind", kind), h("div", { style: "flex:1" }, field("Target", target, "r, r.slot, r.event or r.event -> s.slot"))), options,
      field("Condition (CEL, optional)", condition, "variables: item, routine, slot, event, attempt, queue, state"),
      h("div", { class: "row" }, once, h("label", { for: "bp-once" }, "once"), enabled, h("label", { for: "bp-enabled" }, "enabled"), field("Scope", scope)),
      h("div", { class: "actions" }, h("button", { type: "button", id: "bp-add", onclick: add }, "Add breakpoint")), formError));
  }
  parts.push(h("h3", {}, "Breakpoints"), list, h("h3", {}, "First queued items"), queued);
  clear(box, parts);

  const drawList = (bps) => {
    graph.mark(new Set(bps.filter((b) => b.enabled).map((b) => b.target)));
    clear(list, table(["kind", "target", "condition", "hits#", "flags", ""], bps.map((b) => [b.kind, h("code", {}, b.target),
      b.condition ? h("code", {}, b.condition) : h("span", { class: "muted" }, "always"), String(b.hit_count),
      [b.once ? "once " : "", b.scope, b.enabled ? "" : " disabled", b.error ? h("span", { class: "error" }, ` ${b.error}`) : ""],
      canAct() ? h("span", { class: "row" },
        h("button", { type: "button", class: "secondary", onclick: async () => {
          try { await api("PATCH", `${base}/breakpoints/${encodeURIComponent(b.id)}`, { enabled: !b.enabled }); refresh(); } catch (e) { toast(e.message, true); } } },
        b.enabled ? "Disable" : "Enable"),
        h("button", { type: "button", class: "secondary", onclick: async () => {
          try { await api("DELETE", `${base}/breakpoints/${encodeURIComponent(b.id)}`); refresh(); } catch (e) { toast(e.message, true); } } }, "Remove")) : ""]),
    { empty: canAct() ? "No breakpoints. Click the graph or use the form." : "No breakpoints." }));
  };

  const act = async (path, body) => {
    try { const v = await post(`${base}/debug/${path}`, body); refresh(); return v; } catch (e) { toast(e.message, true); return null; }
  };

  let shown = null;
  const drawStopped = (view) => {
    // the same stop again (an unrelated refresh): keep what the user is typing
    const sig = json([view.status, view.paused, view.held, view.location, view.state], 0);
    if (sig === shown) return;
    shown = sig;
    graph.here(view.location ? view.location.target : null);
    evalBox.hidden = !view.location;
    const form = box.querySelector("#bp-form");
    if (form) form.hidden = ["completed", "failed", "cancelled"].includes(view.status);
    if (!view.location) {
      clear(stopped, view.paused
        ? h("p", { class: "empty" }, `Paused (${view.pause_reason || "manual"}), nothing held.`)
        : h("p", { class: "empty" }, `Not stopped (${view.status}). A breakpoint hit shows up here as it happens.`));
      return;
    }
    const loc = view.location;
    const editor = h("textarea", { id: "held-item", rows: 4, spellcheck: "false" }, json(loc.item));
    const reason = h("input", { id: "drop-reason", value: "removed in the UI", size: 24 });
    const save = async () => {
      let item; try { item = JSON.parse(editor.value); } catch (e) { toast(`Not JSON: ${e.message}`, true); return; }
      if (await act("set-item", { item })) toast("Held item replaced");
    };
    clear(stopped, h("div", { class: "card stopped" },
      h("p", {}, h("strong", {}, "Stopped "), `at ${loc.kind} `, h("code", { id: "stopped-at" }, loc.target),
        loc.breakpoint ? [" by breakpoint ", h("code", {}, loc.breakpoint)] : " after a step", ` (attempt ${loc.attempt}); ${view.held} item(s) held.`,
        loc.reason ? [" The step could not go on: ", h("span", { id: "stop-reason" }, loc.reason), "."] : ""),
      canAct() ? [field("Held item (JSON, editable)", editor),
        h("div", { class: "actions" }, h("button", { type: "button", id: "save-item", onclick: save }, "Save item"),
          h("button", { type: "button", id: "step", class: "secondary", onclick: () => act("step", undefined) }, "Step"),
          h("button", { type: "button", id: "step-into", class: "secondary", onclick: () => act("step-into", undefined) }, "Step into"),
          h("button", { type: "button", id: "resume", onclick: () => act("resume", undefined) }, "Resume")),
        h("div", { class: "row" }, reason, h("button", { type: "button", class: "danger", id: "drop", onclick: () => act("drop-item", { reason: reason.value }) }, "Drop item"))]
        : h("pre", { id: "held-item" }, json(loc.item)),
      h("h3", {}, "Routine state"), h("pre", {}, json(view.state))));
  };

  const drawQueued = (view) => {
    const rows = Object.entries(view.queued_items).filter(([, items]) => items.length)
      .map(([p, items]) => [h("code", {}, p), String(view.queues[p] ? view.queues[p].size : items.length), h("code", { title: json(items) }, items.map((i) => brief(i, 60)).join("  ·  "))]);
    clear(queued, table(["slot", "size", "first items"], rows, { empty: "No item is waiting in any slot." }));
  };

  let busy = false, again = false;
  const refresh = async () => {
    if (busy) { again = true; return; }
    busy = true;
    try {
      do {
        again = false;
        const view = await get(`${base}/debug`, { limit: 5 });
        drawList(view.breakpoints); drawStopped(view); drawQueued(view);
      } while (again);
    } catch (e) {
      clear(stopped, h("p", { class: "error" }, e.message));
    } finally { busy = false; }
  };
  refresh();

  return {
    refresh,
    /** A graph element was chosen: put it in the form. */
    pick(k, t) {
      kind.value = k; fillOptions(); target.value = t; formError.textContent = "";
      condition.focus();
    },
  };
}
