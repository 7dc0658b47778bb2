// The login form: POST the key once; the server answers with a session cookie.
const form = document.getElementById("login");
const error = document.getElementById("error");
form.addEventListener("submit", async (e) => {
  e.preventDefault();
  error.textContent = "";
  const key = document.getElementById("key").value;
  const r = await fetch("/ui/login", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ key }),
  });
  if (!r.ok) {
    let detail = `HTTP ${r.status}`;
    try { detail = (await r.json()).detail || detail; } catch (_) { /* not JSON */ }
    error.textContent = typeof detail === "string" ? detail : JSON.stringify(detail);
    return;
  }
  const next = new URLSearchParams(location.search).get("next");
  // only a path of this server: never an absolute URL an attacker put in the link
  location.assign(next && next.startsWith("/") && !next.startsWith("//") ? next : "/ui");
});
