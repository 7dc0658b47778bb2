// Pipelines and nodes: explained empty states until the server exposes them over HTTP.
import { h, emptyState } from "./dom.js";

export function pipelines(main) {
  main.append(h("h1", {}, "Pipelines"), emptyState("No pipeline routes on this server yet.",
    "Supervised pipelines (weirflow.supervise) run as child processes of a supervisor. Their state, pid, restarts, last exit, health and RSS, with pause, resume and stop, will be shown here once the HTTP API serves them.",
    "Nothing is shown until then: this page never invents data."));
}

export function nodes(main) {
  main.append(h("h1", {}, "Nodes"), emptyState("No node registry on this server yet.",
    "Cluster nodes (weirflow.cluster, over Redis) will be listed here with pool, labels, capacity, running jobs, heartbeat age and registry status once the HTTP API serves them."));
}
