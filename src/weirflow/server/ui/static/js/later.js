// Pipelines: an explained empty state until the server exposes them over HTTP.
import { h, emptyState } from "./dom.js";

export function pipelines(main) {
  main.append(h("h1", {}, "Pipelines"), emptyState("No pipeline routes on this server yet.",
    "Supervised pipelines (weirflow.supervise) run as child processes of a supervisor. Their state, pid, restarts, last exit, health and RSS, with pause, resume and stop, will be shown here once the HTTP API serves them.",
    "Nothing is shown until then: this page never invents data."));
}
