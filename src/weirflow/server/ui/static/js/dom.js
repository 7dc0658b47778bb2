// Building the page. Every value from the server (names, items, errors) goes in as a
// text node or an attribute value, never as HTML: h() has no way to insert markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function json(value, indent = 2) {
  try { return JSON.stringify(value, null, indent); } catch (_) { return String(value); }
}

/** A short one-line rendering of an item for tables (full JSON in a title). */
export function brief(value, max = 120) {
  const s = typeof value === "string" ? JSON.stringify(value) : json(value, 0);
  return s.length > max ? s.slice(0, max - 1) + "…" : s;
}

export function badge(text) {
  return h("span", { class: `badge ${String(text).replace(/[^a-z_]/gi, "")}` }, text);
}

export function bar(usage, state) {
  const pct = Math.max(0, Math.min(100, Math.round((usage || 0) * 100)));
  const b = h("div", { class: `bar ${state || ""}`, role: "meter", "aria-valuemin": 0, "aria-valuemax": 100,
    "aria-valuenow": pct, "aria-label": `${pct}%` });
  const fill = h("span");
  fill.style.width = `${pct}%`;
  b.append(fill);
  return b;
}

export function when(t) {
  if (t === null || t === undefined) return "—";
  const d = new Date(t * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  // local time, one unbreakable piece: tables do not wrap it over two lines
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}\u00a0${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function ago(t) {
  if (!t) return "—";
  const s = Math.max(0, Date.now() / 1000 - t);
  if (s < 60) return `${s.toFixed(0)} s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
  return `${(s / 86400).toFixed(1)} d ago`;
}

export function duration(a, b) {
  if (!a) return "—";
  const s = (b || Date.now() / 1000) - a;
  return s < 1 ? `${(s * 1000).toFixed(0)} ms` : s < 120 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`;
}

export function table(headers, rows, { empty = "Nothing here." } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("div", { class: "scroll" }, h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col", class: x.endsWith("#") ? "num" : null }, x.replace(/#$/, ""))))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => c instanceof Node && c.tagName === "TD" ? c : h("td", {}, c)))))));
}

export function num(v) { return h("td", { class: "num" }, v); }

export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2)}`;
  control.id = id;
  return h("div", { class: "form" }, h("label", { for: id }, label), control, hint ? h("span", { class: "muted small" }, hint) : null);
}

export function select(options, value) {
  return h("select", {}, options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
}

export function emptyState(title, ...lines) {
  return h("div", { class: "empty" }, h("strong", {}, title), lines.map((l) => h("p", {}, l)));
}

export function toast(message, bad = false) {
  const box = document.getElementById("toast");
  const el = h("div", { class: bad ? "bad" : "" }, message);
  box.append(el);
  while (box.children.length > 3) box.firstChild.remove();
  setTimeout(() => el.remove(), bad ? 8000 : 3500);
}
