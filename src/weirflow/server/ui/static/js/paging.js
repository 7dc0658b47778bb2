// A pager under a table: "show(offset)" draws the page ``draw(offset)`` returns.
import { h, clear } from "./dom.js";

export function pager(box, total, size, draw, { label = "" } = {}) {
  const show = (offset) => {
    const more = total === null ? draw.more : offset + size < total;
    const parts = [draw(offset)];
    if (offset > 0 || more) {
      parts.push(h("div", { class: "pager" },
        h("button", { type: "button", class: "secondary", disabled: offset <= 0, onclick: () => show(Math.max(0, offset - size)) }, "← Previous"),
        h("span", { class: "muted" }, total === null ? `from ${offset + 1}` : `${offset + 1}–${Math.min(total, offset + size)} of ${total} ${label}`),
        h("button", { type: "button", class: "secondary", disabled: !more, onclick: () => show(offset + size) }, "Next →")));
    }
    clear(box, parts);
  };
  return show;
}
