// The UI's router: one page shell, pages drawn from the path (/ui/jobs/ID ...).
import { loadSession, session, post } from "./api.js";
import { h, clear, toast } from "./dom.js";
import * as overview from "./overview.js";
import * as flows from "./flows.js";
import * as jobs from "./jobs.js";
import * as job from "./job.js";
import * as durable from "./durable.js";
import * as durableJob from "./durable_job.js";
import * as nodes from "./nodes.js";
import * as pipelines from "./pipelines.js";

const routes = [
  [/^\/ui\/?$/, "overview", overview.render],
  [/^\/ui\/flows\/?$/, "flows", flows.renderList],
  [/^\/ui\/flows\/([^/]+)$/, "flows", flows.renderFlow],
  [/^\/ui\/jobs\/?$/, "jobs", jobs.render],
  [/^\/ui\/jobs\/([^/]+)$/, "jobs", job.render],
  [/^\/ui\/durable\/?$/, "durable", durable.render],
  [/^\/ui\/durable\/([^/]+)$/, "durable", durableJob.render],
  [/^\/ui\/pipelines\/?$/, "pipelines", pipelines.render],
  [/^\/ui\/nodes\/?$/, "nodes", nodes.render],
];

let cleanups = [];

/** What a page gets: ``every(ms, fn)`` and ``stream(url, handlers)`` are stopped on navigation. */
function context() {
  return {
    every(ms, fn) { const t = setInterval(fn, ms); cleanups.push(() => clearInterval(t)); },
    stream(url, handlers) {
      const es = new EventSource(url, { withCredentials: true });
      for (const [kind, fn] of Object.entries(handlers)) es.addEventListener(kind, fn);
      cleanups.push(() => es.close());
      return es;
    },
    onLeave(fn) { cleanups.push(fn); },
    go: navigate,
  };
}

export function navigate(path) {
  history.pushState(null, "", path);
  show();
}

async function show() {
  for (const fn of cleanups) { try { fn(); } catch (_) { /* already stopped */ } }
  cleanups = [];
  const main = document.getElementById("main");
  const path = decodeURI(location.pathname);
  for (const [re, nav, render] of routes) {
    const m = path.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll("header nav a[data-nav]")) {
      if (a.dataset.nav === nav) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
    clear(main);
    try {
      await render(main, m.slice(1).map(decodeURIComponent), context());
    } catch (e) {
      main.append(h("p", { class: "error", role: "alert" }, `Could not load this page: ${e.message}`));
    }
    return;
  }
  clear(main, h("h1", {}, "Not found"), h("p", {}, "No page at this address. "), h("a", { href: "/ui" }, "Overview"));
}

// links inside the app change the page without a reload
document.addEventListener("click", (e) => {
  const a = e.target.closest && e.target.closest("a[href^='/ui']");
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || a.target) return;
  e.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", show);

(async function start() {
  await loadSession();
  const who = document.getElementById("who");
  if (session.auth) {
    clear(who, h("span", { class: "badge", title: "the role of the key this session was opened with" }, `role: ${session.role}`),
      h("button", { class: "secondary", type: "button", onclick: async () => {
        await post("/ui/logout"); location.assign("/ui/login");
      } }, "Log out"));
  } else {
    clear(who, h("span", { class: "muted small" }, "no API keys set: open to this machine"));
  }
  window.addEventListener("unhandledrejection", (e) => toast(String(e.reason && e.reason.message || e.reason), true));
  show();
})();
