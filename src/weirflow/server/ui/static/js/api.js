// Calls to the HTTP API (the same routes a script calls). The browser's session cookie
// authenticates them; calls that change something carry the session's CSRF token.

let csrf = null;
export const session = { auth: false, role: "admin" };

export class ApiError extends Error {
  constructor(status, detail, body) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.body = body;
  }
}

export async function loadSession() {
  const r = await fetch("/ui/session", { credentials: "same-origin" });
  if (r.status === 401) { toLogin(); throw new ApiError(401, "not logged in"); }
  const s = await r.json();
  csrf = s.csrf;
  Object.assign(session, s);
  return session;
}

export function canAct() { return session.role === "admin"; }

function toLogin() {
  location.assign(`/ui/login?next=${encodeURIComponent(location.pathname + location.search)}`);
}

export async function api(method, path, body, { query } = {}) {
  let url = path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
    const s = q.toString();
    if (s) url += `?${s}`;
  }
  const headers = {};
  if (method !== "GET") {
    if (csrf) headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
  }
  const r = await fetch(url, { method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401 && session.auth) toLogin();
  if (r.status === 204) return null;
  let data = null;
  const text = await r.text();
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!r.ok) throw new ApiError(r.status, (data && data.detail) || `HTTP ${r.status}`, data);
  return data;
}

export const get = (path, query) => api("GET", path, undefined, { query });
export const post = (path, body) => api("POST", path, body === undefined ? {} : body);
