// A flow drawn as a graph: routines as boxes (slots on the left with their fill, events on
// the right), connections as arrows. The layout is dagre's (vendored, window.dagre).
// Every routine, slot, event and connection is focusable and can be picked (Enter/click).

const NS = "http://www.w3.org/2000/svg";
const W = 240, HEAD = 28, ROW = 22, PAD = 6;

function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...children);
  return el;
}

function zoomButton(label, title, onclick) {
  const b = h("button", { type: "button", class: "secondary view", title, "aria-label": title }, label);
  b.addEventListener("click", onclick);
  return b;
}

function fit(text, px) {
  const max = Math.max(4, Math.floor(px / 7));
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

export function parseConnection(c) {
  const [from, to] = c.split(" -> ");
  return { from, to, fromRoutine: from.split(".")[0], toRoutine: to.split(".")[0] };
}

/**
 * Draw ``flow`` (GET /api/flows/{name}) into ``container``. ``onPick(kind, target)`` is
 * called when an element is chosen. Returns ``{update(queues), mark(targets), here(target)}``.
 */
export function drawGraph(container, flow, { onPick } = {}) {
  const g = new window.dagre.graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir: "LR", nodesep: 24, ranksep: 70, marginx: 16, marginy: 16 });
  g.setDefaultEdgeLabel(() => ({}));
  const names = Object.keys(flow.routines);
  for (const name of names) {
    const r = flow.routines[name];
    const rows = Object.keys(r.slots).length + r.events.length;
    g.setNode(name, { width: W, height: HEAD + Math.max(1, rows) * ROW + PAD });
  }
  const conns = flow.connections.map(parseConnection);
  conns.forEach((c, i) => g.setEdge(c.fromRoutine, c.toRoutine, {}, `e${i}`));
  window.dagre.layout(g);
  const size = g.graph();
  const svg = s("svg", { class: "graph", width: Math.ceil(size.width), height: Math.ceil(size.height),
    viewBox: `0 0 ${Math.ceil(size.width)} ${Math.ceil(size.height)}`, role: "group", "aria-label": `flow ${flow.name}` });
  svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" },
    s("path", { d: "M 0 0 L 10 5 L 0 10 z" }))));
  const ports = {};  // "r.slot" / "r.event" -> [x, y]
  const picks = {};  // target -> element (for marking breakpoints)
  const fills = {};  // "r.slot" -> {rect, label, bg}
  const edges = s("g", {});
  const nodes = s("g", {});
  svg.append(edges, nodes);

  const pickable = (el, kind, target, label) => {
    el.setAttribute("tabindex", "0");
    el.setAttribute("role", "button");
    el.setAttribute("aria-label", `${kind} ${label || target}`);
    el.dataset.kind = kind;
    el.dataset.target = target;
    const pick = (e) => { e.stopPropagation(); if (onPick) onPick(kind, target); };
    el.addEventListener("click", pick);
    el.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(e); } });
    el.append(s("title", {}, `${kind} ${target}${onPick ? " — add a breakpoint" : ""}`));
    picks[target] = el;
  };

  for (const name of names) {
    const r = flow.routines[name];
    const n = g.node(name);
    const x = n.x - n.width / 2, y = n.y - n.height / 2;
    const node = s("g", { class: "node", transform: `translate(${x},${y})`, "data-routine": name });
    node.append(s("rect", { class: "box", width: W, height: n.height, rx: 6 }));
    const head = s("g", {});
    head.append(s("rect", { class: "head", width: W, height: HEAD, rx: 6 }),
      s("rect", { class: "hl", width: W, height: HEAD, rx: 6 }),
      s("text", { class: "title", x: 10, y: 18 }, fit(name, W - 70)),
      s("text", { class: "dim", x: W - 8, y: 18, "text-anchor": "end" }, fit(r.class || "", 60)));
    pickable(head, "routine", name);
    node.append(head);
    let row = 0;
    for (const [slot, spec] of Object.entries(r.slots)) {
      const path = `${name}.${slot}`;
      const ry = HEAD + row * ROW;
      const el = s("g", { transform: `translate(0,${ry})`, "data-slot": path });
      const bg = s("rect", { class: "fillbg", x: 104, y: 7, width: 60, height: 8, rx: 4 });
      const fill = s("rect", { class: "fill", x: 104, y: 7, width: 0, height: 8, rx: 4 });
      const label = s("text", { class: "dim", x: W - 8, y: 15, "text-anchor": "end" }, `cap ${spec.capacity}`);
      el.append(s("rect", { class: "hl", x: 2, y: 1, width: W - 4, height: ROW - 2, rx: 3 }),
        s("circle", { cx: 0, cy: ROW / 2, r: 4, fill: "currentColor" }),
        s("text", { x: 10, y: 15 }, fit(`▸ ${slot}`, 90)), bg, fill, label);
      pickable(el, "slot", path);
      fills[path] = { fill, label, capacity: spec.capacity, row: el };
      ports[path] = [x, y + ry + ROW / 2];
      node.append(el);
      row++;
    }
    for (const ev of r.events) {
      const path = `${name}.${ev}`;
      const ry = HEAD + row * ROW;
      const el = s("g", { transform: `translate(0,${ry})` });
      el.append(s("rect", { class: "hl", x: 2, y: 1, width: W - 4, height: ROW - 2, rx: 3 }),
        s("text", { x: W - 12, y: 15, "text-anchor": "end" }, fit(`${ev} ▸`, W - 24)));
      pickable(el, "event", path);
      ports[path] = [x + W, y + ry + ROW / 2];
      node.append(el);
      row++;
    }
    nodes.append(node);
  }

  conns.forEach((c, i) => {
    const e = g.edge({ v: c.fromRoutine, w: c.toRoutine, name: `e${i}` });
    const a = ports[c.from], b = ports[c.to];
    if (!a || !b) return;
    const mid = (e && e.points ? e.points.slice(1, -1) : []);
    let d = `M ${a[0]} ${a[1]}`;
    if (mid.length) {
      d += ` C ${a[0] + 40} ${a[1]} ${mid[0].x - 20} ${mid[0].y} ${mid[0].x} ${mid[0].y}`;
      for (const p of mid.slice(1)) d += ` L ${p.x} ${p.y}`;
      const last = mid[mid.length - 1];
      d += ` C ${last.x + 20} ${last.y} ${b[0] - 40} ${b[1]} ${b[0]} ${b[1]}`;
    } else {
      d += ` C ${a[0] + 40} ${a[1]} ${b[0] - 40} ${b[1]} ${b[0]} ${b[1]}`;
    }
    const target = `${c.from} -> ${c.to}`;
    const el = s("g", { class: "edge" }, s("path", { class: "hit", d }), s("path", { class: "line", d, "marker-end": "url(#arrow)" }));
    pickable(el, "connection", target);
    edges.append(el);
  });
  const width = Math.ceil(size.width), height = Math.ceil(size.height);
  let scale = 1;
  const zoomTo = (f) => {
    scale = Math.max(0.2, Math.min(2, f));
    svg.setAttribute("width", String(Math.round(width * scale)));
    svg.setAttribute("height", String(Math.round(height * scale)));
  };
  const fitScale = () => Math.min(1, (container.clientWidth - 4) / width);
  const zoomBar = h("div", { class: "zoom", role: "group", "aria-label": "zoom" },
    zoomButton("−", "zoom out", () => zoomTo(scale / 1.25)), zoomButton("+", "zoom in", () => zoomTo(scale * 1.25)),
    zoomButton("Fit", "fit the width", () => zoomTo(fitScale())), zoomButton("100 %", "actual size", () => zoomTo(1)));
  container.replaceChildren(svg);
  container.before(zoomBar);
  if (width > container.clientWidth && names.length > 12) zoomTo(Math.max(0.5, fitScale()));

  return {
    /** Show each slot's fill: ``queues`` is ``{"r.slot": {size, capacity, usage, state}}``. */
    update(queues) {
      for (const [path, q] of Object.entries(queues || {})) {
        const f = fills[path];
        if (!f) continue;
        const usage = Math.max(0, Math.min(1, q.usage || 0));
        f.fill.setAttribute("width", String(Math.round(60 * usage)));
        f.fill.setAttribute("class", `fill ${q.state || ""}`);
        f.label.textContent = `${q.size}/${q.capacity}`;
        f.label.parentNode.dataset.size = String(q.size);
      }
    },
    /** No job: each slot shows its capacity again. */
    reset() {
      for (const f of Object.values(fills)) {
        f.fill.setAttribute("width", "0");
        f.label.textContent = `cap ${f.capacity}`;
      }
    },
    /** Outline the elements that have a breakpoint. */
    mark(targets) {
      for (const [t, el] of Object.entries(picks)) el.classList.toggle("bp", targets.has(t));
    },
    /** Outline where the job is stopped. */
    here(target) {
      for (const [t, el] of Object.entries(picks)) el.classList.toggle("here", t === target);
    },
  };
}
